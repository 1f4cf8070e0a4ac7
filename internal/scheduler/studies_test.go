package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A budget smaller than the cheapest trial the policy may run is refused at creation,
// naming budget_flops, and nothing is stored.
func TestBudgetTooSmallIsRefused(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.CreateStudy(context.Background(), func() *pb.StudySpec {
		s := baseSpec()
		s.Policy = "random-mf"
		s.BudgetFlops = smallFlops * 99 // the cheapest trial is 100 steps at small
		return s
	}())
	wantErr(t, err, ErrInvalid, "tiny budget")
	if !strings.HasPrefix(err.Error(), "budget_flops: ") || !strings.Contains(err.Error(), "scale small for 100 steps") {
		t.Errorf("error %q should name budget_flops and the cheapest trial", err)
	}
	// The random policy runs only at the target: a budget for a short run is not enough.
	_, err = e.s.CreateStudy(context.Background(), func() *pb.StudySpec {
		s := baseSpec()
		s.Policy = "random"
		s.BudgetFlops = targetCost / 2
		return s
	}())
	wantErr(t, err, ErrInvalid, "budget below the target run of the random policy")
	studies, err := e.s.ListStudies(context.Background())
	if err != nil || len(studies) != 0 {
		t.Fatalf("refused studies were stored: %v, %v", studies, err)
	}
	if st := e.createStudy(func(s *pb.StudySpec) { s.Policy = "random"; s.BudgetFlops = targetCost }); st.Spec.MaxConsecutiveFailures != DefaultMaxConsecutiveFailures {
		t.Errorf("max_consecutive_failures defaulted to %d, want %d", st.Spec.MaxConsecutiveFailures, DefaultMaxConsecutiveFailures)
	}
}

func TestStudyCompletesOnMaxTrials(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials, s.MaxParallel = 2, 2 })
	a1 := e.mustAcquire(w)
	a2 := e.mustAcquire(w)
	e.runToEnd(heldOf(w, a1), targetSteps)
	if a := e.acquire(w); a != nil {
		t.Fatalf("a third trial beyond max_trials 2")
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING {
		t.Fatalf("study %v while a trial still runs", s.State)
	}
	e.runToEnd(heldOf(w, a2), targetSteps)
	if a := e.acquire(w); a != nil {
		t.Fatalf("a third trial beyond max_trials 2")
	}
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_COMPLETED || s.EndReason != "max trials reached" || s.TrialsCreated != 2 {
		t.Errorf("study: state %v reason %q trials %d", s.State, s.EndReason, s.TrialsCreated)
	}
	if s.EndTimeUnixMs != e.clock.Now().UnixMilli() {
		t.Errorf("end time %d", s.EndTimeUnixMs)
	}
}

func TestStudyCompletesOnBudget(t *testing.T) {
	// The real "random" policy: every trial is a full run at the target.
	e := newEnv(t)
	w := e.register("w1", 4)
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops, s.MaxParallel = 2*targetCost, 4 })

	a1 := e.mustAcquire(w)
	a2 := e.mustAcquire(w)
	if a := e.acquire(w); a != nil {
		t.Fatalf("a third trial although two commit the whole budget")
	}
	status := e.study(st.Id)
	if status.Study.State != pb.StudyState_STUDY_STATE_RUNNING || status.CommittedFlops != 2*targetCost {
		t.Fatalf("study %v, committed %v while two trials run", status.Study.State, status.CommittedFlops)
	}
	for _, a := range []*pb.Assignment{a1, a2} {
		h := heldOf(w, a)
		e.report(h, []*pb.CurvePoint{{Seq: 1, Step: 50, TrainLoss: 2}, {Seq: 2, Step: targetSteps, TrainLoss: 1}})
		e.finish(h, 2)
	}
	if a := e.acquire(w); a != nil {
		t.Fatalf("a trial after the budget is spent")
	}
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_COMPLETED || s.EndReason != "budget exhausted" {
		t.Errorf("study: state %v reason %q", s.State, s.EndReason)
	}
	if s.SpentFlops != 2*targetCost {
		t.Errorf("spent_flops = %v, want %v", s.SpentFlops, 2*targetCost)
	}
}

// A trial that fails after spending the budget ends the study: nothing more fits.
func TestStudyCompletesWhenFailedTrialSpentBudget(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops = targetCost })
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	e.report(h, pts(1, 15)) // 150 of 200 steps: 50 left, the cheapest trial costs 100
	if err := e.s.FailTrial(ctx, h, "loss is NaN", pb.FailureClass_FAILURE_CLASS_DIVERGED); err != nil {
		t.Fatal(err)
	}
	s := e.study(st.Id)
	if want := "budget exhausted, but no trial produced a result (1 failed, 0 lost)"; s.Study.State != pb.StudyState_STUDY_STATE_FAILED || s.Study.EndReason != want {
		t.Errorf("study %v (%q), want failed: %s", s.Study.State, s.Study.EndReason, want)
	}
	if s.TrialsByState["failed"] != 1 {
		t.Errorf("trials %v", s.TrialsByState)
	}
}

