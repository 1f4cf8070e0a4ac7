package sim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
)

// SyntheticOptions tunes the synthetic source.
type SyntheticOptions struct {
	// Noise is the standard deviation of Gaussian noise added to each domain loss (0: none).
	Noise float64
	// Salt changes every coefficient, giving another problem over the same domains.
	Salt string
}

// Constants of the synthetic formula; docs/synthetic-source.md explains each.
const (
	synthParamsUnit = 1e8  // N is measured in units of 100M parameters
	synthStepsUnit  = 1000 // t is measured in thousands of steps
	synthEps        = 0.01 // keeps the log barrier finite at zero weight
	synthLambda     = 0.1  // how much a starved domain also learns more slowly
	synthEvery      = 100  // natural interval between curve points
)

// synthDomain holds one domain's coefficients.
type synthDomain struct {
	e, a, alpha, b, beta, c, gamma float64
}

type synthetic struct {
	opts SyntheticOptions
}

// NewSynthetic returns a source whose curves follow a scaling-law-shaped formula with
// coefficients derived from the domain names, so any domain list works without files.
func NewSynthetic(opts SyntheticOptions) Source {
	return &synthetic{opts: opts}
}

func (s *synthetic) Name() string {
	name := "synthetic"
	if s.opts.Salt != "" {
		name += " salt=" + s.opts.Salt
	}
	if s.opts.Noise > 0 {
		name += fmt.Sprintf(" (noise %g)", s.opts.Noise)
	}
	return name
}

// Run evaluates the formula every EvalEvery steps (default 100) up to req.Steps.
func (s *synthetic) Run(req Request) (Run, error) {
	if err := validateRequest(req); err != nil {
		return Run{}, fmt.Errorf("synthetic: %w", err)
	}
	params := req.Params
	if params == 0 {
		p, ok := parseScaleName(req.Scale)
		if !ok {
			return Run{}, fmt.Errorf("synthetic: scale %q has no params and its name is not a size such as \"20M\"", req.Scale)
		}
		params = p
	}
	every := req.EvalEvery
	if every == 0 {
		every = synthEvery
	}
	grid, err := stepGrid(1, every, req.Steps)
	if err != nil {
		return Run{}, fmt.Errorf("synthetic: %w", err)
	}
	coef := s.coefficients(req.Domains)
	rel := s.relatedness(req.Domains)
	u, x := mixturePenalty(req.Mixture, rel)
	flops := req.FlopsPerStep
	if flops == 0 {
		flops = 6 * params * float64(req.TokensPerStep)
	}
	nz := newNoiser(s.opts.Noise, req)
	losses := make([]float64, len(req.Domains))
	points := make([]Point, 0, len(grid))
	for _, step := range grid {
		synthLosses(losses, coef, u, x, params, float64(step))
		if rng := nz.at(step); rng != nil {
			for i := range losses {
				losses[i] += s.opts.Noise * rng.NormFloat64()
			}
		}
		eval := make(map[string]float64, len(losses)+1)
		mean, train := 0.0, 0.0
		for i, d := range req.Domains {
			eval[d+"_ce"] = losses[i]
			mean += losses[i]
			train += req.Mixture[i] * losses[i]
		}
		eval["mean_ce"] = mean / float64(len(losses))
		points = append(points, Point{
			Step:      step,
			Tokens:    step * req.TokensPerStep,
			TrainLoss: train,
			Eval:      eval,
			WallTime:  float64(step) * flops / modelledFLOPS,
		})
	}
	return Run{Points: points}, nil
}

// synthLosses writes each domain's loss at (params, step):
//
//	loss_d = E_d + A_d·n^−α_d + B_d·s^−β_d·(1 + λ·(u_d + x_d)) + C_d·(n^−γ_d·u_d + n^−γ_d/2·x_d)
//
// with n = params/1e8, s = step/1000, u_d the own-weight penalty and x_d the penalty for
// starving related domains (see mixturePenalty). The cross term decays more slowly with n
// than the own term (larger models transfer more between domains), so the best mixture
// shifts with scale and small scales are biased proxies.
func synthLosses(dst []float64, coef []synthDomain, u, x []float64, params, step float64) {
	n := params / synthParamsUnit
	t := step / synthStepsUnit
	for d, c := range coef {
		dst[d] = c.e +
			c.a*math.Pow(n, -c.alpha) +
			c.b*math.Pow(t, -c.beta)*(1+synthLambda*(u[d]+x[d])) +
			c.c*(math.Pow(n, -c.gamma)*u[d]+math.Pow(n, -c.gamma/2)*x[d])
	}
}

// mixturePenalty returns u_j = −ln((w_j+ε)/(1+ε)) and x_d = Σ_{j≠d} r_dj·u_j. Each u_j is
// convex in w and non-negative, so every loss is convex in the mixture and falls with n and
// s: starving d costs most, starving a related domain costs in proportion to the
// relatedness, and the log barrier keeps the optimum interior.
func mixturePenalty(w []float64, rel [][]float64) (u, x []float64) {
	u = make([]float64, len(w))
	for j, v := range w {
		u[j] = -math.Log((v + synthEps) / (1 + synthEps))
	}
	x = make([]float64, len(w))
	for d := range w {
		for j := range w {
			if j != d {
				x[d] += rel[d][j] * u[j]
			}
		}
	}
	return u, x
}

// coefficients derives each domain's coefficients from its name, so they are the same in
// every process and for every domain list the domain appears in.
func (s *synthetic) coefficients(domains []string) []synthDomain {
	out := make([]synthDomain, len(domains))
	for i, d := range domains {
		u := func(field string) float64 { return unitHash(s.opts.Salt, d, field) }
		out[i] = synthDomain{
			e:     1.2 + 1.0*u("E"),
			a:     0.6 + 0.6*u("A"),
			alpha: 0.25 + 0.15*u("alpha"),
			b:     0.5 + 0.5*u("B"),
			beta:  0.4 + 0.2*u("beta"),
			c:     0.02 + 0.12*u("C"),
			gamma: 0.1 + 0.1*u("gamma"),
		}
	}
	return out
}

// relatedness returns the symmetric matrix r_dj in [0.05, 0.5], from the pair's names.
func (s *synthetic) relatedness(domains []string) [][]float64 {
	r := make([][]float64, len(domains))
	for i := range r {
		r[i] = make([]float64, len(domains))
	}
	for i, a := range domains {
		for j := i + 1; j < len(domains); j++ {
			b := domains[j]
			if b < a {
				a, b = b, a
			}
			v := 0.05 + 0.45*unitHash(s.opts.Salt, a+"\x00"+b, "related")
			r[i][j], r[j][i] = v, v
			a = domains[i]
		}
	}
	return r
}

// unitHash maps (salt, name, field) to [0, 1) with FNV-1a and a splitmix64 finaliser.
func unitHash(salt, name, field string) float64 {
	h := fnv.New64a()
	for _, p := range []string{salt, name, field} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:]) // length prefix: ("ab","c") and ("a","bc") must differ
		h.Write([]byte(p))
	}
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
