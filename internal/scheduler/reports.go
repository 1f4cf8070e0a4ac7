package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Reports of a held attempt: its curve points, committed idempotently with the compute
// they spent, and its end, finished or failed, each idempotent per attempt.

// ReportPoints commits a batch of curve points of a held attempt and returns the highest
// sequence number committed, and whether the trial should stop at its current step. Points
// at or below it are acknowledged again without being written twice; a gap in the
// sequence is refused. Concurrent reports share one transaction (store Batch).
func (s *Scheduler) ReportPoints(_ context.Context, h AttemptClaim, points []*pb.CurvePoint) (acked uint64, stop bool, err error) {
	if err := validatePoints(points); err != nil {
		return 0, false, err
	}
	var studyID uint64
	var fresh []*pb.CurvePoint
	var metric string
	err = s.db.Batch(func(tx *store.Tx) error {
		// Batch may run this twice: every result is set afresh.
		acked, stop, studyID, fresh, metric = 0, false, 0, nil, ""
		t, err := tx.Trial(h.TrialID)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", h.TrialID))
		}
		if err := checkHeld(t, h); err != nil {
			return err
		}
		studyID, stop = t.StudyId, t.StopRequested
		for i, p := range points {
			if p.Seq <= t.LastSeq {
				continue // already committed: a re-sent batch
			}
			if want := t.LastSeq + uint64(len(fresh)) + 1; p.Seq != want {
				return fmt.Errorf("points[%d].seq: got %d, want %d (no gaps): %w", i, p.Seq, want, ErrInvalid)
			}
			if p.Step > t.Steps {
				return fmt.Errorf("points[%d].step: %d is beyond the trial's %d steps: %w", i, p.Step, t.Steps, ErrInvalid)
			}
			// The batch itself ascends (the adapter checks): only its first new point
			// can fall behind what this attempt committed.
			if len(fresh) == 0 && p.Step < t.StepsDone {
				return fmt.Errorf("points[%d].step: %d goes back behind step %d of this attempt: %w", i, p.Step, t.StepsDone, ErrInvalid)
			}
			if len(fresh) == 0 && p.WallTimeS < t.AttemptWallTimeS {
				return fmt.Errorf("points[%d].wall_time_s: %v goes back behind %v of this attempt: %w", i, p.WallTimeS, t.AttemptWallTimeS, ErrInvalid)
			}
			fresh = append(fresh, p)
		}
		acked = t.LastSeq
		if len(fresh) == 0 {
			return nil
		}
		if err := tx.AppendPoints(t.Id, t.Attempt, fresh); err != nil {
			return err
		}
		study, err := tx.Study(t.StudyId)
		if err != nil {
			return err
		}
		metric = study.Spec.Objective.Metric
		last := fresh[len(fresh)-1]
		if last.Step > t.StepsDone {
			study.SpentFlops += float64(last.Step-t.StepsDone) * scaleOf(study.Spec, t.Scale).FlopsPerStep
			t.StepsDone = last.Step
		}
		if dt := last.WallTimeS - t.AttemptWallTimeS; dt > 0 && !math.IsInf(dt, 0) {
			gpuSeconds := dt * float64(max(len(t.GpuIndices), 1))
			t.GpuSeconds += gpuSeconds
			study.SpentGpuHours += gpuSeconds / 3600
			t.AttemptWallTimeS = last.WallTimeS
		}
		if v, ok := MetricValue(last, study.Spec.Objective.Metric); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			t.LastValue, t.HasValue = v, true
		}
		t.LastSeq = last.Seq
		acked = t.LastSeq
		if err := tx.PutStudy(study); err != nil {
			return err
		}
		return tx.PutTrial(t)
	})
	if err != nil {
		return 0, false, err
	}
	s.cfg.Metrics.PointsIngested(len(fresh))
	s.curves.append(h.TrialID, h.Attempt, metric, fresh)
	s.mu.Lock()
	s.renewLocked(h, s.now())
	s.heartbeats[h.WorkerID] = s.now()
	s.bumpLocked(studyID)
	s.mu.Unlock()
	return acked, stop, nil
}

