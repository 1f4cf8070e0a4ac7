package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		r     Registration
		field string
	}{
		{"no hostname", Registration{}, "hostname"},
		{"long hostname", Registration{Hostname: strings.Repeat("h", 256)}, "hostname"},
		{"negative capacity", Registration{Hostname: "h", SimulatedCapacity: -1}, "simulated_capacity"},
		{"huge capacity", Registration{Hostname: "h", SimulatedCapacity: 10_001}, "simulated_capacity"},
		{"too many gpus", Registration{Hostname: "h", GPUs: make([]*pb.Gpu, 1025)}, "gpus"},
		{"negative gpu memory", Registration{Hostname: "h", GPUs: []*pb.Gpu{{Index: 0}, {Index: 1, MemoryMib: -1}}}, "gpus[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.Register(context.Background(), tc.r)
			checkInvalid(t, err, tc.field)
		})
	}
	ws, err := e.s.Workers(context.Background())
	if err != nil || len(ws) != 0 {
		t.Errorf("rejected registrations left workers %v, %v", ws, err)
	}
}

func TestRegisterIdentityAndLiveness(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	w1 := e.register("w1", 1)
	w2 := e.register("w2", 1)
	if w1 == 0 || w2 == w1 {
		t.Fatalf("ids %d, %d", w1, w2)
	}
	if id, err := e.s.Register(ctx, Registration{WorkerID: w1, Hostname: "w1-renamed", SimulatedCapacity: 4}); err != nil || id != w1 {
		t.Fatalf("re-register = %d, %v; want %d", id, err, w1)
	}
	fresh, err := e.s.Register(ctx, Registration{WorkerID: 999, Hostname: "stranger"})
	if err != nil || fresh == 999 || fresh == w1 || fresh == w2 {
		t.Fatalf("unknown id registered as %d, %v; want a fresh id", fresh, err)
	}

	states := func() map[uint64]pb.WorkerState {
		ws, err := e.s.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]pb.WorkerState{}
		for _, w := range ws {
			out[w.Id] = w.State
			if w.Id == w1 && (w.Hostname != "w1-renamed" || w.SimulatedCapacity != 4) {
				t.Errorf("re-registered worker: %v", w)
			}
		}
		return out
	}
	if s := states(); len(s) != 3 || s[w1] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Fatalf("workers: %v", s)
	}
	e.clock.Advance(3*e.s.Config().HeartbeatInterval + 1)
	if _, err := e.s.Heartbeat(ctx, w2, nil); err != nil {
		t.Fatal(err)
	}
	s := states()
	if s[w1] != pb.WorkerState_WORKER_STATE_LOST || s[w2] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Errorf("after three silent heartbeat intervals: %v; want w1 lost, w2 alive", s)
	}
	_, err = e.s.Heartbeat(ctx, 12345, nil)
	wantErr(t, err, ErrNotFound, "heartbeat of an unknown worker")
}

func TestSelectorAndIdentityValidation(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	_, err := e.s.CreateStudy(context.Background(), func() *pb.StudySpec {
		s := baseSpec()
		s.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{pb.WorkerKind(9)}}
		return s
	}())
	wantErr(t, err, ErrInvalid, "unknown kind")
	if !strings.Contains(err.Error(), "workers.kinds[0]") {
		t.Errorf("error %q does not name workers.kinds[0]", err)
	}
	_, err = e.s.Register(context.Background(), Registration{Hostname: "h",
		Identity: &pb.WorkerIdentity{Kind: simulated, Labels: map[string]string{"": "x"}}})
	wantErr(t, err, ErrInvalid, "empty label key")
	if !strings.Contains(err.Error(), "identity.labels") {
		t.Errorf("error %q does not name identity.labels", err)
	}
}

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

func TestForgetWorker(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	e.createStudy(nil)
	w := e.register("w", 1)
	idle := e.register("idle", 1)
	wantErr(t, e.s.ForgetWorker(ctx, idle), ErrConflict, "forgetting a live worker")
	a := e.mustAcquire(w)
	e.clock.Advance(3*e.s.Config().HeartbeatInterval + 1)
	err := e.s.ForgetWorker(ctx, w)
	wantErr(t, err, ErrConflict, "forgetting a worker that holds a lease")
	if !strings.Contains(err.Error(), "holds trial") {
		t.Errorf("error %q should say which trial it holds", err)
	}
	if err := e.s.ForgetWorker(ctx, idle); err != nil {
		t.Fatalf("forget a lost idle worker: %v", err)
	}
	e.clock.Advance(testTTL)
	if err := e.s.ExpireLeases(); err != nil {
		t.Fatal(err)
	}
	if err := e.s.ForgetWorker(ctx, w); err != nil {
		t.Fatalf("forget a lost worker whose lease expired: %v", err)
	}
	ws, err := e.s.Workers(ctx)
	if err != nil || len(ws) != 0 {
		t.Fatalf("workers after forgetting both: %v, %v", ws, err)
	}
	wantErr(t, e.s.ForgetWorker(ctx, w), ErrNotFound, "forgetting twice")
	if tr, _ := e.trial(a.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_PENDING {
		t.Errorf("the forgotten worker's trial is %v, want pending for another worker", tr.State)
	}
}
