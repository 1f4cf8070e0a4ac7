package bo

import "math"

// scalingMean is a scaling-law-shaped prior mean for the log loss,
//
//	m(us, ut) = (log(E + A·exp(−α·us) + B·exp(−β·ut)) − off) / sd,
//
// with us, ut the normalised log parameter count and log steps (so exp(−α·us) is a power
// law in the parameter count) and off, sd the standardisation of the targets. Its
// parameters φ = (log E, log A, log α, log B, log β) are fitted with the kernel's.
type scalingMean struct {
	k       int // number of domains: us is x[k], ut is x[k+1]
	off, sd float64
}

func (s *scalingMean) nParams() int { return 5 }

func (s *scalingMean) parts(x, phi []float64) (e, a, b, sum float64) {
	us, ut := x[s.k], x[s.k+1]
	e = math.Exp(phi[0])
	a = math.Exp(phi[1]) * math.Exp(-math.Exp(phi[2])*us)
	b = math.Exp(phi[3]) * math.Exp(-math.Exp(phi[4])*ut)
	return e, a, b, e + a + b
}

func (s *scalingMean) scale() float64 {
	if s.sd == 0 {
		return 1
	}
	return s.sd
}

func (s *scalingMean) value(x, phi []float64) float64 {
	_, _, _, sum := s.parts(x, phi)
	return (math.Log(sum) - s.off) / s.scale()
}

func (s *scalingMean) grad(x, phi []float64, w float64, out []float64) {
	e, a, b, sum := s.parts(x, phi)
	us, ut := x[s.k], x[s.k+1]
	c := w / (sum * s.scale())
	out[0] += c * e
	out[1] += c * a
	out[2] += c * a * (-math.Exp(phi[2]) * us)
	out[3] += c * b
	out[4] += c * b * (-math.Exp(phi[4]) * ut)
}

func (s *scalingMean) bounds() hyperBounds {
	return hyperBounds{
		lo:     []float64{-7, -7, -3, -7, -3},
		hi:     []float64{5, 5, 3, 5, 3},
		centre: []float64{-0.5, 0, math.Log(2), 0, math.Log(2)},
	}
}
