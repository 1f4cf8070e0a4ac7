package scheduler

import (
	"context"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Cancelling a completed study is refused as pausing it is, not reported as done.
func TestCancelCompletedStudyRefused(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), a.Trial.Steps)
	if got := e.study(st.Id).Study.State; got != pb.StudyState_STUDY_STATE_COMPLETED {
		t.Fatalf("study %v, want completed", got)
	}
	_, err := e.s.CancelStudy(context.Background(), st.Id)
	wantErr(t, err, ErrConflict, "cancel a completed study")
	_, err = e.s.PauseStudy(context.Background(), st.Id)
	wantErr(t, err, ErrConflict, "pause a completed study")
	if got := e.study(st.Id).Study.State; got != pb.StudyState_STUDY_STATE_COMPLETED {
		t.Fatalf("after the refused cancel the study is %v", got)
	}
}

// min_weight alone leaves max_weight at its default 1, as documented.
func TestMinWeightAloneAccepted(t *testing.T) {
	spec := baseSpec()
	spec.Domains[0].MinWeight = 0.2
	got, err := NormalizeSpec(spec)
	if err != nil {
		t.Fatalf("min_weight alone: %v", err)
	}
	if d := got.Domains[0]; d.MinWeight != 0.2 || d.MaxWeight != 1 {
		t.Fatalf("bounds [%v, %v], want [0.2, 1]", d.MinWeight, d.MaxWeight)
	}
}
