package bo

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func randomPoints(rng *rand.Rand, n, k int) [][]float64 {
	x := make([][]float64, n)
	for i := range x {
		w := sampleDirichletAlpha(rng, k, 1)
		x[i] = append(w, rng.Float64(), rng.Float64())
	}
	return x
}

func testTheta(kn kernel) []float64 {
	th := kn.bounds().centre
	th[kn.iLW(0)] = math.Log(0.3)
	th[kn.iNoise()] = math.Log(1e-2)
	return th
}

// The posterior mean and variance match the textbook formulas computed with an explicit
// inverse.
func TestPosteriorClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kn := kernel{k: 3}
	m := model{kn: kn}
	x := randomPoints(rng, 6, 3)
	y := make([]float64, len(x))
	for i := range y {
		y[i] = rng.NormFloat64()
	}
	th := testTheta(kn)
	g, err := newGP(m, th, x, y)
	if err != nil {
		t.Fatal(err)
	}
	p := kn.params(th)
	kmat := mat.NewDense(len(x), len(x), nil)
	for i := range x {
		for j := range x {
			v := kn.cov(&p, x[i], x[j])
			if i == j {
				v += p.noise
			}
			kmat.Set(i, j, v)
		}
	}
	var inv mat.Dense
	if err := inv.Inverse(kmat); err != nil {
		t.Fatal(err)
	}
	test := randomPoints(rng, 4, 3)
	mu, vr, _ := g.predict(test)
	for j, xs := range test {
		ks := mat.NewVecDense(len(x), nil)
		for i := range x {
			ks.SetVec(i, kn.cov(&p, x[i], xs))
		}
		var a mat.VecDense
		a.MulVec(&inv, ks)
		wantMu := mat.Dot(&a, mat.NewVecDense(len(y), y))
		wantVar := kn.cov(&p, xs, xs) - mat.Dot(&a, ks)
		if math.Abs(mu[j]-wantMu) > 1e-8 || math.Abs(vr[j]-wantVar) > 1e-8 {
			t.Errorf("point %d: got (%g, %g), want (%g, %g)", j, mu[j], vr[j], wantMu, wantVar)
		}
		if pm := g.predictMean(xs); math.Abs(pm-wantMu) > 1e-8 {
			t.Errorf("predictMean %g, want %g", pm, wantMu)
		}
	}
}

// The analytic gradient of the log marginal likelihood matches central differences.
func TestLogMLGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kn := range []kernel{{k: 4}, {k: 4, tilt: true}, {k: 4, noTrend: true, tilt: true}} {
		m := model{kn: kn}
		x := randomPoints(rng, 25, 4)
		y := make([]float64, len(x))
		for i := range y {
			y[i] = math.Sin(3*x[i][0]) + x[i][4] - x[i][5] + 0.1*rng.NormFloat64()
		}
		th := m.bounds().centre
		for i := range th {
			th[i] += 0.3 * rng.NormFloat64()
		}
		grad := make([]float64, len(th))
		if _, err := m.logML(th, x, y, grad); err != nil {
			t.Fatal(err)
		}
		for i := range th {
			const h = 1e-5
			tp := append([]float64(nil), th...)
			tm := append([]float64(nil), th...)
			tp[i] += h
			tm[i] -= h
			fp, err1 := m.logML(tp, x, y, nil)
			fm, err2 := m.logML(tm, x, y, nil)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			fd := (fp - fm) / (2 * h)
			if math.Abs(fd-grad[i]) > 1e-4*math.Max(1, math.Abs(fd)) {
				t.Errorf("kernel %+v param %d: analytic %g, finite difference %g", kn, i, grad[i], fd)
			}
		}
	}
}

