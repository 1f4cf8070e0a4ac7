// Package benchmark runs optimisation policies in-process against worlds (the paper's
// data model, recorded pools) under the protocol of the project's BENCHMARK.md guide, and
// summarises regret against compute. It is the logic of the mixbench command.
package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/sim"
)

// Config is one benchmark: every policy × seed × noise × parallelism on one world and
// objective.
type Config struct {
	World     World
	Objective string // one of the world's metrics; "*_acc*" metrics are maximised
	Policies  []string
	Seeds     int
	SeedBase  uint64
	Budget    float64 // in target-run equivalents (TRE)
	Noise     []float64
	Parallel  []int
	// FStarSamples is the number of Dirichlet(1) draws of the dense search for f*.
	FStarSamples int
	// MaxTrials caps the trials of one run (a guard against a policy that only buys
	// crumbs); a run that hits it stops early and says so.
	MaxTrials int
	// Workers is how many runs go at once.
	Workers int
	// Progress, when set, is told about each finished run.
	Progress func(string)
	// NewPolicy builds a policy by name (default bo.New); experiments use it to run
	// configurations that are not registered.
	NewPolicy func(name string) (bo.Policy, error)
	// Trace, when set, gets one writer per run (closed when the run ends) for a line per
	// trial bought and per recommendation: what the policy did and why the curve moved.
	Trace func(policy string, seed uint64, set Setting) (io.WriteCloser, error)
}

func (cfg *Config) newPolicy(name string) (bo.Policy, error) {
	if cfg.NewPolicy != nil {
		return cfg.NewPolicy(name)
	}
	return bo.New(name)
}

// Setting is one (noise, parallelism) pair.
type Setting struct {
	Noise    float64 `json:"noise"`
	Parallel int     `json:"parallel"`
}

func (s Setting) String() string { return fmt.Sprintf("noise=%g parallel=%d", s.Noise, s.Parallel) }

// Point is the regret of the recommendation after some cumulative cost (TRE).
type Point struct {
	Cost   float64 `json:"cost"`
	Regret float64 `json:"regret"`
}

// Run is one policy × seed × setting.
type Run struct {
	Policy     string             `json:"policy"`
	Seed       uint64             `json:"seed"`
	Setting    Setting            `json:"setting"`
	Curve      []Point            `json:"curve"`
	Trials     int                `json:"trials"`
	Spent      float64            `json:"spent_tre"`
	SpendBy    map[string]float64 `json:"spend_by_scale_tre"`
	DecisionMS []float64          `json:"decision_ms"`
	HitCap     bool               `json:"hit_trial_cap,omitempty"`
	Err        string             `json:"error,omitempty"`
}

// Problem builds the decision space of the data model: its scales, steps every 100 up to
// the last recorded one, the largest scale at the last step as the target.
func Problem(m *sim.DataModel, objective string, budgetTRE float64, seed uint64) (bo.Problem, error) {
	if m.OutputIndex(objective) < 0 {
		return bo.Problem{}, fmt.Errorf("objective %q is not an output of %s (outputs: %s)", objective, m.Name, strings.Join(m.Outputs, ", "))
	}
	k := len(m.Domains)
	p := bo.Problem{Domains: m.Domains, Lower: make([]float64, k), Upper: make([]float64, k), Seed: seed,
		Maximize: strings.Contains(objective, "_acc")}
	for i := range p.Upper {
		p.Upper[i] = 1
	}
	big := 0
	for i, s := range m.Scales {
		p.Scales = append(p.Scales, bo.Scale{Name: s.Name, Params: s.SizeM * 1e6, FlopsPerStep: s.GFlopsPerStep * 1e9})
		if s.SizeM > m.Scales[big].SizeM {
			big = i
		}
	}
	for t := m.Steps.Every; t <= m.Steps.Max; t += m.Steps.Every {
		if t >= m.Steps.Min {
			p.Steps = append(p.Steps, t)
		}
	}
	if len(p.Steps) == 0 {
		return bo.Problem{}, fmt.Errorf("data model %s has no steps", m.Name)
	}
	p.TargetScale = big
	p.TargetSteps = p.Steps[len(p.Steps)-1]
	p.BudgetLeft = budgetTRE * targetCost(&p)
	return p, nil
}

