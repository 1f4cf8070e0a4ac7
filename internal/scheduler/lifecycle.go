package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// StudyUpdate holds the limits an operator changes on a running study; nil fields stay.
type StudyUpdate struct {
	BudgetFlops *float64
	MaxTrials   *int32
	MaxParallel *int32
	// MaxConsecutiveFailures: 0 restores the default.
	MaxConsecutiveFailures *int32
}

// UpdateStudy changes a running or paused study's budget, trial cap, parallelism or
// failure limit (a limit at or below the current run of failures ends it at the next). A
// budget below what is spent, or a trial cap below the trials created, is refused: neither
// can be taken back. Lowering either lets the study complete once its running trials end.
func (s *Scheduler) UpdateStudy(_ context.Context, id uint64, u StudyUpdate) (*pb.Study, error) {
	if u.BudgetFlops == nil && u.MaxTrials == nil && u.MaxParallel == nil && u.MaxConsecutiveFailures == nil {
		return nil, invalid("update", "nothing to change: give budget_flops, max_trials, max_parallel or max_consecutive_failures")
	}
	if m := u.MaxConsecutiveFailures; m != nil && (*m < 0 || *m > maxConsecutiveFailuresLimit) {
		return nil, invalid("max_consecutive_failures", "%d is out of range (0 for the default %d, up to %d)",
			*m, DefaultMaxConsecutiveFailures, maxConsecutiveFailuresLimit)
	}
	if b := u.BudgetFlops; b != nil && (!(*b > 0) || math.IsInf(*b, 0)) {
		return nil, invalid("budget_flops", "must be a positive finite number of FLOPs, got %v", *b)
	}
	if m := u.MaxTrials; m != nil && *m < 0 {
		return nil, invalid("max_trials", "must not be negative (0: no limit)")
	}
	if p := u.MaxParallel; p != nil && (*p < 1 || *p > maxParallel) {
		return nil, invalid("max_parallel", "%d is out of range (1 to %d)", *p, maxParallel)
	}
	var out *pb.Study
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if isTerminalStudy(st.State) {
			return fmt.Errorf("study %d is %s; only a running or paused study can be updated: %w", id, studyStateName(st.State), ErrConflict)
		}
		if b := u.BudgetFlops; b != nil {
			if *b < st.SpentFlops {
				return invalid("budget_flops", "%.3g is below the %.3g FLOPs already spent", *b, st.SpentFlops)
			}
			st.Spec.BudgetFlops = *b
		}
		if m := u.MaxTrials; m != nil {
			if *m > 0 && *m < st.TrialsCreated {
				return invalid("max_trials", "%d is below the %d trials already created", *m, st.TrialsCreated)
			}
			st.Spec.MaxTrials = *m
		}
		if p := u.MaxParallel; p != nil {
			st.Spec.MaxParallel = *p
		}
		if m := u.MaxConsecutiveFailures; m != nil {
			st.Spec.MaxConsecutiveFailures = *m
			if *m == 0 {
				st.Spec.MaxConsecutiveFailures = DefaultMaxConsecutiveFailures
			}
		}
		out = st
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.bumpLocked(id)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("study updated", zap.Uint64("study", id), zap.Float64("budget_flops", out.Spec.BudgetFlops),
		zap.Int32("max_trials", out.Spec.MaxTrials), zap.Int32("max_parallel", out.Spec.MaxParallel))
	// A lower limit may leave an idle study nothing to start.
	return out, s.completeIfIdle(id, "")
}

// DeleteStudy removes an ended study with its trials, curves and policy state; a study
// that has not ended must be cancelled first, so that no worker still reports to it.
func (s *Scheduler) DeleteStudy(_ context.Context, id uint64) (int, error) {
	var trials []uint64
	n := 0
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if !isTerminalStudy(st.State) {
			return fmt.Errorf("study %d is %s; cancel it before deleting it: %w", id, studyStateName(st.State), ErrConflict)
		}
		ts, err := tx.TrialsOfStudy(id)
		if err != nil {
			return err
		}
		trials = trials[:0]
		for _, t := range ts {
			trials = append(trials, t.Id)
		}
		n, err = tx.DeleteStudy(id)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	delete(s.recs, id)
	s.bumpLocked(id)
	s.mu.Unlock()
	s.curves.forget(trials)
	s.log.Info("study deleted", zap.Uint64("study", id), zap.Int("trials", n))
	return n, nil
}

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

// ForgetWorker removes a worker from the registry: only a lost one (not heard from within
// three heartbeat intervals) that holds no lease, so that a live worker's trials are never
// orphaned. A forgotten worker that comes back registers afresh under a new id.
func (s *Scheduler) ForgetWorker(_ context.Context, id uint64) error {
	now := s.now()
	s.mu.Lock()
	for tid, l := range s.leases {
		if l.workerID == id {
			s.mu.Unlock()
			return fmt.Errorf("worker %d holds trial %d; it can be forgotten once its trials end or are requeued: %w", id, tid, ErrConflict)
		}
	}
	seen, heard := s.heartbeats[id]
	s.mu.Unlock()
	err := s.db.Update(func(tx *store.Tx) error {
		w, err := tx.Worker(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("worker %d", id))
		}
		last := time.UnixMilli(w.LastHeartbeatUnixMs)
		if heard && seen.After(last) {
			last = seen
		}
		if now.Sub(last) <= 3*s.cfg.HeartbeatInterval {
			return fmt.Errorf("worker %d is alive (last seen %s ago); drain it and stop it first: %w", id, now.Sub(last).Round(time.Second), ErrConflict)
		}
		return tx.DeleteWorker(id)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.heartbeats, id)
	s.mu.Unlock()
	s.log.Info("worker forgotten", zap.Uint64("worker", id))
	return nil
}

// forget drops the cached curves of deleted trials.
func (c *curveCache) forget(trialIDs []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range trialIDs {
		delete(c.trials, id)
	}
}
