package bo

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// poolTolerance is the largest per-weight difference at which two mixtures count as the
// same pool member: far above float rounding, far below any meaningful mixture change.
const poolTolerance = 1e-9

// checkPools says which pool mixture is malformed: wrong length, off the simplex or
// outside the bounds.
func checkPools(p *Problem) error {
	k := len(p.Domains)
	for si, sc := range p.Scales {
		for j, w := range sc.Pool {
			if len(w) != k {
				return fmt.Errorf("problem: scales[%d].pool[%d]: %d weights for %d domains", si, j, len(w), k)
			}
			sum := 0.0
			for i, x := range w {
				if math.IsNaN(x) || math.IsInf(x, 0) || x < -1e-9 {
					return fmt.Errorf("problem: scales[%d].pool[%d][%d]: %g, want finite and not negative", si, j, i, x)
				}
				if len(p.Lower) == k && (x < p.Lower[i]-1e-9 || x > p.Upper[i]+1e-9) {
					return fmt.Errorf("problem: scales[%d].pool[%d][%d]: %g outside the bounds [%g, %g]", si, j, i, x, p.Lower[i], p.Upper[i])
				}
				sum += x
			}
			if math.Abs(sum-1) > 1e-6 {
				return fmt.Errorf("problem: scales[%d].pool[%d]: weights sum to %g, want 1", si, j, sum)
			}
		}
	}
	return nil
}

// pooled says whether trials at scale are restricted to its pool.
func (p *Problem) pooled(scale int) bool {
	return scale >= 0 && scale < len(p.Scales) && len(p.Scales[scale].Pool) > 0
}

func sameMixture(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > poolTolerance {
			return false
		}
	}
	return true
}

// inPool says whether w is one of pool's mixtures.
func inPool(pool [][]float64, w []float64) bool {
	for _, m := range pool {
		if sameMixture(m, w) {
			return true
		}
	}
	return false
}

// withPrior is every observation the model may use: the prior runs first, then the
// study's own.
func withPrior(req *Request, obs []Observation) []Observation {
	if len(req.Prior) == 0 {
		return obs
	}
	out := make([]Observation, 0, len(req.Prior)+len(obs))
	out = append(out, req.Prior...)
	return append(out, obs...)
}

// unusedPool lists the pool mixtures of scale that no prior run, observation or pending
// trial has used at that scale yet. A recorded pool answers a mixture exactly, so running
// one twice teaches nothing.
func unusedPool(req *Request, scale int) [][]float64 {
	pool := req.Problem.Scales[scale].Pool
	used := make([]bool, len(pool))
	mark := func(t Trial) {
		if t.Scale != scale {
			return
		}
		for i, m := range pool {
			if !used[i] && sameMixture(m, t.Mixture) {
				used[i] = true
				return
			}
		}
	}
	for _, o := range req.Prior {
		mark(o.Trial)
	}
	for _, o := range req.Observations {
		mark(o.Trial)
	}
	for _, t := range req.Pending {
		mark(t)
	}
	var out [][]float64
	for i, m := range pool {
		if !used[i] {
			out = append(out, m)
		}
	}
	return out
}

// drawFromPool returns a random unused pool mixture of scale (a copy), or false when
// the pool is used up.
func drawFromPool(req *Request, scale int, rng *rand.Rand) ([]float64, bool) {
	free := unusedPool(req, scale)
	if len(free) == 0 {
		return nil, false
	}
	return append([]float64(nil), free[rng.IntN(len(free))]...), true
}

// ValidatePools checks every scale's candidate pool against the problem's domains and
// bounds; the error names the field (scales[i].pool[j]). Policies check it themselves; a
// study's spec checks it before anything is stored.
func ValidatePools(p *Problem) error { return checkPools(p) }

// ValidatePrior checks prior runs against the problem: a known scale, one weight per
// domain on the simplex, at least one finite point at a positive step; the error names
// the field (prior[i].…).
func ValidatePrior(p *Problem, prior []Observation) error {
	for i, o := range prior {
		if o.Scale < 0 || o.Scale >= len(p.Scales) {
			return fmt.Errorf("prior[%d].scale: index %d, the study has %d scales", i, o.Scale, len(p.Scales))
		}
		if len(o.Mixture) != len(p.Domains) {
			return fmt.Errorf("prior[%d].mixture: %d weights for %d domains", i, len(o.Mixture), len(p.Domains))
		}
		sum := 0.0
		for j, w := range o.Mixture {
			if math.IsNaN(w) || math.IsInf(w, 0) || w < -1e-9 {
				return fmt.Errorf("prior[%d].mixture[%d]: %g, want finite and not negative", i, j, w)
			}
			sum += w
		}
		if math.Abs(sum-1) > 1e-6 {
			return fmt.Errorf("prior[%d].mixture: weights sum to %g, want 1", i, sum)
		}
		if o.Steps <= 0 {
			return fmt.Errorf("prior[%d].steps: %d, want positive", i, o.Steps)
		}
		if len(o.Curve) == 0 {
			return fmt.Errorf("prior[%d].curve: empty", i)
		}
		for j, c := range o.Curve {
			if c.Step <= 0 || math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
				return fmt.Errorf("prior[%d].curve[%d]: step %d value %g, want a positive step and a finite value", i, j, c.Step, c.Value)
			}
		}
	}
	return nil
}
