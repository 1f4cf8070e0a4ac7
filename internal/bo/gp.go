package bo

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// errNotPD means the covariance stayed indefinite after the largest jitter.
var errNotPD = errors.New("covariance matrix not positive definite after jitter")

// model is the kernel whose θ is fitted (a zero prior mean: the targets are standardised).
type model struct {
	kn kernel
}

func (m model) nParams() int { return m.kn.nParams() }

func (m model) bounds() hyperBounds { return m.kn.bounds() }

// gp is a fitted Gaussian process: the Cholesky factor of K + noise and the weights α.
type gp struct {
	m     model
	theta []float64
	p     params
	x     [][]float64
	alpha []float64
	chol  mat.Cholesky
	l     blas64.Triangular // lower factor, row-major
	// jitter is what had to be added to the diagonal beyond the noise.
	jitter float64
}

// covMatrix builds K(x, x) + (noise + jitter)·I.
func (m model) covMatrix(p *params, x [][]float64, jitter float64) *mat.SymDense {
	n := len(x)
	k := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := m.kn.cov(p, x[i], x[j])
			if i == j {
				noise, _ := m.kn.noiseAt(p, x[i])
				v += noise + jitter
			}
			k.SetSym(i, j, v)
		}
	}
	return k
}

// factorize tries the Cholesky of K with growing jitter, from none up to 1e-4 of the
// diagonal's size; near-duplicate inputs with tiny noise need a little.
func factorize(build func(jitter float64) *mat.SymDense, scale float64) (*mat.Cholesky, float64, error) {
	var chol mat.Cholesky
	jitter := 0.0
	for try := 0; try < 7; try++ {
		if chol.Factorize(build(jitter)) {
			return &chol, jitter, nil
		}
		if jitter == 0 {
			jitter = 1e-10 * scale
		} else {
			jitter *= 10
		}
	}
	return nil, 0, errNotPD
}

// newGP conditions the model with hyperparameters theta on (x, y).
func newGP(m model, theta []float64, x [][]float64, y []float64) (*gp, error) {
	if len(x) == 0 {
		return nil, ErrNoObservations
	}
	p := m.kn.params(theta)
	chol, jitter, err := factorize(func(j float64) *mat.SymDense { return m.covMatrix(&p, x, j) }, p.sf1+p.sf2+p.noise)
	if err != nil {
		return nil, err
	}
	g := &gp{m: m, theta: append([]float64(nil), theta...), p: p, x: x, jitter: jitter}
	g.chol = *chol
	var a mat.VecDense
	if err := g.chol.SolveVecTo(&a, mat.NewVecDense(len(y), y)); err != nil && !isCondWarning(err) {
		return nil, fmt.Errorf("solve for weights: %w", err)
	}
	g.alpha = append([]float64(nil), a.RawVector().Data...)
	var lt mat.TriDense
	g.chol.LTo(&lt)
	g.l = lt.RawTriangular()
	return g, nil
}

// isCondWarning is gonum's "matrix is nearly singular" warning, which still returns a
// usable solution; the jitter is the real guard.
func isCondWarning(err error) bool {
	var c mat.Condition
	return errors.As(err, &c)
}

// crossCov returns K(g.x, pts) as an n×m dense matrix.
func (g *gp) crossCov(pts [][]float64) *mat.Dense {
	n, m := len(g.x), len(pts)
	out := mat.NewDense(n, m, nil)
	raw := out.RawMatrix()
	for i := 0; i < n; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+m]
		for j := 0; j < m; j++ {
			row[j] = g.m.kn.cov(&g.p, g.x[i], pts[j])
		}
	}
	return out
}

// solveL overwrites b with L⁻¹b.
func (g *gp) solveL(b *mat.Dense) {
	blas64.Trsm(blas.Left, blas.NoTrans, 1, g.l, b.RawMatrix())
}

// prior returns the prior variance k(x, x) (without noise).
func (g *gp) prior(x []float64) float64 { return g.m.kn.cov(&g.p, x, x) }

