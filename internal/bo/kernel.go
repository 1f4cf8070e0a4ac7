package bo

import "math"

// The covariance of the log objective at two points x = (w, us, ut), with w the mixture
// and us, ut the normalised log parameter count and log steps, is
//
//	k(x, x') = sf1 · m52(us; ls1) · m52(ut; lt1)                  (fidelity trend, any mixture)
//	         + sf2 · m52ARD(w; lw) · m52(us; ls2) · m52(ut; lt2)  (mixture effect shared across fidelities)
//	         + sf3 · m52ARD(w; lw) · m52(us; ls3)                 (mixture effect local to a scale)
//	         + sf4 · (w−c)·(w'−c) · m52(us; ls4) · m52(ut; lt4)   (linear tilt that drifts with fidelity)
//	         + sf5 · (w−c)·(w'−c) · (1−us)·(1−us')                (linear tilt that grows with distance below the target scale)
//	         + sfT · m52(|w−w'|; lT) · [x, x' both at the target]   (detail of the target's own)
//
// plus noise on the diagonal (optionally a variance of its own at the target fidelity).
// The first term carries the large change of the loss with scale and steps that every
// mixture shares; the second is the product kernel of the
// mixture with the fidelities, whose long fidelity lengthscales are what lets cheap trials
// inform the target; the third, with a short scale lengthscale, lets the best mixture
// move between scales (on the paper's data the 700M optimum is not the 1B one), so the
// model knows how much a cheap trial can no longer say about the target. It is constant
// along steps so that it cannot mistake the noise of a curve's points for structure. The
// fourth, with c the simplex's centre, is a linear function of the mixture whose slope
// changes smoothly with scale and steps: on the paper's data a domain's benefit changes
// sign between scales (book helps a 60M model and hurts the 1B one) while the shape of
// the landscape near the optimum is shared, and this term lets the model say so with
// three hyperparameters instead of bending the shared term. The fifth says the same thing
// in a form that extrapolates: a stationary kernel lets the tilt fitted at small scales fade
// back to the prior towards the target, while this one makes a scale's linear preference
// differ from the target's in proportion to its log-size distance below it (on the paper's
// data the book share of each scale's best mixture falls from ~0.35 at 20M–60M to 0.05–0.09
// at 300M–500M, 0.02 at 700M and 0 at 1B). It vanishes at the target scale (us = 1).
//
// Hyperparameters live in one vector θ, all on log scales (see the index constants).

// kernel indexes θ for a mixture of k domains.
type kernel struct {
	k int // number of domains
	// noLocal pins sf3 near zero: no scale-local mixture term.
	noLocal bool
	// noTrend pins sf1 near zero: no additive fidelity trend, a plain product kernel.
	noTrend bool
	// tilt adds the fourth term, the fidelity-dependent linear tilt.
	tilt bool
	// drift adds the fifth term, the tilt linear in the distance below the target scale.
	drift bool
	// targetNoise gives observations at the target fidelity (tUS, tUT) a noise variance of
	// their own. One variance for every fidelity is fitted to what the model cannot explain
	// anywhere, and most of that is the cross-scale misfit of the cheap trials; the target's
	// own runs can be far more precise (exact, without added noise), and with the shared
	// variance the posterior mean smoothed over a 2%-wide optimum that a target run had
	// already found.
	targetNoise bool
	// targetLocal adds sfT·m52(|w−w'|/lT) between two points that are both at the target
	// fidelity: a residual of the target's own, with a short lengthscale, for detail that
	// the terms shared with the cheap fidelities smooth over (on the paper's data the
	// optimum sits in a dip 2% wide on an edge whose rest is a plateau).
	targetLocal bool
	// tUS and tUT are the target fidelity's inputs; only targetNoise and targetLocal use them.
	tUS, tUT float64
}

