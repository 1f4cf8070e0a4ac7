package scheduler

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestTrialLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	other := e.register("w2", 1)
	st := e.createStudy(nil)

	a := e.mustAcquire(w)
	if a.Attempt != 1 || a.LeaseId == "" || a.Trial.Id == 0 {
		t.Fatalf("assignment: attempt %d, lease %q, trial %d", a.Attempt, a.LeaseId, a.Trial.Id)
	}
	if a.LeaseTtlMs != testTTL.Milliseconds() {
		t.Errorf("lease ttl %d ms, want %d", a.LeaseTtlMs, testTTL.Milliseconds())
	}
	if !slices.Equal(a.Domains, []string{"wiki", "code"}) || a.Scale.GetName() != "small" || a.Trial.Steps != targetSteps {
		t.Errorf("assignment: domains %v, scale %v, steps %d", a.Domains, a.Scale, a.Trial.Steps)
	}
	h := heldOf(w, a)
	tr, _ := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.WorkerId != w || tr.LeaseId != a.LeaseId || tr.Attempt != 1 {
		t.Fatalf("stored trial: %v", tr)
	}
	if got := e.study(st.Id).Study.TrialsCreated; got != 1 {
		t.Errorf("trials_created = %d, want 1", got)
	}

	if acked := e.report(h, pts(1, 3)); acked != 3 {
		t.Fatalf("acked %d, want 3", acked)
	}
	_, before := e.trial(a.Trial.Id)
	if len(before) != 3 {
		t.Fatalf("%d points stored, want 3", len(before))
	}

	// A re-sent batch is acknowledged again and writes nothing; an overlapping one adds
	// only what is new.
	if acked := e.report(h, pts(2, 3)); acked != 3 {
		t.Errorf("re-sent batch acked %d, want 3", acked)
	}
	_, after := e.trial(a.Trial.Id)
	if len(after) != len(before) {
		t.Fatalf("re-sent batch: %d points stored, want %d", len(after), len(before))
	}
	for i := range after {
		if !proto.Equal(after[i], before[i]) {
			t.Errorf("point %d changed by a re-sent batch: %v, was %v", i, after[i], before[i])
		}
	}
	if acked := e.report(h, pts(2, 4)); acked != 4 {
		t.Errorf("overlapping batch acked %d, want 4", acked)
	}

	refused := []struct {
		name   string
		h      AttemptClaim
		points []*pb.CurvePoint
		class  error
		field  string
	}{
		{"gap", h, pts(6, 7), ErrInvalid, "points[0].seq"},
		{"gap inside a batch", h, []*pb.CurvePoint{{Seq: 5, Step: 50}, {Seq: 7, Step: 70}}, ErrInvalid, "points[1].seq"},
		{"step beyond the trial", h, []*pb.CurvePoint{{Seq: 5, Step: targetSteps + 1}}, ErrInvalid, "points[0].step"},
		{"empty batch", h, nil, ErrInvalid, "points"},
		{"nil point", h, []*pb.CurvePoint{nil}, ErrInvalid, "points[0]"},
		{"seq zero", h, []*pb.CurvePoint{{Seq: 0, Step: 1}}, ErrInvalid, "points[0].seq"},
		{"negative step", h, []*pb.CurvePoint{{Seq: 5, Step: -1}}, ErrInvalid, "points[0].step"},
		{"seq not ascending", h, []*pb.CurvePoint{{Seq: 6, Step: 60}, {Seq: 5, Step: 50}}, ErrInvalid, "points[1].seq"},
		{"wrong lease", AttemptClaim{w, a.Trial.Id, "not-the-lease", 1}, pts(5, 5), ErrStaleLease, ""},
		{"wrong worker", AttemptClaim{other, a.Trial.Id, a.LeaseId, 1}, pts(5, 5), ErrStaleLease, ""},
		{"wrong attempt", AttemptClaim{w, a.Trial.Id, a.LeaseId, 2}, pts(5, 5), ErrStaleLease, ""},
		{"unknown trial", AttemptClaim{w, 999, a.LeaseId, 1}, pts(5, 5), ErrNotFound, ""},
	}
	for _, tc := range refused {
		t.Run("report/"+tc.name, func(t *testing.T) {
			_, _, err := e.s.ReportPoints(ctx, tc.h, tc.points)
			wantErr(t, err, tc.class, tc.name)
			if tc.field != "" && !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	if _, stored := e.trial(a.Trial.Id); len(stored) != 4 {
		t.Fatalf("refused reports changed the curve: %d points, want 4", len(stored))
	}

	// The study is charged for the steps run: 40 steps of "small".
	if got, want := e.study(st.Id).Study.SpentFlops, 40*smallFlops; got != want {
		t.Errorf("spent_flops = %v, want %v", got, want)
	}

	err := e.s.FinishTrial(ctx, h, 3, "", 0)
	wantErr(t, err, ErrConflict, "finish with a wrong final_seq")
	err = e.s.FinishTrial(ctx, AttemptClaim{other, a.Trial.Id, a.LeaseId, 1}, 4, "", 0)
	wantErr(t, err, ErrStaleLease, "finish by another worker")
	// A finish short of the trial's steps, with no stop asked, is refused: the curve ends
	// at step 40 of 200.
	err = e.s.FinishTrial(ctx, h, 4, "", 0)
	wantErr(t, err, ErrConflict, "finish at step 40 of 200")
	if !strings.Contains(err.Error(), "step 40 of 200") {
		t.Errorf("short finish refused with %q, want it to name step 40 of 200", err)
	}
	e.report(h, []*pb.CurvePoint{{Seq: 5, Step: a.Trial.Steps, TrainLoss: 2}})
	if err := e.s.FinishTrial(ctx, h, 5, "run-17", 0.25); err != nil {
		t.Fatalf("FinishTrial: %v", err)
	}
	tr, points := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.SourceRun != "run-17" || tr.SourceDistance != 0.25 {
		t.Errorf("finished trial: %v", tr)
	}
	if tr.LastSeq != 5 || tr.StepsDone != 200 || !tr.HasValue || tr.LastValue != 2 || len(points) != 5 {
		t.Errorf("finished trial: last_seq %d steps_done %d value %v/%v, %d points",
			tr.LastSeq, tr.StepsDone, tr.HasValue, tr.LastValue, len(points))
	}
	if tr.EndTimeUnixMs != e.clock.Now().UnixMilli() {
		t.Errorf("end time %d, want %d", tr.EndTimeUnixMs, e.clock.Now().UnixMilli())
	}

	// The lease is gone: reports and heartbeats are refused or told to stop. A second
	// finish of the same attempt repeats the first (its answer may have been lost) and is
	// answered OK; one that disagrees on final_seq, or under another lease, is refused.
	_, _, err = e.s.ReportPoints(ctx, h, pts(6, 6))
	wantErr(t, err, ErrStaleLease, "report after finish")
	if err := e.s.FinishTrial(ctx, h, 5, "", 0); err != nil {
		t.Errorf("repeated finish: %v", err)
	}
	err = e.s.FinishTrial(ctx, h, 4, "", 0)
	wantErr(t, err, ErrConflict, "second finish with another final_seq")
	foreign := h
	foreign.LeaseID = "another lease"
	err = e.s.FinishTrial(ctx, foreign, 5, "", 0)
	wantErr(t, err, ErrStaleLease, "finish under another lease")
	stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h})
	if err != nil || !slices.Equal(stop, []AttemptClaim{h}) {
		t.Errorf("Heartbeat after finish = %v, %v; want stop [%d]", stop, err, a.Trial.Id)
	}
	workers, err := e.s.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, wk := range workers {
		if len(wk.RunningTrials) != 0 {
			t.Errorf("worker %d still holds %v", wk.Id, wk.RunningTrials)
		}
	}
	status := e.study(st.Id)
	if status.TrialsByState["succeeded"] != 1 || status.CommittedFlops != 0 {
		t.Errorf("status: %v committed %v", status.TrialsByState, status.CommittedFlops)
	}
}

