package bo

import "math"

// The covariance of the log objective at two points x = (w, us, ut), with w the mixture
// and us, ut the normalised log parameter count and log steps, is
//
//	k(x, x') = sf1 · m52(us; ls1) · m52(ut; lt1)                  (fidelity trend, any mixture)
//	         + sf2 · m52ARD(w; lw) · m52(us; ls2) · m52(ut; lt2)  (mixture effect shared across fidelities)
//	         + sf4 · (w−c)·(w'−c) · m52(us; ls4) · m52(ut; lt4)   (linear tilt that drifts with fidelity)
//
// plus noise on the diagonal. The first term carries the large change of the loss with
// scale and steps that every mixture shares; the second is the product kernel of the
// mixture with the fidelities, whose long fidelity lengthscales are what lets cheap trials
// inform the target. The third, with c the simplex's centre, is a linear function of the
// mixture whose slope changes smoothly with scale and steps: on the paper's data a
// domain's benefit changes sign between scales (book helps a 60M model and hurts the 1B
// one) while the shape of the landscape near the optimum is shared, and this term lets the
// model say so with three hyperparameters instead of bending the shared term.
//
// Hyperparameters live in one vector θ, all on log scales (see the index constants).

// kernel indexes θ for a mixture of k domains.
type kernel struct {
	k int // number of domains
	// noTrend pins sf1 near zero: no additive fidelity trend, a plain product kernel.
	noTrend bool
	// tilt adds the third term, the fidelity-dependent linear tilt.
	tilt bool
}

func (kn kernel) iLW(d int) int { return d }
func (kn kernel) iLS1() int     { return kn.k }
func (kn kernel) iLT1() int     { return kn.k + 1 }
func (kn kernel) iLS2() int     { return kn.k + 2 }
func (kn kernel) iLT2() int     { return kn.k + 3 }
func (kn kernel) iSF1() int     { return kn.k + 4 }
func (kn kernel) iSF2() int     { return kn.k + 5 }
func (kn kernel) iNoise() int   { return kn.k + 6 }
func (kn kernel) iLS4() int     { return kn.k + 7 }
func (kn kernel) iLT4() int     { return kn.k + 8 }
func (kn kernel) iSF4() int     { return kn.k + 9 }

// nParams counts θ; the tilt's parameters exist only when it is on, so that kernels
// without it keep their θ (and a study's saved fit) as they were.
func (kn kernel) nParams() int {
	if kn.tilt {
		return kn.k + 10
	}
	return kn.k + 7
}

// hyperBounds are the box of θ the fit keeps to (as a soft penalty), with the prior centre.
type hyperBounds struct {
	lo, hi, centre []float64
}

func (kn kernel) bounds() hyperBounds {
	n := kn.nParams()
	b := hyperBounds{lo: make([]float64, n), hi: make([]float64, n), centre: make([]float64, n)}
	set := func(i int, lo, hi, c float64) { b.lo[i], b.hi[i], b.centre[i] = lo, hi, c }
	for d := 0; d < kn.k; d++ {
		// Mixture coordinates lie in [0, 1]: lengthscales from 0.02 to 20 span "each
		// percent matters" to "irrelevant".
		set(kn.iLW(d), math.Log(0.02), math.Log(20), math.Log(0.5))
	}
	set(kn.iLS1(), math.Log(0.05), math.Log(20), math.Log(1))
	set(kn.iLT1(), math.Log(0.05), math.Log(20), math.Log(1))
	set(kn.iLS2(), math.Log(0.05), math.Log(50), math.Log(2))
	set(kn.iLT2(), math.Log(0.05), math.Log(50), math.Log(2))
	// Targets are standardised, so variances around 1 are the natural size.
	set(kn.iSF1(), math.Log(1e-3), math.Log(100), math.Log(1))
	set(kn.iSF2(), math.Log(1e-5), math.Log(100), math.Log(0.1))
	set(kn.iNoise(), math.Log(1e-7), math.Log(1), math.Log(1e-4))
	if kn.tilt {
		set(kn.iLS4(), math.Log(0.05), math.Log(50), math.Log(1))
		set(kn.iLT4(), math.Log(0.05), math.Log(50), math.Log(1))
		set(kn.iSF4(), math.Log(1e-6), math.Log(100), math.Log(0.1))
	}
	if kn.noTrend {
		set(kn.iSF1(), math.Log(1e-10), math.Log(1e-10), math.Log(1e-10))
		set(kn.iSF2(), math.Log(1e-3), math.Log(100), math.Log(1))
	}
	return b
}

// inBox returns θ with each entry outside the box of bounds set to the prior centre, so a
// fit of one kernel form can warm-start from another's (the trend's output scale is pinned
// in the product form and free in the additive one). nil stays nil.
func (kn kernel) inBox(theta []float64) []float64 {
	if theta == nil {
		return nil
	}
	b := kn.bounds()
	out := append([]float64(nil), theta...)
	for i := range out {
		if i < len(b.lo) && (out[i] < b.lo[i] || out[i] > b.hi[i]) {
			out[i] = b.centre[i]
		}
	}
	return out
}

// m52 is the Matérn-5/2 correlation at scaled distance r.
func m52(r float64) float64 {
	s := math.Sqrt(5) * r
	return (1 + s + s*s/3) * math.Exp(-s)
}

