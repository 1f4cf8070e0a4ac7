package bo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/mat"
)

// MFConfig configures a GP policy. The registered policies are MFConfig presets:
// "mfms" (every scale and step budget), "mfbo" (step budgets at the target scale) and
// "gp-ei" (full target runs only).
type MFConfig struct {
	// MultiScale lets trials and observations use every scale; otherwise only the target's.
	MultiScale bool
	// Tilt adds the kernel's linear mixture term whose slope drifts with scale and steps.
	Tilt bool
	// MultiStep lets trials stop before the target's steps.
	MultiStep bool
	// Acquisition is "kg" (knowledge gradient per cost) or "ei" (expected improvement at
	// the target, weighted by the correlation of the trial with the target, per cost).
	Acquisition string
	// CostExponent α divides the acquisition value by (cost + TrialOverhead)^α (in
	// target-run units). The overhead stands for what every trial costs beyond its steps
	// (start, evaluation, a worker's time) and keeps the policy from buying hundreds of
	// crumbs at the cheapest fidelity.
	CostExponent, TrialOverhead float64
	// InitTrials are drawn at random (at InitScale, InitStepFraction of the target's
	// steps) before the GP decides.
	InitTrials       int
	InitScale        int // index into Problem.Scales; -1 means the target scale
	InitStepFraction float64
	// StepChoices is how many step budgets a trial may get: the target's, and the grid
	// values nearest to half, a quarter, … of it.
	StepChoices int
	// PointsPerTrial and MaxPoints bound the GP's data (see dataOptions); FitPoints bounds
	// the data used to fit the hyperparameters.
	PointsPerTrial, MaxPoints, FitPoints int
	// FullRunLastOnly gives a trial that ran to the target's steps one point, its last
	// (shorter curves keep PointsPerTrial).
	FullRunLastOnly bool
	// Candidate pool sizes.
	Pool candidateOptions
	// Product drops the kernel's additive fidelity trend: the covariance is the plain
	// product m52ARD(w)·m52(us)·m52(ut) with an output scale (plus the local term when on).
	Product bool
	// CheapStreak, when positive, stops buying trials cheaper than CheapCost (target-run
	// units) after CheapStreak such trials in a row: the next one costs at least CheapCost.
	CheapStreak int
	CheapCost   float64
	// ObsMixtures is how many mixtures are tried at every fidelity; TargetSet is the size
	// of the discrete set over which the knowledge gradient takes its minimum.
	ObsMixtures, TargetSet int
	// RunningAsPending leaves the partial curves of running trials out of the GP's data:
	// they count only as pending trials (see Next). With one point per trial (the last)
	// and every trial run to the target's steps, a running trial's prefix would be the
	// only point at its step count, which the model cannot place.
	RunningAsPending bool
	// TrustRadius, when positive, keeps trials costing at least TrustCost (target-run
	// units) within this Euclidean distance of the best mixtures so far (by posterior mean
	// at the target): wide exploration is bought at cheap fidelities, expensive ones
	// refine. Without it the knowledge gradient spent a quarter of the budget on target
	// runs far from every good mixture (regret > 0.02), where the target's variance is high
	// only because no target run has been there.
	TrustRadius, TrustCost float64
	// SweepCost, when positive, buys a sweep of full-length runs at the smallest scale
	// before the model decides, if the whole sweep costs at most this many target runs
	// (see sweepFirst).
	SweepCost float64
	// MixtureWarp lets each hyperparameter fit choose the kernel's mixture coordinates: √w
	// when its penalised marginal likelihood is higher than w's by more than warpEvidence,
	// else w. Under √w a weight leaving zero moves farther than the same change at 40%, as
	// the losses of sparse mixtures do.
	MixtureWarp bool
	// TrendChoice lets each hyperparameter fit of a Product kernel also try the additive
	// fidelity trend, kept when its penalised marginal likelihood is higher by more than
	// warpEvidence: a loss level that moves with scale for every mixture alike (RegMix's
	// 1M and 60M runs) is what the trend describes, and without it the product term
	// bends to carry that shift.
	TrendChoice bool
}

// settledFit is the number of observations from which a refit starts from the last fit on
// the refit schedule, and from which a fit may choose the kernel's forms (the √w warp, the
// fidelity trend). With fewer, every decision refits from fresh starts and the evidence
// between two forms is a few points' noise, so the choice would flip from one decision to
// the next, and the model's prediction at the target with it.
const settledFit = 25

// warpEvidence is the margin in log marginal likelihood (nats) √w needs over w: "strong"
// evidence on Kass and Raftery's scale, so that a few runs that happen to fit √w a little
// better do not change the model's geometry.
const warpEvidence = 3.0

// MF is a Gaussian-process policy over (mixture, scale, steps).
type MF struct {
	name string
	cfg  MFConfig
}

// NewMF returns a GP policy with the given name and configuration.
func NewMF(name string, cfg MFConfig) *MF { return &MF{name: name, cfg: cfg} }

