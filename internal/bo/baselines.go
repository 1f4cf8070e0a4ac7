package bo

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Uniform is the zero-search reference: one target run of equal weights (projected into
// the bounds; with a target pool, the pool mixture nearest to them), recommended once it
// has run.
type Uniform struct{}

func (Uniform) Name() string { return "uniform" }

// uniformMixture is equal weights within the bounds, or the nearest target-pool mixture.
func uniformMixture(p *Problem) []float64 {
	k := len(p.Domains)
	w := make([]float64, k)
	for i := range w {
		w[i] = 1 / float64(k)
	}
	w = ProjectBounded(w, p.Lower, p.Upper)
	if p.pooled(p.TargetScale) {
		w = append([]float64(nil), nearestInPool(p.Scales[p.TargetScale].Pool, w)...)
	}
	return w
}

func (Uniform) Next(_ context.Context, req Request) (Decision, error) {
	p := &req.Problem
	if err := checkProblem(p); err != nil {
		return Decision{}, err
	}
	t := Trial{Scale: p.TargetScale, Steps: p.TargetSteps}
	if len(req.Observations) > 0 || len(req.Pending) > 0 || p.Cost(t) > p.BudgetLeft {
		return Decision{}, ErrNoTrialFits // its one run is made
	}
	t.Mixture = uniformMixture(p)
	return Decision{Trial: t, State: req.State}, nil
}

func (Uniform) Recommend(_ context.Context, req Request) (Recommendation, error) {
	return BestObserved(req)
}

// checkProblem is the validation the model-free policies need.
func checkProblem(p *Problem) error {
	if p.TargetScale < 0 || p.TargetScale >= len(p.Scales) || len(p.Domains) == 0 ||
		len(p.Lower) != len(p.Domains) || len(p.Upper) != len(p.Domains) {
		return fmt.Errorf("problem: target scale %d of %d, %d domains with %d/%d bounds",
			p.TargetScale, len(p.Scales), len(p.Domains), len(p.Lower), len(p.Upper))
	}
	return checkPools(p)
}

// RegMix is RegMix's recipe (arXiv 2407.01492): many full-length runs at the smallest
// scale, mixtures drawn around the token distribution, a boosted-tree regression fitted on
// their results, then target runs of the regression's best predictions in turn. It
// recommends the best target run.
type RegMix struct {
	// MaxProxyRuns and ProxyShare bound the proxy sweep: at most this many runs and this
	// share of the study's budget (prior runs at the smallest scale count towards both).
	MaxProxyRuns int
	ProxyShare   float64
	// Candidates is how many mixtures the regression ranks when the target has no pool.
	Candidates int
	Boost      boostOptions
}

// NewRegMix returns the baseline as measured in docs/benchmark-results.md.
func NewRegMix() RegMix {
	return RegMix{MaxProxyRuns: 512, ProxyShare: 0.1, Candidates: 4096, Boost: defaultBoostOptions()}
}

func (RegMix) Name() string { return "regmix" }

// smallestScale is the scale with the fewest parameters (the first of equals).
func smallestScale(p *Problem) int {
	s := 0
	for i, sc := range p.Scales {
		if sc.Params < p.Scales[s].Params {
			s = i
		}
	}
	return s
}

// proxyMixture draws around the token distribution: Dirichlet with α = c·K·share, c
// log-uniform on [0.1, 5] so that some draws are sparse and some near the centre (RegMix
// varies the concentration the same way).
func proxyMixture(rng *rand.Rand, p *Problem) []float64 {
	k := len(p.Domains)
	share := p.TokenShare
	if len(share) != k {
		share = nil
	}
	c := math.Exp(math.Log(0.1) + rng.Float64()*math.Log(50))
	w := make([]float64, k)
	sum := 0.0
	for i := range w {
		a := c
		if share != nil {
			a = c * float64(k) * math.Max(share[i], 1e-6)
		}
		w[i] = gammaDraw(rng, a)
		sum += w[i]
	}
	if !(sum > 0) {
		w[rng.IntN(k)], sum = 1, 1
	}
	for i := range w {
		w[i] /= sum
	}
	return ProjectBounded(w, p.Lower, p.Upper)
}

// proxyData are the finished full-length runs at scale (prior runs first): mixtures and
// last values, "smaller is better".
func proxyData(req *Request, scale int) (x [][]float64, y []float64) {
	p := &req.Problem
	for _, o := range withPrior(req, finishedObservations(req)) {
		if o.Scale != scale || len(o.Curve) == 0 || len(o.Mixture) != len(p.Domains) {
			continue
		}
		last := o.Curve[len(o.Curve)-1]
		if last.Step < p.TargetSteps || !finite([]float64{last.Value}) {
			continue
		}
		v := last.Value
		if p.Maximize {
			v = -v
		}
		x, y = append(x, o.Mixture), append(y, v)
	}
	return x, y
}

// minProxyFit is the fewest proxy runs the regression is fitted on.
const minProxyFit = 8

func (r RegMix) Next(_ context.Context, req Request) (Decision, error) {
	p := &req.Problem
	if err := checkProblem(p); err != nil {
		return Decision{}, err
	}
	small := smallestScale(p)
	proxy := Trial{Scale: small, Steps: p.TargetSteps}
	target := Trial{Scale: p.TargetScale, Steps: p.TargetSteps}
	rng := DecisionRand(p.Seed, req.Decision)
	// The study's total budget: what is left plus what its own trials committed.
	total := p.BudgetLeft
	proxies := 0
	for _, o := range finishedObservations(&req) {
		total += p.Cost(o.Trial)
		if o.Scale == small {
			proxies++
		}
	}
	for _, t := range req.Pending {
		total += p.Cost(t)
		if t.Scale == small {
			proxies++
		}
	}
	for _, o := range req.Prior {
		if o.Scale == small {
			proxies++
		}
	}
	quota := min(r.MaxProxyRuns, int(r.ProxyShare*total/p.Cost(proxy)))
	if p.pooled(small) {
		quota = min(quota, len(p.Scales[small].Pool))
	}
	x, y := proxyData(&req, small)
	wantProxy := small != p.TargetScale && (proxies < quota || len(x) < minProxyFit)
	if wantProxy && p.Cost(proxy) <= p.BudgetLeft {
		if p.pooled(small) {
			if w, ok := drawFromPool(&req, small, rng); ok {
				proxy.Mixture = w
				return Decision{Trial: proxy, State: req.State}, nil
			}
		} else {
			proxy.Mixture = proxyMixture(rng, p)
			return Decision{Trial: proxy, State: req.State}, nil
		}
	}
	if p.Cost(target) > p.BudgetLeft {
		return Decision{}, ErrNoTrialFits
	}
	ranked, _ := r.rank(&req, x, y)
	for _, w := range ranked {
		if !r.ranAtTarget(&req, w) {
			target.Mixture = append([]float64(nil), w...)
			return Decision{Trial: target, State: req.State}, nil
		}
	}
	if p.pooled(p.TargetScale) {
		// Too few proxy runs to rank by (the target is the smallest scale, or the proxy
		// pool is spent): try the target pool's mixtures at random.
		if w, ok := drawFromPool(&req, p.TargetScale, rng); ok && len(ranked) == 0 {
			target.Mixture = w
			return Decision{Trial: target, State: req.State}, nil
		}
		return Decision{}, ErrNoTrialFits // every target-pool mixture has run
	}
	target.Mixture = proxyMixture(rng, p)
	return Decision{Trial: target, State: req.State}, nil
}

// ranAtTarget says whether w has run (or runs) at the target already.
func (RegMix) ranAtTarget(req *Request, w []float64) bool {
	p := &req.Problem
	for _, o := range withPrior(req, req.Observations) {
		if o.Scale == p.TargetScale && sameMixture(o.Mixture, w) {
			return true
		}
	}
	for _, t := range req.Pending {
		if t.Scale == p.TargetScale && sameMixture(t.Mixture, w) {
			return true
		}
	}
	return false
}

// rank orders the recommendable mixtures (the target pool, or fixed draws around the token
// distribution plus the proxy mixtures) by the regression's prediction, best first, with
// the best prediction in the objective's units. It returns nil when there are too few
// proxy runs to fit. x and y are the proxy runs (proxyData).
func (r RegMix) rank(req *Request, x [][]float64, y []float64) (ranked [][]float64, predictedBest float64) {
	p := &req.Problem
	if len(x) < minProxyFit {
		return nil, 0
	}
	model := fitBoosted(x, y, r.Boost)
	var cands [][]float64
	if p.pooled(p.TargetScale) {
		cands = p.Scales[p.TargetScale].Pool
	} else {
		// The same draws at every decision, so the ranking moves only with the data.
		rng := DecisionRand(p.Seed^0x4E6, 0)
		for range r.Candidates {
			cands = append(cands, proxyMixture(rng, p))
		}
		cands = append(cands, x...)
	}
	pred := make([]float64, len(cands))
	idx := make([]int, len(cands))
	for i, w := range cands {
		pred[i], idx[i] = model.predict(w), i
	}
	sort.SliceStable(idx, func(a, b int) bool { return pred[idx[a]] < pred[idx[b]] })
	out := make([][]float64, len(idx))
	for i, j := range idx {
		out[i] = cands[j]
	}
	best := pred[idx[0]]
	if p.Maximize {
		best = -best
	}
	return out, best
}

// Recommend names the best target run: RegMix's output is the target model trained on
// the regression's pick, so before its first target run it has nothing to recommend.
func (r RegMix) Recommend(_ context.Context, req Request) (Recommendation, error) {
	p := &req.Problem
	if err := checkProblem(p); err != nil {
		return Recommendation{}, err
	}
	for _, o := range withPrior(&req, req.Observations) {
		if o.Scale == p.TargetScale && len(o.Curve) > 0 {
			return BestObserved(req)
		}
	}
	return Recommendation{}, ErrNoObservations
}

// Predicted is the regression's best mixture before any target run (what RegMix would
// train next), or ErrNoObservations with too few proxy runs.
func (r RegMix) Predicted(req Request) (Recommendation, error) {
	p := &req.Problem
	if err := checkProblem(p); err != nil {
		return Recommendation{}, err
	}
	x, y := proxyData(&req, smallestScale(p))
	ranked, v := r.rank(&req, x, y)
	if len(ranked) == 0 {
		return Recommendation{}, ErrNoObservations
	}
	// The regression predicts the proxy scale's value, not the target's: no interval.
	return Recommendation{Mixture: append([]float64(nil), ranked[0]...), Value: v, Lower: v, Upper: v,
		Basis: "boosted-tree regression on the proxy runs"}, nil
}
