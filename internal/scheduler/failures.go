package scheduler

import (
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A study's failure budget: how many trials in a row may fail or be lost, and a success
// that never reported the objective, end the study failed.

// DefaultMaxConsecutiveFailures is how many trials in a row may fail or be lost before a
// study whose spec sets no limit ends failed: enough to ride out a flaky node, few enough
// that a study naming data its workers lack stops within minutes.
const DefaultMaxConsecutiveFailures = 5

const maxConsecutiveFailuresLimit = 10_000

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
