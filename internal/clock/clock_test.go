package clock

import (
	"testing"
	"time"
)

// System reads the wall clock: its answer lies between two readings of time.Now.
func TestSystemIsTheWallClock(t *testing.T) {
	before := time.Now()
	got := System{}.Now()
	after := time.Now()
	if got.Before(before) || got.After(after) {
		t.Fatalf("System.Now() = %v, not within [%v, %v]", got, before, after)
	}
}
