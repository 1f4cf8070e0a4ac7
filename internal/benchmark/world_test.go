package benchmark

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/sim/simtest"
)

// tinyPool writes a recording of a 3-domain pool at two scales (the small one has no
// flops_per_step: its cost comes from 6·params·tokens) and loads it as a world. The small
// scale's pool is larger than the target's and shares none of its mixtures. The loss is
// the squared distance to best at both scales (plus a constant), so the answer is known.
func tinyPool(t *testing.T) (*PoolWorld, string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(4, 4))
	best := []float64{0.6, 0.3, 0.1}
	loss := func(w []float64, off float64) float64 {
		d := 0.0
		for i := range w {
			d += (w[i] - best[i]) * (w[i] - best[i])
		}
		return off + d
	}
	var buf bytes.Buffer
	add := func(id, scale string, params float64, steps int64, flops float64, w []float64, off float64) {
		r := sim.RecordedRun{RunID: id, Domains: []string{"a", "b", "c"}, Mixture: w, Scale: scale, Params: params,
			Steps: steps, TokensPerStep: 1000, FlopsPerStep: flops,
			Points: []sim.RecordedPoint{{Step: steps, Tokens: steps * 1000, TrainLoss: loss(w, off),
				Eval: map[string]float64{"x_ce": loss(w, off), "y_acc": 1 - loss(w, off)}}}}
		if err := sim.WriteRecordedRun(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	lower, upper := []float64{0, 0, 0}, []float64{1, 1, 1}
	for i := range 80 {
		add(fmt.Sprintf("s%03d", i), "S", 1e6, 100, 0, bo.SampleDirichlet(rng, lower, upper), 3)
	}
	for i, w := range [][]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1. / 3, 1. / 3, 1. / 3}, {0.2, 0.2, 0.6},
		{0.1, 0.8, 0.1}, {0.3, 0.1, 0.6}, {0.5, 0, 0.5}, {0, 0.5, 0.5}, best} {
		add(fmt.Sprintf("t%02d", i), "T", 1e9, 1000, 6e9*1000, w, 2)
	}
	path := filepath.Join(t.TempDir(), "pool.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWorld("recording:"+path, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return w.(*PoolWorld), path
}

// A pool world answers only pool mixtures, exactly; its f* is the best recorded target
// value; costs come from the recording.
func TestPoolWorld(t *testing.T) {
	w, _ := tinyPool(t)
	if got := strings.Join(w.Objectives(), ","); got != "x_ce,y_acc" {
		t.Errorf("objectives %s", got)
	}
	p, err := w.Problem("x_ce", 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Scales) != 2 || p.TargetScale != 1 || len(p.Scales[0].Pool) != 80 || len(p.Scales[1].Pool) != 10 {
		t.Fatalf("problem scales %+v target %d", p.Scales, p.TargetScale)
	}
	// Cost: 6·1e6·1000 per step for 100 steps at S; 6e12 per step for 1000 at T.
	small := p.Cost(bo.Trial{Scale: 0, Steps: p.TargetSteps})
	target := p.Cost(bo.Trial{Scale: 1, Steps: p.TargetSteps})
	if math.Abs(small-6e9*100) > 1 || math.Abs(target-6e12*1000) > 1e3 {
		t.Errorf("costs %g and %g, want 6e11 and 6e15", small, target)
	}
	for i, m := range p.Scales[0].Pool[:5] {
		o, err := w.Observe("x_ce", &p, bo.Trial{Mixture: m, Scale: 0, Steps: p.TargetSteps}, 0.5, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		r := w.scales[0].runs[i]
		if len(o.Curve) != 1 || o.Curve[0].Value != r.Points[0].Eval["x_ce"] {
			t.Errorf("pool mixture %d answered %+v, recorded %g (no noise added)", i, o.Curve, r.Points[0].Eval["x_ce"])
		}
	}
	off := append([]float64(nil), p.Scales[0].Pool[0]...)
	off[0] += 1e-6
	off[1] -= 1e-6
	if _, err := w.Observe("x_ce", &p, bo.Trial{Mixture: off, Scale: 0, Steps: p.TargetSteps}, 0, nil); err == nil {
		t.Error("a mixture near a pool member but not in the pool was answered")
	}
	if _, err := w.TargetValue("x_ce", &p, p.Scales[0].Pool[0]); err == nil {
		t.Error("a mixture without a target run was valued at the target")
	}
	f, fw, err := w.Optimum("x_ce", 0)
	if err != nil || math.Abs(f-2) > 1e-12 || math.Abs(fw[0]-0.6) > 1e-12 {
		t.Errorf("f* %g at %v (%v), want 2 at the best mixture", f, fw, err)
	}
	fa, _, _ := w.Optimum("y_acc", 0)
	if math.Abs(fa-(-1)) > 1e-12 {
		t.Errorf("maximised f* %g, want -1", fa)
	}
	// The prior variant hands every small-scale run over.
	pw, err := w.WithPrior("pool+prior", "S")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pw.Prior("x_ce", &p)); got != 80 {
		t.Errorf("%d prior runs, want 80", got)
	}
	if _, err := w.WithPrior("bad", "T"); err == nil {
		t.Error("prior runs from the target scale accepted")
	}
}

