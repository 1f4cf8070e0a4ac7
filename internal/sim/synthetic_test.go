package sim

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func syntheticFinal(t *testing.T, src Source, req Request, metric string) float64 {
	t.Helper()
	run, err := src.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	return run.Points[len(run.Points)-1].Eval[metric]
}

func TestSyntheticFallsWithStepsAndParams(t *testing.T) {
	src := NewSynthetic(SyntheticOptions{})
	for _, domains := range [][]string{slimDomains, {"code", "web"}, {"a", "b", "c", "d", "e", "f", "g", "h"}} {
		for _, mix := range [][]float64{uniform(len(domains)), corner(len(domains), 0)} {
			t.Run(fmt.Sprint(domains, mix), func(t *testing.T) {
				prevScale := map[string]float64{}
				for _, params := range []float64{2e7, 6e7, 1.5e8, 1e9, 7e9} {
					run, err := src.Run(Request{Domains: domains, Mixture: mix, Scale: "s", Params: params, Steps: 5000})
					if err != nil {
						t.Fatal(err)
					}
					for i := 1; i < len(run.Points); i++ {
						if run.Points[i].TrainLoss >= run.Points[i-1].TrainLoss {
							t.Fatalf("%g params: train loss rises from step %d to %d", params, run.Points[i-1].Step, run.Points[i].Step)
						}
						for k, v := range run.Points[i].Eval {
							if v >= run.Points[i-1].Eval[k] {
								t.Fatalf("%g params: %s rises at step %d", params, k, run.Points[i].Step)
							}
						}
					}
					last := run.Points[len(run.Points)-1].Eval
					for k, v := range last {
						if p, ok := prevScale[k]; ok && v >= p {
							t.Fatalf("%s does not fall from the previous scale to %g params: %g >= %g", k, params, v, p)
						}
						if !(v > 0) || math.IsInf(v, 0) {
							t.Fatalf("%s = %g", k, v)
						}
					}
					prevScale = last
				}
			})
		}
	}
}

// corner is a mixture with almost all weight on domain i.
func corner(k, i int) []float64 {
	w := make([]float64, k)
	for j := range w {
		w[j] = 0.01 / float64(k-1)
	}
	w[i] = 0.99
	return w
}

func TestSyntheticInteriorOptimum(t *testing.T) {
	src := NewSynthetic(SyntheticOptions{})
	for _, domains := range [][]string{slimDomains, {"code", "web", "math"}} {
		k := len(domains)
		for _, metric := range []string{"mean_ce", domains[1] + "_ce"} {
			t.Run(fmt.Sprint(domains, metric), func(t *testing.T) {
				small, _ := optimiseSynthetic(t, src, domains, 2e7, 2000, metric)
				large, best := optimiseSynthetic(t, src, domains, 1e9, 19500, metric)
				for i, w := range large {
					if w < 0.02 || w > 0.9 {
						t.Errorf("optimum %v is not interior (weight %d = %g)", large, i, w)
					}
				}
				req := Request{Domains: domains, Scale: "1B", Params: 1e9, Steps: 19500, EvalEvery: 19500}
				for i := range k {
					req.Mixture = corner(k, i)
					if v := syntheticFinal(t, src, req, metric); v <= best {
						t.Errorf("corner %d (%g) beats the optimum (%g)", i, v, best)
					}
				}
				req.Mixture = uniform(k)
				if v := syntheticFinal(t, src, req, metric); v-best < 5e-4 || l1(large, req.Mixture) < 0.05 {
					t.Errorf("uniform (%g) is as good as or near the optimum (%g, %v): trivial problem", v, best, large)
				}
				// The small-scale optimum is a biased proxy, but not far off.
				if d := l1(small, large); d < 0.005 || d > 0.5 {
					t.Errorf("optimum moves by %g (L1) from 20M/2k steps to 1B/19.5k steps: %v → %v", d, small, large)
				}
			})
		}
	}
}

func l1(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d += math.Abs(a[i] - b[i])
	}
	return d
}

