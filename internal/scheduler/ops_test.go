package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

var (
	real      = pb.WorkerKind_WORKER_KIND_REAL
	simulated = pb.WorkerKind_WORKER_KIND_SIMULATED
)

func (e *env) registerAs(host string, id *pb.WorkerIdentity) uint64 {
	e.t.Helper()
	w, err := e.s.Register(context.Background(), Registration{Hostname: host, SimulatedCapacity: 2, Identity: id})
	if err != nil {
		e.t.Fatalf("Register: %v", err)
	}
	return w
}

func TestAcceptsWorker(t *testing.T) {
	sim := &pb.Worker{Identity: &pb.WorkerIdentity{Kind: simulated, Labels: map[string]string{"pool": "a"}}}
	realW := &pb.Worker{Identity: &pb.WorkerIdentity{Kind: real}}
	old := &pb.Worker{} // registered without an identity
	for _, tc := range []struct {
		name string
		sel  *pb.WorkerSelector
		w    *pb.Worker
		want bool
	}{
		{"default takes real", nil, realW, true},
		{"default takes an old worker as real", nil, old, true},
		{"default refuses simulated", nil, sim, false},
		{"simulated asked", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}}, sim, true},
		{"simulated only refuses real", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}}, realW, false},
		{"both kinds", &pb.WorkerSelector{Kinds: []pb.WorkerKind{real, simulated}}, sim, true},
		{"label matches", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "a"}}, sim, true},
		{"label differs", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "b"}}, sim, false},
		{"label missing", &pb.WorkerSelector{Labels: map[string]string{"pool": "a"}}, realW, false},
	} {
		if got := acceptsWorker(tc.sel, tc.w); got != tc.want {
			t.Errorf("%s: acceptsWorker = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Placement asks each study's selector: a simulated worker gets no trial of a study that
// takes real workers only, and a label the worker lacks keeps it away.
func TestPlacementHonoursSelector(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	realStudy := e.createStudy(nil)
	simA := e.registerAs("sim-a", &pb.WorkerIdentity{Kind: simulated, SimSource: "synthetic", Labels: map[string]string{"pool": "a"}})
	if a := e.acquire(simA); a != nil {
		t.Fatalf("simulated worker got trial %d of a real study", a.Trial.Id)
	}
	realW := e.registerAs("gpu-1", &pb.WorkerIdentity{Kind: real})
	if a := e.mustAcquire(realW); a.Trial.StudyId != realStudy.Id {
		t.Fatalf("real worker got study %d's trial", a.Trial.StudyId)
	}
	simStudy := e.createStudy(func(s *pb.StudySpec) {
		s.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "b"}}
	})
	if a := e.acquire(simA); a != nil {
		t.Fatalf("worker of pool a got trial %d of a study asking for pool b", a.Trial.Id)
	}
	simB := e.registerAs("sim-b", &pb.WorkerIdentity{Kind: simulated, Labels: map[string]string{"pool": "b"}})
	if a := e.mustAcquire(simB); a.Trial.StudyId != simStudy.Id {
		t.Fatalf("pool b worker got study %d's trial", a.Trial.StudyId)
	}
	ws, err := e.s.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := ws[0].GetIdentity(); got.GetKind() != simulated || got.GetSimSource() != "synthetic" || got.GetLabels()["pool"] != "a" {
		t.Errorf("stored identity of worker %d = %v, want what it registered with", ws[0].Id, got)
	}
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

// A budget smaller than the cheapest trial the policy may run is refused at creation,
// naming budget_flops, and nothing is stored.
func TestBudgetTooSmallIsRefused(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.CreateStudy(context.Background(), func() *pb.StudySpec {
		s := baseSpec()
		s.Policy = "random-mf"
		s.BudgetFlops = smallFlops * 99 // the cheapest trial is 100 steps at small
		return s
	}())
	wantErr(t, err, ErrInvalid, "tiny budget")
	if !strings.HasPrefix(err.Error(), "budget_flops: ") || !strings.Contains(err.Error(), "scale small for 100 steps") {
		t.Errorf("error %q should name budget_flops and the cheapest trial", err)
	}
	// The random policy runs only at the target: a budget for a short run is not enough.
	_, err = e.s.CreateStudy(context.Background(), func() *pb.StudySpec {
		s := baseSpec()
		s.Policy = "random"
		s.BudgetFlops = targetCost / 2
		return s
	}())
	wantErr(t, err, ErrInvalid, "budget below the target run of the random policy")
	studies, err := e.s.ListStudies(context.Background())
	if err != nil || len(studies) != 0 {
		t.Fatalf("refused studies were stored: %v, %v", studies, err)
	}
	if st := e.createStudy(func(s *pb.StudySpec) { s.Policy = "random"; s.BudgetFlops = targetCost }); st.Spec.MaxConsecutiveFailures != DefaultMaxConsecutiveFailures {
		t.Errorf("max_consecutive_failures defaulted to %d, want %d", st.Spec.MaxConsecutiveFailures, DefaultMaxConsecutiveFailures)
	}
}

func TestConsecutiveFailuresFailTheStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) {
		s.MaxConsecutiveFailures = 3
		s.BudgetFlops = 100 * targetCost
		s.MaxParallel = 2
	})
	w := e.register("w", 2)
	fail := func() {
		t.Helper()
		a := e.mustAcquire(w)
		if err := e.s.FailTrial(ctx, heldOf(w, a), "no such domain: nosuch", pb.FailureClass_FAILURE_CLASS_BAD_DATA); err != nil {
			t.Fatal(err)
		}
	}
	// Two failures, a success, two failures: never three in a row.
	fail()
	fail()
	a := e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), targetSteps)
	if got := e.study(st.Id).Study.ConsecutiveFailures; got != 0 {
		t.Fatalf("a success left %d consecutive failures, want 0", got)
	}
	fail()
	fail()
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING || s.ConsecutiveFailures != 2 {
		t.Fatalf("after two failures in a row the study is %v with %d, want running with 2", s.State, s.ConsecutiveFailures)
	}
	// A trial runs on a second slot while the third failure ends the study: it is stopped.
	running := e.mustAcquire(w)
	fail()
	s := e.study(st.Id)
	if s.Study.State != pb.StudyState_STUDY_STATE_FAILED {
		t.Fatalf("study is %v after 3 failures in a row, want failed", s.Study.State)
	}
	if !strings.Contains(s.Study.EndReason, "3 trials in a row failed") || !strings.Contains(s.Study.EndReason, "no such domain: nosuch") {
		t.Errorf("end reason %q should give the count and the last failure", s.Study.EndReason)
	}
	if tr, _ := e.trial(running.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("trial running when the study failed is %v, want stopped", tr.State)
	}
	if a := e.acquire(w); a != nil {
		t.Errorf("a failed study leased trial %d", a.Trial.Id)
	}
	if _, err := e.s.ResumeStudy(ctx, st.Id); err == nil {
		t.Errorf("a failed study resumed")
	}
}

