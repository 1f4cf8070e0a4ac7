package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// FailTrial fails deterministic classes at once and retries the rest as new attempts up to
// the delivery limit; the study completes when its only trial ends.
func TestRetryPolicyByErrorClass(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		class     pb.FailureClass
		wantClass string // as recorded
		retried   bool
	}{
		{pb.FailureClass_FAILURE_CLASS_OOM, "oom", false},
		{pb.FailureClass_FAILURE_CLASS_DIVERGED, "diverged", false},
		{pb.FailureClass_FAILURE_CLASS_BAD_DATA, "bad_data", false},
		{pb.FailureClass_FAILURE_CLASS_BAD_INPUT, "bad_input", false},
		{pb.FailureClass_FAILURE_CLASS_OTHER, "other", true},
		{pb.FailureClass_FAILURE_CLASS_UNSPECIFIED, "other", true},
		{pb.FailureClass(99), "other", true}, // an unknown value (a newer worker) is retried
	} {
		t.Run("class="+tc.class.String(), func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w := e.register("w1", 1)
			w2 := e.register("w2", 1)
			st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
			var history []string
			var tr *pb.Trial
			for attempt := int32(1); ; attempt++ {
				holder := []uint64{w, w2}[attempt%2] // any worker may take the retry
				a := e.mustAcquire(holder)
				if a.Attempt != attempt {
					t.Fatalf("attempt %d leased as attempt %d", attempt, a.Attempt)
				}
				e.report(heldOf(holder, a), pts(1, 2))
				reason := fmt.Sprintf("boom %d", attempt)
				if err := e.s.FailTrial(ctx, heldOf(holder, a), reason, tc.class); err != nil {
					t.Fatalf("FailTrial: %v", err)
				}
				history = append(history, fmt.Sprintf("attempt %d: %s: %s", attempt, tc.wantClass, reason))
				tr, _ = e.trial(a.Trial.Id)
				if !slices.Equal(tr.ReasonHistory, history) {
					t.Fatalf("attempt %d: reason history %q, want %q", attempt, tr.ReasonHistory, history)
				}
				if !tc.retried || attempt == testMaxAttempt {
					break
				}
				if tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.LeaseId != "" || tr.WorkerId != 0 || len(tr.GpuIndices) != 0 {
					t.Fatalf("attempt %d failed with class %v: trial %v lease %q worker %d gpus %v, want pending and unleased",
						attempt, tc.class, tr.State, tr.LeaseId, tr.WorkerId, tr.GpuIndices)
				}
				if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING {
					t.Fatalf("study %v while its trial waits for a retry", s.State)
				}
			}
			switch {
			case !tc.retried:
				if tr.State != pb.TrialState_TRIAL_STATE_FAILED || tr.Attempt != 1 ||
					tr.FailureReason != tc.wantClass+": boom 1" {
					t.Errorf("class %q: trial %v attempt %d reason %q, want failed at attempt 1", tc.class, tr.State, tr.Attempt, tr.FailureReason)
				}
			default:
				if tr.State != pb.TrialState_TRIAL_STATE_LOST || tr.Attempt != testMaxAttempt ||
					!strings.Contains(tr.FailureReason, fmt.Sprintf("%d attempts", testMaxAttempt)) {
					t.Errorf("class %q: trial %v attempt %d reason %q, want lost after %d attempts",
						tc.class, tr.State, tr.Attempt, tr.FailureReason, testMaxAttempt)
				}
			}
			if tr.EndTimeUnixMs == 0 {
				t.Errorf("ended trial has no end time")
			}
			// The last trial ended and no more may be created: the study is over without
			// anyone asking for work.
			s := e.study(st.Id)
			// Its only trial gave no result, so it ended failed, not completed.
			if s.Study.State != pb.StudyState_STUDY_STATE_FAILED || !strings.HasPrefix(s.Study.EndReason, "max trials reached, but no trial produced a result") {
				t.Errorf("study %v (%q) after its only trial ended %v", s.Study.State, s.Study.EndReason, tr.State)
			}
			if a := e.acquire(w); a != nil {
				t.Errorf("trial %d leased after the study completed", a.Trial.Id)
			}
		})
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
