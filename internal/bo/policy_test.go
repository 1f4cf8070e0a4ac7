package bo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// synthProblem is a 5-domain study with a scaling-law-like synthetic loss whose best
// mixture at the target is wStar.
func synthProblem() Problem {
	p := Problem{
		Domains: []string{"a", "b", "c", "d", "e"},
		Lower:   make([]float64, 5), Upper: []float64{1, 1, 1, 1, 1},
		Scales: []Scale{
			{Name: "20M", Params: 20e6, FlopsPerStep: 1e14},
			{Name: "150M", Params: 150e6, FlopsPerStep: 6e14},
			{Name: "1B", Params: 1e9, FlopsPerStep: 8e15},
		},
		TargetScale: 2, TargetSteps: 2000, Seed: 42,
	}
	for s := int64(100); s <= 2000; s += 100 {
		p.Steps = append(p.Steps, s)
	}
	p.BudgetLeft = 20 * p.Cost(Trial{Scale: 2, Steps: 2000})
	return p
}

var wStar = []float64{0.1, 0.5, 0.2, 0.1, 0.1}

func synthLoss(w []float64, params float64, step int64) float64 {
	d := 0.0
	for i := range w {
		d += (w[i] - wStar[i]) * (w[i] - wStar[i]) * float64(i+1)
	}
	return 0.8 + 2*math.Pow(params/1e7, -0.3) + 3*math.Pow(float64(step)/100, -0.5) + 0.3*d
}

// synthObservations runs n random trials of the synthetic problem.
func synthObservations(p *Problem, n int, seed uint64) []Observation {
	rng := rand.New(rand.NewPCG(seed, 99))
	var obs []Observation
	for i := 0; i < n; i++ {
		t := Trial{Mixture: SampleDirichlet(rng, p.Lower, p.Upper), Scale: rng.IntN(len(p.Scales)), Steps: p.Steps[rng.IntN(len(p.Steps))]}
		o := Observation{Trial: t, Done: true}
		for s := int64(100); s <= t.Steps; s += 100 {
			o.Curve = append(o.Curve, CurvePoint{Step: s, Value: synthLoss(t.Mixture, p.Scales[t.Scale].Params, s)})
		}
		obs = append(obs, o)
	}
	return obs
}

func gpPolicies() []Policy {
	return []Policy{NewMF("mfms", MFMSConfig()), NewMF("mfbo", MFBOConfig()), NewMF("gp-ei", GPEIConfig()), NewMF("mfms-ei", MFMSEIConfig())}
}

func TestRegistry(t *testing.T) {
	for _, n := range []string{"random", "random-mf", "mfms", "mfbo", "gp-ei", "mfms-ei"} {
		p, err := New(n)
		if err != nil || p.Name() != n {
			t.Errorf("New(%q) = %v, %v", n, p, err)
		}
	}
	if _, err := New("nope"); !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("unknown policy: %v", err)
	}
	if _, err := New("nope+median"); !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("unknown policy with +median: %v", err)
	}
	p, err := New("mfms+median")
	if err != nil || p.Name() != "mfms+median" {
		t.Fatalf(`New("mfms+median") = %v, %v`, p, err)
	}
	if _, ok := p.(EarlyStopper); !ok {
		t.Error(`"mfms+median" does not stop trials early`)
	}
	if plain, _ := New("mfms"); plain != nil {
		if _, ok := plain.(EarlyStopper); ok {
			t.Error(`"mfms" stops trials early without +median`)
		}
	}
}