// MFMSConfig is the multi-fidelity multi-scale preset.
func MFMSConfig() MFConfig {
	return MFConfig{
		MultiScale: true, MultiStep: true, Acquisition: "kg", CostExponent: 0.7, TrialOverhead: 0.02,
		InitTrials: 6, InitScale: 0, InitStepFraction: 1,
		// Full-length trials only: on the paper's data a truncated run's best mixture is
		// not the full run's (1B at 9,800 steps prefers pure stackexchange, 0.0029 off at
		// the target), and trials at the target's steps measured 1.5–1.8× better than
		// offering ½ or ½…1/16 budgets (docs/benchmark-results.md).
		StepChoices: 1,
		// A full run gives the GP one point, its last: points earlier on its curve describe
		// a function whose best mixture is elsewhere, and with them the model's fit at the
		// final step was worse (3 points per trial: 1.8× over mfbo at noise 0.01, one at a
		// time; the last only: 6.2×). Curves that stopped short (early stopping) keep 3
		// points. Running trials count as pending only: their prefix would be the lone
		// point at its step.
		PointsPerTrial: 3, FullRunLastOnly: true, RunningAsPending: true, MaxPoints: 240, FitPoints: 120,
		Pool:        candidateOptions{dirichlet: 100, sparse: 80, softmax: 80, local: 30, centres: 5},
		ObsMixtures: 24, TargetSet: 160,
		Product: true, Tilt: true, CheapStreak: 4, CheapCost: 0.1,
		// Target runs refine near the best mixtures; exploration happens at cheaper scales.
		TrustRadius: 0.3, TrustCost: 0.5,
		// A proxy sweep the trees can rank from, if it costs at most 5% of one target run,
		// is bought first.
		SweepCost:   0.05,
		MixtureWarp: true, TrendChoice: true,
	}
}

// MFBOConfig is the multi-fidelity baseline: step budgets at the target scale only.
func MFBOConfig() MFConfig {
	c := MFMSConfig()
	c.MultiScale = false
	c.InitTrials = 4
	c.InitScale = -1
	c.InitStepFraction = 0.25
	// The baseline keeps the kernel with the additive fidelity trend, step budgets down to
	// 1/16 of the target's, KG per cost¹ and no cheap-trial rule (all its trials are at the
	// target scale), as measured in docs/benchmark-results.md.
	c.Product, c.Tilt, c.CheapStreak, c.CheapCost = false, false, 0, 0
	c.StepChoices, c.CostExponent = 5, 1
	// Its trials stop at different step counts, so it sees 3 points of each curve (the
	// steps axis is what it models) and no trust region (every trial is at the target
	// scale).
	c.FullRunLastOnly, c.RunningAsPending, c.TrustRadius, c.TrustCost = false, false, 0, 0
	c.MixtureWarp = false // the baseline's model stays as it was measured
	return c
}

// MFMSEIConfig is mfms with the correlation-weighted expected improvement per cost^½.
func MFMSEIConfig() MFConfig {
	c := MFMSConfig()
	c.Acquisition = "ei"
	c.CostExponent = 0.5
	return c
}

// GPEIConfig is single-fidelity GP-EI: full target runs only.
func GPEIConfig() MFConfig {
	c := MFMSConfig()
	c.MultiScale, c.MultiStep, c.Tilt = false, false, false
	c.RunningAsPending, c.TrustRadius = false, 0
	c.Acquisition = "ei"
	c.CostExponent = 0
	c.InitTrials = 3
	c.InitScale = -1
	c.StepChoices = 1
	return c
}

func (m *MF) Name() string { return m.name }

// mfState is what the policy persists between decisions: the last fitted hyperparameters
// (a warm start, and reused until the next scheduled refit) and how many trials they saw.
type mfState struct {
	Theta     []float64 `json:"theta,omitempty"`
	FitTrials int       `json:"fit_trials,omitempty"`
	SqrtW     bool      `json:"sqrt_w,omitempty"`
	Trend     bool      `json:"trend,omitempty"`
	// FitSpend is the compute of the data the fit saw, in target runs.
	FitSpend float64 `json:"fit_spend,omitempty"`
}

func decodeState(b []byte) mfState {
	var s mfState
	if len(b) > 0 && json.Unmarshal(b, &s) != nil {
		return mfState{} // unreadable state only costs a full refit
	}
	for _, t := range s.Theta {
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return mfState{}
		}
	}
	return s
}

func (s mfState) encode() []byte {
	b, _ := json.Marshal(s)
	return b
}

// model is the GP model; trend adds the additive fidelity trend to a Product kernel.
func (m *MF) model(s *space, trend bool) model {
	return model{kn: kernel{k: s.k, noTrend: m.cfg.Product && !trend, tilt: m.cfg.Tilt}}
}

