package bo

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// space maps trials to GP inputs: the mixture as is, then the scale's log FLOPs per step
// and the log step count, each scaled to [0, 1] over the study's range. A scale is placed
// by its compute per step, which the study knows exactly, rather than by its nominal
// parameter count, which is a label ("700M" and "1B" of the data model differ 1.4× by
// name and 3.4× in FLOPs per step).
type space struct {
	k                  int
	logC0, logCSpan    float64
	logT0, logTSpan    float64
	scaleU             []float64 // us per scale index
	target             Trial     // mixture nil
	targetUS, targetUT float64
	// sqrtW feeds the kernel √w instead of w (see MFConfig.MixtureWarp).
	sqrtW bool
}

func newSpace(p *Problem) (*space, error) {
	k := len(p.Domains)
	if k == 0 || len(p.Lower) != k || len(p.Upper) != k {
		return nil, fmt.Errorf("problem: %d domains with %d lower and %d upper bounds", k, len(p.Lower), len(p.Upper))
	}
	if len(p.Scales) == 0 || len(p.Steps) == 0 {
		return nil, fmt.Errorf("problem: no scales or no step budgets")
	}
	if p.TargetScale < 0 || p.TargetScale >= len(p.Scales) {
		return nil, fmt.Errorf("problem: target scale %d out of range", p.TargetScale)
	}
	if p.TargetSteps <= 0 {
		return nil, fmt.Errorf("problem: target steps %d not positive", p.TargetSteps)
	}
	if err := checkPools(p); err != nil {
		return nil, err
	}
	s := &space{k: k}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, sc := range p.Scales {
		if !(sc.Params > 0) || !(sc.FlopsPerStep > 0) || math.IsInf(sc.Params, 0) || math.IsInf(sc.FlopsPerStep, 0) {
			return nil, fmt.Errorf("problem: scale %q needs positive parameters and flops per step", sc.Name)
		}
		lo, hi = math.Min(lo, math.Log(sc.FlopsPerStep)), math.Max(hi, math.Log(sc.FlopsPerStep))
	}
	s.logC0, s.logCSpan = lo, math.Max(hi-lo, 1e-12)
	tlo, thi := math.Inf(1), math.Log(float64(p.TargetSteps))
	for _, t := range p.Steps {
		if t <= 0 {
			return nil, fmt.Errorf("problem: step budget %d not positive", t)
		}
		tlo = math.Min(tlo, math.Log(float64(t)))
		thi = math.Max(thi, math.Log(float64(t)))
	}
	s.logT0, s.logTSpan = tlo, math.Max(thi-tlo, 1e-12)
	s.scaleU = make([]float64, len(p.Scales))
	for i, sc := range p.Scales {
		s.scaleU[i] = (math.Log(sc.FlopsPerStep) - s.logC0) / s.logCSpan
	}
	s.target = Trial{Scale: p.TargetScale, Steps: p.TargetSteps}
	s.targetUS = s.scaleU[p.TargetScale]
	s.targetUT = s.stepU(p.TargetSteps)
	return s, nil
}

func (s *space) stepU(step int64) float64 {
	return (math.Log(float64(step)) - s.logT0) / s.logTSpan
}

// point is the GP input of mixture w at (scale, step).
func (s *space) point(w []float64, scale int, step int64) []float64 {
	x := make([]float64, s.k+2)
	s.mixture(x, w)
	x[s.k] = s.scaleU[scale]
	x[s.k+1] = s.stepU(step)
	return x
}

// mixture writes the kernel's mixture coordinates of w into x.
func (s *space) mixture(x, w []float64) {
	copy(x, w)
	if s.sqrtW {
		for i := range w {
			x[i] = math.Sqrt(max(w[i], 0))
		}
	}
}

// targetPoint is the GP input of mixture w at the target fidelity.
func (s *space) targetPoint(w []float64) []float64 {
	x := make([]float64, s.k+2)
	s.mixture(x, w)
	x[s.k] = s.targetUS
	x[s.k+1] = s.targetUT
	return x
}

// transform maps raw objective values to what the GP models, "smaller is better": the log
// of the metric when every value is positive (losses span a factor of five across scales
// and steps, and their log is closer to a stationary GP), negated when maximising.
type transform struct {
	log, negate bool
	mean, sd    float64
}