func validatePoints(points []*pb.CurvePoint) error {
	if len(points) == 0 {
		return fmt.Errorf("points: empty batch: %w", ErrInvalid)
	}
	if len(points) > MaxPointsPerReport {
		return fmt.Errorf("points: %d in one batch, at most %d: %w", len(points), MaxPointsPerReport, ErrInvalid)
	}
	for i, p := range points {
		switch {
		case p == nil:
			return fmt.Errorf("points[%d]: missing: %w", i, ErrInvalid)
		case p.Seq == 0:
			return fmt.Errorf("points[%d].seq: sequence numbers start at 1: %w", i, ErrInvalid)
		case p.Step < 0:
			return fmt.Errorf("points[%d].step: negative: %w", i, ErrInvalid)
		case i > 0 && p.Seq <= points[i-1].Seq:
			return fmt.Errorf("points[%d].seq: not ascending: %w", i, ErrInvalid)
		case !(p.WallTimeS >= 0 && p.WallTimeS <= MaxWallTimeS):
			return fmt.Errorf("points[%d].wall_time_s: %v is not a time: %w", i, p.WallTimeS, ErrInvalid)
		}
		if len(p.Eval) > MaxEvalMetrics {
			return fmt.Errorf("points[%d].eval: %d metrics, at most %d: %w", i, len(p.Eval), MaxEvalMetrics, ErrInvalid)
		}
	}
	return nil
}

// FinishTrial ends a held attempt once every point up to finalSeq is committed: succeeded,
// or stopped when a stop was requested (its curve ends where it stopped). It is idempotent
// per attempt: finishing an attempt that this worker already finished with the same
// final_seq (a retry whose answer was lost, say in a coordinator crash) answers OK.
func (s *Scheduler) FinishTrial(_ context.Context, h AttemptClaim, finalSeq uint64, sourceRun string, sourceDistance float64) error {
	already := func(t *pb.Trial) (bool, error) {
		if !endedBy(t, h) || (t.State != pb.TrialState_TRIAL_STATE_SUCCEEDED && t.State != pb.TrialState_TRIAL_STATE_STOPPED) {
			return false, nil
		}
		if t.LastSeq != finalSeq {
			return false, fmt.Errorf("final_seq: %d, but attempt %d already finished with %d: %w", finalSeq, h.Attempt, t.LastSeq, ErrConflict)
		}
		return true, nil
	}
	return s.endTrial(h, already, func(tx *store.Tx, t *pb.Trial) error {
		if t.LastSeq != finalSeq {
			return fmt.Errorf("final_seq: %d, but points up to %d are committed: %w", finalSeq, t.LastSeq, ErrConflict)
		}
		// A finish must show its result: a curve reaching the trial's steps, unless the
		// coordinator asked the trial to stop (then it ends stopped where it is, even
		// before its first point).
		if t.LastSeq == 0 && !t.StopRequested {
			return fmt.Errorf("final_seq: attempt %d has no points; report them, or FailTrial: %w", t.Attempt, ErrConflict)
		}
		if t.StepsDone < t.Steps && !t.StopRequested {
			return fmt.Errorf("final_seq: the curve ends at step %d of %d and no stop was asked; report the rest, or FailTrial: %w",
				t.StepsDone, t.Steps, ErrConflict)
		}
		t.State = pb.TrialState_TRIAL_STATE_SUCCEEDED
		if t.StopRequested {
			t.State = pb.TrialState_TRIAL_STATE_STOPPED
		}
		t.SourceRun, t.SourceDistance = sourceRun, sourceDistance
		return nil
	})
}

// FailTrial ends a held attempt that failed with the worker's reason and class; the retry
// policy (deterministicFailures, below) decides between failing the trial and requeueing
// it. It is idempotent per attempt: failing again an attempt that already failed with the
// same class and reason answers OK, whether it failed the trial or was requeued (and
// perhaps re-leased).
func (s *Scheduler) FailTrial(_ context.Context, h AttemptClaim, reason string, class pb.FailureClass) error {
	if reason == "" {
		return fmt.Errorf("reason: missing: %w", ErrInvalid)
	}
	if len(reason) > MaxReasonBytes {
		return fmt.Errorf("reason: %d bytes, more than %d: %w", len(reason), MaxReasonBytes, ErrInvalid)
	}
	if class == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
		class = pb.FailureClass_FAILURE_CLASS_OTHER
	}
	already := func(t *pb.Trial) (bool, error) {
		if t.Attempt < h.Attempt || (t.Attempt == h.Attempt && t.State == pb.TrialState_TRIAL_STATE_RUNNING) {
			return false, nil
		}
		// The lease of a failed-for-good attempt stays on the trial; a requeued one's
		// only trace is its reason, which names the attempt, class and reason exactly.
		if t.State == pb.TrialState_TRIAL_STATE_FAILED && !endedBy(t, h) {
			return false, nil
		}
		return slices.Contains(t.ReasonHistory, failedReason(h.Attempt, class, reason)), nil
	}
	return s.endTrial(h, already, func(tx *store.Tx, t *pb.Trial) error {
		why := failedReason(t.Attempt, class, reason)
		if deterministicFailures[class] || t.StopRequested {
			t.State = pb.TrialState_TRIAL_STATE_FAILED
			t.FailureReason = FailureClassName(class) + ": " + reason
			t.ReasonHistory = append(t.ReasonHistory, why)
			return nil
		}
		s.requeue(t, why)
		return nil
	})
}

