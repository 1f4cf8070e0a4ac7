// Package testutil is the one test harness the packages' tests share: a temporary store
// checked for consistency when the test ends, services served in-process over bufconn with
// a client connection to them, and a fake clock the test moves by hand. For tests of real
// processes over loopback (test/e2e, internal/loadtest) it builds the binaries, picks free
// ports and waits for a server's address file (process.go).
//
// It imports neither the scheduler nor the coordinator, so their own (in-package) tests can
// use it without an import cycle; callers register their services on the server.
package testutil

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mixopt/mixopt/internal/clock"
	"github.com/mixopt/mixopt/internal/store"
)

// Clock is a clock.Clock the test moves by hand; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

var _ clock.Clock = (*Clock)(nil)

// NewClock starts at a fixed instant, so runs are repeatable.
func NewClock() *Clock { return &Clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d: forward, or back for a negative d (a wall clock stepped
// back).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// StorePath is a fresh database path in the test's temporary directory.
func StorePath(t testing.TB) string { return filepath.Join(t.TempDir(), "mixopt.db") }

// OpenStore opens (creating when missing) the store at path; the caller closes it, with
// CheckAndClose to have its consistency checked.
func OpenStore(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return db
}

// CheckAndClose fails the test when the store is inconsistent, then closes it.
func CheckAndClose(t testing.TB, db *store.DB) {
	t.Helper()
	if err := db.Check(); err != nil {
		t.Errorf("store check: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("close store: %v", err)
	}
}

// TempStore is a new store in the test's temporary directory, checked and closed when the
// test ends.
func TempStore(t testing.TB) *store.DB {
	t.Helper()
	db := OpenStore(t, StorePath(t))
	t.Cleanup(func() { CheckAndClose(t, db) })
	return db
}

// Served is a gRPC server on an in-process listener and a client connection to it.
type Served struct {
	// Conn is a client connection to the server, closed when the test ends.
	Conn *grpc.ClientConn
	// Dial connects to the in-process listener, for clients that dial Addr themselves.
	Dial grpc.DialOption
	// Server is the server, stopped when the test ends.
	Server *grpc.Server
}

// Addr is the target that, with Dial, reaches the in-process listener.
const Addr = "passthrough:///bufnet"

// Serve starts a gRPC server with opts on an in-process listener, lets register add the
// services, and connects a client with dialOpts (plain text is always added). When the test
// ends the connection is closed, the server stopped, and an error from Serve fails the test.
func Serve(t testing.TB, register func(*grpc.Server), opts []grpc.ServerOption, dialOpts ...grpc.DialOption) *Served {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	dial := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	conn, err := grpc.NewClient(Addr, append([]grpc.DialOption{dial, grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &Served{Conn: conn, Dial: dial, Server: srv}
}