// Lost trials (past the delivery limit) count as failures too.
func TestLostTrialsCountAsFailures(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxConsecutiveFailures = 1 })
	w := e.register("w", 1)
	for range testMaxAttempt {
		e.mustAcquire(w)
		e.clock.Advance(testTTL + 1)
		if err := e.s.ExpireLeases(); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_FAILED || !strings.Contains(s.EndReason, "lost after 3 attempts") {
		t.Fatalf("study is %v (%q), want failed naming the lost trial", s.State, s.EndReason)
	}
}

// The first trial that finishes without its curve reporting the objective fails the study
// and says what the trainer does report.
func TestUnreportedObjectiveFailsTheStudy(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) {
		s.ExtraMetrics = []string{"hellaswag_acc"}
		s.Objective = &pb.Objective{Metric: "hellaswag_acc", Maximize: true}
		s.MaxParallel = 2
	})
	w := e.register("w", 2)
	a := e.mustAcquire(w)
	other := e.mustAcquire(w)
	h := heldOf(w, a)
	e.report(h, []*pb.CurvePoint{{Seq: 1, Step: targetSteps, TrainLoss: 2, Eval: map[string]float64{"wiki_ce": 2.1, "mean_ce": 2.2}}})
	e.finish(h, 1)
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_FAILED {
		t.Fatalf("study is %v, want failed", s.State)
	}
	want := `trial 1 finished without reporting the objective "hellaswag_acc"; its curve reports: mean_ce, train_loss, wiki_ce`
	if s.EndReason != want {
		t.Errorf("end reason\n %q, want\n %q", s.EndReason, want)
	}
	if tr, _ := e.trial(other.Trial.Id); tr.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("the other trial is %v, want stopped", tr.State)
	}
}

// intervalPolicy is the fake policy with a model's interval around each value.
type intervalPolicy struct{ *fakePolicy }

func (p intervalPolicy) Recommend(ctx context.Context, req bo.Request) (bo.Recommendation, error) {
	r, err := p.fakePolicy.Recommend(ctx, req)
	r.Lower, r.Upper = r.Value-0.1, r.Value+0.1
	return r, err
}

