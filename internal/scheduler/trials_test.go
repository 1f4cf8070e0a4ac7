package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"

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

// A running trial stops at its current step: the worker learns it from its next report,
// finishes with the points it sent, and the trial ends stopped with that prefix.
func TestCancelRunningTrial(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	if _, stop, err := e.s.ReportPoints(ctx, h, pts(1, 2)); err != nil || stop {
		t.Fatalf("ReportPoints before the cancel = stop %v, %v", stop, err)
	}

	got, err := e.s.CancelTrial(ctx, a.Trial.Id)
	if err != nil {
		t.Fatalf("CancelTrial: %v", err)
	}
	if got.State != pb.TrialState_TRIAL_STATE_RUNNING || !got.StopRequested {
		t.Fatalf("CancelTrial returned %v stop_requested %v, want running with a stop requested", got.State, got.StopRequested)
	}
	// A second cancel while the stop is pending changes nothing.
	if again, err := e.s.CancelTrial(ctx, a.Trial.Id); err != nil || again.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Fatalf("second CancelTrial = %v, %v", again.GetState(), err)
	}
	// Heartbeats keep the lease: the worker must still send what it has.
	if stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h}); err != nil || len(stop) != 0 {
		t.Fatalf("Heartbeat after the cancel = %v, %v; want the lease kept", stop, err)
	}
	acked, stop, err := e.s.ReportPoints(ctx, h, pts(3, 3))
	if err != nil || !stop || acked != 3 {
		t.Fatalf("ReportPoints after the cancel = acked %d stop %v, %v; want 3, stop", acked, stop, err)
	}
	// A re-sent batch is told to stop too.
	if _, stop, err := e.s.ReportPoints(ctx, h, pts(3, 3)); err != nil || !stop {
		t.Fatalf("re-sent ReportPoints = stop %v, %v", stop, err)
	}
	e.finish(h, 3)

	tr, points := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_STOPPED || tr.LastSeq != 3 || tr.StepsDone != 30 || len(points) != 3 {
		t.Fatalf("stopped trial: %v last_seq %d steps_done %d, %d points; want stopped with its 3 points",
			tr.State, tr.LastSeq, tr.StepsDone, len(points))
	}
	for i, p := range points {
		if p.Seq != uint64(i+1) {
			t.Errorf("point %d has seq %d", i, p.Seq)
		}
	}
	if !tr.HasValue || tr.LastValue != 10.0/3 {
		t.Errorf("stopped trial value %v/%v, want its last point's", tr.HasValue, tr.LastValue)
	}
	if got := e.runningByWorker()[w]; len(got) != 0 {
		t.Errorf("worker still holds %v", got)
	}
	// Stopped trials may be cancelled again (a no-op); the study is done.
	if again, err := e.s.CancelTrial(ctx, a.Trial.Id); err != nil || again.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("CancelTrial of a stopped trial = %v, %v", again.GetState(), err)
	}
	if s := e.study(st.Id); s.Study.State != pb.StudyState_STUDY_STATE_COMPLETED || s.TrialsByState["stopped"] != 1 {
		t.Errorf("study %v trials %v", s.Study.State, s.TrialsByState)
	}
}