// Failure classes a worker reports for a failed training run. A deterministic failure
// fails the trial: running the same configuration again would fail the same way. Anything
// else (a crash, a lost GPU) is retried as a new attempt up to the delivery limit.
var deterministicFailures = map[pb.FailureClass]bool{
	pb.FailureClass_FAILURE_CLASS_OOM:       true,
	pb.FailureClass_FAILURE_CLASS_DIVERGED:  true,
	pb.FailureClass_FAILURE_CLASS_BAD_DATA:  true,
	pb.FailureClass_FAILURE_CLASS_BAD_INPUT: true,
}

// FailureClassName is a failure class's short name ("oom", "bad_data", ...: the enum name
// without its prefix, in lower case), as stored reasons spell it, so records written
// before the enum read the same; unspecified and unknown values are "other".
func FailureClassName(c pb.FailureClass) string {
	name, ok := pb.FailureClass_name[int32(c)]
	if !ok || c == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
		return "other"
	}
	return strings.ToLower(strings.TrimPrefix(name, "FAILURE_CLASS_"))
}

// failedReason is the reason history entry of an attempt that failed.
func failedReason(attempt int32, class pb.FailureClass, reason string) string {
	return fmt.Sprintf("attempt %d: %s: %s", attempt, FailureClassName(class), reason)
}

// endedBy says whether the trial's stored attempt is h's and ended with h's lease still on
// it (finished, or failed for good). Requeueing clears the lease, so a requeued attempt
// is recognised by its reason instead (see FailTrial).
func endedBy(t *pb.Trial, h AttemptClaim) bool {
	return t.State != pb.TrialState_TRIAL_STATE_RUNNING && t.Attempt == h.Attempt &&
		t.LeaseId == h.LeaseID && t.WorkerId == h.WorkerID
}

// endTrial ends a held attempt with end. already says whether the request repeats one
// that ended this attempt before (then nothing is written and the answer is OK).
func (s *Scheduler) endTrial(h AttemptClaim, already func(t *pb.Trial) (bool, error), end func(tx *store.Tx, t *pb.Trial) error) error {
	var t *pb.Trial
	repeated := false
	// Batch: trials ending at once share a disk sync. The function reads the trial
	// afresh, so a second run sees what the first did not commit.
	err := s.db.Batch(func(tx *store.Tx) error {
		var err error
		repeated = false
		if t, err = tx.Trial(h.TrialID); err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", h.TrialID))
		}
		if err := checkHeld(t, h); err != nil {
			again, aerr := already(t)
			if aerr != nil {
				return aerr
			}
			if again {
				repeated = true
				return nil
			}
			return err
		}
		if err := end(tx, t); err != nil {
			return err
		}
		if t.State != pb.TrialState_TRIAL_STATE_PENDING {
			t.EndTimeUnixMs = unixMs(s.now())
		}
		return tx.PutTrial(t)
	})
	if err != nil || repeated {
		if repeated {
			s.log.Info("trial attempt end repeated; already recorded", zap.Uint64("trial", h.TrialID), zap.Int32("attempt", h.Attempt))
		}
		return err
	}
	s.mu.Lock()
	if l := s.leases[t.Id]; l != nil && l.id == h.LeaseID {
		delete(s.leases, t.Id)
	}
	s.bumpLocked(t.StudyId)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("trial attempt ended", zap.Uint64("trial", t.Id), zap.Int32("attempt", t.Attempt),
		zap.String("state", StateName(t.State)), zap.Uint64("points", t.LastSeq), zap.String("reason", t.FailureReason))
	// Complete now rather than at the next worker's request: none may come.
	return s.afterTrialEnd(t)
}
