package bo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The product kernel gains the additive fidelity trend where the data's evidence for it is
// strong: a log loss that is a level per scale plus the same mixture effect at every scale
// (RegMix's 1M and 60M runs lie 0.5 apart in log loss) takes the trend; a loss that does
// not move with scale keeps the plain product.
func TestTrendChoiceFollowsTheEvidence(t *testing.T) {
	q := func(w []float64) float64 {
		d := 0.0
		for i := range w {
			d += (w[i] - wStar[i]) * (w[i] - wStar[i]) * float64(i+1)
		}
		return d
	}
	shifted := func(w []float64, params float64) float64 {
		return 6 * math.Pow(params/20e6, -0.09) * math.Exp(0.3*q(w))
	}
	flat := func(w []float64, _ float64) float64 { return 3 * math.Exp(0.3*q(w)) }
	for _, c := range []struct {
		name string
		loss func([]float64, float64) float64
		want bool
	}{{"a level per scale", shifted, true}, {"no scale effect", flat, false}} {
		p := synthProblem()
		rng := rand.New(rand.NewPCG(7, 8))
		var obs []Observation
		for i := 0; i < 60; i++ {
			tr := Trial{Mixture: sampleDirichletAlpha(rng, 5, 1), Scale: rng.IntN(len(p.Scales)), Steps: p.TargetSteps}
			obs = append(obs, Observation{Trial: tr, Done: true,
				Curve: []CurvePoint{{Step: tr.Steps, Value: c.loss(tr.Mixture, p.Scales[tr.Scale].Params)}}})
		}
		m := NewMF("mfms", MFMSConfig())
		req := Request{Problem: p, Observations: obs, Decision: len(obs)}
		cd, err := m.condition(&req, true)
		if err != nil {
			t.Fatal(err)
		}
		if cd.state.Trend != c.want || cd.g.m.kn.noTrend == c.want {
			t.Errorf("%s: trend chosen %v (kernel without trend %v), want %v", c.name, cd.state.Trend, cd.g.m.kn.noTrend, c.want)
		}
		req.State = cd.state.encode()
		again, err := m.condition(&req, false)
		if err != nil {
			t.Fatal(err)
		}
		if again.g.m.kn.noTrend == c.want {
			t.Errorf("%s: the reused state's kernel has no trend %v, want trend %v", c.name, again.g.m.kn.noTrend, c.want)
		}
	}
}

// Before the fit settles (settledFit observations) no kernel form is chosen: 24 runs of a
// loss whose level falls steeply with scale, enough evidence for the trend once the choice
// is made, keep the plain product in raw w; one run more lets the fit choose.
func TestFormsWaitForTheSettledFit(t *testing.T) {
	p := synthProblem()
	rng := rand.New(rand.NewPCG(7, 8))
	var obs []Observation
	for i := 0; i < settledFit; i++ {
		tr := Trial{Mixture: sampleDirichletAlpha(rng, 5, 1), Scale: rng.IntN(len(p.Scales)), Steps: p.TargetSteps}
		d := 0.0
		for j, v := range tr.Mixture {
			d += (v - wStar[j]) * (v - wStar[j]) * float64(j+1)
		}
		obs = append(obs, Observation{Trial: tr, Done: true,
			Curve: []CurvePoint{{Step: tr.Steps, Value: 6 * math.Pow(p.Scales[tr.Scale].Params/20e6, -0.4) * math.Exp(0.3*d)}}})
	}
	m := NewMF("mfms", MFMSConfig())
	for _, n := range []int{settledFit - 1, settledFit} {
		req := Request{Problem: p, Observations: obs[:n], Decision: n}
		cd, err := m.condition(&req, true)
		if err != nil {
			t.Fatal(err)
		}
		chosen := cd.state.Trend || cd.state.SqrtW
		if settled := n >= settledFit; chosen != settled {
			t.Errorf("%d observations: trend %v, √w %v; want a form chosen %v", n, cd.state.Trend, cd.state.SqrtW, settled)
		}
		if !cd.state.Trend && !cd.g.m.kn.noTrend {
			t.Errorf("%d observations: the kernel has a trend the state does not record", n)
		}
	}
}

// A refit is due when the data's compute grew by a fifth, not only their count: one target
// run after thirty runs at the smallest scale is seen by the next fit.
func TestRefitWhenTheSpendGrows(t *testing.T) {
	p := synthProblem()
	rng := rand.New(rand.NewPCG(9, 10))
	var obs []Observation
	add := func(scale int) {
		tr := Trial{Mixture: SampleDirichlet(rng, p.Lower, p.Upper), Scale: scale, Steps: p.TargetSteps}
		obs = append(obs, Observation{Trial: tr, Done: true,
			Curve: []CurvePoint{{Step: tr.Steps, Value: synthLoss(tr.Mixture, p.Scales[scale].Params, tr.Steps)}}})
	}
	for range 30 {
		add(0)
	}
	m := NewMF("mfms", MFMSConfig())
	req := Request{Problem: p, Observations: obs, Decision: len(obs)}
	cd, err := m.condition(&req, true)
	if err != nil {
		t.Fatal(err)
	}
	req.State = cd.state.encode()
	add(0)
	req.Observations, req.Decision = obs, len(obs)
	if cd, err = m.condition(&req, true); err != nil {
		t.Fatal(err)
	}
	if cd.fitTime != 0 {
		t.Error("one more cheap run (31 after 30, 3% more compute) refitted")
	}
	add(p.TargetScale)
	req.Observations, req.Decision = obs, len(obs)
	if cd, err = m.condition(&req, true); err != nil {
		t.Fatal(err)
	}
	if cd.fitTime == 0 || cd.state.FitTrials != 32 {
		t.Errorf("a target run after 31 cheap ones was not refitted (fit on %d trials)", cd.state.FitTrials)
	}
	// mfbo's trials are all at the target scale: its schedule counts trials only.
	if s := NewMF("mfbo", MFBOConfig()).dataSpend(&p, obs); s != 0 {
		t.Errorf("mfbo's data spend %v, want 0 (trials counted only)", s)
	}
}