// A pending trial stops at once and is never leased.
func TestCancelPendingTrial(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	if err := e.s.FailTrial(ctx, heldOf(w, a), "segfault", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Fatal(err)
	}
	if tr, _ := e.trial(a.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_PENDING {
		t.Fatalf("trial %v, want pending for a retry", tr.State)
	}
	e.clock.Advance(5)
	got, err := e.s.CancelTrial(ctx, a.Trial.Id)
	if err != nil {
		t.Fatalf("CancelTrial: %v", err)
	}
	if got.State != pb.TrialState_TRIAL_STATE_STOPPED || got.EndTimeUnixMs != e.clock.Now().UnixMilli() || got.FailureReason == "" {
		t.Errorf("cancelled pending trial: %v end %d reason %q", got.State, got.EndTimeUnixMs, got.FailureReason)
	}
	if b := e.acquire(w); b != nil {
		t.Fatalf("trial %d attempt %d leased after the pending trial was cancelled", b.Trial.Id, b.Attempt)
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_COMPLETED {
		t.Errorf("study %v after its only trial was cancelled", s.State)
	}
}

func TestCancelEndedOrUnknownTrial(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	done := e.mustAcquire(w)
	e.runToEnd(heldOf(w, done), targetSteps)
	failed := e.mustAcquire(w)
	if err := e.s.FailTrial(ctx, heldOf(w, failed), "out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		id    uint64
		class error
		state pb.TrialState
	}{
		{"succeeded", done.Trial.Id, ErrConflict, pb.TrialState_TRIAL_STATE_SUCCEEDED},
		{"failed", failed.Trial.Id, ErrConflict, pb.TrialState_TRIAL_STATE_FAILED},
		{"unknown", 999, ErrNotFound, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.CancelTrial(ctx, tc.id)
			wantErr(t, err, tc.class, "CancelTrial")
			if tc.state != 0 {
				if tr, _ := e.trial(tc.id); tr.State != tc.state || tr.StopRequested {
					t.Errorf("refused cancel changed the trial: %v stop_requested %v", tr.State, tr.StopRequested)
				}
			}
		})
	}
}

// A hand-added trial is validated, stored pending and leased before any new decision.
func TestAddTrialRunsNext(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops = 3 * targetCost })
	asked := len(e.policy.requests) // CreateStudy asks once, to check the budget
	for _, tc := range []struct {
		name    string
		mixture []float64
		scale   string
		steps   int64
		field   string
	}{
		{"too few weights", []float64{1}, "small", targetSteps, "mixture"},
		{"sum off", []float64{0.5, 0.6}, "small", targetSteps, "mixture"},
		{"negative", []float64{1.2, -0.2}, "small", targetSteps, "mixture[1]"},
		{"outside bounds", []float64{0.95, 0.05}, "small", targetSteps, "mixture[1]"},
		{"unknown scale", []float64{0.5, 0.5}, "huge", targetSteps, "scale"},
		{"steps not a budget", []float64{0.5, 0.5}, "small", 150, "steps"},
	} {
		_, err := e.s.AddTrial(ctx, st.Id, tc.mixture, tc.scale, tc.steps)
		wantErr(t, err, ErrInvalid, tc.name)
		if !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%s: error %q does not start with %s", tc.name, err, tc.field)
		}
	}
	_, err := e.s.AddTrial(ctx, st.Id, []float64{0.5, 0.5}, "big", targetSteps)
	wantErr(t, err, ErrConflict, "a trial over the budget left")
	added, err := e.s.AddTrial(ctx, st.Id, []float64{0.3, 0.7005}, "small", 100)
	if err != nil {
		t.Fatal(err)
	}
	if !added.Manual || added.State != pb.TrialState_TRIAL_STATE_PENDING || added.Mixture[0]+added.Mixture[1] != 1 {
		t.Errorf("added trial = %v, want pending, manual, renormalised", added)
	}
	w := e.register("w", 1)
	a := e.mustAcquire(w)
	if a.Trial.Id != added.Id || a.Trial.Steps != 100 || !a.Trial.Manual {
		t.Fatalf("first lease is trial %d (%d steps), want the added trial %d", a.Trial.Id, a.Trial.Steps, added.Id)
	}
	if n := len(e.policy.requests) - asked; n != 0 {
		t.Errorf("the policy was asked %d times before the added trial ran", n)
	}
	if got := e.study(st.Id).Study.TrialsCreated; got != 1 {
		t.Errorf("trials_created = %d, want 1 (the added trial counts)", got)
	}
	if _, err := e.s.CancelStudy(ctx, st.Id); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.AddTrial(ctx, st.Id, []float64{0.5, 0.5}, "small", 100)
	wantErr(t, err, ErrConflict, "adding to a cancelled study")
}

func TestTrialsAndLookups(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), targetSteps)

	for _, tc := range []struct {
		state pb.TrialState
		scale string
		want  int
	}{
		{pb.TrialState_TRIAL_STATE_UNSPECIFIED, "", 2},
		{pb.TrialState_TRIAL_STATE_SUCCEEDED, "", 1},
		{pb.TrialState_TRIAL_STATE_RUNNING, "small", 1},
		{pb.TrialState_TRIAL_STATE_UNSPECIFIED, "big", 0},
		{pb.TrialState_TRIAL_STATE_FAILED, "", 0},
	} {
		got, err := e.s.Trials(ctx, st.Id, tc.state, tc.scale)
		if err != nil || len(got) != tc.want {
			t.Errorf("Trials(%v, %q) = %d trials, %v; want %d", tc.state, tc.scale, len(got), err, tc.want)
		}
	}
	_, err := e.s.Trials(ctx, 999, pb.TrialState_TRIAL_STATE_UNSPECIFIED, "")
	wantErr(t, err, ErrNotFound, "trials of an unknown study")
	_, _, err = e.s.Trial(ctx, 999)
	wantErr(t, err, ErrNotFound, "unknown trial")
	_, err = e.s.StudyStatus(ctx, 999)
	wantErr(t, err, ErrNotFound, "status of an unknown study")

	e.createStudy(nil)
	all, err := e.s.ListStudies(ctx)
	if err != nil || len(all) != 2 || all[0].Study.Id != st.Id || all[0].TrialsByState["running"] != 1 {
		t.Errorf("ListStudies = %v, %v", all, err)
	}
}
