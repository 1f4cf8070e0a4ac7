package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Trials as an operator handles them: added by hand, cancelled, listed and read.

// Limits on a hand-added trial's mixture: weights that sum to 1 within mixtureSlack
// are renormalised, so that an operator can type rounded weights.
const mixtureSlack = 1e-3

// AddTrial adds a trial an operator chose (for instance the recommendation at the target,
// to confirm it). It is stored pending, so the next worker the study accepts runs it
// before the policy decides anything new; it counts toward the trials created and its
// cost must fit the budget left.
func (s *Scheduler) AddTrial(_ context.Context, studyID uint64, mixture []float64, scale string, steps int64) (*pb.Trial, error) {
	if len(mixture) > maxDomains {
		return nil, invalid("mixture", "%d weights, at most %d", len(mixture), maxDomains)
	}
	if len(scale) > 64 {
		return nil, invalid("scale", "longer than 64 characters")
	}
	var t *pb.Trial
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(studyID)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", studyID))
		}
		spec := st.Spec
		if isTerminalStudy(st.State) {
			return fmt.Errorf("study %d is %s; trials can only be added to a running or paused study: %w", studyID, studyStateName(st.State), ErrConflict)
		}
		mix, err := checkMixture(spec, mixture)
		if err != nil {
			return err
		}
		si := ScaleIndex(spec, scale)
		if si < 0 {
			return invalid("scale", "%q is not among the study's scales %v", scale, scaleNames(spec))
		}
		if !slices.Contains(spec.Steps, steps) {
			return invalid("steps", "%d is not among the study's step budgets %v", steps, spec.Steps)
		}
		trials, err := tx.TrialsOfStudy(studyID)
		if err != nil {
			return err
		}
		committed := 0.0
		for _, o := range trials {
			if isActive(o) {
				committed += remainingCost(spec, o)
			}
		}
		cost := spec.Scales[si].FlopsPerStep * float64(steps)
		if left := spec.BudgetFlops - st.SpentFlops - committed; cost > left*(1+1e-9) {
			return fmt.Errorf("trial costs %.3g FLOPs but the budget left is %.3g (raise it with mixctl study update --budget-flops): %w",
				cost, left, ErrConflict)
		}
		id, err := tx.NextTrialID()
		if err != nil {
			return err
		}
		t = &pb.Trial{
			Id: id, StudyId: studyID, Mixture: mix, Scale: scale, Steps: steps, Manual: true,
			State: pb.TrialState_TRIAL_STATE_PENDING, CreateTimeUnixMs: unixMs(s.now()),
		}
		st.TrialsCreated++
		if err := tx.PutTrial(t); err != nil {
			return err
		}
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.bumpLocked(studyID)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("trial added by hand", zap.Uint64("study", studyID), zap.Uint64("trial", t.Id),
		zap.String("scale", scale), zap.Int64("steps", steps), zap.Float64s("mixture", t.Mixture))
	return t, nil
}

// checkMixture validates a hand-given mixture against the study's domains and returns it
// renormalised to sum to exactly 1.
func checkMixture(spec *pb.StudySpec, mixture []float64) ([]float64, error) {
	if len(mixture) != len(spec.Domains) {
		return nil, invalid("mixture", "%d weights for the study's %d domains %v", len(mixture), len(spec.Domains), domainNames(spec))
	}
	sum := 0.0
	for i, w := range mixture {
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return nil, invalid(fmt.Sprintf("mixture[%d]", i), "%v is not a weight (%s)", w, spec.Domains[i].Name)
		}
		sum += w
	}
	if math.Abs(sum-1) > mixtureSlack {
		return nil, invalid("mixture", "weights sum to %v, want 1 (within %v)", sum, mixtureSlack)
	}
	out := make([]float64, len(mixture))
	for i, w := range mixture {
		out[i] = w / sum
		d := spec.Domains[i]
		if out[i] < d.MinWeight-1e-9 || out[i] > d.MaxWeight+1e-9 {
			return nil, invalid(fmt.Sprintf("mixture[%d]", i), "%v for %s is outside its bounds [%v, %v]", out[i], d.Name, d.MinWeight, d.MaxWeight)
		}
	}
	return out, nil
}

func scaleNames(spec *pb.StudySpec) []string {
	names := make([]string, len(spec.Scales))
	for i, sc := range spec.Scales {
		names[i] = sc.Name
	}
	return names
}

// CancelTrial stops a trial: a pending one at once, a running one at its current step
// (its worker learns it from its next report, finishes with the points it sent, and the
// observed prefix is kept).
func (s *Scheduler) CancelTrial(_ context.Context, id uint64) (*pb.Trial, error) {
	var t *pb.Trial
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		if t, err = tx.Trial(id); err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", id))
		}
		switch t.State {
		case pb.TrialState_TRIAL_STATE_RUNNING:
			t.StopRequested = true
		case pb.TrialState_TRIAL_STATE_PENDING:
			t.StopRequested = true
			t.State = pb.TrialState_TRIAL_STATE_STOPPED
			t.FailureReason = "cancelled by the operator"
			t.EndTimeUnixMs = unixMs(s.now())
		case pb.TrialState_TRIAL_STATE_STOPPED:
			return nil
		default:
			return fmt.Errorf("trial %d already ended %s: %w", id, StateName(t.State), ErrConflict)
		}
		return tx.PutTrial(t)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.bumpLocked(t.StudyId)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("trial stop requested", zap.Uint64("trial", id), zap.String("state", StateName(t.State)))
	return t, s.completeIfIdle(t.StudyId, "")
}

// Trials lists a study's trials, optionally filtered by state and scale.
func (s *Scheduler) Trials(_ context.Context, studyID uint64, state pb.TrialState, scale string) ([]*pb.Trial, error) {
	var out []*pb.Trial
	err := s.db.View(func(tx *store.Tx) error {
		if _, err := tx.Study(studyID); err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", studyID))
		}
		trials, err := tx.TrialsOfStudy(studyID)
		for _, t := range trials {
			if (state == pb.TrialState_TRIAL_STATE_UNSPECIFIED || t.State == state) && (scale == "" || t.Scale == scale) {
				out = append(out, t)
			}
		}
		return err
	})
	return out, err
}

// Trial returns a trial and its current attempt's curve.
func (s *Scheduler) Trial(_ context.Context, id uint64) (*pb.Trial, []*pb.CurvePoint, error) {
	var t *pb.Trial
	var pts []*pb.CurvePoint
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		if t, err = tx.Trial(id); err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", id))
		}
		if t.Attempt > 0 {
			pts, err = tx.Points(id, t.Attempt)
		}
		return err
	})
	return t, pts, err
}