func (t transform) forward(v float64) float64 {
	if t.log {
		v = math.Log(v)
	}
	if t.negate {
		v = -v
	}
	return (v - t.mean) / t.sd
}

// inverse maps a standardised value back to the metric.
func (t transform) inverse(z float64) float64 {
	v := z*t.sd + t.mean
	if t.negate {
		v = -v
	}
	if t.log {
		v = math.Exp(v)
	}
	return v
}

// dataOptions bound the training set.
type dataOptions struct {
	// PointsPerTrial is how many curve points of each trial the GP sees: the last one and
	// then the points nearest T/2, T/4, … (log-spaced back from the trial's last step T).
	pointsPerTrial int
	// MaxPoints caps the training set. Beyond it the points per trial shrink, down to one
	// (the last point); beyond that, the trials kept are the most expensive fidelities
	// and the best values, half each.
	maxPoints int
	// Scales, when not nil, keeps only observations at these scale indices (mfbo).
	scales map[int]bool
	// lastOnlyFrom, when positive, gives a trial whose curve reached this step (the
	// target's) one point, its last; shorter curves keep pointsPerTrial.
	lastOnlyFrom int64
}

// trainingSet is the GP's data: inputs, standardised targets and the transform.
type trainingSet struct {
	x  [][]float64
	y  []float64
	tr transform
	// trials is the number of trials the kept points come from.
	trials int
	// observed is the number of usable trials before the cap on the training set: the
	// count the refit schedule follows (trials stops growing once the cap binds).
	observed int
}

// trialPoints is one observation's usable curve: its valid points in ascending step, the
// last value and the FLOPs it cost.
type trialPoints struct {
	obs  *Observation
	pts  []CurvePoint
	last float64
	cost float64
}

// buildTraining selects and transforms the observed points. Points with a NaN or infinite
// value (or a non-positive one when the log transform is on) are dropped, as are
// observations whose mixture or scale does not fit the problem.
func buildTraining(p *Problem, s *space, obs []Observation, opt dataOptions) (*trainingSet, error) {
	trials, allPos := usableTrials(p, s, obs, opt)
	if len(trials) == 0 {
		return nil, ErrNoObservations
	}
	tr := transform{log: allPos, negate: p.Maximize, sd: 1}
	maxPts := opt.maxPoints
	if maxPts <= 0 {
		maxPts = 1 << 30
	}
	observed := len(trials)
	if len(trials) > maxPts {
		trials = keepTrials(trials, maxPts, tr)
	}
	lastOnly := func(t trialPoints) bool {
		return opt.lastOnlyFrom > 0 && t.pts[len(t.pts)-1].Step >= opt.lastOnlyFrom
	}
	per := pointsPerTrialWithin(trials, opt.pointsPerTrial, maxPts, lastOnly)
	ts := &trainingSet{tr: tr, trials: len(trials), observed: observed}
	var raw []float64
	for _, t := range trials {
		n := per
		if lastOnly(t) {
			n = 1
		}
		for _, c := range pickLogSpaced(t.pts, n) {
			ts.x = append(ts.x, s.point(t.obs.Mixture, t.obs.Scale, c.Step))
			raw = append(raw, windowMean(t.pts, c.Step))
		}
	}
	ts.y, ts.tr.mean, ts.tr.sd = standardise(raw, tr)
	return ts, nil
}

// usableTrials keeps the observations that fit the problem (and opt.scales) with their
// valid points; allPos says whether every kept value is positive (the log transform).
func usableTrials(p *Problem, s *space, obs []Observation, opt dataOptions) (trials []trialPoints, allPos bool) {
	allPos = true
	for i := range obs {
		o := &obs[i]
		if len(o.Mixture) != s.k || o.Scale < 0 || o.Scale >= len(p.Scales) {
			continue
		}
		if opt.scales != nil && !opt.scales[o.Scale] {
			continue
		}
		if slices.ContainsFunc(o.Mixture, func(w float64) bool { return math.IsNaN(w) || math.IsInf(w, 0) }) {
			continue
		}
		var pts []CurvePoint
		for _, c := range o.Curve {
			if c.Step <= 0 || math.IsNaN(c.Value) || math.IsInf(c.Value, 0) {
				continue
			}
			pts = append(pts, c)
			if c.Value <= 0 {
				allPos = false
			}
		}
		if len(pts) == 0 {
			continue
		}
		sort.SliceStable(pts, func(a, b int) bool { return pts[a].Step < pts[b].Step })
		last := pts[len(pts)-1]
		trials = append(trials, trialPoints{obs: o, pts: pts, last: last.Value,
			cost: p.Scales[o.Scale].FlopsPerStep * float64(last.Step)})
	}
	return trials, allPos
}