func targetCost(p *bo.Problem) float64 {
	return p.Cost(bo.Trial{Scale: p.TargetScale, Steps: p.TargetSteps})
}

// objective evaluates the noise-free objective of the data model, "smaller is better"
// folded in by the caller.
type objective struct {
	m      *sim.DataModel
	out    int
	maxim  bool
	sizeM  []float64
	target int
	steps  int64
}

func (o *objective) value(w []float64, scale int, step int64) float64 {
	return o.m.Eval(w, o.sizeM[scale], float64(step))[o.out]
}

// regret of w at the target against the optimum fstar.
func (o *objective) regret(w []float64, fstar float64) float64 {
	v := o.value(w, o.target, o.steps)
	if o.maxim {
		return fstar - v
	}
	return v - fstar
}

func newObjective(m *sim.DataModel, name string, p *bo.Problem) *objective {
	o := &objective{m: m, out: m.OutputIndex(name), maxim: p.Maximize, target: p.TargetScale, steps: p.TargetSteps}
	for _, s := range m.Scales {
		o.sizeM = append(o.sizeM, s.SizeM)
	}
	return o
}

// FStar finds the best objective value at the target by dense search: samples Dirichlet(1)
// draws, every vertex, a grid on every edge, then refines the best 30 by pairwise weight
// moves (which keep the weights on the simplex and can empty a domain). It returns the
// value and the mixture.
func FStar(m *sim.DataModel, objectiveName string, samples int, seed uint64) (float64, []float64, error) {
	p, err := Problem(m, objectiveName, 1, seed)
	if err != nil {
		return 0, nil, err
	}
	o := newObjective(m, objectiveName, &p)
	v, w := o.optimumAt(o.target, samples, seed)
	return v, w, nil
}

// optimumAt is FStar's dense search at one scale (at the target's steps): the best value
// there and its mixture.
func (o *objective) optimumAt(scale, samples int, seed uint64) (float64, []float64) {
	loss := func(w []float64) float64 {
		v := o.value(w, scale, o.steps)
		if o.maxim {
			return -v
		}
		return v
	}
	k := len(o.m.Domains)
	rng := rand.New(rand.NewPCG(seed, 0xF5))
	type cand struct {
		w []float64
		f float64
	}
	var all []cand
	add := func(w []float64) { all = append(all, cand{w, loss(w)}) }
	for i := 0; i < k; i++ {
		for j := i + 1; j < k; j++ {
			for s := 0; s <= 100; s++ {
				w := make([]float64, k)
				w[i], w[j] = float64(s)/100, 1-float64(s)/100
				add(w)
			}
		}
	}
	lower, upper := make([]float64, k), make([]float64, k)
	for i := range upper {
		upper[i] = 1
	}
	for range samples {
		add(bo.SampleDirichlet(rng, lower, upper))
	}
	sort.Slice(all, func(a, b int) bool { return all[a].f < all[b].f })
	best := all[0]
	for _, c := range all[:min(30, len(all))] {
		w, f := refine(c.w, loss)
		if f < best.f {
			best = cand{w, f}
		}
	}
	v := best.f
	if o.maxim {
		v = -v
	}
	return v, best.w
}

// refine moves weight between pairs of domains while the loss falls, halving the step
// down to 1e-7.
func refine(w []float64, f func([]float64) float64) ([]float64, float64) {
	w = append([]float64(nil), w...)
	fb := f(w)
	k := len(w)
	for step := 0.1; step > 1e-7; step /= 2 {
		for improved := true; improved; {
			improved = false
			for i := 0; i < k; i++ {
				for j := 0; j < k; j++ {
					d := math.Min(step, w[j])
					if i == j || d <= 0 {
						continue
					}
					c := append([]float64(nil), w...)
					c[i] += d
					c[j] -= d
					if v := f(c); v < fb {
						w, fb, improved = c, v, true
					}
				}
			}
		}
	}
	return w, fb
}

