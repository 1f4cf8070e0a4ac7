package scheduler

import (
	"context"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestConsecutiveFailuresFailTheStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) {
		s.MaxConsecutiveFailures = 3
		s.BudgetFlops = 100 * targetCost
		s.MaxParallel = 2
	})
	w := e.register("w", 2)
	fail := func() {
		t.Helper()
		a := e.mustAcquire(w)
		if err := e.s.FailTrial(ctx, heldOf(w, a), "no such domain: nosuch", pb.FailureClass_FAILURE_CLASS_BAD_DATA); err != nil {
			t.Fatal(err)
		}
	}
	// Two failures, a success, two failures: never three in a row.
	fail()
	fail()
	a := e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), targetSteps)
	if got := e.study(st.Id).Study.ConsecutiveFailures; got != 0 {
		t.Fatalf("a success left %d consecutive failures, want 0", got)
	}
	fail()
	fail()
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING || s.ConsecutiveFailures != 2 {
		t.Fatalf("after two failures in a row the study is %v with %d, want running with 2", s.State, s.ConsecutiveFailures)
	}
	// A trial runs on a second slot while the third failure ends the study: it is stopped.
	running := e.mustAcquire(w)
	fail()
	s := e.study(st.Id)
	if s.Study.State != pb.StudyState_STUDY_STATE_FAILED {
		t.Fatalf("study is %v after 3 failures in a row, want failed", s.Study.State)
	}
	if !strings.Contains(s.Study.EndReason, "3 trials in a row failed") || !strings.Contains(s.Study.EndReason, "no such domain: nosuch") {
		t.Errorf("end reason %q should give the count and the last failure", s.Study.EndReason)
	}
	if tr, _ := e.trial(running.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("trial running when the study failed is %v, want stopped", tr.State)
	}
	if a := e.acquire(w); a != nil {
		t.Errorf("a failed study leased trial %d", a.Trial.Id)
	}
	if _, err := e.s.ResumeStudy(ctx, st.Id); err == nil {
		t.Errorf("a failed study resumed")
	}
}

// Lost trials (past the delivery limit) count as failures too.
func TestLostTrialsCountAsFailures(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxConsecutiveFailures = 1 })
	w := e.register("w", 1)
	for range testMaxAttempt {
		e.mustAcquire(w)
		e.clock.Advance(testTTL + 1)
		if err := e.s.ExpireLeases(); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_FAILED || !strings.Contains(s.EndReason, "lost after 3 attempts") {
		t.Fatalf("study is %v (%q), want failed naming the lost trial", s.State, s.EndReason)
	}
}

// The first trial that finishes without its curve reporting the objective fails the study
// and says what the trainer does report.
func TestUnreportedObjectiveFailsTheStudy(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) {
		s.ExtraMetrics = []string{"hellaswag_acc"}
		s.Objective = &pb.Objective{Metric: "hellaswag_acc", Maximize: true}
		s.MaxParallel = 2
	})
	w := e.register("w", 2)
	a := e.mustAcquire(w)
	other := e.mustAcquire(w)
	h := heldOf(w, a)
	e.report(h, []*pb.CurvePoint{{Seq: 1, Step: targetSteps, TrainLoss: 2, Eval: map[string]float64{"wiki_ce": 2.1, "mean_ce": 2.2}}})
	e.finish(h, 1)
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_FAILED {
		t.Fatalf("study is %v, want failed", s.State)
	}
	want := `trial 1 finished without reporting the objective "hellaswag_acc"; its curve reports: mean_ce, train_loss, wiki_ce`
	if s.EndReason != want {
		t.Errorf("end reason\n %q, want\n %q", s.EndReason, want)
	}
	if tr, _ := e.trial(other.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("the other trial is %v, want stopped", tr.State)
	}
}
