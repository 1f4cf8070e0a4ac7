// Package clock holds the one Clock interface that the scheduler and the worker read the
// time through, so tests drive lease expiry and self-fencing with one fake clock
// (internal/testutil.Clock).
package clock

import "time"

// Clock tells the time.
type Clock interface{ Now() time.Time }

// System is the wall clock.
type System struct{}

// Now is time.Now.
func (System) Now() time.Time { return time.Now() }