// Result is every run with the optimum they were judged against.
type Result struct {
	World     string    `json:"world"`
	Objective string    `json:"objective"`
	FStar     float64   `json:"f_star"`
	FStarMix  []float64 `json:"f_star_mixture"`
	Budget    float64   `json:"budget_tre"`
	Runs      []Run     `json:"runs"`
}

// Execute runs the whole benchmark.
func Execute(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Seeds <= 0 || cfg.Budget <= 0 {
		return nil, fmt.Errorf("need seeds > 0 and budget > 0, got %d and %g", cfg.Seeds, cfg.Budget)
	}
	for _, name := range cfg.Policies {
		if _, err := cfg.newPolicy(name); err != nil {
			return nil, err
		}
	}
	if cfg.World == nil {
		return nil, fmt.Errorf("no world")
	}
	if _, err := cfg.World.Problem(cfg.Objective, cfg.Budget, 1); err != nil {
		return nil, err
	}
	fstar, fmix, err := cfg.World.Optimum(cfg.Objective, cfg.FStarSamples)
	if err != nil {
		return nil, err
	}
	res := &Result{World: cfg.World.Name(), Objective: cfg.Objective, FStar: fstar, FStarMix: fmix, Budget: cfg.Budget}
	noises := cfg.Noise
	if !cfg.World.AddsNoise() {
		noises = []float64{0} // recorded runs carry their own noise
	}
	type job struct {
		policy  string
		seed    uint64
		setting Setting
	}
	var jobs []job
	for _, n := range noises {
		for _, par := range cfg.Parallel {
			for _, pol := range cfg.Policies {
				for s := 0; s < cfg.Seeds; s++ {
					jobs = append(jobs, job{pol, cfg.SeedBase + uint64(s), Setting{n, par}})
				}
			}
		}
	}
	res.Runs = make([]Run, len(jobs))
	workers := max(cfg.Workers, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[i]
				run := simulate(ctx, cfg, j.policy, j.seed, j.setting, fstar)
				res.Runs[i] = run
				if cfg.Progress != nil {
					last := math.NaN()
					if len(run.Curve) > 0 {
						last = run.Curve[len(run.Curve)-1].Regret
					}
					cfg.Progress(fmt.Sprintf("%s %s %s seed=%d %s: %d trials, %.2f TRE, final regret %.5f %s", res.World, res.Objective, j.policy, j.seed, j.setting, run.Trials, run.Spent, last, run.Err))
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

type running struct {
	trial  bo.Trial
	finish float64
	order  int
}

// simulate runs one policy on one seed: parallel workers, each trial taking time in
// proportion to its FLOPs, the policy asked for a trial whenever a worker is free and for
// a recommendation whenever a trial finishes. Cost on the curve is the compute committed
// so far (finished trials plus the full cost of the running ones).
func simulate(ctx context.Context, cfg Config, policy string, seed uint64, set Setting, fstar float64) Run {
	run := Run{Policy: policy, Seed: seed, Setting: set, SpendBy: map[string]float64{}}
	pol, err := cfg.newPolicy(policy)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	world := cfg.World
	prob, err := world.Problem(cfg.Objective, cfg.Budget, seed)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	prior := world.Prior(cfg.Objective, &prob)
	// regret of w at the target; a mixture the world cannot judge (not in a target pool)
	// is an error of the policy.
	regret := func(w []float64) (float64, error) {
		v, err := world.TargetValue(cfg.Objective, &prob, w)
		if err != nil {
			return math.NaN(), err
		}
		if prob.Maximize {
			return fstar - v, nil
		}
		return v - fstar, nil
	}
	trace := io.Discard
	if cfg.Trace != nil {
		w, err := cfg.Trace(policy, seed, set)
		if err != nil {
			run.Err = err.Error()
			return run
		}
		defer w.Close()
		trace = w
	}
	// A hair of slack so that 30 target runs fit in 30 TRE despite rounding.
	total := prob.BudgetLeft * (1 + 1e-9)
	tre := targetCost(&prob)
	noise := rand.New(rand.NewPCG(seed, 0x9015E+uint64(set.Parallel)))
	var obs []bo.Observation
	var inFlight []running
	var state []byte
	committed, now := 0.0, 0.0
	decisions := 0
	exhausted := false
	for {
		for !exhausted && len(inFlight) < max(set.Parallel, 1) {
			if cfg.MaxTrials > 0 && decisions >= cfg.MaxTrials {
				run.HitCap, exhausted = true, true
				break
			}
			req := bo.Request{Problem: prob, Observations: obs, Decision: decisions, State: state, Prior: prior}
			req.Problem.BudgetLeft = total - committed
			for _, r := range inFlight {
				req.Pending = append(req.Pending, r.trial)
			}
			t0 := time.Now()
			d, err := pol.Next(ctx, req)
			run.DecisionMS = append(run.DecisionMS, float64(time.Since(t0).Microseconds())/1000)
			if errors.Is(err, bo.ErrNoTrialFits) {
				exhausted = true
				break
			}
			if err != nil {
				run.Err = fmt.Sprintf("decision %d: %v", decisions, err)
				exhausted = true
				break
			}
			c := prob.Cost(d.Trial)
			if c > total-committed+1e-6*tre {
				run.Err = fmt.Sprintf("decision %d: trial over budget", decisions)
				exhausted = true
				break
			}
			committed += c
			state = d.State
			tr, _ := regret(d.Trial.Mixture) // NaN for a mixture without a target run
			fmt.Fprintf(trace, "trial %d: %s at %d steps, mixture %.3f, cost %.3f TRE, committed %.2f TRE, regret at the target %.5f\n",
				decisions, prob.Scales[d.Trial.Scale].Name, d.Trial.Steps, d.Trial.Mixture, c/tre, committed/tre, tr)
			inFlight = append(inFlight, running{trial: d.Trial, finish: now + c, order: decisions})
			decisions++
			run.SpendBy[prob.Scales[d.Trial.Scale].Name] += c / tre
		}
		if len(inFlight) == 0 {
			break
		}
		// The earliest-finishing trial completes.
		sort.SliceStable(inFlight, func(a, b int) bool {
			if inFlight[a].finish != inFlight[b].finish {
				return inFlight[a].finish < inFlight[b].finish
			}
			return inFlight[a].order < inFlight[b].order
		})
		done := inFlight[0]
		inFlight = inFlight[1:]
		now = done.finish
		o, err := world.Observe(cfg.Objective, &prob, done.trial, set.Noise, noise)
		if err != nil {
			run.Err = fmt.Sprintf("trial %d: %v", done.order, err)
			break
		}
		obs = append(obs, o)
		run.Trials++
		req := bo.Request{Problem: prob, Observations: obs, Decision: decisions, State: state, Prior: prior}
		req.Problem.BudgetLeft = total - committed
		for _, r := range inFlight {
			req.Pending = append(req.Pending, r.trial)
		}
		rec, err := pol.Recommend(ctx, req)
		if err != nil {
			if !errors.Is(err, bo.ErrNoObservations) {
				run.Err = fmt.Sprintf("recommend after %d trials: %v", run.Trials, err)
			}
			continue
		}
		r, err := regret(rec.Mixture)
		if err != nil {
			run.Err = fmt.Sprintf("recommendation after %d trials: %v", run.Trials, err)
			break
		}
		fmt.Fprintf(trace, "recommend after trial %d finished: mixture %.3f, regret %.5f, predicted %.4f [%.4f, %.4f], basis: %s\n",
			done.order, rec.Mixture, r, rec.Value, rec.Lower, rec.Upper, rec.Basis)
		if math.IsNaN(r) {
			run.Err = "NaN regret"
		}
		run.Curve = append(run.Curve, Point{Cost: committed / tre, Regret: r})
	}
	run.Spent = committed / tre
	return run
}