func (m *MF) dataOpts(p *Problem, maxPts int) dataOptions {
	o := dataOptions{pointsPerTrial: m.cfg.PointsPerTrial, maxPoints: maxPts}
	if !m.cfg.MultiScale {
		o.scales = map[int]bool{p.TargetScale: true}
	}
	if !m.cfg.MultiStep {
		o.pointsPerTrial = 1
	}
	if m.cfg.FullRunLastOnly {
		o.lastOnlyFrom = p.TargetSteps
	}
	return o
}

// fidelity is a (scale, steps) a trial may run at.
type fidelity struct {
	scale int
	steps int64
	cost  float64 // in target-run units
}

// fidelities lists the (scale, steps) this policy may choose that fit the budget left.
func (m *MF) fidelities(p *Problem) []fidelity {
	var steps []int64
	if m.cfg.MultiStep {
		want := float64(p.TargetSteps)
		for len(steps) < max(m.cfg.StepChoices, 1) && want >= 1 {
			s := nearestStep(p.Steps, want, p.TargetSteps)
			if len(steps) == 0 || steps[len(steps)-1] != s {
				steps = append(steps, s)
			}
			want /= 2
			if want < float64(p.Steps[0])/2 {
				break
			}
		}
	} else {
		steps = []int64{p.TargetSteps}
	}
	target := p.Cost(Trial{Scale: p.TargetScale, Steps: p.TargetSteps})
	var out []fidelity
	for sc := range p.Scales {
		if !m.cfg.MultiScale && sc != p.TargetScale {
			continue
		}
		for _, st := range steps {
			c := p.Cost(Trial{Scale: sc, Steps: st})
			if c <= p.BudgetLeft {
				out = append(out, fidelity{scale: sc, steps: st, cost: c / target})
			}
		}
	}
	return out
}

// nearestStep is the grid value nearest to want in log distance, at most limit.
func nearestStep(grid []int64, want float64, limit int64) int64 {
	best, bestD := limit, math.Inf(1)
	for _, g := range grid {
		if g > limit {
			continue
		}
		d := math.Abs(math.Log(float64(g) / want))
		if d < bestD {
			best, bestD = g, d
		}
	}
	return best
}

// conditioned is the GP of one decision with what it was built from.
type conditioned struct {
	s     *space
	ts    *trainingSet
	g     *gp
	state mfState
	// fitTime is how long the hyperparameter fit took (zero when the saved fit was
	// reused); reported with the decision for the coordinator's metrics.
	fitTime time.Duration
}

// condition builds the training set, fits or reuses hyperparameters, and conditions the GP.
func (m *MF) condition(req *Request, allowFit bool) (*conditioned, error) {
	p := &req.Problem
	s, err := newSpace(p)
	if err != nil {
		return nil, err
	}
	obs := req.Observations
	if fin := finishedObservations(req); m.cfg.RunningAsPending && len(fin) > 0 {
		obs = fin // until a trial finishes, the partial curves are all there is
	}
	obs = withPrior(req, obs)
	st := decodeState(req.State)
	st.Trend = st.Trend && m.cfg.TrendChoice
	mod := m.model(s, st.Trend)
	if len(st.Theta) != mod.nParams() {
		st = mfState{}
	}
	s.sqrtW = m.cfg.MixtureWarp && st.SqrtW // the saved choice, until a refit says otherwise
	ts, err := buildTraining(p, s, obs, m.dataOpts(p, m.cfg.MaxPoints))
	if err != nil {
		return nil, err
	}
	var fitTime time.Duration
	spend := m.dataSpend(p, obs)
	refit := st.Theta == nil ||
		(allowFit && (ts.observed < settledFit || ts.observed >= st.FitTrials+max(2, st.FitTrials/5) || spend > st.FitSpend*1.2))
	if refit {
		fitStart := time.Now()
		opt := fitOptions{restarts: 0, iterations: 30}
		if st.Theta == nil || ts.observed < settledFit {
			opt = fitOptions{restarts: 2, iterations: 60}
		}
		theta, sqrtW, trend, err := m.fitKernel(req, s, obs, st, opt, ts.observed)
		fitTime = time.Since(fitStart)
		if err != nil {
			if st.Theta == nil {
				return nil, err
			}
			theta, sqrtW, trend = st.Theta, s.sqrtW, st.Trend // keep the last good fit
		}
		mod = m.model(s, trend)
		if sqrtW != s.sqrtW {
			s.sqrtW = sqrtW
			if ts, err = buildTraining(p, s, obs, m.dataOpts(p, m.cfg.MaxPoints)); err != nil {
				return nil, err
			}
		}
		st = mfState{Theta: theta, FitTrials: ts.observed, SqrtW: sqrtW, Trend: trend, FitSpend: spend}
	}
	g, err := newGP(mod, st.Theta, ts.x, ts.y)
	if err != nil {
		return nil, fmt.Errorf("condition gp: %w", err)
	}
	return &conditioned{s: s, ts: ts, g: g, state: st, fitTime: fitTime}, nil
}

