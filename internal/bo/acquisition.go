package bo

import (
	"math"
	"sort"
)

func normPDF(z float64) float64 { return math.Exp(-0.5*z*z) / math.Sqrt(2*math.Pi) }
func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// kgMin is the knowledge gradient of one observation for minimisation over a discrete set:
// min_j a_j − E[min_j (a_j + b_j Z)], Z ~ N(0, 1), where a are the posterior means of the
// set and b_j = Cov(f_j, y)/sd(y) their sensitivities to the observation y. It is
// computed exactly from the lower envelope of the lines (Frazier, Powell & Dayanik 2009).
// scratch must have len(a) entries; it is reused between calls.
func kgMin(a, b []float64, scratch []int) float64 {
	// E[min(a + bZ)] = −E[max(−a + bZ)] since Z is symmetric: work with lines −a + bZ.
	idx := scratch[:len(a)]
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(p, q int) bool {
		i, j := idx[p], idx[q]
		if b[i] != b[j] {
			return b[i] < b[j]
		}
		return -a[i] < -a[j]
	})
	// Upper envelope of lines (−a_i, b_i) by increasing slope, with breakpoints c.
	env := make([]int, 0, 16)
	cs := make([]float64, 0, 16)
	for p, i := range idx {
		if p+1 < len(idx) && b[idx[p+1]] == b[i] {
			continue // a line with the same slope and a larger intercept follows
		}
		for len(env) > 0 {
			j := env[len(env)-1]
			z := (-a[j] + a[i]) / (b[i] - b[j]) // where line i overtakes line j
			if z <= cs[len(cs)-1] {
				env = env[:len(env)-1]
				cs = cs[:len(cs)-1]
				continue
			}
			env = append(env, i)
			cs = append(cs, z)
			break
		}
		if len(env) == 0 {
			env = append(env, i)
			cs = append(cs, math.Inf(-1))
		}
	}
	// ν = Σ (b_{k+1} − b_k) f(−|c_{k+1}|), f(z) = zΦ(z) + φ(z): stable for small gains.
	kg := 0.0
	for k := 0; k+1 < len(env); k++ {
		c := -math.Abs(cs[k+1])
		kg += (b[env[k+1]] - b[env[k]]) * (c*normCDF(c) + normPDF(c))
	}
	return math.Max(kg, 0)
}

// expectedImprovement is E[max(best − f, 0)] for f ~ N(mu, sd²), minimising.
func expectedImprovement(best, mu, sd float64) float64 {
	if !(sd > 0) {
		return math.Max(best-mu, 0)
	}
	z := (best - mu) / sd
	return (best-mu)*normCDF(z) + sd*normPDF(z)
}
