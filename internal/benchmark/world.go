package benchmark

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/sim"
)

// World is a simulator with its objectives: it answers trials with curves and knows the
// true value of any recommendation at the target (BENCHMARK.md, "Worlds").
type World interface {
	Name() string
	// Objectives are the metrics this world is judged on by default.
	Objectives() []string
	// Problem is the decision space for objective with the budget in target-run
	// equivalents; it carries the candidate pools of a pool world.
	Problem(objective string, budgetTRE float64, seed uint64) (bo.Problem, error)
	// Prior are the runs a study of this world starts from (none for most worlds).
	Prior(objective string, p *bo.Problem) []bo.Observation
	// Observe answers a trial with its curve of the objective; noise > 0 adds Gaussian
	// noise from rng to each point (only where AddsNoise).
	Observe(objective string, p *bo.Problem, t bo.Trial, noise float64, rng *rand.Rand) (bo.Observation, error)
	// TargetValue is the true value of mixture w at the target; a pool world refuses a
	// mixture without a recorded target run.
	TargetValue(objective string, p *bo.Problem, w []float64) (float64, error)
	// Optimum is f* at the target and its mixture.
	Optimum(objective string, samples int) (float64, []float64, error)
	// AddsNoise says whether the harness's noise settings apply (recorded pools carry
	// their own noise).
	AddsNoise() bool
}

// maximised says whether a metric is to be maximised: the *_acc* outputs.
func maximised(objective string) bool { return strings.Contains(objective, "_acc") }

// DataModelWorld is the paper's data model: continuous mixtures, every output an objective.
type DataModelWorld struct {
	Model *sim.DataModel
	mu    sync.Mutex
	fstar map[string]fstarValue
}

type fstarValue struct {
	v float64
	w []float64
}

var _ World = (*DataModelWorld)(nil)

// NewDataModelWorld wraps a loaded data model.
func NewDataModelWorld(m *sim.DataModel) *DataModelWorld { return &DataModelWorld{Model: m} }

func (d *DataModelWorld) Name() string { return "datamodel" }

func (d *DataModelWorld) Objectives() []string { return append([]string(nil), d.Model.Outputs...) }

func (d *DataModelWorld) AddsNoise() bool { return true }

func (d *DataModelWorld) Problem(objective string, budgetTRE float64, seed uint64) (bo.Problem, error) {
	return Problem(d.Model, objective, budgetTRE, seed)
}

func (d *DataModelWorld) Prior(string, *bo.Problem) []bo.Observation { return nil }

func (d *DataModelWorld) Observe(objective string, p *bo.Problem, t bo.Trial, noise float64, rng *rand.Rand) (bo.Observation, error) {
	o := newObjective(d.Model, objective, p)
	obs := bo.Observation{Trial: t, Done: true}
	for st := d.Model.Steps.Every; st <= t.Steps; st += d.Model.Steps.Every {
		v := o.value(t.Mixture, t.Scale, st)
		if noise > 0 {
			v += noise * rng.NormFloat64()
		}
		obs.Curve = append(obs.Curve, bo.CurvePoint{Step: st, Value: v})
	}
	return obs, nil
}

func (d *DataModelWorld) TargetValue(objective string, p *bo.Problem, w []float64) (float64, error) {
	o := newObjective(d.Model, objective, p)
	return o.value(w, o.target, o.steps), nil
}

// Optimum runs FStar's dense search once per objective and remembers it.
func (d *DataModelWorld) Optimum(objective string, samples int) (float64, []float64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.fstar[objective]; ok {
		return f.v, f.w, nil
	}
	v, w, err := FStar(d.Model, objective, samples, 1)
	if err != nil {
		return 0, nil, err
	}
	if d.fstar == nil {
		d.fstar = map[string]fstarValue{}
	}
	d.fstar[objective] = fstarValue{v, w}
	return v, w, nil
}

// PoolWorld is a set of recorded runs played as a pool: a trial at scale s may only use a
// mixture recorded at s and is answered by that run exactly. Every trial is a full run of
// its scale: the step axis is a fraction of the scale's recorded run, so that each scale's
// full run is the target's step count and costs the recording's FLOPs.
type PoolWorld struct {
	name       string
	domains    []string
	scales     []poolScale // ascending parameters
	target     int
	objectives []string
	// priorScale, when ≥ 0, gives every run recorded at that scale to the study as prior.
	priorScale int
}

type poolScale struct {
	name         string
	params       float64
	runFlops     float64 // one recorded run's compute
	recordedStep int64
	runs         []sim.RecordedRun
}

var _ World = (*PoolWorld)(nil)

// poolSteps is the step count of every pool-world trial (a full run of its scale).
const poolSteps = 1000

