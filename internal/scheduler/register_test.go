package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A worker that comes back under its id keeps the leases it lists; every other trial
// leased to it is requeued at once, without waiting for its lease to run out.
func TestReRegisterRequeuesUnlistedLeases(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 3)
	other := e.register("w2", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 4 })
	kept := e.mustAcquire(w)
	dropped := e.mustAcquire(w)
	wrongLease := e.mustAcquire(w)
	elsewhere := e.mustAcquire(other)
	e.report(heldOf(w, kept), pts(1, 2))
	e.report(heldOf(w, dropped), pts(1, 2))

	staleHeld := heldOf(w, wrongLease)
	staleHeld.LeaseID = "a-lease-it-no-longer-has"
	id, err := e.s.Register(ctx, Registration{
		WorkerID: w, Hostname: "w1", SimulatedCapacity: 3,
		Claims: []AttemptClaim{heldOf(w, kept), staleHeld},
	})
	if err != nil || id != w {
		t.Fatalf("re-register = %d, %v; want %d", id, err, w)
	}

	for _, a := range []*pb.Assignment{dropped, wrongLease} {
		tr, _ := e.trial(a.Trial.Id)
		if tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.LeaseId != "" || tr.WorkerId != 0 {
			t.Errorf("trial %d not listed: %v lease %q worker %d, want pending at once", a.Trial.Id, tr.State, tr.LeaseId, tr.WorkerId)
		}
		want := fmt.Sprintf("attempt 1: worker %d restarted", w)
		if len(tr.ReasonHistory) != 1 || !strings.HasPrefix(tr.ReasonHistory[0], want) {
			t.Errorf("trial %d reason history %q, want %q...", a.Trial.Id, tr.ReasonHistory, want)
		}
		_, _, err := e.s.ReportPoints(ctx, heldOf(w, a), pts(3, 3))
		wantErr(t, err, ErrStaleLease, "report under a requeued lease")
		if stop, err := e.s.Heartbeat(ctx, w, []AttemptClaim{heldOf(w, a)}); err != nil || !slices.Equal(stop, []AttemptClaim{heldOf(w, a)}) {
			t.Errorf("Heartbeat with a requeued lease = %v, %v", stop, err)
		}
	}
	for _, a := range []*pb.Assignment{kept, elsewhere} {
		tr, _ := e.trial(a.Trial.Id)
		if tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.LeaseId != a.LeaseId || len(tr.ReasonHistory) != 0 {
			t.Errorf("trial %d: %v lease %q history %q, want still running under %q",
				a.Trial.Id, tr.State, tr.LeaseId, tr.ReasonHistory, a.LeaseId)
		}
	}
	if acked := e.report(heldOf(w, kept), pts(3, 3)); acked != 3 {
		t.Errorf("kept lease acked %d, want 3", acked)
	}
	if got := e.runningByWorker(); !slices.Equal(got[w], []uint64{kept.Trial.Id}) ||
		!slices.Equal(got[other], []uint64{elsewhere.Trial.Id}) {
		t.Errorf("running trials by worker %v", got)
	}

	// The requeued trials are leased again as their second attempts.
	seen := map[uint64]bool{}
	for range 2 {
		b := e.mustAcquire(w)
		if (b.Trial.Id != dropped.Trial.Id && b.Trial.Id != wrongLease.Trial.Id) || b.Attempt != 2 || seen[b.Trial.Id] {
			t.Fatalf("leased trial %d attempt %d, want a requeued trial's second attempt", b.Trial.Id, b.Attempt)
		}
		seen[b.Trial.Id] = true
	}
	if s := e.study(st.Id); s.Study.TrialsCreated != 4 || s.TrialsByState["running"] != 4 {
		t.Errorf("study: created %d, trials %v", s.Study.TrialsCreated, s.TrialsByState)
	}
}

// Registering under no id, or an id the coordinator does not know, requeues nothing.
func TestFirstRegistrationRequeuesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	b := e.mustAcquire(w)
	for _, r := range []Registration{
		{Hostname: "fresh", SimulatedCapacity: 1},
		{WorkerID: 999, Hostname: "stranger", SimulatedCapacity: 1},
		// A stranger's claim to hold a lease it was never given changes nothing.
		{Hostname: "liar", SimulatedCapacity: 1, Claims: []AttemptClaim{{TrialID: a.Trial.Id, LeaseID: a.LeaseId, Attempt: 1}}},
	} {
		id, err := e.s.Register(ctx, r)
		if err != nil || id == w {
			t.Fatalf("Register(%s) = %d, %v", r.Hostname, id, err)
		}
	}
	for _, as := range []*pb.Assignment{a, b} {
		tr, _ := e.trial(as.Trial.Id)
		if tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.WorkerId != w || tr.LeaseId != as.LeaseId || len(tr.ReasonHistory) != 0 {
			t.Errorf("trial %d after others registered: %v worker %d lease %q history %q",
				as.Trial.Id, tr.State, tr.WorkerId, tr.LeaseId, tr.ReasonHistory)
		}
	}
	// A re-registration that lists every lease requeues nothing either.
	if _, err := e.s.Register(ctx, Registration{WorkerID: w, Hostname: "w1", SimulatedCapacity: 2,
		Claims: []AttemptClaim{heldOf(w, a), heldOf(w, b)}}); err != nil {
		t.Fatal(err)
	}
	if got := e.runningByWorker()[w]; len(got) != 2 {
		t.Errorf("worker holds %v after listing both leases", got)
	}
}

// A trial requeued by a restart past the delivery limit is lost, and a study whose last
// trial is lost that way completes.
func TestRestartRequeueRespectsDeliveryLimit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	var a *pb.Assignment
	for attempt := int32(1); attempt <= testMaxAttempt; attempt++ {
		a = e.mustAcquire(w)
		if a.Attempt != attempt {
			t.Fatalf("attempt %d leased as %d", attempt, a.Attempt)
		}
		if _, err := e.s.Register(ctx, Registration{WorkerID: w, Hostname: "w1", SimulatedCapacity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	tr, _ := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_LOST || len(tr.ReasonHistory) != testMaxAttempt {
		t.Fatalf("trial %v history %q, want lost after %d restarts", tr.State, tr.ReasonHistory, testMaxAttempt)
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_FAILED { // ended, with no result
		t.Errorf("study %v after its only trial was lost", s.State)
	}
}
