package testutil

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestClockAdvances(t *testing.T) {
	c := NewClock()
	start := c.Now()
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("advanced by %v, want 90s", got)
	}
	if !NewClock().Now().Equal(start) {
		t.Fatal("two new clocks start at different instants")
	}
}

// A store reopened at the same path holds what was written before.
func TestStoreReopens(t *testing.T) {
	path := StorePath(t)
	db := OpenStore(t, path)
	if err := db.Check(); err != nil {
		t.Fatalf("check of a new store: %v", err)
	}
	CheckAndClose(t, db)
	db = OpenStore(t, path)
	CheckAndClose(t, db)
	TempStore(t) // checked and closed by its cleanup
}

func TestServeReachesTheServer(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("x", healthpb.HealthCheckResponse_NOT_SERVING)
	s := Serve(t, func(srv *grpc.Server) { healthpb.RegisterHealthServer(srv, hs) }, nil)
	resp, err := healthpb.NewHealthClient(s.Conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "x"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status %v, want NOT_SERVING", resp.Status)
	}
}

func TestClockStepsBack(t *testing.T) {
	c := NewClock()
	start := c.Now()
	c.Advance(-time.Minute)
	if got := start.Sub(c.Now()); got != time.Minute {
		t.Fatalf("stepped back by %v, want 1m", got)
	}
}

// The free address can be listened on, and one written whole to an address file is
// what WaitAddrFile returns.
func TestFreeAddrAndWaitAddrFile(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free address %s: %v", addr, err)
	}
	l.Close()
	path := filepath.Join(t.TempDir(), "addr")
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.WriteFile(path, []byte(addr+"\n"), 0o644)
	}()
	if got := WaitAddrFile(t, path, 10*time.Second, nil); got != addr {
		t.Fatalf("WaitAddrFile = %q, want %q", got, addr)
	}
}

func TestGoBuildReportsTheCompiler(t *testing.T) {
	dir := t.TempDir()
	if err := GoBuild(dir, []string{"-trimpath"}, "./testdata/hello"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(dir, "hello")).Output(); err != nil || string(out) != "hello\n" {
		t.Fatalf("the built binary: %q, %v", out, err)
	}
	err := GoBuild(t.TempDir(), nil, "github.com/mixopt/mixopt/internal/no-such-package")
	if err == nil || !strings.Contains(err.Error(), "no-such-package") {
		t.Fatalf("building a missing package: %v, want an error naming it", err)
	}
}