// The mixbench table on tiny worlds, in the normal test run: every baseline and mfms
// on a data model and on a pool world; the regmix baseline finds the pool's known best
// with its first target run; the headline and the aggregate are printed.
func TestTableOnTinyWorlds(t *testing.T) {
	pool, _ := tinyPool(t)
	worlds := []struct {
		w   World
		obj string
		cfg Config
	}{
		{NewDataModelWorld(tinyModel(t)), "stackexchange_ce", Config{Budget: 1.5, Noise: []float64{0.01}, Parallel: []int{1}}},
		{pool, "x_ce", Config{Budget: 4, Noise: []float64{0.01}, Parallel: []int{1, 3}}},
	}
	var heads []Headline
	var out bytes.Buffer
	for _, c := range worlds {
		cfg := c.cfg
		cfg.World, cfg.Objective = c.w, c.obj
		cfg.Policies = []string{"random", "uniform", "regmix", "mfbo", "mfms"}
		cfg.Seeds, cfg.SeedBase, cfg.FStarSamples, cfg.MaxTrials, cfg.Workers = 2, 1, 2000, 150, 2
		res, err := Execute(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Runs {
			if r.Err != "" {
				t.Errorf("%s %s seed %d %s: %s", res.World, r.Policy, r.Seed, r.Setting, r.Err)
			}
			if r.Spent > cfg.Budget*(1+1e-9) {
				t.Errorf("%s %s spent %g of %g", res.World, r.Policy, r.Spent, cfg.Budget)
			}
			for _, pt := range r.Curve {
				if math.IsNaN(pt.Regret) || pt.Regret < -1e-9 {
					t.Errorf("%s %s regret %g", res.World, r.Policy, pt.Regret)
				}
			}
			if res.World == pool.Name() && r.Policy == "regmix" && r.final() != 0 {
				t.Errorf("regmix on the pool: final regret %g, want 0 (the proxy ranks like the target)", r.final())
			}
			if res.World == pool.Name() && r.Policy == "uniform" && r.Trials != 1 {
				t.Errorf("uniform ran %d trials", r.Trials)
			}
		}
		sums := Summarise(res, Baselines)
		if err := WriteTable(&out, res, sums); err != nil {
			t.Fatal(err)
		}
		heads = append(heads, Headlines(res, sums, "mfms")...)
	}
	if len(heads) != 3 {
		t.Fatalf("%d headlines, want 3 (one data-model setting, two pool settings)", len(heads))
	}
	for _, h := range heads {
		if h.Level < Floor || h.Best == "" || h.Best == "mfms" {
			t.Errorf("headline %+v", h)
		}
	}
	if err := WriteHeadlines(&out, heads); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"world datamodel", "world recording:", "vs regmix", "vs uniform", "headline", "aggregate over 3 cases"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	dir := t.TempDir()
	if err := WriteHeadlineFile(dir, heads, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "headlines.json")); err != nil {
		t.Error(err)
	}
}

