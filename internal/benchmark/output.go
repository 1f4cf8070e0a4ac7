package benchmark

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// WriteFiles writes results.json (summaries and per-run curves) and one regret-vs-cost
// SVG per setting into dir.
func WriteFiles(dir string, res *Result, sums []PolicySummary, command string) error {
	out := struct {
		Command   string          `json:"command"`
		Summaries []PolicySummary `json:"summaries"`
		*Result
	}{command, sanitize(sums), res}
	if err := writeJSON(dir, "results.json", out); err != nil {
		return err
	}
	settings := map[Setting][]PolicySummary{}
	var order []Setting
	for _, s := range sums {
		if _, ok := settings[s.Setting]; !ok {
			order = append(order, s.Setting)
		}
		settings[s.Setting] = append(settings[s.Setting], s)
	}
	for _, st := range order {
		name := fmt.Sprintf("regret_noise%g_par%d.svg", st.Noise, st.Parallel)
		if err := plotSetting(filepath.Join(dir, name), res, st, settings[st]); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes v, indented, as dir/name, creating dir.
func writeJSON(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// sanitize replaces infinities (JSON has none) with -1 in the curves and reach costs.
func sanitize(sums []PolicySummary) []PolicySummary {
	fix := func(v []float64) []float64 {
		o := make([]float64, len(v))
		for i, x := range v {
			if math.IsInf(x, 0) || math.IsNaN(x) {
				x = -1
			}
			o[i] = x
		}
		return o
	}
	out := make([]PolicySummary, len(sums))
	for i, s := range sums {
		s.Median, s.Q25, s.Q75 = fix(s.Median), fix(s.Q25), fix(s.Q75)
		s.FinalMedian, s.FinalQ25, s.FinalQ75 = fix([]float64{s.FinalMedian})[0], fix([]float64{s.FinalQ25})[0], fix([]float64{s.FinalQ75})[0]
		r := map[string]Reach{}
		for k, v := range s.Reach {
			r[k] = Reach{Stay: fix([]float64{v.Stay})[0], First: fix([]float64{v.First})[0]}
		}
		s.Reach = r
		out[i] = s
	}
	return out
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 255}, color.RGBA{0xd6, 0x27, 0x28, 255}, color.RGBA{0x2c, 0xa0, 0x2c, 255},
	color.RGBA{0xff, 0x7f, 0x0e, 255}, color.RGBA{0x94, 0x67, 0xbd, 255}, color.RGBA{0x8c, 0x56, 0x4b, 255},
}

// widenLog gives a log axis a range it can draw: a single value (every regret zero, so at
// the floor) would otherwise be padded by ±1 into negative values.
func widenLog(a *plot.Axis, floor float64) {
	if !(a.Min > 0) || math.IsInf(a.Min, 0) || math.IsInf(a.Max, 0) {
		a.Min, a.Max = floor, 1
	}
	if !(a.Min < a.Max) {
		a.Min, a.Max = a.Min/10, a.Max*10
	}
}

func plotSetting(path string, res *Result, st Setting, sums []PolicySummary) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s %s regret at the target (%s), median and IQR", res.World, res.Objective, st)
	p.X.Label.Text = "cumulative cost (target-run equivalents)"
	p.Y.Label.Text = "regret"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	const floor = 1e-5 // log axes: zero regret is drawn at the floor
	for i, s := range sums {
		c := palette[i%len(palette)]
		line := func(v []float64) plotter.XYs {
			var xy plotter.XYs
			for j, g := range s.Grid {
				if math.IsInf(v[j], 1) || math.IsNaN(v[j]) {
					continue
				}
				xy = append(xy, plotter.XY{X: g, Y: math.Max(v[j], floor)})
			}
			return xy
		}
		med := line(s.Median)
		if len(med) == 0 {
			continue
		}
		l, err := plotter.NewLine(med)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.Policy, err)
		}
		l.Color, l.Width = c, vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Policy, l)
		for _, q := range [][]float64{s.Q25, s.Q75} {
			if xy := line(q); len(xy) > 0 {
				ql, err := plotter.NewLine(xy)
				if err != nil {
					return fmt.Errorf("plot %s: %w", s.Policy, err)
				}
				ql.Color, ql.Width, ql.Dashes = c, vg.Points(0.6), []vg.Length{vg.Points(3), vg.Points(2)}
				p.Add(ql)
			}
		}
	}
	p.Legend.Top = true
	widenLog(&p.X, floor)
	widenLog(&p.Y, floor)
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("save plot %s: %w", strings.TrimSpace(path), err)
	}
	return nil
}

// LoadResult reads the runs of a results.json written by WriteFiles.
func LoadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func sameCurve(a, b []Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Merge combines results judged against the same objective, optimum and budget. Runs are
// deterministic in (policy, seed, setting), so runs from separate invocations of the same
// code combine as if made in one; a (policy, seed, setting) present twice counts once when
// its curves agree and is an error otherwise.
func Merge(parts ...*Result) (*Result, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("merge: nothing to merge")
	}
	out := &Result{World: parts[0].World, Objective: parts[0].Objective, FStar: parts[0].FStar, FStarMix: parts[0].FStarMix, Budget: parts[0].Budget}
	type key struct {
		p string
		s uint64
		t Setting
	}
	seen := map[key]*Run{}
	for _, p := range parts {
		if p.World != out.World || p.Objective != out.Objective || math.Abs(p.FStar-out.FStar) > 1e-12 || p.Budget != out.Budget {
			return nil, fmt.Errorf("merge: results differ in world, objective, f* or budget (%s %s %g %g vs %s %s %g %g)",
				p.World, p.Objective, p.FStar, p.Budget, out.World, out.Objective, out.FStar, out.Budget)
		}
		for _, r := range p.Runs {
			k := key{r.Policy, r.Seed, r.Setting}
			if prev := seen[k]; prev != nil {
				// The same deterministic run merged twice (say, from a file that already
				// merged it) counts once; two different outcomes are an error.
				if sameCurve(prev.Curve, r.Curve) {
					continue
				}
				return nil, fmt.Errorf("merge: %s seed %d %s appears twice with different outcomes", r.Policy, r.Seed, r.Setting)
			}
			seen[k] = &r
			out.Runs = append(out.Runs, r)
		}
	}
	// Order as Execute does: setting (noise, then parallelism), policy in order of first
	// appearance, seed; so the table shows one block per setting.
	first := map[string]int{}
	for _, r := range out.Runs {
		if _, ok := first[r.Policy]; !ok {
			first[r.Policy] = len(first)
		}
	}
	sort.SliceStable(out.Runs, func(i, j int) bool {
		a, b := out.Runs[i], out.Runs[j]
		if a.Setting.Noise != b.Setting.Noise {
			return a.Setting.Noise < b.Setting.Noise
		}
		if a.Setting.Parallel != b.Setting.Parallel {
			return a.Setting.Parallel < b.Setting.Parallel
		}
		if a.Policy != b.Policy {
			return first[a.Policy] < first[b.Policy]
		}
		return a.Seed < b.Seed
	})
	return out, nil
}
