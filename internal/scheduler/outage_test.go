package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

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
