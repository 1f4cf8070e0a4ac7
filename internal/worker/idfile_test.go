package worker

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWorkerIDFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "worker-id")
	if id, err := readWorkerID(path); err != nil || id != 0 {
		t.Fatalf("no file yet: readWorkerID = %d, %v; want 0", id, err)
	}
	for _, id := range []uint64{1, 42, math.MaxUint64, 7} {
		if err := writeWorkerID(path, id); err != nil {
			t.Fatalf("writeWorkerID(%d): %v", id, err)
		}
		if got, err := readWorkerID(path); err != nil || got != id {
			t.Fatalf("readWorkerID after writing %d = %d, %v", id, got, err)
		}
	}
	// The write replaces the file atomically: no temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %v (%v), want only the id file", entries, err)
	}
	// No path: nothing kept, nothing read.
	if err := writeWorkerID("", 5); err != nil {
		t.Errorf("writeWorkerID with no path: %v", err)
	}
	if id, err := readWorkerID(""); err != nil || id != 0 {
		t.Errorf("readWorkerID with no path = %d, %v", id, err)
	}
	if err := writeWorkerID(filepath.Join(dir, "missing", "worker-id"), 5); err == nil {
		t.Errorf("writeWorkerID into a missing directory succeeded")
	}
}

func TestReadWorkerID(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    uint64
		err     string // in the error; "" for none
	}{
		{"plain", "17", 17, ""},
		{"trailing newline and spaces", "  17 \n", 17, ""},
		{"garbage", "not-a-number\n", 0, `"not-a-number" is not an id`},
		{"negative", "-3", 0, `"-3" is not an id`},
		{"empty", "", 0, `"" is not an id`},
		{"too large", "18446744073709551616", 0, "is not an id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "worker-id")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			id, err := readWorkerID(path)
			if tc.err == "" {
				if err != nil || id != tc.want {
					t.Errorf("readWorkerID = %d, %v; want %d", id, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("readWorkerID = %d, %v; want an error naming %s and saying %s", id, err, path, tc.err)
			}
		})
	}
	// A directory where the file should be is an error, not a fresh id.
	if _, err := readWorkerID(t.TempDir()); err == nil {
		t.Errorf("readWorkerID of a directory succeeded")
	}
}

// An agent whose id file is damaged refuses to start rather than register as a stranger.
func TestRunRefusesGarbageIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker-id")
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Config{
		Addr: "passthrough:///nowhere", Hostname: "w", IDFile: path, Runner: SimRunner{Source: synthetic()},
	})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Run with a garbage id file = %v; want an error naming it", err)
	}
}