// A decision is a pure function of the request.
func TestDeterministic(t *testing.T) {
	p := synthProblem()
	obs := synthObservations(&p, 30, 1)
	// Make sure some target-scale data exist for the single-scale policies.
	obs = append(obs, synthObservations(&Problem{Lower: p.Lower, Upper: p.Upper, Scales: p.Scales[2:], Steps: p.Steps[len(p.Steps)-1:]}, 6, 2)...)
	for i := range obs[30:] {
		obs[30+i].Scale = 2
	}
	for _, pol := range gpPolicies() {
		req := Request{Problem: p, Observations: obs, Decision: 36}
		d1, err := pol.Next(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", pol.Name(), err)
		}
		d2, err := pol.Next(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		// FitTime is a measurement, not part of the decision.
		if !reflect.DeepEqual(d1.Trial, d2.Trial) || !reflect.DeepEqual(d1.State, d2.State) {
			t.Errorf("%s: two decisions on one request differ: %+v vs %+v", pol.Name(), d1.Trial, d2.Trial)
		}
		if d1.FitTime <= 0 {
			t.Errorf("%s: a decision without saved state fitted, but reports fit time %v", pol.Name(), d1.FitTime)
		}
		checkMixture(t, d1.Trial.Mixture, p.Lower, p.Upper)
		if p.Cost(d1.Trial) > p.BudgetLeft {
			t.Errorf("%s: trial over budget", pol.Name())
		}
		// With the state it returned, the next decision reuses it and stays deterministic.
		req.State = d1.State
		r1, err := pol.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := pol.Recommend(context.Background(), req)
		if !reflect.DeepEqual(r1, r2) {
			t.Errorf("%s: recommendations differ", pol.Name())
		}
		if !(r1.Lower <= r1.Value && r1.Value <= r1.Upper) || math.IsNaN(r1.Value) {
			t.Errorf("%s: recommendation %+v has a bad interval", pol.Name(), r1)
		}
		checkMixture(t, r1.Mixture, p.Lower, p.Upper)
	}
}

// The recommendation finds the synthetic optimum from cheap data, and its interval
// covers the true value.
func TestRecommendationNearOptimum(t *testing.T) {
	p := synthProblem()
	obs := synthObservations(&p, 60, 3)
	r, err := NewMF("mfms", MFMSConfig()).Recommend(context.Background(), Request{Problem: p, Observations: obs, Decision: 60})
	if err != nil {
		t.Fatal(err)
	}
	truth := synthLoss(r.Mixture, 1e9, 2000)
	best := synthLoss(wStar, 1e9, 2000)
	if truth-best > 0.01 {
		t.Errorf("recommended %v with loss %g, optimum %g", r.Mixture, truth, best)
	}
	if truth < r.Lower-1e-3 || truth > r.Upper+1e-3 {
		t.Errorf("true value %g outside the 90%% interval [%g, %g]", truth, r.Lower, r.Upper)
	}
}

// A running trial changes the next decision (parallel workers do not get the same trial).
func TestPendingChangesDecision(t *testing.T) {
	p := synthProblem()
	obs := synthObservations(&p, 25, 4)
	for _, pol := range []Policy{NewMF("mfms", MFMSConfig()), NewMF("mfms-ei", MFMSEIConfig())} {
		req := Request{Problem: p, Observations: obs, Decision: 25}
		d1, err := pol.Next(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		req.Pending = []Trial{d1.Trial}
		req.State = d1.State
		d2, err := pol.Next(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(d1.Trial, d2.Trial) {
			t.Errorf("%s: the pending trial %+v was chosen again", pol.Name(), d1.Trial)
		}
	}
}

func TestNoTrialFits(t *testing.T) {
	p := synthProblem()
	p.BudgetLeft = p.Cost(Trial{Scale: 0, Steps: 100}) / 2
	for _, pol := range append(gpPolicies(), Random{}, RandomMF{}) {
		if _, err := pol.Next(context.Background(), Request{Problem: p}); !errors.Is(err, ErrNoTrialFits) {
			t.Errorf("%s: got %v, want ErrNoTrialFits", pol.Name(), err)
		}
	}
	// Only cheap trials fit: the multi-scale policy still decides, within the budget.
	p.BudgetLeft = p.Cost(Trial{Scale: 1, Steps: 2000})
	obs := synthObservations(&p, 10, 5)
	d, err := NewMF("mfms", MFMSConfig()).Next(context.Background(), Request{Problem: p, Observations: obs, Decision: 10})
	if err != nil || p.Cost(d.Trial) > p.BudgetLeft {
		t.Errorf("cheap decision: %+v, %v", d.Trial, err)
	}
}

// Degenerate data: a sensible decision or a clear error, never a panic or a NaN.
func TestDegenerateData(t *testing.T) {
	p := synthProblem()
	one := synthObservations(&p, 1, 6)
	flat := synthObservations(&p, 12, 7)
	for i := range flat {
		for j := range flat[i].Curve {
			flat[i].Curve[j].Value = 1.5
		}
	}
	bad := synthObservations(&p, 12, 8)
	bad[0].Curve[0].Value = math.NaN()
	bad[1].Curve[len(bad[1].Curve)-1].Value = math.Inf(1)
	bad[2].Curve = nil
	bad[3].Mixture = []float64{math.NaN(), 0, 0, 0, 1}
	bad[4].Scale = 17
	dup := synthObservations(&p, 3, 9)
	for range 10 {
		dup = append(dup, dup[0])
	}
	neg := synthObservations(&p, 12, 10)
	for i := range neg {
		for j := range neg[i].Curve {
			neg[i].Curve[j].Value -= 3 // not positive: no log transform
		}
	}
	cases := map[string][]Observation{"none": nil, "one": one, "flat": flat, "bad": bad, "duplicates": dup, "negative": neg}
	for name, obs := range cases {
		for _, pol := range append(gpPolicies(), Random{}) {
			req := Request{Problem: p, Observations: obs, Decision: len(obs)}
			d, err := pol.Next(context.Background(), req)
			if err != nil {
				t.Errorf("%s/%s: next: %v", name, pol.Name(), err)
				continue
			}
			checkMixture(t, d.Trial.Mixture, p.Lower, p.Upper)
			req.State = d.State
			r, err := pol.Recommend(context.Background(), req)
			if err != nil {
				if !errors.Is(err, ErrNoObservations) {
					t.Errorf("%s/%s: recommend: %v", name, pol.Name(), err)
				}
				continue
			}
			if math.IsNaN(r.Value) || math.IsNaN(r.Lower) || math.IsNaN(r.Upper) || len(r.Mixture) != 5 {
				t.Errorf("%s/%s: recommendation %+v", name, pol.Name(), r)
			}
		}
	}
	// A malformed problem is an error, not a panic.
	q := synthProblem()
	q.Lower = q.Lower[:2]
	if _, err := NewMF("mfms", MFMSConfig()).Next(context.Background(), Request{Problem: q}); err == nil {
		t.Error("malformed bounds accepted")
	}
}

func benchRequest(n int) Request {
	p := synthProblem()
	p.Steps = nil
	for s := int64(100); s <= 2000; s += 100 {
		p.Steps = append(p.Steps, s)
	}
	return Request{Problem: p, Observations: synthObservations(&p, n, uint64(n)), Decision: n}
}

// BenchmarkFit is a full hyperparameter fit (restarts, no warm start).
func BenchmarkFit(b *testing.B) {
	for _, n := range []int{100, 300, 1000} {
		b.Run(fmt.Sprintf("trials=%d", n), func(b *testing.B) {
			req := benchRequest(n)
			pol := NewMF("mfms", MFMSConfig())
			for b.Loop() {
				if _, err := pol.condition(&req, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecision is one decision of mfms with a warm state: the steady state of a study.
// Every sixth decision of a growing study is a warm refit; BenchmarkDecisionRefit times those.
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{100, 300, 1000} {
		b.Run(fmt.Sprintf("trials=%d", n), func(b *testing.B) {
			req := benchRequest(n)
			pol := NewMF("mfms", MFMSConfig())
			d, err := pol.Next(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			req.State = d.State
			for b.Loop() {
				if _, err := pol.Next(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionRefit is a decision that refits from a warm start (the scheduled refit).
func BenchmarkDecisionRefit(b *testing.B) {
	for _, n := range []int{100, 300, 1000} {
		b.Run(fmt.Sprintf("trials=%d", n), func(b *testing.B) {
			req := benchRequest(n)
			pol := NewMF("mfms", MFMSConfig())
			d, err := pol.Next(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			st := decodeState(d.State)
			st.FitTrials = n / 2 // due for a refit
			req.State = st.encode()
			for b.Loop() {
				if _, err := pol.Next(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// After CheapStreak cheap trials in a row the next trial costs at least CheapCost; before
// that every fidelity stays allowed.
func TestLimitCheap(t *testing.T) {
	p := synthProblem()
	cfg := MFMSConfig()
	cfg.CheapStreak, cfg.CheapCost = 3, 0.05
	m := NewMF("mfms", cfg)
	fids := m.fidelities(&p)
	cheap := Trial{Mixture: wStar, Scale: 0, Steps: 2000} // 1/80 of a target run
	big := Trial{Mixture: wStar, Scale: 2, Steps: 2000}
	req := Request{Problem: p}
	for _, o := range []Trial{big, cheap, cheap} {
		req.Observations = append(req.Observations, Observation{Trial: o, Done: true})
	}
	if got := m.limitCheap(&req, fids); len(got) != len(fids) {
		t.Fatalf("two cheap trials in a row: %d of %d fidelities kept", len(got), len(fids))
	}
	// A running cheap trial listed among the observations too counts once.
	running := Trial{Mixture: []float64{0.2, 0.2, 0.2, 0.2, 0.2}, Scale: 0, Steps: 1000}
	req.Observations = append(req.Observations, Observation{Trial: running})
	req.Pending = []Trial{running}
	if got := m.limitCheap(&req, fids); len(got) == len(fids) {
		t.Fatalf("three cheap trials in a row (one running): %d of %d fidelities kept", len(got), len(fids))
	}
	req.Observations = req.Observations[:len(req.Observations)-1]
	req.Observations[0].Done = false // an early-stopped big trial still breaks the streak
	req.Pending = []Trial{cheap, running}
	req.Observations = append(req.Observations, Observation{Trial: running})
	got := m.limitCheap(&req, fids)
	if len(got) == 0 || len(got) == len(fids) {
		t.Fatalf("three cheap trials in a row: %d of %d fidelities kept", len(got), len(fids))
	}
	for _, f := range got {
		if f.cost < cfg.CheapCost {
			t.Errorf("fidelity %+v kept after the streak", f)
		}
	}
	// Where only the target is dear (every smaller scale is cheap), the streak forces
	// nothing: the rule would send every fourth trial to the target.
	req.Problem.Scales[1].FlopsPerStep = req.Problem.Scales[0].FlopsPerStep
	fids = m.fidelities(&req.Problem)
	if got := m.limitCheap(&req, fids); len(got) != len(fids) {
		t.Errorf("only the target dear: %d of %d fidelities kept", len(got), len(fids))
	}
}

// The trust region admits any mixture at a fidelity cheaper than TrustCost and, at dearer
// ones, only mixtures within TrustRadius of a centre.
func TestTrustRegion(t *testing.T) {
	p := synthProblem()
	cfg := MFMSConfig()
	cfg.TrustRadius, cfg.TrustCost = 0.1, 0.5
	m := NewMF("mfms", cfg)
	req := Request{Problem: p, Observations: synthObservations(&p, 20, 3)}
	c, err := m.condition(&req, true)
	if err != nil {
		t.Fatal(err)
	}
	best := []float64{0.2, 0.2, 0.2, 0.2, 0.2}
	ok := m.trustRegion(c, req.Observations, best)
	target := fidelity{scale: p.TargetScale, steps: p.TargetSteps, cost: 1}
	cheap := fidelity{scale: 0, steps: p.TargetSteps, cost: 0.0125}
	near := []float64{0.25, 0.15, 0.2, 0.2, 0.2} // 0.07 from best
	far := []float64{0.9, 0.025, 0.025, 0.025, 0.025}
	for _, ctr := range c.centres(req.Observations, cfg.Pool.centres) {
		if withinAny(far, [][]float64{ctr}, 0.1) {
			t.Fatalf("test mixture %v is near centre %v", far, ctr)
		}
		if !ok(ctr, target) {
			t.Errorf("centre %v refused at the target", ctr)
		}
	}
	if !ok(near, target) || !ok(best, target) {
		t.Error("mixture within the radius of best refused at the target")
	}
	if ok(far, target) {
		t.Error("far mixture allowed at the target")
	}
	if !ok(far, cheap) {
		t.Error("far mixture refused at a cheap fidelity")
	}
	// The rule is off without a radius.
	cfg.TrustRadius = 0
	if !NewMF("mfms", cfg).trustRegion(c, req.Observations, best)(far, target) {
		t.Error("far mixture refused with the trust region off")
	}
}

// With RunningAsPending the GP's data leave out running trials' partial curves (they are
// pending), keep trials that ended early, and fall back to the partial curves while
// nothing has finished.
func TestRunningAsPending(t *testing.T) {
	p := synthProblem()
	cfg := MFMSConfig()
	cfg.RunningAsPending = true
	m := NewMF("mfms", cfg)
	obs := synthObservations(&p, 12, 5)
	running := obs[10]
	running.Curve, running.Done = running.Curve[:1], false
	stopped := obs[11]
	stopped.Done = false // ended early: not pending
	obs[10], obs[11] = running, stopped
	req := Request{Problem: p, Observations: obs, Pending: []Trial{running.Trial}}
	c, err := m.condition(&req, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.ts.trials != 11 {
		t.Errorf("GP data hold %d trials, want the 11 not running", c.ts.trials)
	}
	cfg.RunningAsPending = false
	all, err := NewMF("mfms", cfg).condition(&req, true)
	if err != nil {
		t.Fatal(err)
	}
	if all.ts.trials != 12 {
		t.Errorf("without the option: %d trials, want 12", all.ts.trials)
	}
	only := Request{Problem: p, Observations: []Observation{running}, Pending: []Trial{running.Trial}}
	c, err = m.condition(&only, true)
	if err != nil || c.ts.trials != 1 {
		t.Fatalf("only a running trial: err %v", err)
	}
}

// With lastOnlyFrom at the target's steps a full-length curve gives the GP its last point
// only, a shorter one its log-spaced points, and the cap on points counts them so.
func TestFullRunLastOnly(t *testing.T) {
	p := synthProblem()
	s, err := newSpace(&p)
	if err != nil {
		t.Fatal(err)
	}
	curve := func(w []float64, steps int64) Observation {
		o := Observation{Trial: Trial{Mixture: w, Scale: 0, Steps: steps}, Done: true}
		for st := int64(100); st <= steps; st += 100 {
			o.Curve = append(o.Curve, CurvePoint{Step: st, Value: synthLoss(w, p.Scales[0].Params, st)})
		}
		return o
	}
	obs := []Observation{curve(wStar, p.TargetSteps), curve([]float64{0.2, 0.2, 0.2, 0.2, 0.2}, 1000)}
	ts, err := buildTraining(&p, s, obs, dataOptions{pointsPerTrial: 3, lastOnlyFrom: p.TargetSteps})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts.x) != 4 {
		t.Fatalf("%d points, want 1 (the full run's last) + 3 (the short curve)", len(ts.x))
	}
	if ts.x[0][s.k+1] != s.stepU(p.TargetSteps) {
		t.Errorf("the full run's point is at step u=%g, want its last step", ts.x[0][s.k+1])
	}
	ts, err = buildTraining(&p, s, obs, dataOptions{pointsPerTrial: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts.x) != 6 {
		t.Fatalf("without the option: %d points, want 6", len(ts.x))
	}
	// A cap of 3 points leaves room for the full run's one and two of the short curve's.
	ts, err = buildTraining(&p, s, obs, dataOptions{pointsPerTrial: 3, maxPoints: 3, lastOnlyFrom: p.TargetSteps})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts.x) != 3 {
		t.Fatalf("capped at 3: %d points", len(ts.x))
	}
}

// problem17 is a 17-domain study (RegMix's Pile domains) at three scales, with a synthetic
// loss whose best mixture puts most weight on one domain.
func problem17() (Problem, func(w []float64, params float64) float64) {
	k := 17
	p := Problem{Lower: make([]float64, k), Upper: make([]float64, k),
		Scales: []Scale{{Name: "1M", Params: 1e6, FlopsPerStep: 6e12}, {Name: "60M", Params: 6e7, FlopsPerStep: 3.6e14},
			{Name: "1B", Params: 1e9, FlopsPerStep: 6e15}},
		Steps: []int64{1000}, TargetScale: 2, TargetSteps: 1000, Seed: 17}
	best := make([]float64, k)
	for i := range best {
		p.Domains = append(p.Domains, fmt.Sprintf("d%d", i))
		p.Upper[i] = 1
		best[i] = 0.2 / float64(k-1)
	}
	best[11] = 0.8
	loss := func(w []float64, params float64) float64 {
		d := 0.0
		for i := range w {
			d += (w[i] - best[i]) * (w[i] - best[i]) * float64(1+i%3)
		}
		return 2 + 3*math.Pow(params/1e6, -0.2) + d
	}
	p.BudgetLeft = 1e6 * p.Cost(Trial{Scale: 2, Steps: 1000})
	return p, loss
}

// BenchmarkDecisionP99 plays 40 decisions of an mfms study of 17 domains from its 300th
// trial on (the refit schedule included, warm-started from a fit at 260 trials, as in a
// study) and reports the decisions' p50 and p99 times in ms: the decision-time target is
// p99 < 1 s at 300 trials. At 300 trials a study refits about once in 60 decisions, more
// than 1 in 100, so its p99 is a refit's time: the 40 decisions hold one refit (at 312
// trials), and their p99 (the slowest of 40) is it. "pools" gives every scale a candidate
// pool of RegMix's sizes (768 mixtures at 1M, 256 at 60M, 64 at 1B), whose unused members
// are scored at every decision.
func BenchmarkDecisionP99(b *testing.B) {
	for _, pools := range []bool{false, true} {
		name := "free"
		if pools {
			name = "pools"
		}
		b.Run(name, func(b *testing.B) { benchDecisions(b, pools) })
	}
}

func benchDecisions(b *testing.B, pools bool) {
	p, loss := problem17()
	rng := rand.New(rand.NewPCG(7, 7))
	if pools {
		for i, n := range []int{768, 256, 64} {
			for j := 0; j < n; j++ {
				p.Scales[i].Pool = append(p.Scales[i].Pool, SampleDirichlet(rng, p.Lower, p.Upper))
			}
		}
	}
	used := make([]int, len(p.Scales))
	var obs []Observation
	for i := 0; i < 300; i++ {
		sc := []int{0, 0, 0, 1, 2}[i%5]
		w := SampleDirichlet(rng, p.Lower, p.Upper)
		if pools {
			w = p.Scales[sc].Pool[used[sc]]
			used[sc]++
		}
		obs = append(obs, Observation{Trial: Trial{Mixture: w, Scale: sc, Steps: 1000}, Done: true,
			Curve: []CurvePoint{{Step: 1000, Value: loss(w, p.Scales[sc].Params)}}})
	}
	pol := NewMF("mfms", MFMSConfig())
	// A study at 300 trials has a fit from its earlier decisions: start from one.
	warm, err := pol.Next(context.Background(), Request{Problem: p, Observations: obs[:260], Decision: 260})
	if err != nil {
		b.Fatal(err)
	}
	var times []float64
	refits := 0
	for b.Loop() {
		o := append([]Observation(nil), obs...)
		state := warm.State
		for d := 0; d < 40; d++ {
			t0 := time.Now()
			dec, err := pol.Next(context.Background(), Request{Problem: p, Observations: o, Decision: len(o), State: state})
			if err != nil {
				b.Fatal(err)
			}
			times = append(times, float64(time.Since(t0).Microseconds())/1000)
			if decodeState(dec.State).FitTrials != decodeState(state).FitTrials {
				refits++
			}
			state = dec.State
			t := dec.Trial
			o = append(o, Observation{Trial: t, Done: true, Curve: []CurvePoint{{Step: 1000, Value: loss(t.Mixture, p.Scales[t.Scale].Params)}}})
		}
	}
	sort.Float64s(times)
	b.ReportMetric(times[len(times)/2], "p50-ms")
	b.ReportMetric(times[min(len(times)-1, int(math.Ceil(0.99*float64(len(times))))-1)], "p99-ms")
	b.ReportMetric(float64(refits)/float64(b.N), "refits/40")
}

// Scales enter the GP by their log FLOPs per step over the study's range, not by their
// nominal parameter counts: the data model's 700M and 1B, 1.4× apart by name and 3.4× by
// FLOPs, are far apart, and scales with the same tokens per step keep their params' places.
func TestScalesPlacedByCompute(t *testing.T) {
	p := synthProblem()
	p.Scales = []Scale{{Name: "20M", Params: 20e6, FlopsPerStep: 1.07e14}, {Name: "700M", Params: 700e6, FlopsPerStep: 2.46e15},
		{Name: "1B", Params: 1e9, FlopsPerStep: 8.26e15}}
	s, err := newSpace(&p)
	if err != nil {
		t.Fatal(err)
	}
	want := math.Log(2.46e15/1.07e14) / math.Log(8.26e15/1.07e14)
	if s.scaleU[0] != 0 || s.scaleU[2] != 1 || math.Abs(s.scaleU[1]-want) > 1e-12 {
		t.Errorf("scale places %v, want [0 %.4f 1]", s.scaleU, want)
	}
	if s.targetUS != s.scaleU[p.TargetScale] {
		t.Errorf("target at %g, its scale at %g", s.targetUS, s.scaleU[p.TargetScale])
	}
	// Same tokens per step: FLOPs are proportional to parameters, so the places are the params'.
	for i := range p.Scales {
		p.Scales[i].FlopsPerStep = 6 * p.Scales[i].Params * (1 << 20)
	}
	if s, err = newSpace(&p); err != nil {
		t.Fatal(err)
	}
	byParams := math.Log(700e6/20e6) / math.Log(1e9/20e6)
	if math.Abs(s.scaleU[1]-byParams) > 1e-9 {
		t.Errorf("with equal tokens per step 700M sits at %g, want %g", s.scaleU[1], byParams)
	}
}
