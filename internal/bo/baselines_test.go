package bo

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// Boosted trees recover a step function of one feature exactly enough and ignore a noise
// feature; a smooth function of two features is fitted well out of sample.
func TestBoostedTreesFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var x [][]float64
	var y []float64
	for range 400 {
		a, b := rng.Float64(), rng.Float64()
		x = append(x, []float64{a, b})
		v := 1.0
		if a > 0.6 {
			v = 3
		}
		y = append(y, v)
	}
	m := fitBoosted(x, y, defaultBoostOptions())
	for _, c := range []struct{ a, want float64 }{{0.2, 1}, {0.55, 1}, {0.65, 3}, {0.95, 3}} {
		if got := m.predict([]float64{c.a, 0.5}); math.Abs(got-c.want) > 0.05 {
			t.Errorf("step at a=%g: %g, want %g", c.a, got, c.want)
		}
	}
	f := func(a, b float64) float64 { return math.Sin(3*a) + (b-0.3)*(b-0.3) }
	x, y = nil, nil
	for range 600 {
		a, b := rng.Float64(), rng.Float64()
		x, y = append(x, []float64{a, b}), append(y, f(a, b))
	}
	m = fitBoosted(x, y, defaultBoostOptions())
	se, vr, mean := 0.0, 0.0, 0.0
	var test [][2]float64
	for range 200 {
		test = append(test, [2]float64{rng.Float64(), rng.Float64()})
	}
	for _, p := range test {
		mean += f(p[0], p[1]) / float64(len(test))
	}
	for _, p := range test {
		d := m.predict(p[:]) - f(p[0], p[1])
		se += d * d
		vr += (f(p[0], p[1]) - mean) * (f(p[0], p[1]) - mean)
	}
	if r2 := 1 - se/vr; r2 < 0.95 {
		t.Errorf("out-of-sample R² %.3f, want ≥ 0.95", r2)
	}
}

// poolProblem is a 3-domain, two-scale study with a pool at each scale: a known answer
// (the loss is the squared distance to best at both scales, plus a constant per scale).
func poolProblem() (Problem, [][]float64, []float64) {
	rng := rand.New(rand.NewPCG(9, 9))
	p := Problem{Domains: []string{"a", "b", "c"}, Lower: make([]float64, 3), Upper: []float64{1, 1, 1},
		Scales: []Scale{{Name: "S", Params: 1e6, FlopsPerStep: 1}, {Name: "T", Params: 1e9, FlopsPerStep: 1000}},
		Steps:  []int64{100}, TargetScale: 1, TargetSteps: 100, Seed: 5}
	for range 100 {
		p.Scales[0].Pool = append(p.Scales[0].Pool, SampleDirichlet(rng, p.Lower, p.Upper))
	}
	// Target mixtures well apart, so that the best is clear to a regression of the proxy.
	p.Scales[1].Pool = [][]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1. / 3, 1. / 3, 1. / 3}, {0.2, 0.2, 0.6},
		{0.1, 0.8, 0.1}, {0.3, 0.1, 0.6}, {0.5, 0, 0.5}, {0, 0.5, 0.5}}
	best := []float64{0.6, 0.3, 0.1}
	p.Scales[1].Pool = append(p.Scales[1].Pool, best)
	p.BudgetLeft = 6 * p.Cost(Trial{Scale: 1, Steps: 100})
	return p, p.Scales[1].Pool, best
}

func poolLoss(w []float64, scale int) float64 {
	best := []float64{0.6, 0.3, 0.1}
	d := 0.0
	for i := range w {
		d += (w[i] - best[i]) * (w[i] - best[i])
	}
	return 2 + float64(1-scale) + d
}

