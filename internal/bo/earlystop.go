package bo

import (
	"context"
	"math"
	"slices"
)

// EarlyStopper is implemented by policies that may stop running trials at their current
// step: steps are a fidelity, so a curve that is clearly worse than its peers at the same
// scale and step has told what it can. The scheduler asks at each decision; a stopped
// trial keeps the prefix it observed.
type EarlyStopper interface {
	// StopEarly returns the indices into req.Pending of the trials to stop now.
	StopEarly(ctx context.Context, req Request) ([]int, error)
}

const medianSuffix = "+median"

// withMedianStopping is a policy that also stops trials by the median rule.
type withMedianStopping struct {
	Policy
	MedianStopping
}

func (p withMedianStopping) Name() string { return p.Policy.Name() + medianSuffix }

// MedianStopping stops a running trial whose latest value is worse than the median of
// the other trials at the same scale at that step (the median stopping rule of Google
// Vizier), once at least MinPeers peers reached the step and the trial has run at least
// MinFraction of its steps.
type MedianStopping struct {
	MinPeers    int
	MinFraction float64
}

// StopEarly applies the rule; it reads only req.
func (m MedianStopping) StopEarly(_ context.Context, req Request) ([]int, error) {
	minPeers := max(m.MinPeers, 3)
	p := &req.Problem
	var stop []int
	for i, pend := range req.Pending {
		curve := curveOf(req.Observations, pend)
		if len(curve) == 0 {
			continue
		}
		last := curve[len(curve)-1]
		if float64(last.Step) < m.MinFraction*float64(pend.Steps) {
			continue
		}
		var peers []float64
		for _, o := range req.Observations {
			if o.Scale != pend.Scale || sameTrial(o.Trial, pend) {
				continue
			}
			if v, ok := valueAt(o.Curve, last.Step); ok {
				peers = append(peers, v)
			}
		}
		if len(peers) < minPeers {
			continue
		}
		slices.Sort(peers)
		median := peers[len(peers)/2]
		if len(peers)%2 == 0 {
			median = (peers[len(peers)/2-1] + median) / 2
		}
		if (!p.Maximize && last.Value > median) || (p.Maximize && last.Value < median) {
			stop = append(stop, i)
		}
	}
	return stop, nil
}

func sameTrial(a, b Trial) bool {
	return a.Scale == b.Scale && a.Steps == b.Steps && slices.Equal(a.Mixture, b.Mixture)
}

// curveOf finds the observed curve of a pending trial.
func curveOf(obs []Observation, t Trial) []CurvePoint {
	for _, o := range obs {
		if !o.Done && sameTrial(o.Trial, t) {
			return o.Curve
		}
	}
	return nil
}

// valueAt is the curve's value at step, linearly interpolated between its points; false
// when the curve does not reach the step.
func valueAt(curve []CurvePoint, step int64) (float64, bool) {
	for i, c := range curve {
		if c.Step == step {
			return c.Value, true
		}
		if c.Step > step {
			if i == 0 {
				return 0, false
			}
			prev := curve[i-1]
			f := float64(step-prev.Step) / float64(c.Step-prev.Step)
			v := prev.Value + f*(c.Value-prev.Value)
			return v, !math.IsNaN(v)
		}
	}
	return 0, false
}
