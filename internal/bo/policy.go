// Package bo decides which trial a study runs next and which mixture it recommends.
// Policies are pure functions of their Request: no I/O, no hidden global state, so a
// restarted coordinator that replays the stored data makes the same decision.
package bo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Scale is a model scale a trial may run at.
type Scale struct {
	Name         string
	Params       float64
	FlopsPerStep float64
	// Pool, when not empty, holds the only mixtures a trial at this scale may use, and at
	// the target scale the only ones a recommendation may name (a recorded sweep, a
	// team's shortlist). Each is a mixture over Problem.Domains within the bounds.
	Pool [][]float64
}

// Problem is the study's search space and target, in the policy's terms.
type Problem struct {
	Domains []string
	// Lower and Upper bound each domain's weight (len(Domains) each).
	Lower, Upper []float64
	Scales       []Scale
	// Steps are the allowed step budgets, ascending.
	Steps []int64
	// TargetScale indexes Scales; TargetSteps is among Steps.
	TargetScale int
	TargetSteps int64
	// Maximize the objective instead of minimising it.
	Maximize bool
	// TokenShare, when set, is each domain's share of the available tokens: the centre
	// around which the regmix baseline draws its proxy mixtures (uniform when nil).
	TokenShare []float64
	// BudgetLeft is the compute, in FLOPs, still free for new trials (spent and
	// committed to running trials already subtracted).
	BudgetLeft float64
	Seed       uint64
}

// Trial is a point of the decision space.
type Trial struct {
	Mixture []float64
	Scale   int // index into Problem.Scales
	Steps   int64
}

// Cost is the trial's compute in FLOPs.
func (p *Problem) Cost(t Trial) float64 {
	return p.Scales[t.Scale].FlopsPerStep * float64(t.Steps)
}

// CurvePoint is one objective value observed along a trial's curve.
type CurvePoint struct {
	Step  int64
	Value float64
}

// Observation is a trial with the curve observed so far (possibly partial).
type Observation struct {
	Trial
	Curve []CurvePoint
	// Done is false while the trial still runs (or ended early).
	Done bool
}

// Request is everything a decision depends on.
type Request struct {
	Problem Problem
	// Observations hold every trial with at least one point; a trial still running
	// appears here with its partial curve (Done false) and in Pending too.
	Observations []Observation
	// Pending are trials running now: the policy must account for them (their final
	// values are not known yet) so that parallel workers do not get the same trial.
	Pending []Trial
	// Decision numbers this decision (trials created so far); with Problem.Seed it seeds
	// the policy's randomness.
	Decision int
	// State is what the policy saved at its last decision (nil at first).
	State []byte
	// Prior are finished runs the study starts from (say, last month's proxy sweep): the
	// model sees them from the first decision, and they cost nothing.
	Prior []Observation
}

// Decision is the next trial and the state to persist with it.
type Decision struct {
	Trial Trial
	State []byte
	// FitTime is how long a hyperparameter fit took for this decision (zero when none
	// ran). It is a measurement for the coordinator's metrics, never an input.
	FitTime time.Duration
}

// Recommendation is the policy's best mixture at the target.
type Recommendation struct {
	Mixture []float64
	// Value is the predicted objective at the target; Lower and Upper bound its 90%
	// credible interval (equal to Value when the policy gives none).
	Value, Lower, Upper float64
	Basis               string
	// Observed says Value was observed on a trial (at ObservedScale, ObservedSteps), not
	// predicted by a model: Lower and Upper are then no interval.
	Observed      bool
	ObservedScale int
	ObservedSteps int64
}

// Policy decides trials and recommends mixtures.
type Policy interface {
	Name() string
	// Next returns the next trial, or ErrNoTrialFits when no trial fits the budget left.
	Next(ctx context.Context, req Request) (Decision, error)
	// Recommend returns the best mixture at the target, or ErrNoObservations.
	Recommend(ctx context.Context, req Request) (Recommendation, error)
}

var (
	// ErrNoTrialFits means every trial of the decision space costs more than the budget left.
	ErrNoTrialFits = errors.New("no trial fits the budget left")
	// ErrNoObservations means there is no data to recommend from yet.
	ErrNoObservations = errors.New("no observations yet")
	// ErrUnknownPolicy names a policy that does not exist.
	ErrUnknownPolicy = errors.New("unknown policy")
)

var constructors = map[string]func() Policy{
	"random":    func() Policy { return Random{} },
	"random-mf": func() Policy { return RandomMF{} },
	"uniform":   func() Policy { return Uniform{} },
	"regmix":    func() Policy { return NewRegMix() },
	"mfms":      func() Policy { return NewMF("mfms", MFMSConfig()) },
	"mfbo":      func() Policy { return NewMF("mfbo", MFBOConfig()) },
	"gp-ei":     func() Policy { return NewMF("gp-ei", GPEIConfig()) },
	"mfms-ei":   func() Policy { return NewMF("mfms-ei", MFMSEIConfig()) },
}

// New returns the named policy.
//
// A name may end in "+median" (for example "mfms+median"): the policy then also stops
// running trials early by the median stopping rule (MedianStopping).
func New(name string) (Policy, error) {
	base, median := strings.CutSuffix(name, medianSuffix)
	c, ok := constructors[base]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v, each optionally with %q)", ErrUnknownPolicy, name, Names(), medianSuffix)
	}
	if median {
		return withMedianStopping{Policy: c(), MedianStopping: MedianStopping{MinPeers: 3, MinFraction: 0.25}}, nil
	}
	return c(), nil
}

// Names lists the known policies.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for n := range constructors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
