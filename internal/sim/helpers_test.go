package sim

import (
	"math"
	"os"
	"testing"
)

// optimiseSynthetic minimises metric at the final step over the simplex with exponentiated
// gradient descent (finite-difference gradients); the synthetic objective is convex.
func optimiseSynthetic(t *testing.T, src Source, domains []string, params float64, steps int64, metric string) ([]float64, float64) {
	t.Helper()
	k := len(domains)
	f := func(w []float64) float64 {
		run, err := src.Run(Request{Domains: domains, Mixture: w, Scale: "x", Params: params, Steps: steps, EvalEvery: steps})
		if err != nil {
			t.Fatal(err)
		}
		return run.Points[len(run.Points)-1].Eval[metric]
	}
	w := make([]float64, k)
	for i := range w {
		w[i] = 1 / float64(k)
	}
	g := make([]float64, k)
	for it := 0; it < 500; it++ {
		base := f(w)
		for i := range w {
			v := append([]float64(nil), w...)
			const h = 1e-7
			v[i] += h
			for j := range v {
				v[j] /= 1 + h
			}
			g[i] = (f(v) - base) / h
		}
		sum := 0.0
		for i := range w {
			w[i] *= math.Exp(-2 * g[i])
			sum += w[i]
		}
		for i := range w {
			w[i] /= sum
		}
	}
	return w, f(w)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