func TestFailTrial(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	h := heldOf(w, a)

	err := e.s.FailTrial(ctx, h, "", pb.FailureClass_FAILURE_CLASS_OOM)
	wantErr(t, err, ErrInvalid, "fail without a reason")
	err = e.s.FailTrial(ctx, AttemptClaim{w, a.Trial.Id, "other", 1}, "boom", pb.FailureClass_FAILURE_CLASS_OOM)
	wantErr(t, err, ErrStaleLease, "fail with a wrong lease")
	if err := e.s.FailTrial(ctx, h, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Fatalf("FailTrial: %v", err)
	}
	tr, _ := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_FAILED || tr.FailureReason != "oom: CUDA out of memory" {
		t.Errorf("failed trial: state %v reason %q", tr.State, tr.FailureReason)
	}

	b := e.mustAcquire(w)
	if err := e.s.FailTrial(ctx, heldOf(w, b), "exit status 1", pb.FailureClass_FAILURE_CLASS_UNSPECIFIED); err != nil {
		t.Fatalf("FailTrial: %v", err)
	}
	// A failure without a class is "other": not deterministic, so it is retried.
	tr, _ = e.trial(b.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_PENDING || len(tr.ReasonHistory) != 1 ||
		tr.ReasonHistory[0] != "attempt 1: other: exit status 1" {
		t.Errorf("unclassified failure: state %v history %q, want pending with the reason", tr.State, tr.ReasonHistory)
	}
}

func TestMaxParallelAndCapacity(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	big := e.register("big", 3)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })

	a1 := e.mustAcquire(big)
	e.mustAcquire(big)
	if a := e.acquire(big); a != nil {
		t.Fatalf("third trial leased beyond max_parallel 2: %v", a.Trial)
	}
	if n := e.study(st.Id).TrialsByState["running"]; n != 2 {
		t.Errorf("%d running, want 2", n)
	}
	// Ending one frees a slot of the study.
	e.runToEnd(heldOf(big, a1), targetSteps)
	e.mustAcquire(big)

	// A worker is given no more trials than its capacity.
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 10 })
	e.mustAcquire(big) // its third slot
	if a := e.acquire(big); a != nil {
		t.Fatalf("worker of capacity 3 given a fourth trial")
	}
	one := e.register("one", 0)
	gpus, err := e.s.Register(ctx, Registration{Hostname: "gpus", GPUs: []*pb.Gpu{{Index: 0}, {Index: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	e.mustAcquire(one)
	if a := e.acquire(one); a != nil {
		t.Fatalf("worker with no capacity declared given a second trial")
	}
	e.mustAcquire(gpus)
	e.mustAcquire(gpus)
	if a := e.acquire(gpus); a != nil {
		t.Fatalf("worker with two GPUs given a third trial")
	}

	workers, err := e.s.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := map[uint64]int{}
	for _, w := range workers {
		held[w.Id] = len(w.RunningTrials)
	}
	if held[big] != 3 || held[one] != 1 || held[gpus] != 2 {
		t.Errorf("running trials by worker: %v", held)
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

// A study cancelled or paused while its policy decides gets no new trial.
func TestStateChangeDuringDecision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *env, id uint64) error
		want   pb.StudyState
	}{
		{"cancel", func(e *env, id uint64) error { _, err := e.s.CancelStudy(context.Background(), id); return err },
			pb.StudyState_STUDY_STATE_CANCELLED},
		{"pause", func(e *env, id uint64) error { _, err := e.s.PauseStudy(context.Background(), id); return err },
			pb.StudyState_STUDY_STATE_PAUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w := e.register("w1", 1)
			st := e.createStudy(nil)
			e.policy.setOnNext(func() {
				if err := tc.change(e, st.Id); err != nil {
					t.Errorf("%s during the decision: %v", tc.name, err)
				}
			})
			if a := e.acquire(w); a != nil {
				t.Errorf("trial %d leased from a study that was %s during the decision", a.Trial.Id, tc.name)
			}
			status := e.study(st.Id)
			if status.Study.State != tc.want || len(status.TrialsByState) != 0 || status.Study.TrialsCreated != 0 {
				t.Errorf("study %v with trials %v, trials_created %d", status.Study.State, status.TrialsByState, status.Study.TrialsCreated)
			}
		})
	}
}

func TestLeaseExpiryRequeuesThenLoses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	w2 := e.register("w2", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	h1 := heldOf(w, a)
	e.report(h1, pts(1, 2))

	// Contact renews the lease: a report, then a heartbeat, each just before it runs out.
	e.clock.Advance(testTTL)
	e.report(h1, pts(3, 3))
	e.clock.Advance(testTTL)
	if stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h1}); err != nil || len(stop) != 0 {
		t.Fatalf("Heartbeat = %v, %v", stop, err)
	}
	e.clock.Advance(testTTL)
	if err := e.s.ExpireLeases(); err != nil {
		t.Fatal(err)
	}
	if tr, _ := e.trial(a.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Fatalf("renewed lease expired: trial %v", tr.State)
	}

	lastLease := h1
	for attempt := int32(1); attempt <= testMaxAttempt; attempt++ {
		e.clock.Advance(testTTL + 1)
		if err := e.s.ExpireLeases(); err != nil {
			t.Fatal(err)
		}
		tr, _ := e.trial(a.Trial.Id)
		if len(tr.ReasonHistory) != int(attempt) || !strings.Contains(tr.ReasonHistory[attempt-1], "lease expired") {
			t.Fatalf("attempt %d: reason history %q", attempt, tr.ReasonHistory)
		}
		if tr.LeaseId != "" || tr.WorkerId != 0 {
			t.Errorf("attempt %d: expired trial still names lease %q worker %d", attempt, tr.LeaseId, tr.WorkerId)
		}
		stop, err := e.s.Heartbeat(ctx, lastLease.WorkerID, []AttemptClaim{lastLease})
		if err != nil || !slices.Equal(stop, []AttemptClaim{lastLease}) {
			t.Errorf("attempt %d: Heartbeat with the expired lease = %v, %v", attempt, stop, err)
		}
		_, _, err = e.s.ReportPoints(ctx, lastLease, pts(4, 4))
		wantErr(t, err, ErrStaleLease, "report with an expired lease")
		if attempt == testMaxAttempt {
			if tr.State != pb.TrialState_TRIAL_STATE_LOST || !strings.Contains(tr.FailureReason, "3 attempts") {
				t.Fatalf("after %d expiries: trial %v %q, want lost", attempt, tr.State, tr.FailureReason)
			}
			break
		}
		if tr.State != pb.TrialState_TRIAL_STATE_PENDING {
			t.Fatalf("attempt %d expired: trial %v, want pending", attempt, tr.State)
		}
		// The requeued trial goes to the next worker asking, as the next attempt.
		holder := []uint64{w2, w}[attempt%2]
		next := e.mustAcquire(holder)
		if next.Trial.Id != a.Trial.Id || next.Attempt != attempt+1 || next.LeaseId == lastLease.LeaseID {
			t.Fatalf("re-acquired trial %d attempt %d lease %q; want trial %d attempt %d with a new lease",
				next.Trial.Id, next.Attempt, next.LeaseId, a.Trial.Id, attempt+1)
		}
		_, _, err = e.s.ReportPoints(ctx, lastLease, pts(1, 1))
		wantErr(t, err, ErrStaleLease, "report under the old attempt")
		lastLease = heldOf(holder, next)
		// The new attempt's curve starts over.
		if acked := e.report(lastLease, pts(1, 1)); acked != 1 {
			t.Errorf("attempt %d: acked %d, want 1", next.Attempt, acked)
		}
		if _, points := e.trial(a.Trial.Id); len(points) != 1 {
			t.Errorf("attempt %d: %d points, want its own 1", next.Attempt, len(points))
		}
	}
	if got := e.acquire(w); got != nil {
		t.Fatalf("a trial after max_trials 1 was lost")
	}
	s := e.study(st.Id)
	if s.Study.State != pb.StudyState_STUDY_STATE_FAILED || s.TrialsByState["lost"] != 1 { // no trial gave a result
		t.Errorf("study %v trials %v", s.Study.State, s.TrialsByState)
	}
}