func (kn kernel) iLW(d int) int { return d }
func (kn kernel) iLS1() int     { return kn.k }
func (kn kernel) iLT1() int     { return kn.k + 1 }
func (kn kernel) iLS2() int     { return kn.k + 2 }
func (kn kernel) iLT2() int     { return kn.k + 3 }
func (kn kernel) iSF1() int     { return kn.k + 4 }
func (kn kernel) iSF2() int     { return kn.k + 5 }
func (kn kernel) iNoise() int   { return kn.k + 6 }
func (kn kernel) iLS3() int     { return kn.k + 7 }
func (kn kernel) iSF3() int     { return kn.k + 8 }
func (kn kernel) iLS4() int     { return kn.k + 9 }
func (kn kernel) iLT4() int     { return kn.k + 10 }
func (kn kernel) iSF4() int     { return kn.k + 11 }

// iSF5 follows the tilt's parameters when the tilt is on.
func (kn kernel) iSF5() int {
	if kn.tilt {
		return kn.k + 12
	}
	return kn.k + 9
}

// iNoiseT is the target fidelity's noise, after the drift's parameter.
func (kn kernel) iNoiseT() int {
	n := kn.k + 9
	if kn.tilt {
		n += 3
	}
	if kn.drift {
		n++
	}
	return n
}

// iSFT and iLT are the target-local term's variance and lengthscale, after the target
// noise; without the term iSFT is where θ ends.
func (kn kernel) iSFT() int {
	if kn.targetNoise {
		return kn.iNoiseT() + 1
	}
	return kn.iNoiseT()
}
func (kn kernel) iLT() int { return kn.iSFT() + 1 }

// nParams counts θ; the optional terms' parameters exist only when they are on, so that
// kernels without them keep their θ (and a study's saved fit) as they were.
func (kn kernel) nParams() int {
	if kn.targetLocal {
		return kn.iLT() + 1
	}
	return kn.iSFT()
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
	set(kn.iLS3(), math.Log(0.02), math.Log(2), math.Log(0.2))
	set(kn.iSF3(), math.Log(1e-6), math.Log(10), math.Log(0.01))
	if kn.tilt {
		set(kn.iLS4(), math.Log(0.05), math.Log(50), math.Log(1))
		set(kn.iLT4(), math.Log(0.05), math.Log(50), math.Log(1))
		set(kn.iSF4(), math.Log(1e-6), math.Log(100), math.Log(0.1))
	}
	if kn.drift {
		set(kn.iSF5(), math.Log(1e-6), math.Log(100), math.Log(0.1))
	}
	if kn.targetNoise {
		set(kn.iNoiseT(), math.Log(1e-7), math.Log(1), math.Log(1e-4))
	}
	if kn.targetLocal {
		set(kn.iSFT(), math.Log(1e-6), math.Log(1), math.Log(1e-2))
		set(kn.iLT(), math.Log(0.01), math.Log(0.5), math.Log(0.05))
	}
	if kn.noLocal {
		set(kn.iSF3(), math.Log(1e-10), math.Log(1e-10), math.Log(1e-10))
	}
	if kn.noTrend {
		set(kn.iSF1(), math.Log(1e-10), math.Log(1e-10), math.Log(1e-10))
		set(kn.iSF2(), math.Log(1e-3), math.Log(100), math.Log(1))
	}
	return b
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
	invLW              []float64
	invLS1, invLT1     float64
	invLS2, invLT2     float64
	invLS3             float64
	invLS4, invLT4     float64
	sf1, sf2, sf3, sf4 float64
	sf5                float64
	sfT, invLT         float64
	noise, noiseT      float64
	theta              []float64
	usesScale, usesMix bool
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
	p.invLS3 = math.Exp(-theta[kn.iLS3()])
	p.sf3 = math.Exp(theta[kn.iSF3()])
	if kn.tilt {
		p.invLS4 = math.Exp(-theta[kn.iLS4()])
		p.invLT4 = math.Exp(-theta[kn.iLT4()])
		p.sf4 = math.Exp(theta[kn.iSF4()])
	}
	if kn.drift {
		p.sf5 = math.Exp(theta[kn.iSF5()])
	}
	p.noise = math.Exp(theta[kn.iNoise()])
	if kn.targetNoise {
		p.noiseT = math.Exp(theta[kn.iNoiseT()])
	}
	if kn.targetLocal {
		p.sfT = math.Exp(theta[kn.iSFT()])
		p.invLT = math.Exp(-theta[kn.iLT()])
	}
	return p
}