// The headline level is the strongest baseline's median final regret, floored at 0.001,
// and the speedup is that baseline's reach-and-stay cost over the policy's.
func TestHeadlineLevel(t *testing.T) {
	set := Setting{Noise: 0, Parallel: 1}
	run := func(p string, pts ...Point) Run { return Run{Policy: p, Setting: set, Curve: pts} }
	res := &Result{World: "w", Objective: "o", Budget: 10, Runs: []Run{
		run("random", Point{1, 0.05}, Point{8, 0.02}),
		run("uniform", Point{1, 0.04}),
		run("mfms", Point{0.5, 0.03}, Point{2, 0.01}, Point{4, 0.0001}),
	}}
	hs := Headlines(res, Summarise(res, Baselines), "mfms")
	if len(hs) != 1 {
		t.Fatalf("%d headlines", len(hs))
	}
	h := hs[0]
	if h.Best != "random" || math.Abs(h.Level-0.02) > 1e-12 {
		t.Errorf("best %s at %g, want random at 0.02", h.Best, h.Level)
	}
	// random stays at 0.02 from 8 TRE, mfms from 2: 4× (to the cost grid's 1% steps).
	if math.Abs(h.BestCost/8-1) > 0.015 || math.Abs(h.Cost/2-1) > 0.015 || math.Abs(h.Speedup.Value/4-1) > 0.03 {
		t.Errorf("costs %g and %g, speedup %g; want 8, 2, 4", h.BestCost, h.Cost, h.Speedup.Value)
	}
	// Below the floor the level is 0.001.
	res.Runs[0] = run("random", Point{1, 0.05}, Point{8, 0.00001})
	h = Headlines(res, Summarise(res, Baselines), "mfms")[0]
	if h.Level != Floor {
		t.Errorf("level %g, want the floor %g", h.Level, Floor)
	}
	ag := Aggregated([]Headline{{Speedup: Speedup{Value: 2}}, {Speedup: Speedup{Value: 0.5}}, {Speedup: Speedup{Value: 8}},
		{Speedup: Speedup{Value: 1, UpperBound: true}}})
	if ag.Median != 1.5 || ag.Worst != 0.5 || ag.AtLeastOne != 2 {
		t.Errorf("aggregate %+v", ag)
	}
}

// The shipped RegMix worlds load from the shared data, with the pools the README gives.
func TestShippedWorlds(t *testing.T) {
	simtest.SharedFile(t, "regmix-pile-1b.jsonl")
	dir := simtest.SharedDir()
	for _, c := range []struct {
		name       string
		pools      []int
		prior      int
		objectives string
	}{
		{"regmix-60m", []int{768, 256}, 0, "pile_cc_ce,mean_ce"},
		{"regmix-1b", []int{768, 256, 64}, 0, "pile_cc_ce,mean_ce"},
		{"regmix-1b-prior", []int{768, 256, 64}, 768, "pile_cc_ce,mean_ce"},
	} {
		w, err := OpenWorld(c.name, "", dir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := w.Problem("pile_cc_ce", 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		var pools []int
		for _, s := range p.Scales {
			pools = append(pools, len(s.Pool))
		}
		if fmt.Sprint(pools) != fmt.Sprint(c.pools) || strings.Join(w.Objectives(), ",") != c.objectives {
			t.Errorf("%s: pools %v objectives %v", c.name, pools, w.Objectives())
		}
		if got := len(w.Prior("pile_cc_ce", &p)); got != c.prior {
			t.Errorf("%s: %d prior runs, want %d", c.name, got, c.prior)
		}
	}
	if _, err := OpenWorld("datamodel", filepath.Join(t.TempDir(), "missing.json"), dir); err == nil ||
		!strings.Contains(err.Error(), "shared benchmark data") {
		t.Errorf("missing data model: %v", err)
	}
}

// Prior runs reach the policy and cost nothing: on the tiny pool with its small scale as
// prior, regmix's first trial is already a target run of the known best mixture, and the
// spend is its target runs alone.
func TestPriorRunsFree(t *testing.T) {
	pool, _ := tinyPool(t)
	w, err := pool.WithPrior("tiny+prior", "S")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{World: w, Objective: "x_ce", Policies: []string{"regmix"}, Seeds: 1, SeedBase: 1, Budget: 2,
		Noise: []float64{0}, Parallel: []int{1}, MaxTrials: 50, Workers: 1}
	res, err := Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runs[0]
	if r.Err != "" || r.Trials != 2 || math.Abs(r.Spent-2) > 1e-9 || r.SpendBy["S"] != 0 {
		t.Fatalf("run %+v: want 2 target runs, 2 TRE, nothing at S", r)
	}
	if len(r.Curve) == 0 || r.Curve[0].Regret != 0 || math.Abs(r.Curve[0].Cost-1) > 1e-9 {
		t.Errorf("curve %+v: want regret 0 after the first target run", r.Curve)
	}
}
