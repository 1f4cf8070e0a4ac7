package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mixopt/mixopt/internal/sim"
)

// tinyModel writes a small random data model (3 scales, 10 step points) and loads it.
func tinyModel(t *testing.T) *sim.DataModel {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	layer := func(out, in int) map[string]any {
		w := make([][]float64, out)
		for i := range w {
			w[i] = make([]float64, in)
			for j := range w[i] {
				w[i][j] = rng.NormFloat64() * 0.5
			}
		}
		b := make([]float64, out)
		return map[string]any{"weight": w, "bias": b}
	}
	m := map[string]any{
		"name":    "tiny",
		"domains": []string{"a", "b", "c", "d", "e"},
		"scales": []map[string]any{
			{"name": "20M", "size_m": 20, "gflops_per_step": 1e5},
			{"name": "150M", "size_m": 150, "gflops_per_step": 6e5},
			{"name": "1B", "size_m": 1000, "gflops_per_step": 8e6},
		},
		"steps":   map[string]any{"min": 100, "max": 1000, "every": 100, "full_run": 1000},
		"x_mean":  []float64{0.2, 0.2, 0.2, 0.2, 0.2, 300, 500},
		"x_std":   []float64{0.2, 0.2, 0.2, 0.2, 0.2, 400, 300},
		"y_mean":  []float64{2, 1},
		"y_std":   []float64{0.1, 0.05},
		"outputs": []string{"train_ce", "stackexchange_ce"},
		"layers":  []any{layer(8, 7), layer(2, 8)},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dm, err := sim.LoadDataModel(path)
	if err != nil {
		t.Fatal(err)
	}
	return dm
}

// A small end-to-end benchmark: every policy runs, regret is never negative or NaN,
// spending stays within the budget, and the table, JSON and plots are written.
func TestSmoke(t *testing.T) {
	dm := tinyModel(t)
	cfg := Config{World: NewDataModelWorld(dm), Objective: "stackexchange_ce", Policies: []string{"random", "mfbo", "mfms"},
		Seeds: 2, SeedBase: 1, Budget: 1.5, Noise: []float64{0.01}, Parallel: []int{1, 3},
		FStarSamples: 2000, MaxTrials: 12, Workers: 2}
	res, err := Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 3*2*1*2 {
		t.Fatalf("%d runs", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Err != "" {
			t.Errorf("%s seed %d %s: %s", r.Policy, r.Seed, r.Setting, r.Err)
		}
		if r.Spent > cfg.Budget*(1+1e-9) {
			t.Errorf("%s spent %g TRE of %g", r.Policy, r.Spent, cfg.Budget)
		}
		if len(r.Curve) == 0 {
			t.Errorf("%s seed %d: no recommendations", r.Policy, r.Seed)
		}
		for _, pt := range r.Curve {
			if math.IsNaN(pt.Regret) || pt.Regret < -1e-9 {
				t.Errorf("%s: regret %g", r.Policy, pt.Regret)
			}
		}
	}
	sums := Summarise(res, []string{"random", "mfbo"})
	var buf bytes.Buffer
	if err := WriteTable(&buf, res, sums); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"noise=0.01 parallel=3", "noise=0.01 parallel=1", "mfms", "vs random"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	dir := t.TempDir()
	if err := WriteFiles(dir, res, sums, "test"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "regret_noise0.01_par1.svg", "regret_noise0.01_par3.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// f* is at most every vertex and every sample the search could have drawn.
func TestFStarBelowVertices(t *testing.T) {
	dm := tinyModel(t)
	f, w, err := FStar(dm, "stackexchange_ce", 5000, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := dm.OutputIndex("stackexchange_ce")
	for i := 0; i < 5; i++ {
		v := make([]float64, 5)
		v[i] = 1
		if dm.Eval(v, 1000, 1000)[out] < f-1e-12 {
			t.Errorf("vertex %d beats f*", i)
		}
	}
	if got := dm.Eval(w, 1000, 1000)[out]; math.Abs(got-f) > 1e-12 {
		t.Errorf("f* %g but its mixture gives %g", f, got)
	}
}

func TestReach(t *testing.T) {
	grid := []float64{1, 2, 3, 4, 5}
	med := []float64{0.5, 0.05, 0.2, 0.05, 0.01}
	r := reach(grid, med, 0.1)
	if r.First != 2 || r.Stay != 4 {
		t.Errorf("reach = %+v, want first 2, stay 4", r)
	}
	if r := reach(grid, med, 0.001); !math.IsInf(r.Stay, 1) || !math.IsInf(r.First, 1) {
		t.Errorf("unreached level: %+v", r)
	}
}

// Merge joins runs judged alike and refuses duplicates and other optima.
func TestMerge(t *testing.T) {
	a := &Result{Objective: "o", FStar: 1, Budget: 30, Runs: []Run{{Policy: "p", Seed: 1}}}
	b := &Result{Objective: "o", FStar: 1, Budget: 30, Runs: []Run{{Policy: "p", Seed: 2}, {Policy: "q", Seed: 1}}}
	m, err := Merge(a, b)
	if err != nil || len(m.Runs) != 3 {
		t.Fatalf("merge: %v, %d runs", err, len(m.Runs))
	}
	if m, err := Merge(a, a); err != nil || len(m.Runs) != 1 {
		t.Errorf("the same run twice: %v, %d runs", err, len(m.Runs))
	}
	d := &Result{Objective: "o", FStar: 1, Budget: 30, Runs: []Run{{Policy: "p", Seed: 1, Curve: []Point{{1, 0.1}}}}}
	if _, err := Merge(a, d); err == nil {
		t.Error("two different outcomes of one run merged")
	}
	c := &Result{Objective: "o", FStar: 2, Budget: 30}
	if _, err := Merge(a, c); err == nil {
		t.Error("results with different f* merged")
	}
}

// traceBuffer is a run's trace kept in memory, marked when the run closes it.
type traceBuffer struct {
	bytes.Buffer
	closed bool
}

func (b *traceBuffer) Close() error { b.closed = true; return nil }

// A trace has one line per trial bought and one per recommendation, matching the run.
func TestTrace(t *testing.T) {
	var mu sync.Mutex
	traces := map[string]*traceBuffer{}
	cfg := Config{World: NewDataModelWorld(tinyModel(t)), Objective: "stackexchange_ce", Policies: []string{"mfms"},
		Seeds: 2, SeedBase: 1, Budget: 1, Noise: []float64{0}, Parallel: []int{1},
		FStarSamples: 2000, MaxTrials: 10, Workers: 2,
		Trace: func(policy string, seed uint64, set Setting) (io.WriteCloser, error) {
			mu.Lock()
			defer mu.Unlock()
			b := &traceBuffer{}
			traces[fmt.Sprintf("%s/%d/%s", policy, seed, set)] = b
			return b, nil
		}}
	res, err := Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Runs {
		b := traces[fmt.Sprintf("%s/%d/%s", r.Policy, r.Seed, r.Setting)]
		if b == nil || !b.closed {
			t.Fatalf("%s seed %d: trace %v not written and closed", r.Policy, r.Seed, b)
		}
		trials, recs := 0, 0
		for _, line := range strings.Split(b.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "trial "):
				trials++
			case strings.HasPrefix(line, "recommend after"):
				recs++
			}
		}
		if trials != r.Trials || recs != len(r.Curve) || trials == 0 {
			t.Errorf("seed %d: trace has %d trials and %d recommendations, run %d and %d:\n%s",
				r.Seed, trials, recs, r.Trials, len(r.Curve), b.String())
		}
	}
}

// The landscape's target row is f* itself; no scale's best mixture and no point of the
// profile beats f* at the target (f* is refined by the same pairwise moves the profile
// makes), and the profile passes through f*'s mixture.
func TestLandscape(t *testing.T) {
	dm := tinyModel(t)
	ls, err := MapLandscape(dm, "stackexchange_ce", 3000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Optima) != len(dm.Scales) {
		t.Fatalf("%d scale optima for %d scales", len(ls.Optima), len(dm.Scales))
	}
	target := ls.Optima[len(ls.Optima)-1]
	if target.Scale != "1B" || target.TargetRegret != 0 || target.Value != ls.FStar {
		t.Errorf("target row %+v, f* %g", target, ls.FStar)
	}
	out := dm.OutputIndex("stackexchange_ce")
	for _, s := range ls.Optima {
		if s.TargetRegret < -1e-9 {
			t.Errorf("%s's best mixture beats f* at the target by %g", s.Scale, -s.TargetRegret)
		}
		size := 0.0
		for _, sc := range dm.Scales {
			if sc.Name == s.Scale {
				size = sc.SizeM
			}
		}
		if got := dm.Eval(s.Mixture, size, 1000)[out]; math.Abs(got-s.Value) > 1e-12 {
			t.Errorf("%s: value %g, its mixture gives %g", s.Scale, s.Value, got)
		}
	}
	atFStar := false
	for _, pt := range ls.Profile {
		if pt.Regret < -1e-9 {
			t.Errorf("profile point %+v beats f*", pt)
		}
		if math.Abs(pt.Regret) < 1e-9 && math.Abs(pt.Share-ls.FStarMix[maxIndex(ls.FStarMix)]) < 1e-12 {
			atFStar = true
		}
	}
	if !atFStar || len(ls.Profile) < 2 {
		t.Errorf("profile %+v does not pass through f*", ls.Profile)
	}
	var buf bytes.Buffer
	if err := WriteLandscape(&buf, ls); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20M", "150M", "regret at the target along"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	dir := t.TempDir()
	if err := WriteLandscapeFile(dir, ls); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "landscape.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Landscape
	if err := json.Unmarshal(b, &back); err != nil || back.FStar != ls.FStar || len(back.Optima) != len(ls.Optima) {
		t.Errorf("landscape.json reads back as %+v (%v)", back, err)
	}
}

// WriteCurves prints the seed-median of the regret each run had after each cost, and "-"
// while the median run has made no recommendation.
func TestWriteCurves(t *testing.T) {
	set := Setting{Noise: 0, Parallel: 1}
	res := &Result{Budget: 30, Runs: []Run{
		{Policy: "p", Seed: 1, Setting: set, Curve: []Point{{1, 0.5}, {3, 0.1}}},
		{Policy: "p", Seed: 2, Setting: set, Curve: []Point{{2, 0.3}}},
	}}
	var buf bytes.Buffer
	if err := WriteCurves(&buf, res, []float64{0.5, 2, 3}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	got := strings.Fields(lines[len(lines)-1])
	want := []string{"p", "-", "0.40000", "0.20000"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("curve row %q, want %q (output:\n%s)", got, want, buf.String())
	}
}

func maxIndex(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