// runStudy plays a policy against poolLoss until it stops, and returns its trials and
// final recommendation.
func runStudy(t *testing.T, pol Policy, p Problem, prior []Observation, maxTrials int) ([]Trial, Recommendation) {
	t.Helper()
	var obs []Observation
	var trials []Trial
	var state []byte
	left := p.BudgetLeft
	for d := 0; d < maxTrials; d++ {
		req := Request{Problem: p, Observations: obs, Decision: d, State: state, Prior: prior}
		req.Problem.BudgetLeft = left
		dec, err := pol.Next(context.Background(), req)
		if errors.Is(err, ErrNoTrialFits) {
			break
		}
		if err != nil {
			t.Fatalf("%s decision %d: %v", pol.Name(), d, err)
		}
		tr := dec.Trial
		state = dec.State
		left -= p.Cost(tr)
		trials = append(trials, tr)
		obs = append(obs, Observation{Trial: tr, Done: true, Curve: []CurvePoint{{Step: tr.Steps, Value: poolLoss(tr.Mixture, tr.Scale)}}})
	}
	rec, err := pol.Recommend(context.Background(), Request{Problem: p, Observations: obs, Prior: prior, Decision: len(trials)})
	if err != nil {
		t.Fatalf("%s recommend: %v", pol.Name(), err)
	}
	return trials, rec
}

// Every policy keeps to the pool at each scale, runs no pool mixture twice at a scale,
// and recommends a target-pool mixture.
func TestPoolsHonoured(t *testing.T) {
	p, targetPool, _ := poolProblem()
	for _, name := range []string{"random", "random-mf", "uniform", "regmix", "mfms", "mfbo", "gp-ei", "mfms-ei"} {
		pol, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		limit := 40
		if name == "regmix" {
			limit = 150 // its proxy sweep is the whole small pool
		}
		trials, rec := runStudy(t, pol, p, nil, limit)
		if len(trials) == 0 {
			t.Errorf("%s: no trials", name)
		}
		seen := map[int][][]float64{}
		for _, tr := range trials {
			if !inPool(p.Scales[tr.Scale].Pool, tr.Mixture) {
				t.Errorf("%s: trial %v at %s is not in that scale's pool", name, tr.Mixture, p.Scales[tr.Scale].Name)
			}
			if inPool(seen[tr.Scale], tr.Mixture) {
				t.Errorf("%s: %v run twice at %s", name, tr.Mixture, p.Scales[tr.Scale].Name)
			}
			seen[tr.Scale] = append(seen[tr.Scale], tr.Mixture)
		}
		if !inPool(targetPool, rec.Mixture) {
			t.Errorf("%s: recommendation %v is not in the target pool", name, rec.Mixture)
		}
	}
}

// Pool mixtures off the simplex or of the wrong length are refused, naming the field.
func TestPoolRefused(t *testing.T) {
	for _, bad := range [][]float64{{0.5, 0.6, 0.1}, {0.5, 0.5}, {1.2, -0.2, 0}} {
		p, _, _ := poolProblem()
		p.Scales[0].Pool[3] = bad
		for _, name := range []string{"random-mf", "regmix", "mfms"} {
			pol, _ := New(name)
			_, err := pol.Next(context.Background(), Request{Problem: p})
			if err == nil || !strings.Contains(err.Error(), "scales[0].pool[3]") {
				t.Errorf("%s with pool mixture %v: error %v, want one naming scales[0].pool[3]", name, bad, err)
			}
		}
	}
}