func TestRestartKeepsRunningTrials(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, restart bool) []float64 {
		e := newEnv(t) // the real "random" policy
		w := e.register("w1", 1)
		st := e.createStudy(nil)
		a := e.mustAcquire(w)
		h := heldOf(w, a)
		e.report(h, pts(1, 2))
		if restart {
			e.restart()
			// Past the lease's TTL, within the grace period: nothing expires.
			e.clock.Advance(testTTL + testGrace/2)
			if err := e.s.ExpireLeases(); err != nil {
				t.Fatal(err)
			}
			if tr, _ := e.trial(a.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_RUNNING {
				t.Fatalf("trial %v within the grace period", tr.State)
			}
			workers, err := e.s.Workers(ctx)
			if err != nil || len(workers) != 1 || !slices.Equal(workers[0].RunningTrials, []uint64{a.Trial.Id}) {
				t.Fatalf("Workers after restart = %v, %v", workers, err)
			}
			// The worker reattaches under its id and flushes what it buffered.
			if id, err := e.s.Register(ctx, Registration{WorkerID: w, Hostname: "w1", SimulatedCapacity: 1, Claims: []AttemptClaim{h}}); err != nil || id != w {
				t.Fatalf("re-register = %d, %v; want %d", id, err, w)
			}
			if stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h}); err != nil || len(stop) != 0 {
				t.Fatalf("Heartbeat after restart = %v, %v", stop, err)
			}
		}
		if acked := e.report(h, pts(3, 4)); acked != 4 {
			t.Fatalf("acked %d, want 4", acked)
		}
		e.report(h, []*pb.CurvePoint{{Seq: 5, Step: a.Trial.Steps, TrainLoss: 1}})
		e.finish(h, 5)
		b := e.mustAcquire(w)
		if b.Trial.Id == a.Trial.Id {
			t.Fatalf("finished trial leased again")
		}
		s := e.study(st.Id).Study
		if s.TrialsCreated != 2 || s.SpentFlops != float64(a.Trial.Steps)*smallFlops {
			t.Errorf("study: trials_created %d, spent %v", s.TrialsCreated, s.SpentFlops)
		}
		return b.Trial.Mixture
	}
	var kept, restarted []float64
	t.Run("no restart", func(t *testing.T) { kept = run(t, false) })
	t.Run("restart", func(t *testing.T) { restarted = run(t, true) })
	if !slices.Equal(kept, restarted) {
		t.Errorf("second decision after a restart %v, without one %v", restarted, kept)
	}
}

