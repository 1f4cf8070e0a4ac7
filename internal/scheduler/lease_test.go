package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A heartbeat names the attempts to stop by (trial, lease, attempt): a retry of the same
// trial leased to the same worker is not among them, whatever lease the heartbeat carried.
func TestHeartbeatStopsOnlyTheNamedAttempt(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	first := heldOf(w, e.mustAcquire(w))
	if err := e.s.FailTrial(ctx, first, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Fatal(err)
	}
	retry := heldOf(w, e.mustAcquire(w))
	if retry.TrialID != first.TrialID || retry.Attempt != 2 {
		t.Fatalf("retry is trial %d attempt %d, want trial %d attempt 2", retry.TrialID, retry.Attempt, first.TrialID)
	}
	// The worker's heartbeat was built before the first attempt ended.
	stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{first, retry})
	if err != nil || !slices.Equal(stop, []AttemptClaim{first}) {
		t.Fatalf("Heartbeat = %v, %v; want only the first attempt stopped", stop, err)
	}
	e.runToEnd(retry, targetSteps)
	if tr, _ := e.trial(retry.TrialID); tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 2 {
		t.Errorf("retry ended %v at attempt %d, want succeeded at 2", tr.State, tr.Attempt)
	}
}

// A lease past its deadline is gone before the sweep comes: neither a report nor a
// heartbeat (stale messages queued while the coordinator was frozen) renews it, and the
// heartbeat tells the worker to stop.
func TestLapsedLeaseIsNotRenewed(t *testing.T) {
	ctx := context.Background()
	for _, via := range []string{"report", "heartbeat"} {
		t.Run(via, func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w := e.register("w1", 1)
			e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
			h := heldOf(w, e.mustAcquire(w))
			e.clock.Advance(testTTL + time.Millisecond)
			switch via {
			case "report":
				e.report(h, pts(1, 1)) // the points are the attempt's own: kept
			case "heartbeat":
				stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h})
				if err != nil || !slices.Equal(stop, []AttemptClaim{h}) {
					t.Fatalf("Heartbeat on a lapsed lease = %v, %v; want it stopped", stop, err)
				}
			}
			if err := e.s.ExpireLeases(); err != nil {
				t.Fatal(err)
			}
			tr, _ := e.trial(h.TrialID)
			if tr.State != pb.TrialState_TRIAL_STATE_PENDING || len(tr.ReasonHistory) != 1 {
				t.Fatalf("after a %s on the lapsed lease: trial %v history %q, want requeued", via, tr.State, tr.ReasonHistory)
			}
		})
	}
}

// sweep runs the lease sweep as Run's ticker does.
func (e *env) sweep() {
	e.t.Helper()
	e.s.noteSweep()
	if err := e.s.ExpireLeases(); err != nil {
		e.t.Fatal(err)
	}
}

// A coordinator frozen past the lease TTL (a gap in its own sweep) lets every lease lapse;
// those attempts do not count against the delivery limit, however often it happens, and
// the queued stale heartbeats that arrive first do not renew them.
func TestCoordinatorFreezeDoesNotCountAttempts(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	e.sweep()
	const freezes = testMaxAttempt + 2
	var h AttemptClaim
	for i := range freezes {
		h = heldOf(w, e.mustAcquire(w))
		if h.Attempt != int32(i+1) {
			t.Fatalf("freeze %d: leased attempt %d", i, h.Attempt)
		}
		e.clock.Advance(testTTL + time.Second) // frozen: no sweep ran
		stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h})
		if err != nil || !slices.Equal(stop, []AttemptClaim{h}) {
			t.Fatalf("freeze %d: stale heartbeat = %v, %v; want the lapsed lease stopped", i, stop, err)
		}
		e.sweep()
		tr, _ := e.trial(h.TrialID)
		if tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.UncountedAttempts != int32(i+1) ||
			!strings.Contains(tr.ReasonHistory[i], "not counted") {
			t.Fatalf("freeze %d: trial %v uncounted %d history %q; want pending, every attempt uncounted",
				i, tr.State, tr.UncountedAttempts, tr.ReasonHistory)
		}
	}
	// Without an outage, lapses count again: the delivery limit is reached after
	// testMaxAttempt counted ones.
	for i := range testMaxAttempt {
		h = heldOf(w, e.mustAcquire(w))
		// Long after the last outage, swept on time.
		for range 30 {
			e.clock.Advance(testTTL / 10)
			e.sweep()
		}
		tr, _ := e.trial(h.TrialID)
		want := pb.TrialState_TRIAL_STATE_PENDING
		if i == testMaxAttempt-1 {
			want = pb.TrialState_TRIAL_STATE_LOST
		}
		if tr.State != want || tr.UncountedAttempts != freezes {
			t.Fatalf("counted lapse %d: trial %v uncounted %d, want %v with %d uncounted", i, tr.State, tr.UncountedAttempts, want, freezes)
		}
		if want == pb.TrialState_TRIAL_STATE_LOST && tr.FailureReason != "lost after 8 attempts (5 not counted: coordinator outages)" {
			t.Errorf("lost trial's reason %q", tr.FailureReason)
		}
	}
}