// A retry keeps the study going: the trial waits pending, so the study is not idle.
func TestRetriedTrialKeepsStudyRunning(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops = targetCost })
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	e.report(h, pts(1, 5))
	if err := e.s.FailTrial(ctx, h, "node rebooted", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Fatal(err)
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING {
		t.Fatalf("study %v (%q) with a trial pending a retry", s.State, s.EndReason)
	}
	b := e.mustAcquire(w)
	if b.Trial.Id != a.Trial.Id || b.Attempt != 2 {
		t.Fatalf("leased trial %d attempt %d, want the retry of %d", b.Trial.Id, b.Attempt, a.Trial.Id)
	}
	// The retry starts its curve over.
	if tr, points := e.trial(b.Trial.Id); tr.LastSeq != 0 || tr.StepsDone != 0 || len(points) != 0 {
		t.Errorf("retry starts with last_seq %d steps_done %d and %d points", tr.LastSeq, tr.StepsDone, len(points))
	}
}

// A study that reaches its cap with every trial failed ends failed, not completed, even
// below the consecutive-failure limit.
func TestStudyWithNoResultEndsFailed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 2 })
	w := e.register("w", 1)
	for range 2 {
		a := e.mustAcquire(w)
		if err := e.s.FailTrial(ctx, heldOf(w, a), "no data for domain code", pb.FailureClass_FAILURE_CLASS_BAD_DATA); err != nil {
			t.Fatal(err)
		}
	}
	s := e.study(st.Id).Study
	if want := "max trials reached, but no trial produced a result (2 failed, 0 lost)"; s.State != pb.StudyState_STUDY_STATE_FAILED || s.EndReason != want {
		t.Errorf("study %v (%q), want failed: %s", s.State, s.EndReason, want)
	}
}

func TestPauseAndResume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)

	paused, err := e.s.PauseStudy(ctx, st.Id)
	if err != nil || paused.State != pb.StudyState_STUDY_STATE_PAUSED {
		t.Fatalf("PauseStudy = %v, %v", paused.GetState(), err)
	}
	if again, err := e.s.PauseStudy(ctx, st.Id); err != nil || again.State != pb.StudyState_STUDY_STATE_PAUSED {
		t.Errorf("pausing twice = %v, %v", again.GetState(), err)
	}
	if got := e.acquire(w); got != nil {
		t.Fatalf("paused study assigned a trial")
	}
	// Running trials go on.
	e.runToEnd(heldOf(w, a), targetSteps)

	resumed, err := e.s.ResumeStudy(ctx, st.Id)
	if err != nil || resumed.State != pb.StudyState_STUDY_STATE_RUNNING {
		t.Fatalf("ResumeStudy = %v, %v", resumed.GetState(), err)
	}
	e.mustAcquire(w)

	_, err = e.s.PauseStudy(ctx, 999)
	wantErr(t, err, ErrNotFound, "pause unknown study")
	_, err = e.s.ResumeStudy(ctx, 999)
	wantErr(t, err, ErrNotFound, "resume unknown study")
}

func TestCancelStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	e.report(h, pts(1, 2))

	c, err := e.s.CancelStudy(ctx, st.Id)
	if err != nil || c.State != pb.StudyState_STUDY_STATE_CANCELLED || c.EndReason != "cancelled" {
		t.Fatalf("CancelStudy = %v, %v", c, err)
	}
	tr, points := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_STOPPED || tr.FailureReason != "study cancelled" {
		t.Errorf("trial after cancel: %v %q", tr.State, tr.FailureReason)
	}
	if len(points) != 2 {
		t.Errorf("observed prefix not kept: %d points", len(points))
	}
	stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h})
	if err != nil || !slices.Equal(stop, []AttemptClaim{h}) {
		t.Errorf("Heartbeat after cancel = %v, %v; want stop [%d]", stop, err, a.Trial.Id)
	}
	_, _, err = e.s.ReportPoints(ctx, h, pts(3, 3))
	wantErr(t, err, ErrStaleLease, "report after cancel")
	if got := e.acquire(w); got != nil {
		t.Fatalf("cancelled study assigned a trial")
	}
	_, err = e.s.ResumeStudy(ctx, st.Id)
	wantErr(t, err, ErrConflict, "resume a cancelled study")
	_, err = e.s.PauseStudy(ctx, st.Id)
	wantErr(t, err, ErrConflict, "pause a cancelled study")
	if again, err := e.s.CancelStudy(ctx, st.Id); err != nil || again.State != pb.StudyState_STUDY_STATE_CANCELLED {
		t.Errorf("cancelling twice = %v, %v", again.GetState(), err)
	}
	_, err = e.s.CancelStudy(ctx, 999)
	wantErr(t, err, ErrNotFound, "cancel unknown study")
}

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

func TestUpdateStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops = 3 * targetCost; s.MaxTrials = 10 })
	w := e.register("w", 4)
	first := e.mustAcquire(w)
	if a := e.acquire(w); a != nil {
		t.Fatalf("max_parallel 1 leased a second trial %d", a.Trial.Id)
	}
	for _, tc := range []struct {
		name  string
		u     StudyUpdate
		field string
	}{
		{"nothing", StudyUpdate{}, "update"},
		{"zero budget", StudyUpdate{BudgetFlops: f64(0)}, "budget_flops"},
		{"negative trials", StudyUpdate{MaxTrials: i32(-1)}, "max_trials"},
		{"zero parallel", StudyUpdate{MaxParallel: i32(0)}, "max_parallel"},
		{"no trial limit", StudyUpdate{MaxTrials: i32(0)}, ""}, // 0 is "no limit": allowed
		{"negative failure limit", StudyUpdate{MaxConsecutiveFailures: i32(-1)}, "max_consecutive_failures"},
	} {
		_, err := e.s.UpdateStudy(ctx, st.Id, tc.u)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, err, ErrInvalid, tc.name)
		if !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%s: error %q does not start with %s", tc.name, err, tc.field)
		}
	}
	e.report(heldOf(w, first), []*pb.CurvePoint{{Seq: 1, Step: 100, TrainLoss: 3}})
	_, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{BudgetFlops: f64(smallFlops * 50)})
	wantErr(t, err, ErrInvalid, "budget below spent")
	up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxParallel: i32(3), BudgetFlops: f64(5 * targetCost)})
	if err != nil || up.Spec.MaxParallel != 3 || up.Spec.BudgetFlops != 5*targetCost || up.Spec.MaxTrials != 0 {
		t.Fatalf("update = %v, %v", up, err)
	}
	if up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxConsecutiveFailures: i32(9)}); err != nil || up.Spec.MaxConsecutiveFailures != 9 {
		t.Fatalf("failure limit 9: %v, %v", up, err)
	}
	if up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxConsecutiveFailures: i32(0)}); err != nil ||
		up.Spec.MaxConsecutiveFailures != DefaultMaxConsecutiveFailures {
		t.Fatalf("failure limit 0 restores the default: %v, %v", up, err)
	}
	e.mustAcquire(w)
	e.mustAcquire(w)
	// Lowering the trial cap to what was created ends the study once its trials end.
	if _, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxTrials: i32(2)}); !strings.Contains(errString(err), "below the 3 trials") {
		t.Fatalf("max_trials below created: %v", err)
	}
	if _, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxTrials: i32(3)}); err != nil {
		t.Fatal(err)
	}
	trials, _ := e.s.Trials(ctx, st.Id, pb.TrialState_TRIAL_STATE_RUNNING, "")
	for _, tr := range trials {
		h := AttemptClaim{WorkerID: w, TrialID: tr.Id, LeaseID: tr.LeaseId, Attempt: tr.Attempt}
		e.report(h, []*pb.CurvePoint{{Seq: tr.LastSeq + 1, Step: targetSteps, TrainLoss: 1}})
		e.finish(h, tr.LastSeq+1)
	}
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_COMPLETED || s.EndReason != "max trials reached" {
		t.Fatalf("study is %v (%q), want completed: max trials reached", s.State, s.EndReason)
	}
	_, err = e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxParallel: i32(2)})
	wantErr(t, err, ErrConflict, "update of a completed study")
	_, err = e.s.UpdateStudy(ctx, 99, StudyUpdate{MaxParallel: i32(2)})
	wantErr(t, err, ErrNotFound, "update of an unknown study")
}

func TestDeleteStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(nil)
	keep := e.createStudy(nil)
	w := e.register("w", 2)
	a := e.mustAcquire(w)
	e.report(heldOf(w, a), pts(1, 3))
	_, err := e.s.DeleteStudy(ctx, st.Id)
	wantErr(t, err, ErrConflict, "deleting a running study")
	if _, err := e.s.CancelStudy(ctx, st.Id); err != nil {
		t.Fatal(err)
	}
	n, err := e.s.DeleteStudy(ctx, st.Id)
	if err != nil || n != 1 {
		t.Fatalf("DeleteStudy = %d, %v; want 1 trial", n, err)
	}
	_, err = e.s.StudyStatus(ctx, st.Id)
	wantErr(t, err, ErrNotFound, "status of a deleted study")
	_, _, err = e.s.Trial(ctx, a.Trial.Id)
	wantErr(t, err, ErrNotFound, "trial of a deleted study")
	_, err = e.s.DeleteStudy(ctx, st.Id)
	wantErr(t, err, ErrNotFound, "deleting twice")
	if err := e.db.View(func(tx *store.Tx) error { _, err := tx.PolicyState(st.Id); return err }); err == nil {
		t.Errorf("policy state of the deleted study still readable")
	}
	// The other study and the worker's next lease are untouched.
	if b := e.mustAcquire(w); b.Trial.StudyId != keep.Id {
		t.Errorf("next lease from study %d, want %d", b.Trial.StudyId, keep.Id)
	}
}
