package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Studies: creating, pausing, resuming, changing, cancelling and deleting them, and
// ending them once they can start nothing more.

// CreateStudy validates the spec and stores a running study. Nothing is stored when the
// spec is invalid.
func (s *Scheduler) CreateStudy(ctx context.Context, spec *pb.StudySpec) (*pb.Study, error) {
	spec, err := NormalizeSpec(spec)
	if err != nil {
		return nil, err
	}
	if spec.MaxConsecutiveFailures < 0 || spec.MaxConsecutiveFailures > maxConsecutiveFailuresLimit {
		return nil, invalid("max_consecutive_failures", "%d is out of range (0 for the default %d, up to %d)",
			spec.MaxConsecutiveFailures, DefaultMaxConsecutiveFailures, maxConsecutiveFailuresLimit)
	}
	if spec.MaxConsecutiveFailures == 0 {
		spec.MaxConsecutiveFailures = DefaultMaxConsecutiveFailures
	}
	if err := s.checkAffordable(ctx, spec); err != nil {
		return nil, err
	}
	study := &pb.Study{Spec: spec, State: pb.StudyState_STUDY_STATE_RUNNING, CreateTimeUnixMs: unixMs(s.now())}
	err = s.db.Update(func(tx *store.Tx) error {
		id, err := tx.NextStudyID()
		if err != nil {
			return err
		}
		study.Id = id
		return tx.PutStudy(study)
	})
	if err != nil {
		return nil, fmt.Errorf("create study: %w", err)
	}
	s.log.Info("study created", zap.Uint64("study", study.Id), zap.String("policy", spec.Policy))
	s.notify()
	return study, nil
}

// checkAffordable refuses a spec whose budget pays for none of the trials its policy may
// run: the policy is asked for its first decision with the whole budget.
func (s *Scheduler) checkAffordable(ctx context.Context, spec *pb.StudySpec) error {
	policy, err := s.cfg.NewPolicy(spec.Policy)
	if err != nil {
		return invalid("policy", "%v", err)
	}
	req := bo.Request{Problem: problem(&pb.Study{Spec: spec}, spec.BudgetFlops)}
	_, err = policy.Next(ctx, req)
	if errors.Is(err, bo.ErrNoTrialFits) {
		return invalid("budget_flops", "%.3g FLOPs pays for no trial the %s policy may run (the cheapest trial of the space, %s, costs %.3g)",
			spec.BudgetFlops, spec.Policy, cheapestTrial(spec), cheapestCost(spec))
	}
	if err != nil {
		// The policy cannot start on this spec: the spec is what the operator can change.
		return invalid("policy", "%s cannot decide a first trial for this spec: %v", spec.Policy, err)
	}
	return nil
}

func cheapestCost(spec *pb.StudySpec) float64 {
	c := -1.0
	for _, sc := range spec.Scales {
		if v := sc.FlopsPerStep * float64(spec.Steps[0]); c < 0 || v < c {
			c = v
		}
	}
	return c
}

func cheapestTrial(spec *pb.StudySpec) string {
	best := spec.Scales[0]
	for _, sc := range spec.Scales {
		if sc.FlopsPerStep < best.FlopsPerStep {
			best = sc
		}
	}
	return fmt.Sprintf("scale %s for %d steps", best.Name, spec.Steps[0])
}

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

// PauseStudy stops new trials from starting; running ones finish.
func (s *Scheduler) PauseStudy(_ context.Context, id uint64) (*pb.Study, error) {
	return s.transitionStudy(id, pb.StudyState_STUDY_STATE_PAUSED, pb.StudyState_STUDY_STATE_RUNNING)
}

// ResumeStudy lets a paused study start trials again.
func (s *Scheduler) ResumeStudy(_ context.Context, id uint64) (*pb.Study, error) {
	return s.transitionStudy(id, pb.StudyState_STUDY_STATE_RUNNING, pb.StudyState_STUDY_STATE_PAUSED)
}

func (s *Scheduler) transitionStudy(id uint64, to, from pb.StudyState) (*pb.Study, error) {
	var out *pb.Study
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if st.State == to {
			out = st
			return nil
		}
		if st.State != from {
			return fmt.Errorf("study %d is %s, not %s: %w", id, studyStateName(st.State), studyStateName(from), ErrConflict)
		}
		st.State = to
		out = st
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	return out, nil
}

