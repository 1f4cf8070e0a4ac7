package bo

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// A sweep larger than the GP keeps ranks the target pool: its picks go to target runs in
// turn, best first; a sweep the GP keeps whole leaves the choice to the GP.
func TestSweepPickRanksTheTargetPool(t *testing.T) {
	p := Problem{Domains: []string{"a", "b", "c"}, Lower: []float64{0, 0, 0}, Upper: []float64{1, 1, 1},
		Scales: []Scale{{Name: "S", Params: 1e6, FlopsPerStep: 1e12}, {Name: "L", Params: 1e9, FlopsPerStep: 1e15,
			Pool: [][]float64{{0.1, 0.1, 0.8}, {0.7, 0.2, 0.1}, {0.34, 0.33, 0.33}, {0.2, 0.7, 0.1}}}},
		Steps: []int64{100}, TargetScale: 1, TargetSteps: 100, Seed: 3, BudgetLeft: 1e30}
	best := []float64{0.75, 0.15, 0.1}
	loss := func(w []float64) float64 {
		d := 0.0
		for i := range w {
			d += (w[i] - best[i]) * (w[i] - best[i])
		}
		return 3 + d
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var obs []Observation
	for range 60 {
		w := SampleDirichlet(rng, p.Lower, p.Upper)
		obs = append(obs, Observation{Trial: Trial{Mixture: w, Scale: 0, Steps: 100}, Done: true,
			Curve: []CurvePoint{{Step: 100, Value: loss(w)}}})
	}
	cfg := MFMSConfig()
	cfg.MaxPoints = 40
	m := NewMF("mfms", cfg)
	req := Request{Problem: p, Observations: obs}
	w, ok := m.sweepPick(&req)
	if !ok || !sameMixture(w, p.Scales[1].Pool[1]) {
		t.Fatalf("first pick %v (ok %v), want %v", w, ok, p.Scales[1].Pool[1])
	}
	// Before any target run the recommendation is that pick too.
	rec, err := m.Recommend(context.Background(), req)
	if err != nil || !sameMixture(rec.Mixture, w) || !strings.Contains(rec.Basis, "boosted trees") {
		t.Errorf("recommendation before a target run: %+v (%v), want the trees' pick %v", rec, err, w)
	}
	// Once it has run at the target, the next best follows.
	req.Observations = append(req.Observations, Observation{Trial: Trial{Mixture: w, Scale: 1, Steps: 100}, Done: true,
		Curve: []CurvePoint{{Step: 100, Value: loss(w)}}})
	if w2, ok := m.sweepPick(&req); !ok || sameMixture(w2, w) {
		t.Errorf("second pick %v (ok %v) repeats the first", w2, ok)
	}
	if rec, err := m.Recommend(context.Background(), req); err != nil || strings.Contains(rec.Basis, "boosted trees") {
		t.Errorf("recommendation after a target run: %+v (%v), want the GP's rules", rec, err)
	}
	cfg.MaxPoints = 240
	if w, ok := NewMF("mfms", cfg).sweepPick(&req); ok {
		t.Errorf("a sweep the GP keeps whole still picked %v", w)
	}
	if w, ok := NewMF("mfbo", MFBOConfig()).sweepPick(&req); ok {
		t.Errorf("a single-scale policy picked %v", w)
	}
}

// The recommendation names a mixture nothing measured only when the model puts it a
// standard deviation below the best target run; otherwise it names that run.
func TestRecommendPrefersTheBestTargetRun(t *testing.T) {
	p := Problem{Domains: []string{"a", "b", "c"}, Lower: []float64{0, 0, 0}, Upper: []float64{1, 1, 1},
		Scales: []Scale{{Name: "S", Params: 1e6, FlopsPerStep: 1e12}, {Name: "L", Params: 1e9, FlopsPerStep: 1e15}},
		Steps:  []int64{100}, TargetScale: 1, TargetSteps: 100, BudgetLeft: 1e30}
	loss := func(w []float64, scale int) float64 {
		return 3 - float64(scale) + (w[0]-0.6)*(w[0]-0.6) + 0.5*(w[1]-0.3)*(w[1]-0.3)
	}
	m := NewMF("mfms", MFMSConfig())
	measured, named := 0, 0
	for seed := uint64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, 9))
		p.Seed = seed
		p.Scales[1].Pool = nil
		for range 12 {
			p.Scales[1].Pool = append(p.Scales[1].Pool, SampleDirichlet(rng, p.Lower, p.Upper))
		}
		var obs []Observation
		for i := range 20 {
			sc, w := 0, SampleDirichlet(rng, p.Lower, p.Upper)
			if i%7 == 0 {
				sc, w = 1, p.Scales[1].Pool[i/7]
			}
			obs = append(obs, Observation{Trial: Trial{Mixture: w, Scale: sc, Steps: 100}, Done: true,
				Curve: []CurvePoint{{Step: 100, Value: loss(w, sc) + 0.01*rng.NormFloat64()}}})
		}
		req := Request{Problem: p, Observations: obs, Decision: len(obs)}
		rec, err := m.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		c, err := m.condition(&req, false)
		if err != nil {
			t.Fatal(err)
		}
		bestRun, muRun, ok := c.bestMeasured(obs)
		if !ok {
			t.Fatal("no target run found")
		}
		if sameMixture(rec.Mixture, bestRun) {
			measured++
			continue
		}
		named++
		mu, vr, _ := c.g.predict([][]float64{c.s.targetPoint(rec.Mixture)})
		if mu[0]+math.Sqrt(vr[0]) >= muRun {
			t.Errorf("seed %d: named %v, predicted %.3f ± %.3f, not a standard deviation below the best target run's %.3f",
				seed, rec.Mixture, mu[0], math.Sqrt(vr[0]), muRun)
		}
	}
	if measured == 0 || named == 0 {
		t.Errorf("%d seeds named the best target run and %d another mixture: both rules should be seen", measured, named)
	}
	t.Logf("%d seeds named the best target run, %d another mixture", measured, named)
}

