package scheduler

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

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

// A worker that asks for one study's trials gets only that study's, even when another
// study has work; without a filter it gets any study's.
func TestAcquireStudyTrialFiltersByStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	first := e.createStudy(nil)
	second := e.createStudy(nil)
	w := e.register("external", 2)

	a, err := e.s.AcquireStudyTrial(ctx, w, second.Id, noWait)
	if err != nil {
		t.Fatalf("AcquireStudyTrial(study %d): %v", second.Id, err)
	}
	if a == nil || a.Trial.StudyId != second.Id {
		t.Fatalf("AcquireStudyTrial(study %d) = %v, want a trial of study %d", second.Id, a, second.Id)
	}
	// The study filter also names a study that does not exist: an empty answer, not an error.
	if a, err := e.s.AcquireStudyTrial(ctx, w, second.Id+100, noWait); err != nil || a != nil {
		t.Fatalf("AcquireStudyTrial(unknown study) = %v, %v; want nil, nil", a, err)
	}
	any := e.mustAcquire(w)
	if any.Trial.StudyId != first.Id {
		t.Errorf("unfiltered AcquireTrial got study %d, want %d (the other study's only slot is taken)", any.Trial.StudyId, first.Id)
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