// uniform runs equal weights once at the target (the nearest pool mixture when the target
// has a pool) and recommends it.
func TestUniformKnownAnswer(t *testing.T) {
	p := synthProblem()
	trials, rec := runStudyContinuous(t, Uniform{}, p, 5)
	if len(trials) != 1 || trials[0].Scale != p.TargetScale || trials[0].Steps != p.TargetSteps {
		t.Fatalf("trials %+v, want one target run", trials)
	}
	for _, w := range trials[0].Mixture {
		if math.Abs(w-0.2) > 1e-9 {
			t.Fatalf("mixture %v, want equal weights", trials[0].Mixture)
		}
	}
	if !reflect.DeepEqual(rec.Mixture, trials[0].Mixture) {
		t.Errorf("recommended %v, ran %v", rec.Mixture, trials[0].Mixture)
	}
	// Bounds that exclude equal weights: the projection into them.
	p.Lower[0] = 0.5
	trials, _ = runStudyContinuous(t, Uniform{}, p, 5)
	if w := trials[0].Mixture; math.Abs(w[0]-0.5) > 1e-9 || math.Abs(w[1]-0.125) > 1e-9 {
		t.Errorf("bounded uniform %v, want [0.5 0.125 …]", w)
	}
	pp, targetPool, _ := poolProblem()
	trials, _ = runStudy(t, Uniform{}, pp, nil, 5)
	if len(trials) != 1 || !sameMixture(trials[0].Mixture, nearestInPool(targetPool, []float64{1. / 3, 1. / 3, 1. / 3})) {
		t.Errorf("pooled uniform ran %+v", trials)
	}
}

// runStudyContinuous plays a policy against synthLoss.
func runStudyContinuous(t *testing.T, pol Policy, p Problem, maxTrials int) ([]Trial, Recommendation) {
	t.Helper()
	var obs []Observation
	var trials []Trial
	left := p.BudgetLeft
	for d := 0; d < maxTrials; d++ {
		req := Request{Problem: p, Observations: obs, Decision: d}
		req.Problem.BudgetLeft = left
		dec, err := pol.Next(context.Background(), req)
		if errors.Is(err, ErrNoTrialFits) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tr := dec.Trial
		left -= p.Cost(tr)
		trials = append(trials, tr)
		o := Observation{Trial: tr, Done: true}
		for s := int64(100); s <= tr.Steps; s += 100 {
			o.Curve = append(o.Curve, CurvePoint{Step: s, Value: synthLoss(tr.Mixture, p.Scales[tr.Scale].Params, s)})
		}
		obs = append(obs, o)
	}
	rec, err := pol.Recommend(context.Background(), Request{Problem: p, Observations: obs})
	if err != nil {
		t.Fatal(err)
	}
	return trials, rec
}

// regmix on a pool whose proxy scale ranks mixtures as the target does: it sweeps the
// proxy pool, then its first target run is the best target mixture, and it recommends it.
// With the proxy sweep given as prior runs it goes to the target at once, for free.
func TestRegMixKnownAnswer(t *testing.T) {
	p, _, best := poolProblem()
	r := NewRegMix()
	r.ProxyShare = 1 // the whole proxy pool fits in the budget share
	trials, rec := runStudy(t, r, p, nil, 200)
	proxies, firstTarget := 0, -1
	for i, tr := range trials {
		if tr.Scale == 0 {
			proxies++
		} else if firstTarget < 0 {
			firstTarget = i
		}
	}
	if proxies != len(p.Scales[0].Pool) || firstTarget != proxies {
		t.Fatalf("%d proxy runs before the first target run at %d, want the pool's %d first", proxies, firstTarget, len(p.Scales[0].Pool))
	}
	if !sameMixture(trials[firstTarget].Mixture, best) || !sameMixture(rec.Mixture, best) {
		t.Errorf("first target run %v, recommendation %v, want %v", trials[firstTarget].Mixture, rec.Mixture, best)
	}
	var prior []Observation
	for _, w := range p.Scales[0].Pool {
		prior = append(prior, Observation{Trial: Trial{Mixture: w, Scale: 0, Steps: 100}, Done: true,
			Curve: []CurvePoint{{Step: 100, Value: poolLoss(w, 0)}}})
	}
	pred, err := r.Predicted(Request{Problem: p, Prior: prior})
	if err != nil || !sameMixture(pred.Mixture, best) {
		t.Errorf("the regression's pick from the prior sweep: %v (%v), want %v", pred.Mixture, err, best)
	}
	if _, err := r.Recommend(context.Background(), Request{Problem: p, Prior: prior}); !errors.Is(err, ErrNoObservations) {
		t.Errorf("recommendation before a target run: %v, want ErrNoObservations", err)
	}
	trials, rec = runStudy(t, r, p, prior, 1)
	if len(trials) != 1 || trials[0].Scale != 1 || !sameMixture(trials[0].Mixture, best) {
		t.Errorf("with the sweep as prior: trials %+v, want one target run of %v", trials, best)
	}
	if !sameMixture(rec.Mixture, best) {
		t.Errorf("with prior: recommended %v", rec.Mixture)
	}
}