func TestRecommendationCarriesItsBasis(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	fake := &fakePolicy{}
	e.s.cfg.NewPolicy = func(name string) (bo.Policy, error) {
		if name == "random-mf" {
			return bo.New(name)
		}
		return intervalPolicy{fake}, nil
	}
	w := e.register("w", 4)

	// A model's recommendation: extrapolated until a target run has finished.
	model := e.createStudy(func(s *pb.StudySpec) { s.Policy = "mfms" })
	a := e.mustAcquire(w)
	e.report(heldOf(w, a), []*pb.CurvePoint{{Seq: 1, Step: 100, TrainLoss: 3}})
	r, err := e.s.Recommendation(ctx, model.Id)
	if err != nil {
		t.Fatal(err)
	}
	if r.TargetObserved || !r.HasInterval || r.ValueObserved || !strings.HasPrefix(r.Label, "extrapolated from smaller scales") {
		t.Errorf("before any target run finished: %v", r)
	}
	e.report(heldOf(w, a), []*pb.CurvePoint{{Seq: 2, Step: targetSteps, TrainLoss: 2}})
	e.finish(heldOf(w, a), 2)
	if r, err = e.s.Recommendation(ctx, model.Id); err != nil {
		t.Fatal(err)
	}
	if !r.TargetObserved || !r.HasInterval || !strings.HasPrefix(r.Label, "predicted at the target (small, 200 steps) by the model, with 1 trial(s)") {
		t.Errorf("after a target run finished: %v", r)
	}
	if _, err := e.s.CancelStudy(ctx, model.Id); err != nil {
		t.Fatal(err)
	}

	// Best observed: the value is observed, with no interval, at the fidelity it was
	// observed at; a partial target-scale curve is not a target value.
	obs := e.createStudy(func(s *pb.StudySpec) { s.Policy = "random-mf"; s.Seed = 1 })
	b := e.mustAcquire(w)
	partial := b.Trial.Steps / 2
	e.report(heldOf(w, b), []*pb.CurvePoint{{Seq: 1, Step: partial, TrainLoss: 3}})
	if r, err = e.s.Recommendation(ctx, obs.Id); err != nil {
		t.Fatal(err)
	}
	if !r.ValueObserved || r.HasInterval || r.Lower != r.Value || r.Upper != r.Value || r.ObservedSteps != partial ||
		r.ObservedScale != b.Trial.Scale || r.TargetObserved || !strings.Contains(r.Label, "not at the target") {
		t.Errorf("partial observation: %v", r)
	}
	if _, err := e.s.CancelStudy(ctx, obs.Id); err != nil {
		t.Fatal(err)
	}
	if r, err = e.s.Recommendation(ctx, obs.Id); err != nil {
		t.Fatal(err)
	}
	if r.StudyState != pb.StudyState_STUDY_STATE_CANCELLED || !strings.HasSuffix(r.Label, "; the study cancelled before it ended on its own") {
		t.Errorf("cancelled study's best: %v", r)
	}
}

func i32(v int32) *int32     { return &v }
func f64(v float64) *float64 { return &v }

func TestUpdateStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.BudgetFlops = 3 * targetCost; s.MaxTrials = 10 })
	w := e.register("w", 4)
	first := e.mustAcquire(w)
	if a := e.acquire(w); a != nil {
		t.Fatalf("max_parallel 1 leased a second trial %d", a.Trial.Id)
	}
	for _, tc := range []struct {
		name  string
		u     StudyUpdate
		field string
	}{
		{"nothing", StudyUpdate{}, "update"},
		{"zero budget", StudyUpdate{BudgetFlops: f64(0)}, "budget_flops"},
		{"negative trials", StudyUpdate{MaxTrials: i32(-1)}, "max_trials"},
		{"zero parallel", StudyUpdate{MaxParallel: i32(0)}, "max_parallel"},
		{"no trial limit", StudyUpdate{MaxTrials: i32(0)}, ""}, // 0 is "no limit": allowed
		{"negative failure limit", StudyUpdate{MaxConsecutiveFailures: i32(-1)}, "max_consecutive_failures"},
	} {
		_, err := e.s.UpdateStudy(ctx, st.Id, tc.u)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, err, ErrInvalid, tc.name)
		if !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%s: error %q does not start with %s", tc.name, err, tc.field)
		}
	}
	e.report(heldOf(w, first), []*pb.CurvePoint{{Seq: 1, Step: 100, TrainLoss: 3}})
	_, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{BudgetFlops: f64(smallFlops * 50)})
	wantErr(t, err, ErrInvalid, "budget below spent")
	up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxParallel: i32(3), BudgetFlops: f64(5 * targetCost)})
	if err != nil || up.Spec.MaxParallel != 3 || up.Spec.BudgetFlops != 5*targetCost || up.Spec.MaxTrials != 0 {
		t.Fatalf("update = %v, %v", up, err)
	}
	if up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxConsecutiveFailures: i32(9)}); err != nil || up.Spec.MaxConsecutiveFailures != 9 {
		t.Fatalf("failure limit 9: %v, %v", up, err)
	}
	if up, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxConsecutiveFailures: i32(0)}); err != nil ||
		up.Spec.MaxConsecutiveFailures != DefaultMaxConsecutiveFailures {
		t.Fatalf("failure limit 0 restores the default: %v, %v", up, err)
	}
	e.mustAcquire(w)
	e.mustAcquire(w)
	// Lowering the trial cap to what was created ends the study once its trials end.
	if _, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxTrials: i32(2)}); !strings.Contains(errString(err), "below the 3 trials") {
		t.Fatalf("max_trials below created: %v", err)
	}
	if _, err := e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxTrials: i32(3)}); err != nil {
		t.Fatal(err)
	}
	trials, _ := e.s.Trials(ctx, st.Id, pb.TrialState_TRIAL_STATE_RUNNING, "")
	for _, tr := range trials {
		h := AttemptClaim{WorkerID: w, TrialID: tr.Id, LeaseID: tr.LeaseId, Attempt: tr.Attempt}
		e.report(h, []*pb.CurvePoint{{Seq: tr.LastSeq + 1, Step: targetSteps, TrainLoss: 1}})
		e.finish(h, tr.LastSeq+1)
	}
	s := e.study(st.Id).Study
	if s.State != pb.StudyState_STUDY_STATE_COMPLETED || s.EndReason != "max trials reached" {
		t.Fatalf("study is %v (%q), want completed: max trials reached", s.State, s.EndReason)
	}
	_, err = e.s.UpdateStudy(ctx, st.Id, StudyUpdate{MaxParallel: i32(2)})
	wantErr(t, err, ErrConflict, "update of a completed study")
	_, err = e.s.UpdateStudy(ctx, 99, StudyUpdate{MaxParallel: i32(2)})
	wantErr(t, err, ErrNotFound, "update of an unknown study")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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

func TestDeleteStudy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(nil)
	keep := e.createStudy(nil)
	w := e.register("w", 2)
	a := e.mustAcquire(w)
	e.report(heldOf(w, a), pts(1, 3))
	_, err := e.s.DeleteStudy(ctx, st.Id)
	wantErr(t, err, ErrConflict, "deleting a running study")
	if _, err := e.s.CancelStudy(ctx, st.Id); err != nil {
		t.Fatal(err)
	}
	n, err := e.s.DeleteStudy(ctx, st.Id)
	if err != nil || n != 1 {
		t.Fatalf("DeleteStudy = %d, %v; want 1 trial", n, err)
	}
	_, err = e.s.StudyStatus(ctx, st.Id)
	wantErr(t, err, ErrNotFound, "status of a deleted study")
	_, _, err = e.s.Trial(ctx, a.Trial.Id)
	wantErr(t, err, ErrNotFound, "trial of a deleted study")
	_, err = e.s.DeleteStudy(ctx, st.Id)
	wantErr(t, err, ErrNotFound, "deleting twice")
	if err := e.db.View(func(tx *store.Tx) error { _, err := tx.PolicyState(st.Id); return err }); err == nil {
		t.Errorf("policy state of the deleted study still readable")
	}
	// The other study and the worker's next lease are untouched.
	if b := e.mustAcquire(w); b.Trial.StudyId != keep.Id {
		t.Errorf("next lease from study %d, want %d", b.Trial.StudyId, keep.Id)
	}
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

// A study that reaches its cap with every trial failed ends failed, not completed, even
// below the consecutive-failure limit.
func TestStudyWithNoResultEndsFailed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 2 })
	w := e.register("w", 1)
	for range 2 {
		a := e.mustAcquire(w)
		if err := e.s.FailTrial(ctx, heldOf(w, a), "no data for domain code", pb.FailureClass_FAILURE_CLASS_BAD_DATA); err != nil {
			t.Fatal(err)
		}
	}
	s := e.study(st.Id).Study
	if want := "max trials reached, but no trial produced a result (2 failed, 0 lost)"; s.State != pb.StudyState_STUDY_STATE_FAILED || s.EndReason != want {
		t.Errorf("study %v (%q), want failed: %s", s.State, s.EndReason, want)
	}
}
