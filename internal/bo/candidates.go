package bo

import (
	"math"
	"math/rand/v2"
)

// SampleSoftmaxLogits draws a mixture as softmax of logits uniform on [−3, 3] (the
// paper's random-search parameterisation, which reaches near the simplex's faces more
// often than Dirichlet(1)) and projects it into [lower, upper].
func SampleSoftmaxLogits(rng *rand.Rand, lower, upper []float64) []float64 {
	w := make([]float64, len(lower))
	sum := 0.0
	for i := range w {
		w[i] = math.Exp(rng.Float64()*6 - 3)
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return ProjectBounded(w, lower, upper)
}

// sampleDirichletAlpha draws Dirichlet(α, …, α) by normalised Gamma draws; α < 1 puts
// mass near faces, edges and corners.
func sampleDirichletAlpha(rng *rand.Rand, k int, alpha float64) []float64 {
	w := make([]float64, k)
	sum := 0.0
	for i := range w {
		w[i] = gammaDraw(rng, alpha)
		sum += w[i]
	}
	if !(sum > 0) {
		w[rng.IntN(k)] = 1
		return w
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

// gammaDraw samples Gamma(a, 1) (Marsaglia–Tsang, boosted for a < 1).
func gammaDraw(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		u := rng.Float64()
		return gammaDraw(rng, a+1) * math.Pow(u, 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}

// candidateOptions size the candidate mixture pool.
type candidateOptions struct {
	dirichlet, sparse, softmax int // global draws: Dirichlet(1), Dirichlet(0.2), softmax logits
	local                      int // perturbations around each of the best mixtures
	centres                    int // how many best mixtures to refine around
}

// candidatePool returns mixtures on the simplex inside the bounds: vertices and edge
// points (the optimum often lies on a face), global random draws, and local perturbations
// around centres (the current best mixtures), including moves that empty a domain.
func candidatePool(rng *rand.Rand, lower, upper []float64, centres [][]float64, opt candidateOptions) [][]float64 {
	k := len(lower)
	var pool [][]float64
	add := func(w []float64) { pool = append(pool, ProjectBounded(w, lower, upper)) }
	for i := 0; i < k; i++ {
		w := make([]float64, k)
		w[i] = 1
		add(w)
		for j := i + 1; j < k; j++ {
			for _, f := range []float64{0.25, 0.5, 0.75} {
				w := make([]float64, k)
				w[i], w[j] = f, 1-f
				add(w)
			}
		}
	}
	c := make([]float64, k)
	for i := range c {
		c[i] = 1 / float64(k)
	}
	add(c)
	for range opt.dirichlet {
		add(sampleDirichletAlpha(rng, k, 1))
	}
	for range opt.sparse {
		add(sampleDirichletAlpha(rng, k, 0.2))
	}
	for range opt.softmax {
		pool = append(pool, SampleSoftmaxLogits(rng, lower, upper))
	}
	for ci, ctr := range centres {
		if ci >= opt.centres {
			break
		}
		add(append([]float64(nil), ctr...))
		for n := 0; n < opt.local; n++ {
			w := append([]float64(nil), ctr...)
			switch n % 3 {
			case 0, 1:
				// Gaussian step at a scale from 0.01 to 0.2.
				sc := []float64{0.01, 0.03, 0.08, 0.2}[rng.IntN(4)]
				for i := range w {
					w[i] += sc * rng.NormFloat64()
				}
			case 2:
				// Move a share of one domain's weight to another, sometimes all of it.
				i, j := rng.IntN(k), rng.IntN(k)
				if i == j {
					j = (i + 1) % k
				}
				f := 1.0
				if rng.IntN(2) == 0 {
					f = rng.Float64()
				}
				w[j] += f * w[i]
				w[i] -= f * w[i]
			}
			add(w)
		}
	}
	return pool
}

// refineMean improves w by coordinate moves of weight between pairs of domains, accepting
// any move that lowers f, with halving step sizes; moves stay on the simplex in bounds.
func refineMean(w []float64, lower, upper []float64, f func([]float64) float64, rounds int) ([]float64, float64) {
	k := len(w)
	best := append([]float64(nil), w...)
	fb := f(best)
	step := 0.1
	for r := 0; r < rounds && step > 1e-4; r++ {
		improved := false
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				if i == j {
					continue
				}
				d := math.Min(step, math.Min(best[j]-lower[j], upper[i]-best[i]))
				if d <= 0 {
					continue
				}
				cand := append([]float64(nil), best...)
				cand[i] += d
				cand[j] -= d
				if v := f(cand); v < fb {
					best, fb, improved = cand, v, true
				}
			}
		}
		if !improved {
			step /= 2
		}
	}
	return best, fb
}