func TestRestartGraceRunsOut(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(nil)
	a := e.mustAcquire(w)
	e.restart()
	e.clock.Advance(testGrace + testTTL + 1)
	if err := e.s.ExpireLeases(); err != nil {
		t.Fatal(err)
	}
	tr, _ := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_PENDING || len(tr.ReasonHistory) != 1 {
		t.Errorf("trial %v history %q after the grace period ran out", tr.State, tr.ReasonHistory)
	}
	_, _, err := e.s.ReportPoints(context.Background(), heldOf(w, a), pts(1, 1))
	wantErr(t, err, ErrStaleLease, "report after the grace period")
}

func TestAcquireTrialLongPoll(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)

	// Nothing to do: an empty answer after the wait.
	if a, err := e.s.AcquireTrial(ctx, w, shortWait); a != nil || err != nil {
		t.Fatalf("AcquireTrial with no study = %v, %v; want nil, nil", a, err)
	}
	_, err := e.s.AcquireTrial(ctx, 999, noWait)
	wantErr(t, err, ErrNotFound, "acquire by an unknown worker")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if a, err := e.s.AcquireTrial(cancelled, w, testMaxWait); a != nil || err != context.Canceled {
		t.Errorf("AcquireTrial with a cancelled context = %v, %v", a, err)
	}

	// A waiting call wakes when a study is created.
	got := e.acquireInBackground(w)
	st := e.createStudy(nil)
	a := <-got
	if a.err != nil || a.a == nil || a.a.Trial.StudyId != st.Id {
		t.Fatalf("long poll woken by CreateStudy = %v, %v", a.a, a.err)
	}

	// ... and when a slot frees up.
	w2 := e.register("w2", 1)
	got = e.acquireInBackground(w2)
	e.runToEnd(heldOf(w, a.a), targetSteps)
	if b := <-got; b.err != nil || b.a == nil {
		t.Fatalf("long poll woken by FinishTrial = %v, %v", b.a, b.err)
	}
}