// A proxy sweep larger than the GP keeps (where sweepPick's trees take over) is bought
// after the initial design and before the model decides: every pool run SweepCost target
// runs pay for, here the whole pool. A smallest scale where such a sweep would cost more,
// or a sweep the prior runs already hold, leaves the decisions to the model.
func TestSweepFirstBuysANegligibleSweep(t *testing.T) {
	pool := make([][]float64, 80)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range pool {
		pool[i] = SampleDirichlet(rng, []float64{0, 0, 0}, []float64{1, 1, 1})
	}
	p := Problem{Domains: []string{"a", "b", "c"}, Lower: []float64{0, 0, 0}, Upper: []float64{1, 1, 1},
		Scales: []Scale{{Name: "S", Params: 1e6, FlopsPerStep: 1e11, Pool: pool}, {Name: "L", Params: 1e9, FlopsPerStep: 1e15}},
		Steps:  []int64{50, 100}, TargetScale: 1, TargetSteps: 100, Seed: 5, BudgetLeft: 1e30}
	loss := func(w []float64) float64 { return 3 + (w[0]-0.5)*(w[0]-0.5) }
	cfg := MFMSConfig()
	cfg.MaxPoints = 30
	m := NewMF("mfms", cfg)
	req := Request{Problem: p}
	for d := range pool {
		req.Decision = d
		dec, err := m.Next(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Trial.Scale != 0 || dec.Trial.Steps != 100 {
			t.Fatalf("decision %d: %+v, want a full-length run at the smallest scale", d, dec.Trial)
		}
		if d >= cfg.InitTrials {
			if _, ok := m.sweepFirst(&req, m.fidelities(&req.Problem), DecisionRand(p.Seed, req.Decision)); !ok {
				t.Fatalf("decision %d came from the model, want the sweep", d)
			}
		}
		if len(unusedPool(&req, 0)) != len(pool)-d {
			t.Fatalf("decision %d repeated a pool mixture", d)
		}
		req.Observations = append(req.Observations, Observation{Trial: dec.Trial, Done: true,
			Curve: []CurvePoint{{Step: 100, Value: loss(dec.Trial.Mixture)}}})
	}
	if tr, ok := m.sweepFirst(&req, m.fidelities(&req.Problem), DecisionRand(p.Seed, req.Decision)); ok {
		t.Errorf("with the whole pool of %d run the sweep went on: %+v", len(req.Observations), tr)
	}
	// The same runs as prior runs: nothing more to sweep.
	prior := Request{Problem: p, Prior: req.Observations, Decision: 1}
	if tr, ok := m.sweepFirst(&prior, m.fidelities(&prior.Problem), DecisionRand(p.Seed, 1)); ok {
		t.Errorf("a sweep the prior runs hold went on: %+v", tr)
	}
	// At 1/800 of a target run 5% of one buys 40 of the 80: the sweep stops there.
	p.Scales[0].FlopsPerStep = 1.25e12
	part := Request{Problem: p, Observations: req.Observations[:40], Decision: 40}
	if tr, ok := m.sweepFirst(&part, m.fidelities(&part.Problem), DecisionRand(p.Seed, 40)); ok {
		t.Errorf("with the 40 runs 5%% of a target run buys the sweep went on: %+v", tr)
	}
	part.Observations, part.Decision = req.Observations[:39], 39
	if _, ok := m.sweepFirst(&part, m.fidelities(&part.Problem), DecisionRand(p.Seed, 39)); !ok {
		t.Error("the sweep stopped at 39 of the 40 runs 5% of a target run buys")
	}
	// A smallest scale at 2% of a target run: 5% of one buys 2 runs, fewer than the GP keeps.
	p.Scales[0].FlopsPerStep = 2e13
	dear := Request{Problem: p, Observations: req.Observations[:cfg.InitTrials], Decision: cfg.InitTrials}
	if tr, ok := m.sweepFirst(&dear, m.fidelities(&dear.Problem), DecisionRand(p.Seed, 1)); ok {
		t.Errorf("a proxy scale at 2%% of a target run was swept: %+v", tr)
	}
}