// dataSpend is the compute of the observations in target runs, when trials may differ in
// scale (else 0): a refit is due when it grew by a fifth, as when the trials did, since a
// few dear trials after many cheap ones barely move the count but are what the fit lacks.
func (m *MF) dataSpend(p *Problem, obs []Observation) float64 {
	if !m.cfg.MultiScale {
		return 0
	}
	target := p.Cost(Trial{Scale: p.TargetScale, Steps: p.TargetSteps})
	spend := 0.0
	for _, o := range obs {
		if o.Scale >= 0 && o.Scale < len(p.Scales) && o.Steps > 0 {
			spend += p.Cost(o.Trial) / target
		}
	}
	return spend
}

// fitKernel fits the hyperparameters on the data in raw weights and, with MixtureWarp, in
// √w, warm-started from the saved fit; √w is kept only when its penalised marginal
// likelihood beats the raw one by more than warpEvidence. With TrendChoice the chosen
// coordinates are then fitted with the additive fidelity trend, kept by the same margin.
// Both choices wait for settledFit observations; before, the fit is raw w and the plain
// product.
func (m *MF) fitKernel(req *Request, s *space, obs []Observation, st mfState, opt fitOptions, observed int) (theta []float64, sqrtW, trend bool, err error) {
	p := &req.Problem
	fitIn := func(sqrt, trend bool, warm []float64) ([]float64, float64, error) {
		sp := *s
		sp.sqrtW = sqrt
		fitSet, err := buildTraining(p, &sp, obs, m.dataOpts(p, m.cfg.FitPoints))
		if err != nil {
			return nil, 0, err
		}
		mod := m.model(&sp, trend)
		return mod.fit(fitSet.x, fitSet.y, mod.kn.inBox(warm), opt, DecisionRand(p.Seed^0xF17, req.Decision))
	}
	theta, best, err := fitIn(false, false, st.Theta)
	if m.cfg.MixtureWarp && observed >= settledFit {
		if th, b, errW := fitIn(true, false, theta); errW == nil && (err != nil || b < best-warpEvidence) {
			theta, best, sqrtW, err = th, b, true, nil
		}
	}
	if m.cfg.TrendChoice && m.cfg.Product && observed >= settledFit {
		if th, b, errT := fitIn(sqrtW, true, theta); errT == nil && (err != nil || b < best-warpEvidence) {
			theta, trend, err = th, true, nil
		}
	}
	return theta, sqrtW, trend, err
}

// bestMeasured is the mixture run to the target's steps at the target scale with the
// lowest posterior mean there, and that mean.
func (c *conditioned) bestMeasured(obs []Observation) (w []float64, mu float64, ok bool) {
	mu = math.Inf(1)
	for _, o := range obs {
		if o.Scale != c.s.target.Scale || len(o.Mixture) != c.s.k || len(o.Curve) == 0 ||
			o.Curve[len(o.Curve)-1].Step < c.s.target.Steps {
			continue
		}
		if v := c.g.predictMean(c.s.targetPoint(o.Mixture)); v < mu {
			w, mu, ok = o.Mixture, v, true
		}
	}
	return append([]float64(nil), w...), mu, ok
}

// centres are the observed mixtures with the lowest posterior mean at the target.
func (c *conditioned) centres(obs []Observation, n int) [][]float64 {
	type mv struct {
		w  []float64
		mu float64
	}
	var all []mv
	seen := map[string]bool{}
	for _, o := range obs {
		if len(o.Mixture) != c.s.k {
			continue
		}
		key := fmt.Sprint(o.Mixture)
		if seen[key] {
			continue
		}
		seen[key] = true
		mu := c.g.predictMean(c.s.targetPoint(o.Mixture))
		if !math.IsNaN(mu) {
			all = append(all, mv{o.Mixture, mu})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].mu < all[j].mu })
	var out [][]float64
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, all[i].w)
	}
	return out
}

