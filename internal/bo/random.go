package bo

import (
	"context"
	"math"
	"math/rand/v2"
)

// Random is the benchmark's random-search baseline: every trial is a full run at
// the target, its mixture drawn from softmax of logits uniform on [−3, 3] on even
// decisions and from Dirichlet(1) on odd ones, projected into the bounds. It recommends the
// best mixture observed at the target.
type Random struct{}

func (Random) Name() string { return "random" }

func (Random) Next(_ context.Context, req Request) (Decision, error) {
	p := &req.Problem
	t := Trial{Scale: p.TargetScale, Steps: p.TargetSteps}
	if err := checkProblem(p); err != nil {
		return Decision{}, err
	}
	if p.Cost(t) > p.BudgetLeft {
		return Decision{}, ErrNoTrialFits
	}
	rng := DecisionRand(p.Seed, req.Decision)
	if p.pooled(p.TargetScale) {
		w, ok := drawFromPool(&req, p.TargetScale, rng)
		if !ok {
			return Decision{}, ErrNoTrialFits
		}
		t.Mixture = w
		return Decision{Trial: t, State: req.State}, nil
	}
	if req.Decision%2 == 0 {
		t.Mixture = SampleSoftmaxLogits(rng, p.Lower, p.Upper)
	} else {
		t.Mixture = SampleDirichlet(rng, p.Lower, p.Upper)
	}
	return Decision{Trial: t, State: req.State}, nil
}

func (Random) Recommend(_ context.Context, req Request) (Recommendation, error) {
	return BestObserved(req)
}

// RandomMF draws mixtures from Dirichlet(1) within the bounds (or from the scale's pool)
// and picks a scale and step budget uniformly among those that fit the budget left
// ("random-mf"). It recommends the
// best mixture observed at the target fidelity, or else at the highest fidelity observed.
type RandomMF struct{}

func (RandomMF) Name() string { return "random-mf" }

func (RandomMF) Next(_ context.Context, req Request) (Decision, error) {
	p := &req.Problem
	if err := checkPools(p); err != nil {
		return Decision{}, err
	}
	rng := DecisionRand(p.Seed, req.Decision)
	var fits []Trial
	for s := range p.Scales {
		if p.pooled(s) && len(unusedPool(&req, s)) == 0 {
			continue
		}
		for _, steps := range p.Steps {
			t := Trial{Scale: s, Steps: steps}
			if p.Cost(t) <= p.BudgetLeft {
				fits = append(fits, t)
			}
		}
	}
	if len(fits) == 0 {
		return Decision{}, ErrNoTrialFits
	}
	t := fits[rng.IntN(len(fits))]
	if p.pooled(t.Scale) {
		t.Mixture, _ = drawFromPool(&req, t.Scale, rng)
	} else {
		t.Mixture = SampleDirichlet(rng, p.Lower, p.Upper)
	}
	return Decision{Trial: t, State: req.State}, nil
}

func (RandomMF) Recommend(_ context.Context, req Request) (Recommendation, error) {
	return BestObserved(req)
}

// DecisionRand is the random stream of one decision: a function of the study's seed and
// the decision's number only, so a replayed decision draws the same numbers.
func DecisionRand(seed uint64, decision int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(decision)*0x9E3779B97F4A7C15+1))
}

// SampleDirichlet draws a Dirichlet(1) mixture and projects it into [lower, upper].
func SampleDirichlet(rng *rand.Rand, lower, upper []float64) []float64 {
	w := make([]float64, len(lower))
	sum := 0.0
	for i := range w {
		w[i] = rng.ExpFloat64()
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return ProjectBounded(w, lower, upper)
}

// ProjectBounded returns the point of {sum w = 1, lower <= w <= upper} closest to w in
// Euclidean distance, found by bisection on the shift of a clipped projection. The bounds
// must admit a point (sum lower <= 1 <= sum upper).
func ProjectBounded(w, lower, upper []float64) []float64 {
	clip := func(tau float64) ([]float64, float64) {
		out := make([]float64, len(w))
		s := 0.0
		for i := range w {
			out[i] = math.Min(upper[i], math.Max(lower[i], w[i]-tau))
			s += out[i]
		}
		return out, s
	}
	lo, hi := -1.0, 1.0
	for range 200 {
		mid := (lo + hi) / 2
		if _, s := clip(mid); s > 1 {
			lo = mid
		} else {
			hi = mid
		}
	}
	out, _ := clip((lo + hi) / 2)
	return out
}

// BestObserved recommends the mixture with the best last value among the trials (prior
// runs included) observed at the highest fidelity reached (the target when any trial
// reached it). With a pool at the target and no target run yet, it names the target-pool
// mixture nearest to that best one.
func BestObserved(req Request) (Recommendation, error) {
	p := &req.Problem
	type cand struct {
		mix   []float64
		value float64
		rank  float64
		scale int
		steps int64
	}
	var best *cand
	for _, o := range withPrior(&req, req.Observations) {
		if len(o.Curve) == 0 || o.Scale < 0 || o.Scale >= len(p.Scales) || len(o.Mixture) != len(p.Domains) || !finite(o.Mixture) {
			continue
		}
		last := o.Curve[len(o.Curve)-1]
		if math.IsNaN(last.Value) || math.IsInf(last.Value, 0) {
			continue
		}
		// Rank fidelities: the target first, then by cost of the observed prefix.
		rank := p.Scales[o.Scale].FlopsPerStep * float64(last.Step)
		if o.Scale == p.TargetScale && last.Step >= p.TargetSteps {
			rank = math.Inf(1)
		}
		better := best == nil || rank > best.rank ||
			(rank == best.rank && ((p.Maximize && last.Value > best.value) || (!p.Maximize && last.Value < best.value)))
		if better {
			best = &cand{mix: o.Mixture, value: last.Value, rank: rank, scale: o.Scale, steps: last.Step}
		}
	}
	if best == nil {
		return Recommendation{}, ErrNoObservations
	}
	basis := "best observed at the target"
	if !math.IsInf(best.rank, 1) {
		basis = "best observed at the highest fidelity so far"
		if p.pooled(p.TargetScale) {
			best.mix = nearestInPool(p.Scales[p.TargetScale].Pool, best.mix)
			basis += ", nearest target-pool mixture"
		}
	}
	return Recommendation{
		Mixture: append([]float64(nil), best.mix...),
		Value:   best.value, Lower: best.value, Upper: best.value,
		Basis: basis, Observed: true, ObservedScale: best.scale, ObservedSteps: best.steps,
	}, nil
}

func finite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// nearestInPool is the pool mixture nearest to w in L1 distance (the first of equals).
func nearestInPool(pool [][]float64, w []float64) []float64 {
	best, bestD := pool[0], math.Inf(1)
	for _, m := range pool {
		d := 0.0
		for i := range m {
			d += math.Abs(m[i] - w[i])
		}
		if d < bestD {
			best, bestD = m, d
		}
	}
	return best
}
