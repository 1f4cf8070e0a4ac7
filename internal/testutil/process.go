package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// GoBuild builds pkgs (import paths or patterns, such as
// "github.com/mixopt/mixopt/cmd/..."), with go build's flags, into the folder dir; a
// failure's error holds the compiler's output. It returns an error rather than failing a
// test so that a build shared by a test binary's tests can run once (sync.Once).
func GoBuild(dir string, flags []string, pkgs ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", dir+string(os.PathSeparator))
	cmd := exec.Command("go", append(args, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// FreeAddr is a loopback address whose port is free right now: a server started on it
// later, and restarted on the same address, is where its clients look for it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitAddrFile waits for a server to write its address to path (the coordinator's
// AddrFile, -addr-file: written whole, ending in a newline) and returns the address. The
// test fails when stopped delivers first (the server ended; nil: not watched) or after
// limit. It polls every millisecond, so a start-up measured up to it is not rounded up.
func WaitAddrFile(t testing.TB, path string, limit time.Duration, stopped <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if raw, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(raw), "\n") {
			addr := strings.TrimSpace(string(raw))
			if _, _, err := net.SplitHostPort(addr); err != nil {
				t.Fatalf("address file %s holds %q", path, addr)
			}
			return addr
		}
		select {
		case err := <-stopped:
			t.Fatalf("server stopped before writing %s: %v", path, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address in %s after %s", path, limit)
		}
		time.Sleep(time.Millisecond)
	}
}
