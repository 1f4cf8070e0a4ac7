package bo

import (
	"context"
	"slices"
	"testing"
)

func TestMedianStoppingStopsTheWorseHalf(t *testing.T) {
	curve := func(scale float64, steps ...int64) []CurvePoint {
		var c []CurvePoint
		for _, s := range steps {
			c = append(c, CurvePoint{Step: s, Value: scale / float64(s)})
		}
		return c
	}
	done := func(mix float64, scale float64) Observation {
		return Observation{Trial: Trial{Mixture: []float64{mix, 1 - mix}, Scale: 0, Steps: 400},
			Curve: curve(scale, 100, 200, 300, 400), Done: true}
	}
	running := func(mix, scale float64, steps ...int64) (Trial, Observation) {
		tr := Trial{Mixture: []float64{mix, 1 - mix}, Scale: 0, Steps: 400}
		return tr, Observation{Trial: tr, Curve: curve(scale, steps...)}
	}
	good, goodObs := running(0.5, 90, 100, 200)
	bad, badObs := running(0.6, 200, 100, 200)
	early, earlyObs := running(0.7, 300, 100) // below MinFraction of its steps
	otherScale := Trial{Mixture: []float64{0.8, 0.2}, Scale: 1, Steps: 400}
	req := Request{
		Problem: Problem{Scales: []Scale{{Name: "a"}, {Name: "b"}}},
		Observations: []Observation{done(0.1, 100), done(0.2, 110), done(0.3, 120), goodObs, badObs, earlyObs,
			{Trial: otherScale, Curve: curve(500, 100, 200)}},
		Pending: []Trial{good, bad, early, otherScale},
	}
	got, err := MedianStopping{MinPeers: 3, MinFraction: 0.5}.StopEarly(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int{1}) {
		t.Fatalf("stopped %v, want only the worse-than-median trial [1]", got)
	}
	req.Problem.Maximize = true
	got, _ = MedianStopping{MinPeers: 3, MinFraction: 0.5}.StopEarly(context.Background(), req)
	if !slices.Equal(got, []int{0}) {
		t.Fatalf("maximising: stopped %v, want [0]", got)
	}
	got, _ = MedianStopping{MinPeers: 5, MinFraction: 0.5}.StopEarly(context.Background(), req)
	if len(got) != 0 {
		t.Fatalf("with too few peers: stopped %v", got)
	}
}

func TestValueAtInterpolates(t *testing.T) {
	c := []CurvePoint{{Step: 100, Value: 4}, {Step: 300, Value: 2}}
	for _, tc := range []struct {
		step int64
		want float64
		ok   bool
	}{{100, 4, true}, {200, 3, true}, {300, 2, true}, {50, 0, false}, {400, 0, false}} {
		v, ok := valueAt(c, tc.step)
		if ok != tc.ok || (ok && v != tc.want) {
			t.Errorf("valueAt(%d) = %v %v, want %v %v", tc.step, v, ok, tc.want, tc.ok)
		}
	}
}
