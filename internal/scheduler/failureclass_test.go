package scheduler

import (
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Stored reasons spell a class by its short name; the names must stay those written
// before the enum existed, so that FailTrial's idempotency check matches old records.
func TestFailureClassName(t *testing.T) {
	for c, want := range map[pb.FailureClass]string{
		pb.FailureClass_FAILURE_CLASS_OOM:         "oom",
		pb.FailureClass_FAILURE_CLASS_DIVERGED:    "diverged",
		pb.FailureClass_FAILURE_CLASS_BAD_DATA:    "bad_data",
		pb.FailureClass_FAILURE_CLASS_BAD_INPUT:   "bad_input",
		pb.FailureClass_FAILURE_CLASS_OTHER:       "other",
		pb.FailureClass_FAILURE_CLASS_UNSPECIFIED: "other",
		pb.FailureClass(99):                       "other",
	} {
		if got := FailureClassName(c); got != want {
			t.Errorf("FailureClassName(%v) = %q, want %q", c, got, want)
		}
	}
}