// atTarget says whether x is at the target fidelity.
func (kn kernel) atTarget(x []float64) bool {
	return x[kn.k] == kn.tUS && x[kn.k+1] == kn.tUT
}

// noiseAt is the observation noise variance at x and the index of its θ entry.
func (kn kernel) noiseAt(p *params, x []float64) (variance float64, param int) {
	if kn.targetNoise && kn.atTarget(x) {
		return p.noiseT, kn.iNoiseT()
	}
	return p.noise, kn.iNoise()
}

// targetDist is the scaled Euclidean distance of two points' mixtures for the target-local
// term, and whether the term applies (both at the target).
func (kn kernel) targetDist(p *params, a, b []float64) (float64, bool) {
	if !kn.targetLocal || !kn.atTarget(a) || !kn.atTarget(b) {
		return 0, false
	}
	d2 := 0.0
	for d := 0; d < kn.k; d++ {
		d2 += (a[d] - b[d]) * (a[d] - b[d])
	}
	return math.Sqrt(d2) * p.invLT, true
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
	kw := m52(math.Sqrt(r2))
	v := p.sf1*m52(ds*p.invLS1)*m52(dt*p.invLT1) +
		kw*(p.sf2*m52(ds*p.invLS2)*m52(dt*p.invLT2)+p.sf3*m52(ds*p.invLS3))
	if kn.tilt || kn.drift {
		lin := kn.linear(a, b)
		if kn.tilt {
			v += p.sf4 * lin * m52(ds*p.invLS4) * m52(dt*p.invLT4)
		}
		if kn.drift {
			v += p.sf5 * lin * (1 - a[k]) * (1 - b[k])
		}
	}
	if r, ok := kn.targetDist(p, a, b); ok {
		v += p.sfT * m52(r)
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
	rs3 := math.Abs(a[k]-b[k]) * p.invLS3
	ks1, kt1 := m52(rs1), m52(rt1)
	kw, ks2, kt2 := m52(rw), m52(rs2), m52(rt2)
	ks3 := m52(rs3)
	t1 := p.sf1 * ks1 * kt1
	t2 := p.sf2 * kw * ks2 * kt2
	t3 := p.sf3 * kw * ks3
	grad[kn.iSF1()] += w * t1
	grad[kn.iSF2()] += w * t2
	grad[kn.iSF3()] += w * t3
	grad[kn.iLS3()] += w * p.sf3 * kw * m52g(rs3) * rs3 * rs3
	grad[kn.iLS1()] += w * p.sf1 * kt1 * m52g(rs1) * rs1 * rs1
	grad[kn.iLT1()] += w * p.sf1 * ks1 * m52g(rt1) * rt1 * rt1
	grad[kn.iLS2()] += w * p.sf2 * kw * kt2 * m52g(rs2) * rs2 * rs2
	grad[kn.iLT2()] += w * p.sf2 * kw * ks2 * m52g(rt2) * rt2 * rt2
	var lin float64
	if kn.tilt || kn.drift {
		lin = kn.linear(a, b)
	}
	if kn.tilt {
		rs4 := math.Abs(a[k]-b[k]) * p.invLS4
		rt4 := math.Abs(a[k+1]-b[k+1]) * p.invLT4
		ks4, kt4 := m52(rs4), m52(rt4)
		l4 := p.sf4 * lin
		grad[kn.iSF4()] += w * l4 * ks4 * kt4
		grad[kn.iLS4()] += w * l4 * kt4 * m52g(rs4) * rs4 * rs4
		grad[kn.iLT4()] += w * l4 * ks4 * m52g(rt4) * rt4 * rt4
	}
	if kn.drift {
		grad[kn.iSF5()] += w * p.sf5 * lin * (1 - a[k]) * (1 - b[k])
	}
	if r, ok := kn.targetDist(p, a, b); ok {
		grad[kn.iSFT()] += w * p.sfT * m52(r)
		grad[kn.iLT()] += w * p.sfT * m52g(r) * r * r
	}
	gw := w * (p.sf2*ks2*kt2 + p.sf3*ks3) * m52g(rw)
	for d := 0; d < k; d++ {
		t := (a[d] - b[d]) * p.invLW[d]
		grad[kn.iLW(d)] += gw * t * t
	}
}