// CancelStudy ends a study: its running trials are stopped (their observed prefix is kept)
// and their workers told to stop at their next heartbeat or report.
func (s *Scheduler) CancelStudy(_ context.Context, id uint64) (*pb.Study, error) {
	st, err := s.endStudy(id, pb.StudyState_STUDY_STATE_CANCELLED, "cancelled")
	if err == nil && st.State != pb.StudyState_STUDY_STATE_CANCELLED {
		// Like pausing an ended study: cancelling one that ended otherwise is refused, so
		// the operator is not told it was cancelled. Cancelling a cancelled one repeats.
		return nil, fmt.Errorf("study %d is %s, not running or paused: %w", id, studyStateName(st.State), ErrConflict)
	}
	return st, err
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

// completeIfIdle ends a study that can start nothing more once its last trial is done.
// An empty reason asks it to find one: the trial limit reached, or no trial of the space
// affordable with the budget left; without one the study goes on.
func (s *Scheduler) completeIfIdle(studyID uint64, reason string) error {
	// ending finds whether the study ends now, and why. It runs first in a read
	// transaction: most calls find the study still busy, and a write transaction would
	// cost a disk sync for nothing.
	ending := func(tx *store.Tx) (*pb.Study, string, error) {
		st, err := tx.Study(studyID)
		if err != nil || st.State != pb.StudyState_STUDY_STATE_RUNNING {
			return nil, "", err
		}
		why := reason
		if why == "" {
			if why = doneReason(st); why == "" {
				return nil, "", nil
			}
		}
		// Only now read every trial: most calls stop above.
		trials, err := tx.TrialsOfStudy(studyID)
		if err != nil {
			return nil, "", err
		}
		for _, t := range trials {
			if t.State == pb.TrialState_TRIAL_STATE_RUNNING || t.State == pb.TrialState_TRIAL_STATE_PENDING {
				return nil, "", nil
			}
		}
		return st, why + noResult(trials), nil
	}
	// A study with a leased trial is busy: no read needed.
	s.mu.Lock()
	for _, l := range s.leases {
		if l.studyID == studyID {
			s.mu.Unlock()
			return nil
		}
	}
	s.mu.Unlock()
	ends := false
	if err := s.db.View(func(tx *store.Tx) error {
		st, _, err := ending(tx)
		ends = st != nil
		return err
	}); err != nil || !ends {
		return err
	}
	why := ""
	err := s.db.Update(func(tx *store.Tx) error {
		st, r, err := ending(tx)
		if st == nil {
			why = ""
			return err
		}
		why = r
		st.State = pb.StudyState_STUDY_STATE_COMPLETED
		if strings.Contains(r, noResultMark) {
			st.State = pb.StudyState_STUDY_STATE_FAILED
		}
		st.EndReason = r
		st.EndTimeUnixMs = unixMs(s.now())
		return tx.PutStudy(st)
	})
	if err == nil && why != "" {
		s.log.Info("study completed", zap.Uint64("study", studyID), zap.String("reason", why))
		s.notify()
		s.sealFinalRecommendation(studyID)
	}
	return err
}

// doneReason says why an idle study can start no more trials, or "" when it can.
func doneReason(st *pb.Study) string {
	spec := st.Spec
	if spec.MaxTrials > 0 && st.TrialsCreated >= spec.MaxTrials {
		return "max trials reached"
	}
	cheapest := math.Inf(1)
	for _, sc := range spec.Scales {
		cheapest = min(cheapest, sc.FlopsPerStep*float64(spec.Steps[0]))
	}
	if cheapest > spec.BudgetFlops-st.SpentFlops {
		return "budget exhausted"
	}
	return ""
}

// noResultMark starts what noResult adds to an ending study's reason.
const noResultMark = ", but no trial produced a result"

// noResult says why an ending study has nothing to show, or "": a study whose trials all
// failed or were lost before its cap or budget stopped it ends failed, not completed, so
// that scripts waiting on it do not go on with nothing.
func noResult(trials []*pb.Trial) string {
	failed, lost := 0, 0
	for _, t := range trials {
		switch t.State {
		case pb.TrialState_TRIAL_STATE_SUCCEEDED:
			return ""
		case pb.TrialState_TRIAL_STATE_STOPPED:
			if t.StepsDone > 0 {
				return ""
			}
		case pb.TrialState_TRIAL_STATE_FAILED:
			failed++
		case pb.TrialState_TRIAL_STATE_LOST:
			lost++
		}
	}
	if failed+lost == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%d failed, %d lost)", noResultMark, failed, lost)
}

// endStudy moves a study that has not ended to a terminal state with its reason; its
// running and pending trials are stopped (their observed prefix is kept) and their
// workers told to stop at their next heartbeat or report. An ended study is returned as
// it is.
func (s *Scheduler) endStudy(id uint64, to pb.StudyState, reason string) (*pb.Study, error) {
	var out *pb.Study
	var stopped []uint64
	err := s.db.Update(func(tx *store.Tx) error {
		stopped = stopped[:0]
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if isTerminalStudy(st.State) {
			out = st
			return nil
		}
		trials, err := tx.TrialsOfStudy(id)
		if err != nil {
			return err
		}
		now := unixMs(s.now())
		for _, t := range trials {
			if t.State != pb.TrialState_TRIAL_STATE_RUNNING && t.State != pb.TrialState_TRIAL_STATE_PENDING {
				continue
			}
			t.State = pb.TrialState_TRIAL_STATE_STOPPED
			t.FailureReason = "study " + studyStateName(to)
			t.EndTimeUnixMs = now
			if err := tx.PutTrial(t); err != nil {
				return err
			}
			stopped = append(stopped, t.Id)
		}
		st.State = to
		st.EndReason = reason
		st.EndTimeUnixMs = now
		out = st
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, tid := range stopped {
		delete(s.leases, tid)
	}
	s.bumpLocked(id)
	s.notifyLocked()
	s.mu.Unlock()
	s.sealFinalRecommendation(id)
	s.log.Info("study ended", zap.Uint64("study", id), zap.String("state", studyStateName(out.State)),
		zap.String("reason", out.EndReason), zap.Int("stopped_trials", len(stopped)))
	return out, nil
}