type acquired struct {
	a   *pb.Assignment
	err error
}

// acquireInBackground starts a long poll and returns once it has looked for work at least
// once, so that whatever the caller does next must wake it.
func (e *env) acquireInBackground(worker uint64) <-chan acquired {
	e.s.mu.Lock()
	delete(e.s.heartbeats, worker)
	e.s.mu.Unlock()
	out := make(chan acquired, 1)
	go func() {
		a, err := e.s.AcquireTrial(context.Background(), worker, testMaxWait)
		out <- acquired{a, err}
	}()
	for {
		e.s.mu.Lock()
		_, looked := e.s.heartbeats[worker]
		e.s.mu.Unlock()
		if looked {
			return out
		}
		select {
		case r := <-out:
			e.t.Fatalf("AcquireTrial returned before anything changed: %v, %v", r.a, r.err)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestPolicyRequest(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 3)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 3; s.Objective.Maximize = true })
	a1 := e.mustAcquire(w)
	first := e.policy.lastRequest(t)
	if first.Decision != 0 || first.State != nil || len(first.Pending) != 0 || len(first.Observations) != 0 {
		t.Errorf("first request: decision %d state %v pending %v observations %v",
			first.Decision, first.State, first.Pending, first.Observations)
	}
	p := first.Problem
	if !slices.Equal(p.Domains, []string{"wiki", "code"}) || !slices.Equal(p.Lower, []float64{0, 0.1}) ||
		!slices.Equal(p.Upper, []float64{1, 0.9}) || p.TargetScale != 0 || p.TargetSteps != targetSteps ||
		!p.Maximize || p.Seed != 7 || len(p.Scales) != 2 || p.BudgetLeft != defaultBudget {
		t.Errorf("problem: %+v", p)
	}

	h1 := heldOf(w, a1)
	e.report(h1, []*pb.CurvePoint{
		{Seq: 1, Step: 10, TrainLoss: math.NaN()},
		{Seq: 2, Step: 20, TrainLoss: 3},
		{Seq: 3, Step: 30, TrainLoss: math.Inf(1)},
	})
	a2 := e.mustAcquire(w)
	e.report(heldOf(w, a2), []*pb.CurvePoint{{Seq: 1, Step: 10, TrainLoss: math.NaN()}})
	e.mustAcquire(w)
	req := e.policy.lastRequest(t)
	if req.Decision != 2 || string(req.State) != string([]byte{2}) {
		t.Errorf("decision %d state %v; want 2 and the state saved at decision 1", req.Decision, req.State)
	}
	if len(req.Pending) != 2 || req.Pending[0].Steps != targetSteps || req.Pending[0].Scale != 0 ||
		!slices.Equal(req.Pending[0].Mixture, a1.Trial.Mixture) {
		t.Errorf("pending: %+v", req.Pending)
	}
	if len(req.Observations) != 1 {
		t.Fatalf("observations: %+v; want only trial 1's finite point", req.Observations)
	}
	o := req.Observations[0]
	if o.Done || len(o.Curve) != 1 || o.Curve[0].Step != 20 || o.Curve[0].Value != 3 {
		t.Errorf("observation: %+v", o)
	}
	spent := 40 * smallFlops
	if want := defaultBudget - spent - (targetCost - 30*smallFlops) - (targetCost - 10*smallFlops); req.Problem.BudgetLeft != want {
		t.Errorf("budget left %v, want %v", req.Problem.BudgetLeft, want)
	}

	// The recommendation comes from the policy over the same observations.
	rec, err := e.s.Recommendation(context.Background(), st.Id)
	if err != nil || rec.Value != 3 || rec.Trials != 1 || rec.Basis != "fake" {
		t.Errorf("Recommendation = %v, %v", rec, err)
	}
	if s := e.study(st.Id); s.Recommendation.GetValue() != 3 {
		t.Errorf("status recommendation %v", s.Recommendation)
	}
	e.report(h1, []*pb.CurvePoint{{Seq: 4, Step: 40, TrainLoss: 2}})
	if rec, err := e.s.Recommendation(context.Background(), st.Id); err != nil || rec.Value != 2 {
		t.Errorf("Recommendation after new data = %v, %v; want value 2", rec, err)
	}
}

func TestRecommendationErrors(t *testing.T) {
	e := newEnv(t)
	st := e.createStudy(nil)
	_, err := e.s.Recommendation(context.Background(), st.Id)
	wantErr(t, err, ErrNoRecommendation, "recommendation without data")
	_, err = e.s.Recommendation(context.Background(), 999)
	wantErr(t, err, ErrNotFound, "recommendation of an unknown study")
	if s := e.study(st.Id); s.Recommendation != nil {
		t.Errorf("status of a study without data has a recommendation")
	}
}