// m52g is −dm52/dr divided by r: the factor that turns ∂r²/∂logℓ into ∂k/∂logℓ without
// dividing by r (so it is finite at r = 0).
func m52g(r float64) float64 {
	s := math.Sqrt(5) * r
	return 5.0 / 3.0 * (1 + s) * math.Exp(-s)
}

// params caches exp(θ) for evaluation.
type params struct {
	invLW          []float64
	invLS1, invLT1 float64
	invLS2, invLT2 float64
	invLS4, invLT4 float64
	sf1, sf2, sf4  float64
	noise          float64
	theta          []float64
}

func (kn kernel) params(theta []float64) params {
	p := params{invLW: make([]float64, kn.k), theta: theta}
	for d := range p.invLW {
		p.invLW[d] = math.Exp(-theta[kn.iLW(d)])
	}
	p.invLS1 = math.Exp(-theta[kn.iLS1()])
	p.invLT1 = math.Exp(-theta[kn.iLT1()])
	p.invLS2 = math.Exp(-theta[kn.iLS2()])
	p.invLT2 = math.Exp(-theta[kn.iLT2()])
	p.sf1 = math.Exp(theta[kn.iSF1()])
	p.sf2 = math.Exp(theta[kn.iSF2()])
	if kn.tilt {
		p.invLS4 = math.Exp(-theta[kn.iLS4()])
		p.invLT4 = math.Exp(-theta[kn.iLT4()])
		p.sf4 = math.Exp(theta[kn.iSF4()])
	}
	p.noise = math.Exp(theta[kn.iNoise()])
	return p
}

// noiseAt is the observation noise variance at x and the index of its θ entry.
func (kn kernel) noiseAt(p *params, _ []float64) (variance float64, param int) {
	return p.noise, kn.iNoise()
}

// cov is k(a, b) without noise.
func (kn kernel) cov(p *params, a, b []float64) float64 {
	k := kn.k
	r2 := 0.0
	for d := 0; d < k; d++ {
		t := (a[d] - b[d]) * p.invLW[d]
		r2 += t * t
	}
	ds := math.Abs(a[k] - b[k])
	dt := math.Abs(a[k+1] - b[k+1])
	v := p.sf1*m52(ds*p.invLS1)*m52(dt*p.invLT1) + p.sf2*m52(math.Sqrt(r2))*m52(ds*p.invLS2)*m52(dt*p.invLT2)
	if kn.tilt {
		v += p.sf4 * kn.linear(a, b) * m52(ds*p.invLS4) * m52(dt*p.invLT4)
	}
	return v
}

// linear is (a−c)·(b−c) over the mixture coordinates, c the simplex's centre.
func (kn kernel) linear(a, b []float64) float64 {
	c := 1 / float64(kn.k)
	s := 0.0
	for d := 0; d < kn.k; d++ {
		s += (a[d] - c) * (b[d] - c)
	}
	return s
}

// covGrad adds w·∂k(a,b)/∂θ to grad (noise excluded).
func (kn kernel) covGrad(p *params, a, b []float64, w float64, grad []float64) {
	k := kn.k
	r2 := 0.0
	for d := 0; d < k; d++ {
		t := (a[d] - b[d]) * p.invLW[d]
		r2 += t * t
	}
	rw := math.Sqrt(r2)
	rs1 := math.Abs(a[k]-b[k]) * p.invLS1
	rt1 := math.Abs(a[k+1]-b[k+1]) * p.invLT1
	rs2 := math.Abs(a[k]-b[k]) * p.invLS2
	rt2 := math.Abs(a[k+1]-b[k+1]) * p.invLT2
	ks1, kt1 := m52(rs1), m52(rt1)
	kw, ks2, kt2 := m52(rw), m52(rs2), m52(rt2)
	grad[kn.iSF1()] += w * p.sf1 * ks1 * kt1
	grad[kn.iSF2()] += w * p.sf2 * kw * ks2 * kt2
	grad[kn.iLS1()] += w * p.sf1 * kt1 * m52g(rs1) * rs1 * rs1
	grad[kn.iLT1()] += w * p.sf1 * ks1 * m52g(rt1) * rt1 * rt1
	grad[kn.iLS2()] += w * p.sf2 * kw * kt2 * m52g(rs2) * rs2 * rs2
	grad[kn.iLT2()] += w * p.sf2 * kw * ks2 * m52g(rt2) * rt2 * rt2
	if kn.tilt {
		rs4 := math.Abs(a[k]-b[k]) * p.invLS4
		rt4 := math.Abs(a[k+1]-b[k+1]) * p.invLT4
		ks4, kt4 := m52(rs4), m52(rt4)
		l4 := p.sf4 * kn.linear(a, b)
		grad[kn.iSF4()] += w * l4 * ks4 * kt4
		grad[kn.iLS4()] += w * l4 * kt4 * m52g(rs4) * rs4 * rs4
		grad[kn.iLT4()] += w * l4 * ks4 * m52g(rt4) * rt4 * rt4
	}
	gw := w * p.sf2 * ks2 * kt2 * m52g(rw)
	for d := 0; d < k; d++ {
		t := (a[d] - b[d]) * p.invLW[d]
		grad[kn.iLW(d)] += gw * t * t
	}
}