// predict returns the posterior mean and variance of the latent function at pts, with
// V = L⁻¹K(x, pts) for callers that need covariances too.
func (g *gp) predict(pts [][]float64) (mu, variance []float64, v *mat.Dense) {
	ks := g.crossCov(pts)
	m := len(pts)
	mu = make([]float64, m)
	raw := ks.RawMatrix()
	for i := range g.x {
		a := g.alpha[i]
		row := raw.Data[i*raw.Stride : i*raw.Stride+m]
		for j := range row {
			mu[j] += a * row[j]
		}
	}
	g.solveL(ks)
	variance = make([]float64, m)
	for j := 0; j < m; j++ {
		variance[j] = g.prior(pts[j])
	}
	for i := range g.x {
		row := raw.Data[i*raw.Stride : i*raw.Stride+m]
		for j := range row {
			variance[j] -= row[j] * row[j]
		}
	}
	for j := range variance {
		variance[j] = math.Max(variance[j], 1e-12*(g.p.sf1+g.p.sf2))
	}
	return mu, variance, ks
}

// predictMean is the posterior mean at one point, O(n).
func (g *gp) predictMean(x []float64) float64 {
	s := 0.0
	for i, xi := range g.x {
		s += g.alpha[i] * g.m.kn.cov(&g.p, xi, x)
	}
	return s
}

// logML returns the log marginal likelihood of (x, y) under theta and, when grad is not
// nil, its gradient with respect to theta.
func (m model) logML(theta []float64, x [][]float64, y []float64, grad []float64) (float64, error) {
	n := len(x)
	p := m.kn.params(theta)
	chol, jitter, err := factorize(func(j float64) *mat.SymDense { return m.covMatrix(&p, x, j) }, p.sf1+p.sf2+p.noise)
	if err != nil {
		return math.Inf(-1), err
	}
	_ = jitter
	var av mat.VecDense
	if err := chol.SolveVecTo(&av, mat.NewVecDense(n, y)); err != nil && !isCondWarning(err) {
		return math.Inf(-1), err
	}
	alpha := av.RawVector().Data
	f := -0.5*mat.Dot(mat.NewVecDense(n, y), &av) - 0.5*chol.LogDet() - 0.5*float64(n)*math.Log(2*math.Pi)
	if grad == nil {
		return f, nil
	}
	for i := range grad {
		grad[i] = 0
	}
	var kinv mat.SymDense
	if err := chol.InverseTo(&kinv); err != nil && !isCondWarning(err) {
		return math.Inf(-1), err
	}
	kr := kinv.RawSymmetric()
	// ∂/∂θ = ½ tr((ααᵀ − K⁻¹) ∂K/∂θ); the off-diagonal pairs count twice.
	for i := 0; i < n; i++ {
		wii := alpha[i]*alpha[i] - kr.Data[i*kr.Stride+i]
		m.kn.covGrad(&p, x[i], x[i], 0.5*wii, grad)
		noise, param := m.kn.noiseAt(&p, x[i])
		grad[param] += 0.5 * wii * noise
		for j := i + 1; j < n; j++ {
			wij := alpha[i]*alpha[j] - kr.Data[i*kr.Stride+j]
			m.kn.covGrad(&p, x[i], x[j], wij, grad)
		}
	}
	return f, nil
}

// priorPenalty is the negative log of the hyperprior: a broad Gaussian around each
// parameter's centre plus a steep wall outside its box. It adds its gradient to grad.
func priorPenalty(b hyperBounds, theta, grad []float64) float64 {
	const sd = 2.0
	const wall = 100.0
	pen := 0.0
	for i, t := range theta {
		d := (t - b.centre[i]) / sd
		pen += 0.5 * d * d
		g := d / sd
		if t < b.lo[i] {
			e := b.lo[i] - t
			pen += wall * e * e
			g -= 2 * wall * e
		} else if t > b.hi[i] {
			e := t - b.hi[i]
			pen += wall * e * e
			g += 2 * wall * e
		}
		if grad != nil {
			grad[i] += g
		}
	}
	return pen
}