// Prior runs enter the GP from the first decision: with enough of them mfms skips its
// random initial design, and its recommendation already knows the optimum before any
// trial of its own.
func TestPriorRunsEnterTheModel(t *testing.T) {
	p := synthProblem()
	prior := synthObservations(&p, 30, 11)
	pol := NewMF("mfms", MFMSConfig())
	withP, err := pol.Next(context.Background(), Request{Problem: p, Prior: prior})
	if err != nil {
		t.Fatal(err)
	}
	without, err := pol.Next(context.Background(), Request{Problem: p})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(withP.Trial, without.Trial) {
		t.Error("the prior runs did not change the first decision")
	}
	if withP.State == nil {
		t.Error("no model state after the first decision with prior runs (still the random design?)")
	}
	rec, err := pol.Recommend(context.Background(), Request{Problem: p, Prior: prior})
	if err != nil {
		t.Fatalf("recommend from prior runs only: %v", err)
	}
	d := 0.0
	for i := range rec.Mixture {
		d += math.Abs(rec.Mixture[i] - wStar[i])
	}
	if d > 0.5 {
		t.Errorf("recommendation %v from 30 prior runs is %.2f (L1) from the optimum %v", rec.Mixture, d, wStar)
	}
}

// The baselines decide the same for the same seed and data.
func TestBaselinesDeterministic(t *testing.T) {
	p, _, _ := poolProblem()
	for _, pol := range []Policy{NewRegMix(), Uniform{}, Random{}} {
		a, ra := runStudy(t, pol, p, nil, 150)
		b, rb := runStudy(t, pol, p, nil, 150)
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ra, rb) {
			t.Errorf("%s: two runs differ", pol.Name())
		}
	}
	q := synthProblem()
	a, _ := runStudyContinuous(t, NewRegMix(), q, 200)
	b, _ := runStudyContinuous(t, NewRegMix(), q, 200)
	if !reflect.DeepEqual(a, b) {
		t.Error("regmix on a continuous problem: two runs differ")
	}
}

// Prior runs with another domain count, an unknown scale or a mixture off the simplex are
// refused, naming the field; good ones pass.
func TestValidatePrior(t *testing.T) {
	p, _, _ := poolProblem()
	good := Observation{Trial: Trial{Mixture: []float64{0.2, 0.3, 0.5}, Scale: 0, Steps: 100}, Done: true,
		Curve: []CurvePoint{{Step: 100, Value: 1}}}
	if err := ValidatePrior(&p, []Observation{good}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(o *Observation)
		want string
	}{
		{func(o *Observation) { o.Mixture = []float64{0.5, 0.5} }, "prior[1].mixture"},
		{func(o *Observation) { o.Scale = 7 }, "prior[1].scale"},
		{func(o *Observation) { o.Mixture = []float64{0.5, 0.6, 0.1} }, "prior[1].mixture"},
		{func(o *Observation) { o.Curve = nil }, "prior[1].curve"},
		{func(o *Observation) { o.Curve = []CurvePoint{{Step: 100, Value: math.NaN()}} }, "prior[1].curve[0]"},
	} {
		bad := good
		bad.Mixture = append([]float64(nil), good.Mixture...)
		c.edit(&bad)
		if err := ValidatePrior(&p, []Observation{good, bad}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %s", err, c.want)
		}
	}
	if err := ValidatePools(&p); err != nil {
		t.Errorf("a good pool refused: %v", err)
	}
}