// keepTrials keeps maxPts trials, in their order: the most expensive fidelities and the
// best values, half each.
func keepTrials(trials []trialPoints, maxPts int, tr transform) []trialPoints {
	idx := make([]int, len(trials))
	for i := range idx {
		idx[i] = i
	}
	keep := map[int]bool{}
	sort.SliceStable(idx, func(a, b int) bool { return trials[idx[a]].cost > trials[idx[b]].cost })
	for _, i := range idx[:maxPts/2] {
		keep[i] = true
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return tr.forward(trials[idx[a]].last) < tr.forward(trials[idx[b]].last)
	})
	for _, i := range idx {
		if len(keep) >= maxPts {
			break
		}
		keep[i] = true
	}
	var kept []trialPoints
	for i := range trials {
		if keep[i] {
			kept = append(kept, trials[i])
		}
	}
	return kept
}

// pointsPerTrialWithin is the most points per trial, from want down to one, whose total
// stays within maxPts (a last-only trial gives one point whatever the count).
func pointsPerTrialWithin(trials []trialPoints, want, maxPts int, lastOnly func(trialPoints) bool) int {
	points := func(per int) int {
		n := 0
		for _, t := range trials {
			if lastOnly(t) {
				n++
			} else {
				n += per
			}
		}
		return n
	}
	per := max(want, 1)
	for per > 1 && points(per) > maxPts {
		per--
	}
	return per
}

// standardise maps raw values through tr's log and sign, then to mean 0 and standard
// deviation 1 (1 when all are equal); it returns the values with the mean and sd used.
func standardise(raw []float64, tr transform) (y []float64, mean, sd float64) {
	z := make([]float64, len(raw))
	for i, v := range raw {
		z[i] = transform{log: tr.log, negate: tr.negate, sd: 1}.forward(v)
		mean += z[i]
	}
	mean /= float64(len(z))
	for _, v := range z {
		sd += (v - mean) * (v - mean)
	}
	sd = math.Sqrt(sd / float64(len(z)))
	if !(sd > 1e-9) {
		sd = 1
	}
	y = make([]float64, len(z))
	for i, v := range z {
		y[i] = (v - mean) / sd
	}
	return y, mean, sd
}

// windowMean averages the curve's points within ±5% of step (in log step). A curve is
// smooth on that scale while point noise is not, so this cuts the noise the GP sees by
// the square root of the points averaged (about 10 at the end of a 19500-step curve
// recorded every 100 steps) at little bias.
func windowMean(pts []CurvePoint, step int64) float64 {
	lo, hi := float64(step)/1.05, float64(step)*1.05
	sum, n := 0.0, 0
	for _, c := range pts {
		if s := float64(c.Step); s >= lo && s <= hi {
			sum += c.Value
			n++
		}
	}
	return sum / float64(n) // n ≥ 1: the point at step itself is in pts
}

// pickLogSpaced returns up to n points of an ascending curve: the last one, then the ones
// nearest to half, a quarter, … of its step.
func pickLogSpaced(pts []CurvePoint, n int) []CurvePoint {
	last := pts[len(pts)-1]
	out := []CurvePoint{last}
	used := map[int]bool{len(pts) - 1: true}
	want := float64(last.Step)
	for len(out) < n {
		want /= 2
		if want < float64(pts[0].Step)/2 {
			break
		}
		best, bestD := -1, math.Inf(1)
		for i, c := range pts {
			d := math.Abs(math.Log(float64(c.Step)) - math.Log(want))
			if d < bestD {
				best, bestD = i, d
			}
		}
		if !used[best] {
			used[best] = true
			out = append(out, pts[best])
		}
	}
	return out
}
