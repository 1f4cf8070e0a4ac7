package gpuexec

import (
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// train.py's error classes (scripts/train.py, docs/train-protocol.md) each map onto
// their own enum value; anything else is other.
func TestParseFailureClass(t *testing.T) {
	for name, want := range map[string]pb.FailureClass{
		"oom":         pb.FailureClass_FAILURE_CLASS_OOM,
		"diverged":    pb.FailureClass_FAILURE_CLASS_DIVERGED,
		"bad_data":    pb.FailureClass_FAILURE_CLASS_BAD_DATA,
		"bad_input":   pb.FailureClass_FAILURE_CLASS_BAD_INPUT,
		"other":       pb.FailureClass_FAILURE_CLASS_OTHER,
		"":            pb.FailureClass_FAILURE_CLASS_OTHER,
		"unspecified": pb.FailureClass_FAILURE_CLASS_OTHER,
		"OOM":         pb.FailureClass_FAILURE_CLASS_OTHER,
		"cosmic_ray":  pb.FailureClass_FAILURE_CLASS_OTHER,
	} {
		if got := ParseFailureClass(name); got != want {
			t.Errorf("ParseFailureClass(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestClassFailureClass(t *testing.T) {
	for c, want := range map[Class]pb.FailureClass{
		ClassSucceeded: pb.FailureClass_FAILURE_CLASS_UNSPECIFIED,
		ClassOOM:       pb.FailureClass_FAILURE_CLASS_OOM,
		ClassDiverged:  pb.FailureClass_FAILURE_CLASS_DIVERGED,
		ClassBadData:   pb.FailureClass_FAILURE_CLASS_BAD_DATA,
		ClassBadInput:  pb.FailureClass_FAILURE_CLASS_BAD_INPUT,
		ClassCrashed:   pb.FailureClass_FAILURE_CLASS_OTHER,
		ClassKilled:    pb.FailureClass_FAILURE_CLASS_OTHER,
		ClassStopped:   pb.FailureClass_FAILURE_CLASS_OTHER,
	} {
		if got := c.FailureClass(); got != want {
			t.Errorf("%s.FailureClass() = %v, want %v", c, got, want)
		}
	}
}
