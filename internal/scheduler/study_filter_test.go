package scheduler

import (
	"context"
	"testing"
)

// A worker that asks for one study's trials gets only that study's, even when another
// study has work; without a filter it gets any study's.
func TestAcquireStudyTrialFiltersByStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	first := e.createStudy(nil)
	second := e.createStudy(nil)
	w := e.register("external", 2)

	a, err := e.s.AcquireStudyTrial(ctx, w, second.Id, noWait)
	if err != nil {
		t.Fatalf("AcquireStudyTrial(study %d): %v", second.Id, err)
	}
	if a == nil || a.Trial.StudyId != second.Id {
		t.Fatalf("AcquireStudyTrial(study %d) = %v, want a trial of study %d", second.Id, a, second.Id)
	}
	// The study filter also names a study that does not exist: an empty answer, not an error.
	if a, err := e.s.AcquireStudyTrial(ctx, w, second.Id+100, noWait); err != nil || a != nil {
		t.Fatalf("AcquireStudyTrial(unknown study) = %v, %v; want nil, nil", a, err)
	}
	any := e.mustAcquire(w)
	if any.Trial.StudyId != first.Id {
		t.Errorf("unfiltered AcquireTrial got study %d, want %d (the other study's only slot is taken)", any.Trial.StudyId, first.Id)
	}
}
