package bo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The kernel reads √w where the data's evidence for it is strong, and w otherwise: a loss
// that moves steeply as a small weight leaves zero (as RegMix's sparse mixtures do) picks
// √w, the quadratic synthetic loss keeps w.
func TestMixtureWarpFollowsTheEvidence(t *testing.T) {
	sqrtLoss := func(w []float64, params float64, step int64) float64 {
		d := 0.0
		for i := range w {
			e := math.Sqrt(w[i]) - math.Sqrt(wStar[i])
			d += e * e * float64(i+1)
		}
		return 0.8 + 2*math.Pow(params/1e7, -0.3) + 3*math.Pow(float64(step)/100, -0.5) + 0.5*d
	}
	for _, c := range []struct {
		name string
		loss func([]float64, float64, int64) float64
		want bool
	}{{"quadratic in w", synthLoss, false}, {"quadratic in √w", sqrtLoss, true}} {
		p := synthProblem()
		rng := rand.New(rand.NewPCG(5, 6))
		var obs []Observation
		for i := 0; i < 60; i++ {
			tr := Trial{Mixture: sampleDirichletAlpha(rng, 5, 0.3), Scale: rng.IntN(len(p.Scales)), Steps: p.TargetSteps}
			obs = append(obs, Observation{Trial: tr, Done: true,
				Curve: []CurvePoint{{Step: tr.Steps, Value: c.loss(tr.Mixture, p.Scales[tr.Scale].Params, tr.Steps)}}})
		}
		m := NewMF("mfms", MFMSConfig())
		req := Request{Problem: p, Observations: obs, Decision: len(obs)}
		cd, err := m.condition(&req, true)
		if err != nil {
			t.Fatal(err)
		}
		if cd.state.SqrtW != c.want || cd.s.sqrtW != c.want {
			t.Errorf("%s: √w chosen %v (space %v), want %v", c.name, cd.state.SqrtW, cd.s.sqrtW, c.want)
		}
		// The choice is saved: the next decision reuses it without refitting.
		req.State = cd.state.encode()
		again, err := m.condition(&req, false)
		if err != nil {
			t.Fatal(err)
		}
		if again.s.sqrtW != c.want {
			t.Errorf("%s: reused state has √w %v, want %v", c.name, again.s.sqrtW, c.want)
		}
	}
}
