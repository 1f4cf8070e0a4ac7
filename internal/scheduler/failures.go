package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// DefaultMaxConsecutiveFailures is how many trials in a row may fail or be lost before a
// study whose spec sets no limit ends failed: enough to ride out a flaky node, few enough
// that a study naming data its workers lack stops within minutes.
const DefaultMaxConsecutiveFailures = 5

const maxConsecutiveFailuresLimit = 10_000

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

// afterTrialEnd keeps a study's failure budget once one of its trials has ended, then
// completes the study if it is idle. A failed or lost trial extends the run of
// consecutive failures and ends the study failed at the spec's limit; a succeeded trial
// resets it, unless its curve never reported the objective: then the study fails at once,
// since every further trial would spend budget on a value no worker reports.
func (s *Scheduler) afterTrialEnd(t *pb.Trial) error {
	switch t.State {
	case pb.TrialState_TRIAL_STATE_FAILED, pb.TrialState_TRIAL_STATE_LOST:
		if err := s.countFailure(t.StudyId, t); err != nil {
			return err
		}
	case pb.TrialState_TRIAL_STATE_SUCCEEDED:
		if err := s.checkObjectiveReported(t); err != nil {
			return err
		}
	}
	return s.completeIfIdle(t.StudyId, "")
}

func (s *Scheduler) countFailure(studyID uint64, t *pb.Trial) error {
	var failWith string
	err := s.db.Update(func(tx *store.Tx) error {
		failWith = ""
		st, err := tx.Study(studyID)
		if err != nil || isTerminalStudy(st.State) {
			return err
		}
		st.ConsecutiveFailures++
		limit := st.Spec.MaxConsecutiveFailures
		if limit <= 0 {
			limit = DefaultMaxConsecutiveFailures // a study stored before the limit existed
		}
		if st.ConsecutiveFailures >= limit {
			failWith = fmt.Sprintf("%d trials in a row failed or were lost (max_consecutive_failures %d); the last, trial %d: %s",
				st.ConsecutiveFailures, limit, t.Id, t.FailureReason)
		}
		return tx.PutStudy(st)
	})
	if err != nil || failWith == "" {
		return err
	}
	s.log.Warn("study failed", zap.Uint64("study", studyID), zap.String("reason", failWith))
	_, err = s.endStudy(studyID, pb.StudyState_STUDY_STATE_FAILED, failWith)
	return err
}

// checkObjectiveReported fails the study when a succeeded trial's curve holds no value of
// the objective, naming the metrics the trainer does report; otherwise it resets the run
// of consecutive failures.
func (s *Scheduler) checkObjectiveReported(t *pb.Trial) error {
	// Most successes report the objective and follow a success: a read finds that nothing
	// needs writing, without a write transaction's disk sync.
	idle := false
	if err := s.db.View(func(tx *store.Tx) error {
		st, err := tx.Study(t.StudyId)
		idle = err == nil && (isTerminalStudy(st.State) || (t.HasValue && st.ConsecutiveFailures == 0))
		return err
	}); err != nil || idle {
		return err
	}
	var failWith string
	err := s.db.Update(func(tx *store.Tx) error {
		failWith = ""
		st, err := tx.Study(t.StudyId)
		if err != nil || isTerminalStudy(st.State) {
			return err
		}
		metric := st.Spec.Objective.GetMetric()
		if !t.HasValue {
			reported, found, err := reportedMetrics(tx, t, metric)
			if err != nil {
				return err
			}
			if !found {
				failWith = fmt.Sprintf("trial %d finished without reporting the objective %q; its curve reports: %s",
					t.Id, metric, strings.Join(reported, ", "))
				return nil
			}
		}
		if st.ConsecutiveFailures == 0 {
			return nil
		}
		st.ConsecutiveFailures = 0
		return tx.PutStudy(st)
	})
	if err != nil || failWith == "" {
		return err
	}
	s.log.Warn("study failed", zap.Uint64("study", t.StudyId), zap.String("reason", failWith))
	_, err = s.endStudy(t.StudyId, pb.StudyState_STUDY_STATE_FAILED, failWith)
	return err
}

// reportedMetrics reads the trial's current attempt and says whether any point carries the
// metric, with the sorted names of every metric its points do carry.
func reportedMetrics(tx *store.Tx, t *pb.Trial, metric string) ([]string, bool, error) {
	if t.Attempt == 0 || t.LastSeq == 0 {
		return []string{"nothing (no curve points)"}, false, nil
	}
	pts, err := tx.Points(t.Id, t.Attempt)
	if err != nil {
		return nil, false, err
	}
	names := map[string]bool{}
	for _, p := range pts {
		if _, ok := MetricValue(p, metric); ok {
			return nil, true, nil
		}
		names["train_loss"] = true
		for k := range p.Eval {
			names[k] = true
		}
	}
	out := make([]string, 0, len(names))
	for k := range names {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, false, nil
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