// NewPoolWorld builds a pool world from recordings. Its target is targetScale (the scale
// with the most parameters when empty); objectives default to every metric recorded at the
// target. Domains must be the same in every run (in any order: weights are matched by name
// to the first run's order); all runs at one scale must have the same step count.
func NewPoolWorld(name string, recs []*sim.Recording, targetScale string, objectives []string) (*PoolWorld, error) {
	w := &PoolWorld{name: name, priorScale: -1}
	byScale := map[string]*poolScale{}
	for _, rec := range recs {
		for _, r := range rec.Runs() {
			if w.domains == nil {
				w.domains = append([]string(nil), r.Domains...)
			}
			mix, err := reorder(r, w.domains)
			if err != nil {
				return nil, fmt.Errorf("world %s: run %s: %w", name, r.RunID, err)
			}
			r.Mixture, r.Domains = mix, w.domains
			flops := r.FlopsPerStep
			if flops == 0 {
				flops = 6 * r.Params * float64(r.TokensPerStep)
			}
			if !(flops > 0) {
				return nil, fmt.Errorf("world %s: run %s: no flops_per_step and no tokens_per_step to estimate it from", name, r.RunID)
			}
			key := strings.ToLower(r.Scale)
			s := byScale[key]
			if s == nil {
				s = &poolScale{name: r.Scale, params: r.Params, runFlops: flops * float64(r.Steps), recordedStep: r.Steps}
				byScale[key] = s
			}
			if r.Steps != s.recordedStep {
				return nil, fmt.Errorf("world %s: run %s at %s has %d steps, others there %d: a pool scale needs one run length", name, r.RunID, r.Scale, r.Steps, s.recordedStep)
			}
			s.runs = append(s.runs, r)
		}
	}
	if len(byScale) == 0 {
		return nil, fmt.Errorf("world %s: no runs", name)
	}
	for _, s := range byScale {
		w.scales = append(w.scales, *s)
	}
	sort.Slice(w.scales, func(a, b int) bool { return w.scales[a].params < w.scales[b].params })
	w.target = len(w.scales) - 1
	if targetScale != "" {
		w.target = -1
		for i, s := range w.scales {
			if strings.EqualFold(s.name, targetScale) {
				w.target = i
			}
		}
		if w.target < 0 {
			return nil, fmt.Errorf("world %s: target scale %q has no runs", name, targetScale)
		}
		// Scales above the target have no part in a study of it.
		w.scales = w.scales[:w.target+1]
	}
	metrics := map[string]int{}
	for _, r := range w.scales[w.target].runs {
		for m := range r.Points[len(r.Points)-1].Eval {
			metrics[m]++
		}
	}
	if len(objectives) == 0 {
		for m, n := range metrics {
			if n == len(w.scales[w.target].runs) {
				objectives = append(objectives, m)
			}
		}
		sort.Strings(objectives)
	}
	for _, o := range objectives {
		if metrics[o] != len(w.scales[w.target].runs) {
			return nil, fmt.Errorf("world %s: objective %q is not recorded by every run at the target %s", name, o, w.scales[w.target].name)
		}
	}
	w.objectives = objectives
	return w, nil
}

// WithPrior returns a copy of the world whose studies start from every run recorded at
// scale, named name.
func (w *PoolWorld) WithPrior(name, scale string) (*PoolWorld, error) {
	c := *w
	c.name, c.priorScale = name, -1
	for i, s := range w.scales {
		if strings.EqualFold(s.name, scale) && i != w.target {
			c.priorScale = i
		}
	}
	if c.priorScale < 0 {
		return nil, fmt.Errorf("world %s: no scale %q below the target to take prior runs from", w.name, scale)
	}
	return &c, nil
}

// reorder returns r's weights in the order of domains.
func reorder(r sim.RecordedRun, domains []string) ([]float64, error) {
	if len(r.Domains) != len(domains) {
		return nil, fmt.Errorf("%d domains, the world has %d", len(r.Domains), len(domains))
	}
	out := make([]float64, len(domains))
	for i, d := range domains {
		j := slices.Index(r.Domains, d)
		if j < 0 {
			return nil, fmt.Errorf("no domain %q", d)
		}
		out[i] = r.Mixture[j]
	}
	return out, nil
}

func (w *PoolWorld) Name() string { return w.name }

func (w *PoolWorld) Objectives() []string { return append([]string(nil), w.objectives...) }

func (w *PoolWorld) AddsNoise() bool { return false }

