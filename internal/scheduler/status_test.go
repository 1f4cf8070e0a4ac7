package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

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
