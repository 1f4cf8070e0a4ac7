package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

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

// The lease of a trial asked to stop runs out: the trial ends stopped with its prefix,
// not requeued.
func TestCancelledTrialLeaseExpires(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	w2 := e.register("w2", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	e.report(heldOf(w, a), pts(1, 4))
	if _, err := e.s.CancelTrial(ctx, a.Trial.Id); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testTTL + 1)
	if err := e.s.ExpireLeases(); err != nil {
		t.Fatal(err)
	}
	tr, points := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_STOPPED || tr.Attempt != 1 || len(points) != 4 {
		t.Fatalf("trial %v attempt %d with %d points, want stopped at attempt 1 with its 4", tr.State, tr.Attempt, len(points))
	}
	if len(tr.ReasonHistory) != 1 || !strings.Contains(tr.ReasonHistory[0], "lease expired") {
		t.Errorf("reason history %q", tr.ReasonHistory)
	}
	for _, worker := range []uint64{w, w2} {
		if b := e.acquire(worker); b != nil {
			t.Fatalf("stopped trial requeued: worker %d leased trial %d attempt %d", worker, b.Trial.Id, b.Attempt)
		}
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_COMPLETED {
		t.Errorf("study %v", s.State)
	}
}

// A drained worker gets no new trials but finishes the ones it holds; undrain restores it.
func TestDrainWorker(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	other := e.register("w2", 1)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 3 })
	a := e.mustAcquire(w)

	got, err := e.s.DrainWorker(ctx, w, false)
	if err != nil {
		t.Fatalf("DrainWorker: %v", err)
	}
	if got.Id != w || !got.Draining || got.State != pb.WorkerState_WORKER_STATE_DRAINING ||
		!slices.Equal(got.RunningTrials, []uint64{a.Trial.Id}) {
		t.Fatalf("DrainWorker returned %v", got)
	}
	if b := e.acquire(w); b != nil {
		t.Fatalf("drained worker leased trial %d", b.Trial.Id)
	}
	states := func() map[uint64]pb.WorkerState {
		ws, err := e.s.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]pb.WorkerState{}
		for _, wk := range ws {
			out[wk.Id] = wk.State
		}
		return out
	}
	if s := states(); s[w] != pb.WorkerState_WORKER_STATE_DRAINING || s[other] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Errorf("worker states %v, want %d draining and %d alive", s, w, other)
	}
	// Others still get work; the drained worker's trial runs to its end.
	e.mustAcquire(other)
	e.runToEnd(heldOf(w, a), targetSteps)
	if b := e.acquire(w); b != nil {
		t.Fatalf("drained worker with a free slot leased trial %d", b.Trial.Id)
	}
	// Draining twice is harmless.
	if _, err := e.s.DrainWorker(ctx, w, false); err != nil {
		t.Fatal(err)
	}

	got, err = e.s.DrainWorker(ctx, w, true)
	if err != nil {
		t.Fatalf("undrain: %v", err)
	}
	if got.Draining || got.State != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Fatalf("undrained worker: %v", got)
	}
	if s := states(); s[w] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Errorf("worker states after undrain %v", s)
	}
	e.mustAcquire(w)

	_, err = e.s.DrainWorker(ctx, 999, false)
	wantErr(t, err, ErrNotFound, "drain an unknown worker")
	_, err = e.s.DrainWorker(ctx, 999, true)
	wantErr(t, err, ErrNotFound, "undrain an unknown worker")
}