func (w *PoolWorld) Problem(objective string, budgetTRE float64, seed uint64) (bo.Problem, error) {
	if !slices.Contains(w.objectives, objective) && !w.recordedAtTarget(objective) {
		return bo.Problem{}, fmt.Errorf("world %s: objective %q is not recorded at the target (objectives: %s)", w.name, objective, strings.Join(w.objectives, ", "))
	}
	k := len(w.domains)
	p := bo.Problem{Domains: w.domains, Lower: make([]float64, k), Upper: make([]float64, k),
		Steps: []int64{poolSteps}, TargetScale: w.target, TargetSteps: poolSteps, Maximize: maximised(objective), Seed: seed}
	for i := range p.Upper {
		p.Upper[i] = 1
	}
	for _, s := range w.scales {
		sc := bo.Scale{Name: s.name, Params: s.params, FlopsPerStep: s.runFlops / poolSteps}
		for _, r := range s.runs {
			sc.Pool = append(sc.Pool, r.Mixture)
		}
		p.Scales = append(p.Scales, sc)
	}
	p.BudgetLeft = budgetTRE * targetCost(&p)
	return p, nil
}

func (w *PoolWorld) recordedAtTarget(objective string) bool {
	for _, r := range w.scales[w.target].runs {
		if _, ok := r.Points[len(r.Points)-1].Eval[objective]; !ok {
			return false
		}
	}
	return true
}

// lookup is the run recorded at scale with mixture exactly m (within 1e-9 per weight).
func (w *PoolWorld) lookup(scale int, m []float64) (*sim.RecordedRun, error) {
	if scale < 0 || scale >= len(w.scales) {
		return nil, fmt.Errorf("world %s: scale index %d out of range", w.name, scale)
	}
	for i := range w.scales[scale].runs {
		r := &w.scales[scale].runs[i]
		same := len(r.Mixture) == len(m)
		for j := 0; same && j < len(m); j++ {
			same = math.Abs(r.Mixture[j]-m[j]) <= 1e-9
		}
		if same {
			return r, nil
		}
	}
	return nil, fmt.Errorf("world %s: mixture %.4f was not recorded at %s", w.name, m, w.scales[scale].name)
}

// finalValue is the run's last recorded value of objective.
func finalValue(r *sim.RecordedRun, objective string) (float64, error) {
	v, ok := r.Points[len(r.Points)-1].Eval[objective]
	if !ok {
		return 0, fmt.Errorf("run %s does not record %q", r.RunID, objective)
	}
	return v, nil
}

func (w *PoolWorld) Observe(objective string, _ *bo.Problem, t bo.Trial, _ float64, _ *rand.Rand) (bo.Observation, error) {
	r, err := w.lookup(t.Scale, t.Mixture)
	if err != nil {
		return bo.Observation{}, err
	}
	s := w.scales[t.Scale]
	obs := bo.Observation{Trial: t, Done: true}
	// Recorded steps map onto the world's step axis as fractions of the run.
	for _, pt := range r.Points {
		v, ok := pt.Eval[objective]
		if !ok {
			continue
		}
		step := max(1, pt.Step*poolSteps/s.recordedStep)
		if step > t.Steps {
			break
		}
		if n := len(obs.Curve); n > 0 && obs.Curve[n-1].Step == step {
			obs.Curve[n-1].Value = v
			continue
		}
		obs.Curve = append(obs.Curve, bo.CurvePoint{Step: step, Value: v})
	}
	if len(obs.Curve) == 0 {
		return bo.Observation{}, fmt.Errorf("world %s: run %s records no %q", w.name, r.RunID, objective)
	}
	return obs, nil
}

func (w *PoolWorld) Prior(objective string, p *bo.Problem) []bo.Observation {
	if w.priorScale < 0 {
		return nil
	}
	var out []bo.Observation
	for _, r := range w.scales[w.priorScale].runs {
		o, err := w.Observe(objective, p, bo.Trial{Mixture: r.Mixture, Scale: w.priorScale, Steps: poolSteps}, 0, nil)
		if err == nil {
			out = append(out, o)
		}
	}
	return out
}

func (w *PoolWorld) TargetValue(objective string, _ *bo.Problem, m []float64) (float64, error) {
	r, err := w.lookup(w.target, m)
	if err != nil {
		return 0, err
	}
	return finalValue(r, objective)
}

// Optimum is the best recorded value at the target.
func (w *PoolWorld) Optimum(objective string, _ int) (float64, []float64, error) {
	best, bestW := math.NaN(), []float64(nil)
	for i := range w.scales[w.target].runs {
		r := &w.scales[w.target].runs[i]
		v, err := finalValue(r, objective)
		if err != nil {
			return 0, nil, fmt.Errorf("world %s: %w", w.name, err)
		}
		if bestW == nil || (maximised(objective) && v > best) || (!maximised(objective) && v < best) {
			best, bestW = v, r.Mixture
		}
	}
	return best, append([]float64(nil), bestW...), nil
}
