package scheduler

import (
	"fmt"
	"math"
	"strings"

	"github.com/mixopt/mixopt/internal/bo"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// checkPoolsAndPrior bounds and checks a spec's candidate pools and prior runs (bo's own
// checks, with the spec's field names); nothing is stored when they fail.
func checkPoolsAndPrior(s *pb.StudySpec) error {
	for i, sc := range s.Scales {
		if len(sc.Pool) > MaxPoolMixtures {
			return invalid(fmt.Sprintf("scales[%d].pool", i), "%d mixtures, at most %d", len(sc.Pool), MaxPoolMixtures)
		}
	}
	if len(s.PriorRuns) > MaxPriorRuns {
		return invalid("prior_runs", "%d runs, at most %d", len(s.PriorRuns), MaxPriorRuns)
	}
	p := problem(&pb.Study{Spec: s}, s.BudgetFlops)
	if err := bo.ValidatePools(&p); err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(err.Error(), "problem: "), ErrInvalid)
	}
	for i, r := range s.PriorRuns {
		field := fmt.Sprintf("prior_runs[%d]", i)
		if ScaleIndex(s, r.Scale) < 0 {
			return invalid(field+".scale", "%q is not one of the study's scales", r.Scale)
		}
		if len(r.SourceRun) > MaxSourceRunBytes {
			return invalid(field+".source_run", "longer than %d bytes", MaxSourceRunBytes)
		}
		if len(r.Curve) > MaxPriorPoints {
			return invalid(field+".curve", "%d points, at most %d", len(r.Curve), MaxPriorPoints)
		}
		for j, pt := range r.Curve {
			if j > 0 && pt.Step <= r.Curve[j-1].Step {
				return invalid(fmt.Sprintf("%s.curve[%d].step", field, j), "%d, want more than the previous %d", pt.Step, r.Curve[j-1].Step)
			}
		}
		if len(priorCurve(r, s.Objective.Metric)) == 0 {
			return invalid(field+".curve", "no point carries a finite objective %q", s.Objective.Metric)
		}
	}
	if err := bo.ValidatePrior(&p, priorObservations(s)); err != nil {
		return fmt.Errorf("%s: %w", strings.Replace(err.Error(), "prior[", "prior_runs[", 1), ErrInvalid)
	}
	return nil
}

// priorObservations are the spec's prior runs in the policy's terms: finished
// observations of the objective, which the study never paid for.
func priorObservations(s *pb.StudySpec) []bo.Observation {
	if len(s.PriorRuns) == 0 {
		return nil
	}
	out := make([]bo.Observation, 0, len(s.PriorRuns))
	for _, r := range s.PriorRuns {
		out = append(out, bo.Observation{
			Trial: bo.Trial{Mixture: r.Mixture, Scale: ScaleIndex(s, r.Scale), Steps: r.Steps},
			Curve: priorCurve(r, s.Objective.Metric),
			Done:  true,
		})
	}
	return out
}

// priorCurve is a prior run's finite objective values, as a trial's curve is read.
func priorCurve(r *pb.PriorRun, metric string) []bo.CurvePoint {
	var curve []bo.CurvePoint
	for _, pt := range r.Curve {
		if v, ok := MetricValue(pt, metric); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			curve = append(curve, bo.CurvePoint{Step: pt.Step, Value: v})
		}
	}
	return curve
}

// poolOf is a scale's candidate pool as the policy takes it (nil: any mixture).
func poolOf(sc *pb.Scale) [][]float64 {
	if len(sc.Pool) == 0 {
		return nil
	}
	pool := make([][]float64, len(sc.Pool))
	for i, m := range sc.Pool {
		pool[i] = m.Weights
	}
	return pool
}
