package bo

import "testing"

// BestObserved says where its value was observed: the coordinator labels a value from a
// smaller scale or a partial curve as such instead of as a value at the target.
func TestBestObservedSaysWhere(t *testing.T) {
	p := Problem{
		Domains: []string{"a", "b"}, Lower: []float64{0, 0}, Upper: []float64{1, 1},
		Scales:      []Scale{{Name: "s", FlopsPerStep: 1}, {Name: "l", FlopsPerStep: 10}},
		Steps:       []int64{100, 200},
		TargetScale: 1, TargetSteps: 200,
	}
	partial := Observation{Trial: Trial{Mixture: []float64{0.5, 0.5}, Scale: 1, Steps: 200}, Curve: []CurvePoint{{Step: 50, Value: 2}}}
	small := Observation{Trial: Trial{Mixture: []float64{0.2, 0.8}, Scale: 0, Steps: 200}, Curve: []CurvePoint{{Step: 200, Value: 1}}, Done: true}
	r, err := BestObserved(Request{Problem: p, Observations: []Observation{small, partial}})
	if err != nil {
		t.Fatal(err)
	}
	// 50 steps at l (500 FLOPs) outrank 200 at s (200 FLOPs): the highest fidelity so far.
	if !r.Observed || r.ObservedScale != 1 || r.ObservedSteps != 50 || r.Value != 2 {
		t.Errorf("got %+v, want observed at scale 1 after 50 steps", r)
	}
	full := Observation{Trial: Trial{Mixture: []float64{0.7, 0.3}, Scale: 1, Steps: 200}, Curve: []CurvePoint{{Step: 200, Value: 3}}, Done: true}
	if r, err = BestObserved(Request{Problem: p, Observations: []Observation{small, partial, full}}); err != nil {
		t.Fatal(err)
	}
	if !r.Observed || r.ObservedScale != 1 || r.ObservedSteps != 200 || r.Basis != "best observed at the target" {
		t.Errorf("got %+v, want observed at the target", r)
	}
}
