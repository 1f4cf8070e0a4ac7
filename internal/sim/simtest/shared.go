// Package simtest finds the project's shared benchmark data for tests. The data lives
// beside the repository (../shared/benchmarks, see its README) and is never copied in: a
// test that needs it skips on a fresh clone, saying which file and how to get it, and
// fails in CI (CI=true), where the data must be present.
package simtest

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedDir is ../shared/benchmarks relative to the repository root (the nearest directory
// above the working directory holding go.mod), or "" when there is no go.mod above it.
func SharedDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "benchmarks")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SharedFile returns the path of a shared benchmark file, skipping the test when it is
// missing outside CI and failing it in CI.
func SharedFile(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(SharedDir(), name)
	if _, err := os.Stat(path); err != nil {
		msg := "shared benchmark data " + name + " not found at " + path +
			": put the project's shared folder beside the repository (shared/benchmarks/, described in its README.md)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return path
}
