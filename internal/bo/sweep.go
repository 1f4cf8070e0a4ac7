package bo

import (
	"math/rand/v2"
	"slices"
)

// sweepPick is the mixture a large proxy sweep ranks first among those not yet run at the
// target. ok is false when no cheaper scale has such a sweep or every ranked mixture has
// run at the target.
func (m *MF) sweepPick(req *Request) (w []float64, ok bool) {
	ranked, ok := m.sweepRanking(req)
	if !ok {
		return nil, false
	}
	r := NewRegMix()
	for _, w := range ranked {
		if !r.ranAtTarget(req, w) {
			return append([]float64(nil), w...), true
		}
	}
	return nil, false
}

// sweepRanking is regmix's boosted-tree ranking of target mixtures fitted on the largest
// proxy sweep, when that sweep holds more full runs than the GP keeps. The GP keeps at most
// MaxPoints points, so such a sweep (RegMix's 512–768 runs at 1M) reaches it only as a
// subset, which ranked the 64 RegMix 1B mixtures poorly; the trees use every run, so target
// runs go to their picks in turn (RegMix's recipe) while the GP decides when to buy them and
// what to recommend once target runs are measured. ok is false when no cheaper scale has
// such a sweep.
func (m *MF) sweepRanking(req *Request) (ranked [][]float64, ok bool) {
	p := &req.Problem
	if !m.cfg.MultiScale || m.cfg.MaxPoints <= 0 {
		return nil, false
	}
	var x [][]float64
	var y []float64
	for sc := range p.Scales {
		if sc == p.TargetScale {
			continue
		}
		if sx, sy := proxyData(req, sc); len(sx) > len(x) {
			x, y = sx, sy
		}
	}
	if len(x) <= m.cfg.MaxPoints {
		return nil, false
	}
	ranked, _ = NewRegMix().rank(req, x, y)
	return ranked, len(ranked) > 0
}

// sweepFirst is the next run of a negligible proxy sweep: after the initial design, full-length
// runs at the smallest scale are bought before the model decides, as many as SweepCost target
// runs pay for (at most the pool there, or regmix's sweep without one; prior runs included),
// provided that is more than the GP keeps or the whole pool. Where the smallest scale costs
// a few thousandths of a target run (RegMix's 1M against 1B), the cost-weighted knowledge
// gradient still charges each run TrialOverhead and bought target runs after a dozen proxy
// runs, when nothing yet said which mixtures deserved them; a sweep larger than MaxPoints is
// what sweepPick's trees rank the target runs from, and they rank better from more runs. Where
// proxy runs are not that cheap (the data model's 20M at about 1% of a target run) the rule
// never applies. ok is false when the rule does not apply.
func (m *MF) sweepFirst(req *Request, fids []fidelity, rng *rand.Rand) (Trial, bool) {
	p := &req.Problem
	if !m.cfg.MultiScale || m.cfg.SweepCost <= 0 || m.cfg.MaxPoints <= 0 {
		return Trial{}, false
	}
	small := smallestScale(p)
	t := Trial{Scale: small, Steps: p.TargetSteps}
	if small == p.TargetScale || !slices.ContainsFunc(fids, func(f fidelity) bool { return f.scale == t.Scale && f.steps == t.Steps }) {
		return Trial{}, false
	}
	started := len(req.Prior) + len(finishedObservations(req)) + len(req.Pending)
	if started < m.cfg.InitTrials {
		return Trial{}, false // the initial design comes first
	}
	x, _ := proxyData(req, small)
	runs := len(x)
	for _, pt := range req.Pending {
		if pt.Scale == small && pt.Steps >= p.TargetSteps {
			runs++
		}
	}
	// The trees rank the target runs better from more proxy runs: buy all the share pays for.
	target := p.Cost(Trial{Scale: p.TargetScale, Steps: p.TargetSteps})
	sweep := NewRegMix().MaxProxyRuns
	if p.pooled(small) {
		sweep = len(p.Scales[small].Pool)
	}
	if n := m.cfg.SweepCost * target / p.Cost(t); n < float64(sweep) {
		sweep = int(n) // a float comparison first: the quotient may exceed any int
	}
	wholePool := p.pooled(small) && sweep == len(p.Scales[small].Pool)
	if runs >= sweep || (sweep <= m.cfg.MaxPoints && !wholePool) {
		return Trial{}, false
	}
	if p.pooled(small) {
		w, ok := drawFromPool(req, small, rng)
		if !ok {
			return Trial{}, false
		}
		t.Mixture = w
	} else {
		t.Mixture = proxyMixture(rng, p)
	}
	return t, true
}
