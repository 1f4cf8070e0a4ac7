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