func TestSyntheticDeterministic(t *testing.T) {
	req := Request{Domains: slimDomains, Mixture: []float64{0.3, 0.3, 0.2, 0.1, 0.1}, Scale: "150M", Params: 1.5e8, Steps: 3000, TokensPerStep: 1000, FlopsPerStep: 2e14, Seed: 3}
	a, err := NewSynthetic(SyntheticOptions{}).Run(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSynthetic(SyntheticOptions{}).Run(req)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two synthetic sources disagree")
	}
	// A domain's coefficients depend on its name, not on its neighbours' order.
	swapped := req
	swapped.Domains = []string{"stackexchange", "wikipedia", "github", "arxiv", "book"}
	swapped.Mixture = []float64{0.3, 0.3, 0.2, 0.1, 0.1}
	c, _ := NewSynthetic(SyntheticOptions{}).Run(swapped)
	if !reflect.DeepEqual(a.Points[5].Eval, c.Points[5].Eval) {
		t.Error("reordering domains (same weights by name) changed the losses")
	}
	salted, _ := NewSynthetic(SyntheticOptions{Salt: "x"}).Run(req)
	if reflect.DeepEqual(a, salted) {
		t.Error("salt changed nothing")
	}
	p := a.Points[2]
	if p.Step != 300 || p.Tokens != 300000 || p.WallTime != 300*2e14/1e14 {
		t.Errorf("point %+v", p)
	}
	train := 0.0
	for i, d := range req.Domains {
		train += req.Mixture[i] * p.Eval[d+"_ce"]
	}
	if math.Abs(train-p.TrainLoss) > 1e-12 {
		t.Errorf("train loss %g, want mixture-weighted %g", p.TrainLoss, train)
	}
	if len(p.Eval) != len(req.Domains)+1 {
		t.Errorf("eval has %d metrics, want %d", len(p.Eval), len(req.Domains)+1)
	}

	noisy := NewSynthetic(SyntheticOptions{Noise: 0.02})
	n1, _ := noisy.Run(req)
	n2, _ := noisy.Run(req)
	if !reflect.DeepEqual(n1, n2) || reflect.DeepEqual(n1, a) {
		t.Error("noise is not deterministic or not applied")
	}
}

func TestSyntheticErrors(t *testing.T) {
	src := NewSynthetic(SyntheticOptions{})
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"no domains", Request{Steps: 10, Params: 1e8}, "no domains"},
		{"bad mixture", Request{Domains: []string{"a", "b"}, Mixture: []float64{0.2, 0.2}, Params: 1e8, Steps: 10}, "sum to 0.4"},
		{"unknown size", Request{Domains: []string{"a"}, Mixture: []float64{1}, Scale: "large", Steps: 10}, `scale "large" has no params`},
		{"tiny eval every", Request{Domains: []string{"a"}, Mixture: []float64{1}, Params: 1e8, Steps: 1 << 40, EvalEvery: 1}, "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := src.Run(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A size read from the scale name stands in for missing params.
	run, err := src.Run(Request{Domains: []string{"a"}, Mixture: []float64{1}, Scale: "1.5B", Steps: 250})
	if err != nil {
		t.Fatal(err)
	}
	if got := []int64{run.Points[0].Step, run.Points[2].Step}; got[0] != 100 || got[1] != 250 {
		t.Errorf("steps %v, want 100 … 250", got)
	}
}

func TestParseScaleName(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"20M", 2e7}, {"1B", 1e9}, {"1.3b", 1.3e9}, {"350k", 3.5e5}, {"2T", 2e12},
		{"", 0}, {"M", 0}, {"big", 0}, {"-1B", 0}, {"0M", 0}, {"1e400B", 0},
	}
	for _, tc := range tests {
		got, ok := parseScaleName(tc.in)
		if ok != (tc.want > 0) || got != tc.want {
			t.Errorf("parseScaleName(%q) = %g, %v; want %g", tc.in, got, ok, tc.want)
		}
	}
}

func TestStepGrid(t *testing.T) {
	tests := []struct {
		from, every, steps int64
		want               []int64
	}{
		{100, 100, 300, []int64{100, 200, 300}},
		{100, 100, 350, []int64{100, 200, 300, 350}},
		{100, 30, 200, []int64{120, 150, 180, 200}},
		{1, 100, 50, []int64{50}},
		{1, 1000, 100, []int64{100}},
	}
	for _, tc := range tests {
		got, err := stepGrid(tc.from, tc.every, tc.steps)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("stepGrid(%d, %d, %d) = %v, %v; want %v", tc.from, tc.every, tc.steps, got, err, tc.want)
		}
	}
}