// fitOptions control a hyperparameter fit.
type fitOptions struct {
	restarts   int // extra random starts beyond the warm start and the prior centre
	iterations int // LBFGS major iterations per start
}

// fit maximises the penalised log marginal likelihood from the warm start (when given),
// the prior centre and restarts random starts; it returns the best θ found.
func (m model) fit(x [][]float64, y []float64, warm []float64, opt fitOptions, rng *rand.Rand) ([]float64, float64, error) {
	b := m.bounds()
	np := m.nParams()
	var starts [][]float64
	if len(warm) == np {
		starts = append(starts, clampVec(warm, b))
	}
	starts = append(starts, append([]float64(nil), b.centre...))
	for r := 0; r < opt.restarts; r++ {
		s := make([]float64, np)
		for i := range s {
			s[i] = math.Max(b.lo[i], math.Min(b.hi[i], b.centre[i]+(rng.Float64()*2-1)*1.5))
		}
		starts = append(starts, s)
	}
	// The starts are independent: they run at once (a refit's wall time is the slowest
	// start's, not their sum), and the best is taken in start order, so the result is the
	// same as one after another.
	thetas := make([][]float64, len(starts))
	objs := make([]float64, len(starts))
	var wg sync.WaitGroup
	for i, s := range starts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			thetas[i], objs[i] = m.fitFrom(x, y, s, b, opt)
		}()
	}
	wg.Wait()
	best := math.Inf(1)
	var bestTheta []float64
	for i, th := range thetas {
		if th != nil && objs[i] < best {
			best, bestTheta = objs[i], th
		}
	}
	if bestTheta == nil {
		return nil, 0, fmt.Errorf("fit hyperparameters: no start converged: %w", errNotPD)
	}
	return bestTheta, best, nil
}

// fitFrom runs LBFGS on the penalised negative log marginal likelihood from one start and
// returns the clamped optimum and its objective (nil when the start failed).
func (m model) fitFrom(x [][]float64, y []float64, start []float64, b hyperBounds, opt fitOptions) ([]float64, float64) {
	np := len(start)
	// Func and Grad are asked for at the same points: evaluate both once.
	var lastX, lastG []float64
	lastF := math.NaN()
	eval := func(th []float64) (float64, []float64) {
		if lastX != nil && slices.Equal(lastX, th) {
			return lastF, lastG
		}
		g := make([]float64, np)
		f, err := m.logML(th, x, y, g)
		if err != nil || math.IsNaN(f) {
			// A wall the line search backs away from.
			for i := range g {
				g[i] = 0
			}
			lastX, lastF, lastG = append(lastX[:0], th...), 1e300, g
			return lastF, lastG
		}
		for i := range g {
			g[i] = -g[i]
		}
		obj := -f + priorPenalty(b, th, g)
		lastX, lastF, lastG = append(lastX[:0], th...), obj, g
		return obj, g
	}
	prob := optimize.Problem{
		Func: func(th []float64) float64 { f, _ := eval(th); return f },
		Grad: func(grad, th []float64) { _, g := eval(th); copy(grad, g) },
	}
	settings := &optimize.Settings{
		MajorIterations:   opt.iterations,
		GradientThreshold: 1e-4,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-6, Relative: 1e-6, Iterations: 5},
	}
	res, _ := optimize.Minimize(prob, start, settings, &optimize.LBFGS{})
	if res == nil || res.X == nil {
		return nil, 0
	}
	th := clampVec(res.X, b)
	// Evaluated again at the clamped point, which the optimizer's res.F is not.
	f, _ := eval(th)
	return th, f
}

func clampVec(v []float64, b hyperBounds) []float64 {
	out := make([]float64, len(v))
	for i := range v {
		out[i] = math.Max(b.lo[i], math.Min(b.hi[i], v[i]))
		if math.IsNaN(out[i]) {
			out[i] = b.centre[i]
		}
	}
	return out
}