func (m *MF) Next(ctx context.Context, req Request) (Decision, error) {
	p := &req.Problem
	if _, err := newSpace(p); err != nil {
		return Decision{}, err
	}
	fids := m.fidelities(p)
	fids = slices.DeleteFunc(fids, func(f fidelity) bool { return p.pooled(f.scale) && len(unusedPool(&req, f.scale)) == 0 })
	if len(fids) == 0 {
		return Decision{}, ErrNoTrialFits
	}
	rng := DecisionRand(p.Seed, req.Decision)
	if t, ok := m.sweepFirst(&req, fids, rng); ok {
		return Decision{Trial: t, State: req.State}, nil
	}
	var c *conditioned
	var err error
	nTrials := 0
	c, err = m.condition(&req, true)
	switch {
	case errors.Is(err, ErrNoObservations):
	case err != nil:
		return Decision{}, err
	default:
		nTrials = c.ts.trials
	}
	if c == nil || nTrials+len(req.Pending) < m.cfg.InitTrials {
		return m.initial(req, fids, rng, c)
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	// Kriging believer: each running trial is taken to return the posterior mean at its
	// fidelity, which shrinks the variance there so parallel workers spread out.
	g := c.g
	if len(req.Pending) > 0 {
		x := append([][]float64(nil), c.ts.x...)
		y := append([]float64(nil), c.ts.y...)
		for _, t := range req.Pending {
			if len(t.Mixture) != c.s.k || t.Scale < 0 || t.Scale >= len(p.Scales) || t.Steps <= 0 {
				continue
			}
			if !m.cfg.MultiScale && t.Scale != p.TargetScale {
				continue
			}
			pt := c.s.point(t.Mixture, t.Scale, t.Steps)
			x = append(x, pt)
			y = append(y, g.predictMean(pt))
		}
		if gb, err := newGP(g.m, g.theta, x, y); err == nil {
			g = gb
		}
	}
	trial, ok := m.choose(c, g, req, m.limitCheap(&req, fids), rng)
	if !ok {
		return m.initial(req, fids, rng, c)
	}
	if trial.Scale == p.TargetScale && trial.Steps == p.TargetSteps {
		if w, ok := m.sweepPick(&req); ok {
			trial.Mixture = w
		}
	}
	return Decision{Trial: trial, State: c.state.encode(), FitTime: c.fitTime}, nil
}

// limitCheap drops the fidelities cheaper than CheapCost when the last CheapStreak
// trials (the observations in the order given, then the running ones) were all cheaper.
func (m *MF) limitCheap(req *Request, fids []fidelity) []fidelity {
	if m.cfg.CheapStreak <= 0 {
		return fids
	}
	p := &req.Problem
	target := p.Cost(Trial{Scale: p.TargetScale, Steps: p.TargetSteps})
	// A running trial is both an observation (its partial curve) and pending: count it once,
	// where the running ones go.
	var seq []Trial
	for _, o := range finishedObservations(req) {
		seq = append(seq, o.Trial)
	}
	seq = append(seq, req.Pending...)
	streak := 0
	for i := len(seq) - 1; i >= 0; i-- {
		t := seq[i]
		if t.Scale < 0 || t.Scale >= len(p.Scales) || p.Cost(t)/target >= m.cfg.CheapCost {
			break
		}
		streak++
	}
	if streak < m.cfg.CheapStreak {
		return fids
	}
	var out []fidelity
	belowTarget := false
	for _, f := range fids {
		if f.cost >= m.cfg.CheapCost {
			out = append(out, f)
			belowTarget = belowTarget || f.scale != p.TargetScale
		}
	}
	if !belowTarget {
		// The rule buys mid-scale runs instead of crumbs. Where every scale below the
		// target is cheap (RegMix's 1M and 60M against 1B), it would force every fifth
		// trial to the target, before the cheap runs could say which mixtures deserve it.
		return fids
	}
	return out
}

// finishedObservations are the observations other than running trials (an observation
// not done that matches a pending trial): finished ones, and those that ended early.
func finishedObservations(req *Request) []Observation {
	running := map[string]bool{}
	for _, t := range req.Pending {
		running[fmt.Sprint(t.Mixture, t.Scale, t.Steps)] = true
	}
	var out []Observation
	for _, o := range req.Observations {
		if !o.Done && running[fmt.Sprint(o.Mixture, o.Scale, o.Steps)] {
			continue
		}
		out = append(out, o)
	}
	return out
}

// initial is a random mixture at the initial design's fidelity (or the cheapest that fits).
func (m *MF) initial(req Request, fids []fidelity, rng *rand.Rand, c *conditioned) (Decision, error) {
	p := &req.Problem
	scale := m.cfg.InitScale
	if scale < 0 || scale >= len(p.Scales) || !m.cfg.MultiScale {
		scale = p.TargetScale
	}
	want := float64(p.TargetSteps) * m.cfg.InitStepFraction
	if !m.cfg.MultiStep || want <= 0 {
		want = float64(p.TargetSteps)
	}
	steps := nearestStep(p.Steps, want, p.TargetSteps)
	f := fids[0]
	found := false
	for _, fd := range fids {
		if fd.scale == scale && fd.steps == steps {
			f, found = fd, true
		}
	}
	if !found {
		for _, fd := range fids {
			if fd.cost < f.cost {
				f = fd
			}
		}
	}
	var w []float64
	if p.pooled(f.scale) {
		w, _ = drawFromPool(&req, f.scale, rng) // fids hold no used-up pool
	} else if req.Decision%2 == 0 {
		w = SampleDirichlet(rng, p.Lower, p.Upper)
	} else {
		w = SampleSoftmaxLogits(rng, p.Lower, p.Upper)
	}
	state := req.State
	if c != nil {
		state = c.state.encode()
	}
	return Decision{Trial: Trial{Mixture: w, Scale: f.scale, Steps: f.steps}, State: state}, nil
}

// pick chooses n indices of the candidates: a quarter with the lowest posterior mean at
// the target, then the lowest lower confidence bounds up to three quarters, the rest at
// random (exploitation, optimism and a little blind exploration).
func pick(mu, vr []float64, n int, rng *rand.Rand) []int {
	idx := make([]int, len(mu))
	for i := range idx {
		idx[i] = i
	}
	lcb := func(i int) float64 { return mu[i] - 2*math.Sqrt(vr[i]) }
	sort.SliceStable(idx, func(a, b int) bool { return lcb(idx[a]) < lcb(idx[b]) })
	byMu := append([]int(nil), idx...)
	sort.SliceStable(byMu, func(a, b int) bool { return mu[byMu[a]] < mu[byMu[b]] })
	taken := map[int]bool{}
	var out []int
	add := func(i int) {
		if !taken[i] {
			taken[i] = true
			out = append(out, i)
		}
	}
	for _, i := range byMu[:min(len(byMu), n/4)] {
		add(i)
	}
	for _, i := range idx {
		if len(out) >= n*3/4 {
			break
		}
		add(i)
	}
	for len(out) < min(n, len(mu)) {
		add(rng.IntN(len(mu)))
	}
	return out
}

// choose scores every (candidate mixture, fidelity) and returns the best trial. At a
// scale with a pool the candidates are its unused pool mixtures; with a pool at the
// target, the knowledge gradient's minimum runs over the target pool (what may be
// recommended).
func (m *MF) choose(c *conditioned, g *gp, req Request, fids []fidelity, rng *rand.Rand) (Trial, bool) {
	p := &req.Problem
	s := c.s
	obsAll := withPrior(&req, req.Observations)
	var pool [][]float64
	if p.pooled(p.TargetScale) {
		pool = p.Scales[p.TargetScale].Pool
	} else {
		pool = candidatePool(rng, p.Lower, p.Upper, c.centres(obsAll, m.cfg.Pool.centres), m.cfg.Pool)
	}
	tpts := make([][]float64, len(pool))
	for i, w := range pool {
		tpts[i] = s.targetPoint(w)
	}
	mu, vr, _ := g.predict(tpts)
	obsIdx := pick(mu, vr, m.cfg.ObsMixtures, rng)
	idx := make([]int, len(pool))
	for i := range idx {
		idx[i] = i
	}
	lcb := func(i int) float64 { return mu[i] - 2*math.Sqrt(vr[i]) }
	sort.SliceStable(idx, func(a, b int) bool { return lcb(idx[a]) < lcb(idx[b]) })
	byMu := append([]int(nil), idx...)
	sort.SliceStable(byMu, func(a, b int) bool { return mu[byMu[a]] < mu[byMu[b]] })
	// Target set: the best of the pool by mean and by LCB (and, without a target pool,
	// the mixtures tried at unpooled scales).
	var tset []int
	inT := map[int]bool{}
	addT := func(i int) {
		if !inT[i] {
			inT[i] = true
			tset = append(tset, i)
		}
	}
	if !p.pooled(p.TargetScale) {
		for _, i := range obsIdx {
			addT(i)
		}
	}
	for li, list := range [][]int{byMu, idx} {
		limit := m.cfg.TargetSet * (li + 1) / 2
		for _, i := range list {
			if len(tset) >= limit {
				break
			}
			addT(i)
		}
	}
	tx := make([][]float64, len(tset))
	tmu := make([]float64, len(tset))
	for j, i := range tset {
		tx[j], tmu[j] = tpts[i], mu[i]
	}
	// Observation candidates: the mixtures per scale, then each with every step budget.
	type cand struct {
		w []float64
		f fidelity
	}
	var cands []cand
	var cx [][]float64
	trusted := m.trustRegion(c, obsAll, pool[byMu[0]])
	perScale := map[int][][]float64{}
	for _, f := range fids {
		ws, ok := perScale[f.scale]
		if !ok {
			ws = m.scaleCandidates(req, f.scale, pool, mu, vr, obsIdx, g, s, rng)
			perScale[f.scale] = ws
		}
		var kept [][]float64
		for _, w := range ws {
			if trusted(w, f) {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 && m.cfg.TrustRadius > 0 {
			// A pool may hold nothing within the radius: its members nearest to the best
			// mixtures stand in, rather than no trial at this fidelity.
			kept = nearestTo(ws, append(c.centres(obsAll, m.cfg.Pool.centres), pool[byMu[0]]), 3)
		}
		for _, w := range kept {
			cands = append(cands, cand{w, f})
			cx = append(cx, s.point(w, f.scale, f.steps))
		}
	}
	if len(cands) == 0 {
		return Trial{}, false
	}
	// Cov(target set, candidates) = K(T, C) − (L⁻¹K(X,T))ᵀ (L⁻¹K(X,C)).
	_, _, at := g.predict(tx)
	_, cvar, vc := g.predict(cx)
	var red mat.Dense
	red.Mul(at.T(), vc)
	cov := crossPrior(g, tx, cx)
	cov.Sub(cov, &red)
	best := math.Inf(1)
	for _, v := range tmu {
		best = math.Min(best, v)
	}
	// EI looks at each candidate's own mixture at the target.
	var omu, ovar []float64
	var ocov []float64
	if m.cfg.Acquisition == "ei" {
		otx := make([][]float64, len(cands))
		for i, cd := range cands {
			otx[i] = s.targetPoint(cd.w)
		}
		var ov *mat.Dense
		omu, ovar, ov = g.predict(otx)
		ocov = make([]float64, len(cands))
		for i := range cands {
			d := g.m.kn.cov(&g.p, otx[i], cx[i])
			for r := 0; r < len(g.x); r++ {
				d -= ov.At(r, i) * vc.At(r, i)
			}
			ocov[i] = d
		}
	}
	scratch := make([]int, len(tset))
	b := make([]float64, len(tset))
	bestV, bestC := 0.0, -1
	for ci, cd := range cands {
		noise, _ := g.m.kn.noiseAt(&g.p, cx[ci])
		sdY := math.Sqrt(cvar[ci] + noise)
		var v float64
		switch m.cfg.Acquisition {
		case "ei":
			rho := ocov[ci] / math.Sqrt(ovar[ci]*(cvar[ci]+noise))
			v = expectedImprovement(best, omu[ci], math.Sqrt(ovar[ci])) * math.Max(rho, 0)
		default:
			for j := range tset {
				b[j] = cov.At(j, ci) / sdY
			}
			v = kgMin(tmu, b, scratch)
		}
		v /= math.Pow(cd.f.cost+m.cfg.TrialOverhead, m.cfg.CostExponent)
		if v > bestV && !math.IsNaN(v) {
			bestV, bestC = v, ci
		}
	}
	if bestC < 0 {
		return Trial{}, false
	}
	cd := cands[bestC]
	return Trial{Mixture: append([]float64(nil), cd.w...), Scale: cd.f.scale, Steps: cd.f.steps}, true
}

// scaleCandidates are the mixtures a trial at scale may try: without a pool there, the
// chosen mixtures of the target pool (obsIdx); with one, ObsMixtures of its unused
// members picked by their prediction at the target.
func (m *MF) scaleCandidates(req Request, scale int, pool [][]float64, mu, vr []float64, obsIdx []int, g *gp, s *space, rng *rand.Rand) [][]float64 {
	p := &req.Problem
	if !p.pooled(scale) {
		out := make([][]float64, len(obsIdx))
		for i, j := range obsIdx {
			out[i] = pool[j]
		}
		return out
	}
	free := unusedPool(&req, scale)
	if len(free) == 0 {
		return nil
	}
	var fmu, fvr []float64
	if scale == p.TargetScale {
		// The target pool's predictions are at hand.
		for _, w := range free {
			for j := range pool {
				if sameMixture(pool[j], w) {
					fmu, fvr = append(fmu, mu[j]), append(fvr, vr[j])
					break
				}
			}
		}
	} else {
		pts := make([][]float64, len(free))
		for i, w := range free {
			pts[i] = s.targetPoint(w)
		}
		fmu, fvr, _ = g.predict(pts)
	}
	var out [][]float64
	for _, i := range pick(fmu, fvr, m.cfg.ObsMixtures, rng) {
		out = append(out, free[i])
	}
	return out
}

// trustRegion says whether a trial of mixture w at fidelity f is allowed: always, unless
// f costs at least TrustCost and w lies farther than TrustRadius from each of the best
// observed mixtures and from best, the pool's minimiser of the posterior mean.
func (m *MF) trustRegion(c *conditioned, obs []Observation, best []float64) func(w []float64, f fidelity) bool {
	if m.cfg.TrustRadius <= 0 {
		return func([]float64, fidelity) bool { return true }
	}
	centres := append(c.centres(obs, m.cfg.Pool.centres), best)
	return func(w []float64, f fidelity) bool {
		return f.cost < m.cfg.TrustCost || withinAny(w, centres, m.cfg.TrustRadius)
	}
}

// nearestTo returns up to n of ws, those nearest (Euclidean) to any of the centres.
func nearestTo(ws, centres [][]float64, n int) [][]float64 {
	d := make([]float64, len(ws))
	idx := make([]int, len(ws))
	for i, w := range ws {
		idx[i], d[i] = i, math.Inf(1)
		for _, c := range centres {
			s := 0.0
			for j := range w {
				s += (w[j] - c[j]) * (w[j] - c[j])
			}
			d[i] = math.Min(d[i], s)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return d[idx[a]] < d[idx[b]] })
	out := make([][]float64, 0, n)
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, ws[i])
	}
	return out
}

// withinAny says whether w lies within Euclidean distance r of one of the centres.
func withinAny(w []float64, centres [][]float64, r float64) bool {
	for _, ctr := range centres {
		d2 := 0.0
		for i := range w {
			d2 += (w[i] - ctr[i]) * (w[i] - ctr[i])
		}
		if d2 <= r*r {
			return true
		}
	}
	return false
}

// crossPrior is the prior covariance matrix K(a, b).
func crossPrior(g *gp, a, b [][]float64) *mat.Dense {
	out := mat.NewDense(len(a), len(b), nil)
	raw := out.RawMatrix()
	for i := range a {
		row := raw.Data[i*raw.Stride : i*raw.Stride+len(b)]
		for j := range b {
			row[j] = g.m.kn.cov(&g.p, a[i], b[j])
		}
	}
	return out
}

func (m *MF) Recommend(ctx context.Context, req Request) (Recommendation, error) {
	c, err := m.condition(&req, false)
	if err != nil {
		if errors.Is(err, ErrNoObservations) {
			return Recommendation{}, err
		}
		// The model could not be built: say so, and fall back to the data.
		r, berr := BestObserved(req)
		if berr != nil {
			return Recommendation{}, fmt.Errorf("%w (model: %v)", berr, err)
		}
		r.Basis += " (no model: " + err.Error() + ")"
		return r, nil
	}
	return m.recommendFrom(ctx, c, req)
}

// recommendFrom minimises the posterior mean at the target over a candidate pool, then
// refines the best few by pairwise weight moves.
func (m *MF) recommendFrom(_ context.Context, c *conditioned, req Request) (Recommendation, error) {
	p := &req.Problem
	s := c.s
	rng := DecisionRand(p.Seed^0x5EC, req.Decision)
	var bestW []float64
	bestF := math.Inf(1)
	if p.pooled(p.TargetScale) {
		// Only a target-pool mixture may be named.
		pool := p.Scales[p.TargetScale].Pool
		tpts := make([][]float64, len(pool))
		for i, w := range pool {
			tpts[i] = s.targetPoint(w)
		}
		mu, _, _ := c.g.predict(tpts)
		for i, v := range mu {
			if v < bestF {
				bestW, bestF = pool[i], v
			}
		}
		bestW = append([]float64(nil), bestW...)
	} else {
		pool := candidatePool(rng, p.Lower, p.Upper, c.centres(withPrior(&req, req.Observations), m.cfg.Pool.centres), m.cfg.Pool)
		tpts := make([][]float64, len(pool))
		for i, w := range pool {
			tpts[i] = s.targetPoint(w)
		}
		mu, _, _ := c.g.predict(tpts)
		idx := make([]int, len(pool))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return mu[idx[a]] < mu[idx[b]] })
		f := func(w []float64) float64 { return c.g.predictMean(s.targetPoint(w)) }
		for _, i := range idx[:min(3, len(idx))] {
			w, v := refineMean(pool[i], p.Lower, p.Upper, f, 60)
			if v < bestF {
				bestW, bestF = w, v
			}
		}
	}
	if bestW == nil || math.IsNaN(bestF) {
		return BestObserved(req)
	}
	muB, vrB, _ := c.g.predict([][]float64{s.targetPoint(bestW)})
	sd := math.Sqrt(vrB[0])
	basis := "posterior mean minimiser at the target"
	w, mu, measured := c.bestMeasured(withPrior(&req, req.Observations))
	if !measured {
		// Before any target run, a sweep larger than the GP keeps is ranked by the trees
		// that pick the target runs (sweepRanking), not by the GP's subset of it, whose
		// pick moves with every refit.
		if ranked, ok := m.sweepRanking(&req); ok {
			bestW = append([]float64(nil), ranked[0]...)
			muB, vrB, _ = c.g.predict([][]float64{s.targetPoint(bestW)})
			sd = math.Sqrt(vrB[0])
			basis = "the boosted trees' first pick from the proxy sweep (no target run yet)"
		}
	}
	if measured && !sameMixture(w, bestW) && muB[0]+sd >= mu {
		// A mixture nothing measured replaces the best target run only when the model is
		// confident it is better: by its own standard deviation. Otherwise the gain is within
		// the model's error and the name would change with every fit (RegMix's pools: an
		// unmeasured mixture predicted 0.003 better, ±0.035, was 0.07 worse).
		bestW = w
		muB, vrB, _ = c.g.predict([][]float64{s.targetPoint(bestW)})
		sd = math.Sqrt(vrB[0])
		basis = "best target run (no mixture predicted better by a standard deviation)"
	}
	const z90 = 1.6448536269514722
	v := c.ts.tr.inverse(muB[0])
	lo, hi := c.ts.tr.inverse(muB[0]-z90*sd), c.ts.tr.inverse(muB[0]+z90*sd)
	if lo > hi {
		lo, hi = hi, lo
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return BestObserved(req)
	}
	return Recommendation{Mixture: bestW, Value: v, Lower: lo, Upper: hi,
		Basis: fmt.Sprintf("%s (%d trials, %d points)", basis, c.ts.trials, len(c.ts.x))}, nil
}