// Hyperparameters fitted to a draw from a known GP come close to the truth and explain
// the data at least as well.
func TestHyperparameterRecovery(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	kn := kernel{k: 3}
	m := model{kn: kn}
	truth := kn.bounds().centre
	truth[kn.iLW(0)] = math.Log(0.15) // domain 0 matters a lot
	truth[kn.iLW(1)] = math.Log(3)    // domain 1 hardly
	truth[kn.iLW(2)] = math.Log(3)
	truth[kn.iSF2()] = math.Log(1)
	truth[kn.iNoise()] = math.Log(1e-2)
	x := randomPoints(rng, 150, 3)
	p := kn.params(truth)
	chol, _, err := factorize(func(j float64) *mat.SymDense { return m.covMatrix(&p, x, j) }, 1)
	if err != nil {
		t.Fatal(err)
	}
	var l mat.TriDense
	chol.LTo(&l)
	z := mat.NewVecDense(len(x), nil)
	for i := range x {
		z.SetVec(i, rng.NormFloat64())
	}
	var yv mat.VecDense
	yv.MulVec(&l, z)
	y := yv.RawVector().Data
	fit, _, err := m.fit(x, y, nil, fitOptions{restarts: 2, iterations: 100}, rand.New(rand.NewPCG(7, 8)))
	if err != nil {
		t.Fatal(err)
	}
	lTrue, _ := m.logML(truth, x, y, nil)
	lFit, _ := m.logML(fit, x, y, nil)
	if lFit < lTrue-1 {
		t.Errorf("fitted log ML %g below the truth's %g", lFit, lTrue)
	}
	if l0 := math.Exp(fit[kn.iLW(0)]); l0 < 0.15/2.5 || l0 > 0.15*2.5 {
		t.Errorf("lengthscale of domain 0: got %g, want about 0.15", l0)
	}
	if l0, l1 := fit[kn.iLW(0)], fit[kn.iLW(1)]; l1 < l0+math.Log(3) {
		t.Errorf("domain 1 should look far less relevant than domain 0: log lengthscales %g vs %g", l1, l0)
	}
	if nz := math.Exp(fit[kn.iNoise()]); nz < 1e-2/4 || nz > 1e-2*4 {
		t.Errorf("noise variance: got %g, want about 1e-2", nz)
	}
}

// Duplicate inputs without noise need jitter, and get it.
func TestJitterEscalation(t *testing.T) {
	kn := kernel{k: 2}
	th := kn.bounds().centre
	th[kn.iNoise()] = kn.bounds().lo[kn.iNoise()] - 20 // far below any useful noise
	x := [][]float64{{0.5, 0.5, 0.1, 0.2}, {0.5, 0.5, 0.1, 0.2}, {0.5, 0.5, 0.1, 0.2}, {0.2, 0.8, 0.1, 0.2}}
	g, err := newGP(model{kn: kn}, th, x, []float64{1, 1, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	mu, vr, _ := g.predict(x)
	for i := range mu {
		if math.IsNaN(mu[i]) || math.IsNaN(vr[i]) {
			t.Fatalf("NaN prediction at %d", i)
		}
	}
}

// driftingSlope is data whose linear mixture effect flips sign between the cheap scales
// and the target (as a domain's benefit does on the paper's data): 60 points at
// us ∈ {0, ¼, ½}, targetPoints at the target, and 100 test points at the target.
func driftingSlope(targetPoints int) (x [][]float64, y []float64, test [][]float64, want []float64) {
	rng := rand.New(rand.NewPCG(11, 12))
	centre := []float64{0.5, 0.3, 0.2}
	truth := func(w []float64, us float64) float64 {
		bowl := 0.0
		for d := range w {
			bowl += float64(d+1) * (w[d] - centre[d]) * (w[d] - centre[d])
		}
		return 3*bowl + (1-2*us)*(w[0]-1.0/3)
	}
	point := func(w []float64, us float64) []float64 { return append(append([]float64(nil), w...), us, 1) }
	for i := 0; i < 60; i++ {
		us := []float64{0, 0.25, 0.5}[i%3]
		w := sampleDirichletAlpha(rng, 3, 1)
		x, y = append(x, point(w, us)), append(y, truth(w, us))
	}
	for range targetPoints {
		w := sampleDirichletAlpha(rng, 3, 1)
		x, y = append(x, point(w, 1)), append(y, truth(w, 1))
	}
	for range 100 {
		w := sampleDirichletAlpha(rng, 3, 1)
		test, want = append(test, point(w, 1)), append(want, truth(w, 1))
	}
	return x, y, test, want
}

// targetRMSE fits kn to (x, y) and returns its RMSE on the test points.
func targetRMSE(t *testing.T, kn kernel, x [][]float64, y []float64, test [][]float64, want []float64) float64 {
	m := model{kn: kn}
	theta, _, err := m.fit(x, y, nil, fitOptions{restarts: 2, iterations: 80}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGP(m, theta, x, y)
	if err != nil {
		t.Fatal(err)
	}
	mu, _, _ := g.predict(test)
	s := 0.0
	for i := range mu {
		s += (mu[i] - want[i]) * (mu[i] - want[i])
	}
	return math.Sqrt(s / float64(len(mu)))
}

// With a few target points, the kernel with the fidelity-dependent tilt predicts the
// target from mostly cheap data better than the kernel without it.
func TestTiltLearnsDriftingSlope(t *testing.T) {
	x, y, test, want := driftingSlope(4)
	plain := targetRMSE(t, kernel{k: 3, noTrend: true}, x, y, test, want)
	tilted := targetRMSE(t, kernel{k: 3, noTrend: true, tilt: true}, x, y, test, want)
	t.Logf("target RMSE: product kernel %.4f, with tilt %.4f", plain, tilted)
	if !(tilted < 0.7*plain) {
		t.Errorf("the tilt did not help: RMSE %.4f with it, %.4f without", tilted, plain)
	}
}
