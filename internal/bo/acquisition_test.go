package bo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The exact knowledge gradient matches a Monte-Carlo estimate of
// min a − E[min(a + bZ)].
func TestKGAgainstMonteCarlo(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := 0; trial < 20; trial++ {
		n := 1 + rng.IntN(8)
		a := make([]float64, n)
		b := make([]float64, n)
		for i := range a {
			a[i] = rng.NormFloat64() * 0.5
			b[i] = rng.NormFloat64() * 0.4
		}
		if trial%5 == 0 && n > 1 {
			b[1] = b[0] // equal slopes
		}
		got := kgMin(a, b, make([]int, n))
		minA := math.Inf(1)
		for _, v := range a {
			minA = math.Min(minA, v)
		}
		const draws = 200000
		sum, sum2 := 0.0, 0.0
		for range draws {
			z := rng.NormFloat64()
			m := math.Inf(1)
			for i := range a {
				m = math.Min(m, a[i]+b[i]*z)
			}
			sum += minA - m
			sum2 += (minA - m) * (minA - m)
		}
		want := sum / draws
		se := math.Sqrt((sum2/draws - want*want) / draws)
		if math.Abs(got-want) > 5*se+1e-12 {
			t.Errorf("case %d (n=%d): KG %g, Monte Carlo %g ± %g", trial, n, got, want, se)
		}
	}
}

func TestEIAgainstMonteCarlo(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for trial := 0; trial < 10; trial++ {
		best, mu, sd := rng.NormFloat64(), rng.NormFloat64(), 0.1+rng.Float64()
		got := expectedImprovement(best, mu, sd)
		const draws = 400000
		sum, sum2 := 0.0, 0.0
		for range draws {
			v := math.Max(best-(mu+sd*rng.NormFloat64()), 0)
			sum += v
			sum2 += v * v
		}
		want := sum / draws
		se := math.Sqrt((sum2/draws - want*want) / draws)
		if math.Abs(got-want) > 5*se+1e-12 {
			t.Errorf("EI(%g, %g, %g) = %g, Monte Carlo %g ± %g", best, mu, sd, got, want, se)
		}
	}
}

// Every candidate mixture lies on the simplex and inside the bounds.
func TestCandidatesOnSimplexInBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	lower := []float64{0.05, 0, 0.1, 0, 0}
	upper := []float64{0.5, 0.9, 0.6, 0.3, 1}
	centres := [][]float64{{0.05, 0.9, 0.1, 0, 0}, {0.2, 0.2, 0.2, 0.2, 0.2}}
	pool := candidatePool(rng, lower, upper, centres, MFMSConfig().Pool)
	for i := 0; i < 200; i++ {
		pool = append(pool, SampleSoftmaxLogits(rng, lower, upper), SampleDirichlet(rng, lower, upper))
	}
	for _, w := range pool {
		checkMixture(t, w, lower, upper)
	}
	f := func(w []float64) float64 { return math.Abs(w[1]-0.7) + w[3] }
	w, _ := refineMean([]float64{0.2, 0.2, 0.2, 0.2, 0.2}, lower, upper, f, 50)
	checkMixture(t, w, lower, upper)
}

func checkMixture(t *testing.T, w, lower, upper []float64) {
	t.Helper()
	s := 0.0
	for i, v := range w {
		if v < lower[i]-1e-9 || v > upper[i]+1e-9 || math.IsNaN(v) {
			t.Fatalf("mixture %v leaves bounds [%v, %v]", w, lower, upper)
		}
		s += v
	}
	if math.Abs(s-1) > 1e-9 {
		t.Fatalf("mixture %v sums to %g", w, s)
	}
}