// A worker that fenced itself during a freeze shorter than the TTL releases its attempt
// when it reaches the coordinator again: the trial is requeued at once, although stale
// messages renewed the lease, and the attempt is not counted. A release that is no longer
// current (the attempt already requeued) changes nothing.
func TestFencedReleaseRequeuesAtOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	e.sweep()
	h := heldOf(w, e.mustAcquire(w))
	fence := e.s.Config().FenceAfter
	e.clock.Advance(fence + time.Second) // frozen past the fence limit, within the TTL
	if stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{h}); err != nil || len(stop) != 0 {
		t.Fatalf("stale heartbeat = %v, %v; want the live lease renewed", stop, err)
	}
	if err := e.s.ReleaseLeases(ctx, w, []AttemptClaim{h}); err != nil {
		t.Fatal(err)
	}
	tr, _ := e.trial(h.TrialID)
	if tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.UncountedAttempts != 1 ||
		len(tr.ReasonHistory) != 1 || !strings.Contains(tr.ReasonHistory[0], "fenced itself") {
		t.Fatalf("released trial %v uncounted %d history %q; want pending at once, uncounted", tr.State, tr.UncountedAttempts, tr.ReasonHistory)
	}
	retry := heldOf(w, e.mustAcquire(w))
	if err := e.s.ReleaseLeases(ctx, w, []AttemptClaim{h}); err != nil {
		t.Fatal(err)
	}
	if tr, _ := e.trial(h.TrialID); tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.LeaseId != retry.LeaseID {
		t.Fatalf("a stale release changed the retry: %v lease %q", tr.State, tr.LeaseId)
	}

	// Far from any outage, a fence is the worker's or the network's: it counts.
	for range 30 {
		e.clock.Advance(testTTL / 10)
		e.sweep()
		if _, err := e.s.Heartbeat(ctx, w, []AttemptClaim{retry}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.ReleaseLeases(ctx, w, []AttemptClaim{retry}); err != nil {
		t.Fatal(err)
	}
	if tr, _ := e.trial(h.TrialID); tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.UncountedAttempts != 1 {
		t.Fatalf("counted release: trial %v uncounted %d, want pending with 1 uncounted", tr.State, tr.UncountedAttempts)
	}
}

// Finish and Fail are idempotent per attempt: repeating the call that ended an attempt
// (its answer lost in a crash) answers OK and changes nothing; another attempt's or
// another lease's call is still refused.
func TestEndTrialIdempotentPerAttempt(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })

	// A retryable failure requeues; its repeat answers OK before and after the retry
	// is leased, and the retry is untouched.
	a := heldOf(w, e.mustAcquire(w))
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Errorf("repeated retryable fail while pending: %v", err)
	}
	retry := heldOf(w, e.mustAcquire(w))
	if retry.TrialID != a.TrialID {
		t.Fatalf("leased trial %d, want the retry of %d", retry.TrialID, a.TrialID)
	}
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Errorf("repeated retryable fail after the retry was leased: %v", err)
	}
	err := e.s.FailTrial(ctx, a, "another reason", pb.FailureClass_FAILURE_CLASS_OTHER)
	wantErr(t, err, ErrStaleLease, "a different fail of the ended attempt")
	if tr, _ := e.trial(a.TrialID); tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.LeaseId != retry.LeaseID || len(tr.ReasonHistory) != 1 {
		t.Fatalf("retry after repeats: %v lease %q history %q", tr.State, tr.LeaseId, tr.ReasonHistory)
	}

	// A deterministic failure fails the trial; its repeat answers OK.
	if err := e.s.FailTrial(ctx, retry, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailTrial(ctx, retry, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Errorf("repeated deterministic fail: %v", err)
	}
	err = e.s.FinishTrial(ctx, retry, 0, "", 0)
	wantErr(t, err, ErrStaleLease, "finish of a failed attempt")

	// A finish repeated answers OK; the trial stays succeeded with its points.
	b := heldOf(w, e.mustAcquire(w))
	e.report(b, []*pb.CurvePoint{{Seq: 1, Step: targetSteps / 2, TrainLoss: 2}, {Seq: 2, Step: targetSteps, TrainLoss: 1}})
	e.finish(b, 2)
	e.finish(b, 2)
	err = e.s.FailTrial(ctx, b, "late", pb.FailureClass_FAILURE_CLASS_OTHER)
	wantErr(t, err, ErrStaleLease, "fail of a finished attempt")
	if tr, points := e.trial(b.TrialID); tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || len(points) != 2 {
		t.Errorf("finished trial after repeats: %v with %d points", tr.State, len(points))
	}
}

// A sweep on time is no outage, even with heartbeats far more frequent than sweeps.
func TestSweepOnTimeIsNoOutage(t *testing.T) {
	e := newEnv(t, withFakePolicy(), func(e *env) { e.cfg.HeartbeatInterval = testTTL / 50 })
	for range 50 {
		e.sweep()
		e.clock.Advance(testTTL / 10)
	}
	if o := e.s.lastOutage; !o.end.IsZero() {
		t.Errorf("outage %v-%v recorded with sweeps every %v", o.start, o.end, testTTL/10)
	}
}

// A restart with trials running is an outage of the coordinator's own: a worker that
// fenced itself while it was down releases its attempt after the restart, uncounted.
func TestReleaseAfterRestartIsUncounted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	h := heldOf(w, e.mustAcquire(w))
	e.restart()
	e.clock.Advance(2 * time.Second) // the worker reconnects
	if err := e.s.ReleaseLeases(ctx, w, []AttemptClaim{h}); err != nil {
		t.Fatal(err)
	}
	if tr, _ := e.trial(h.TrialID); tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.UncountedAttempts != 1 {
		t.Errorf("released after a restart: trial %v uncounted %d, want pending, 1 uncounted", tr.State, tr.UncountedAttempts)
	}
}
