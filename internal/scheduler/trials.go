package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// AttemptClaim identifies the trial attempt a worker claims to hold.
type AttemptClaim struct {
	WorkerID uint64
	TrialID  uint64
	LeaseID  string
	Attempt  int32
}

// AcquireTrial leases the next trial to a worker with free capacity. It waits up to wait
// (capped by Config.MaxWait and the context) for work to appear and returns nil, nil when
// none did.
func (s *Scheduler) AcquireTrial(ctx context.Context, workerID uint64, wait time.Duration) (*pb.Assignment, error) {
	return s.AcquireStudyTrial(ctx, workerID, 0, wait)
}

// AcquireStudyTrial is AcquireTrial limited to one study's trials (studyID 0: any study),
// for external workers that run a single study.
func (s *Scheduler) AcquireStudyTrial(ctx context.Context, workerID, studyID uint64, wait time.Duration) (*pb.Assignment, error) {
	wait = min(wait, s.cfg.MaxWait)
	if dl, ok := ctx.Deadline(); ok {
		// End just before the caller's deadline with an empty answer, not an error.
		wait = min(wait, time.Until(dl)-100*time.Millisecond)
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	for {
		s.mu.Lock()
		wake := s.wake
		s.mu.Unlock()
		a, err := s.tryAssign(ctx, workerID, studyID)
		if a != nil || err != nil {
			return a, err
		}
		select {
		case <-wake:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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

// checkHeld verifies, inside a transaction, that the caller holds the trial's current
// attempt; reports from anyone else are refused so two holders never write one attempt.
func checkHeld(t *pb.Trial, h AttemptClaim) error {
	if t.State != pb.TrialState_TRIAL_STATE_RUNNING || t.WorkerId != h.WorkerID ||
		t.LeaseId != h.LeaseID || t.Attempt != h.Attempt {
		return fmt.Errorf("trial %d attempt %d is %s and not held by worker %d under lease %q: %w",
			t.Id, h.Attempt, StateName(t.State), h.WorkerID, h.LeaseID, ErrStaleLease)
	}
	return nil
}

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
	if len(points) > 10_000 {
		return fmt.Errorf("points: %d in one batch, at most 10000: %w", len(points), ErrInvalid)
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
		case math.IsNaN(p.WallTimeS) || p.WallTimeS < 0:
			return fmt.Errorf("points[%d].wall_time_s: %v is not a time: %w", i, p.WallTimeS, ErrInvalid)
		}
		if len(p.Eval) > 256 {
			return fmt.Errorf("points[%d].eval: %d metrics, at most 256: %w", i, len(p.Eval), ErrInvalid)
		}
	}
	return nil
}

// renewLocked extends a held lease by a TTL, unless it has already run out: a lease past
// its deadline is gone even before the sweep requeues it, so a worker's reports queued
// behind a coordinator freeze (sent before it fenced itself) cannot bring it back.
// Callers hold s.mu.
func (s *Scheduler) renewLocked(h AttemptClaim, now time.Time) bool {
	l := s.leases[h.TrialID]
	if l == nil || l.id != h.LeaseID || l.attempt != h.Attempt || l.workerID != h.WorkerID || now.After(l.deadline) {
		return false
	}
	l.deadline = now.Add(s.cfg.LeaseTTL)
	return true
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

// endedBy says whether the trial's stored attempt is h's and ended with h's lease still on
// it (finished, or failed for good). Requeueing clears the lease, so a requeued attempt
// is recognised by its reason instead (see FailTrial).
func endedBy(t *pb.Trial, h AttemptClaim) bool {
	return t.State != pb.TrialState_TRIAL_STATE_RUNNING && t.Attempt == h.Attempt &&
		t.LeaseId == h.LeaseID && t.WorkerId == h.WorkerID
}

// failedReason is the reason history entry of an attempt that failed.
func failedReason(attempt int32, class pb.FailureClass, reason string) string {
	return fmt.Sprintf("attempt %d: %s: %s", attempt, FailureClassName(class), reason)
}

// FailTrial ends a held attempt that failed with the worker's reason and class; the retry
// policy above decides between failing the trial and requeueing it. It is idempotent per
// attempt: failing again an attempt that already failed with the same class and reason
// answers OK, whether it failed the trial or was requeued (and perhaps re-leased).
func (s *Scheduler) FailTrial(_ context.Context, h AttemptClaim, reason string, class pb.FailureClass) error {
	if reason == "" {
		return fmt.Errorf("reason: missing: %w", ErrInvalid)
	}
	if len(reason) > 4096 {
		reason = reason[:4096]
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

// requeueUncounted requeues a trial whose attempt lapsed through a coordinator outage:
// the attempt does not count against the delivery limit.
func (s *Scheduler) requeueUncounted(t *pb.Trial, why string) {
	t.UncountedAttempts++
	s.requeue(t, why+" (not counted: coordinator outage)")
}

// requeue puts a trial whose attempt ended without a result back in the queue as pending
// for a new attempt, or, past the delivery limit, marks it lost with its reason history.
func (s *Scheduler) requeue(t *pb.Trial, why string) {
	t.ReasonHistory = append(t.ReasonHistory, why)
	t.LeaseId, t.WorkerId, t.GpuIndices = "", 0, nil
	if t.StopRequested {
		t.State = pb.TrialState_TRIAL_STATE_STOPPED
		t.FailureReason = "stopped: " + why
		t.EndTimeUnixMs = unixMs(s.now())
		return
	}
	if t.Attempt-t.UncountedAttempts >= s.cfg.MaxAttempts {
		t.State = pb.TrialState_TRIAL_STATE_LOST
		t.FailureReason = fmt.Sprintf("lost after %d attempts", t.Attempt)
		if t.UncountedAttempts > 0 {
			t.FailureReason += fmt.Sprintf(" (%d not counted: coordinator outages)", t.UncountedAttempts)
		}
		t.EndTimeUnixMs = unixMs(s.now())
		return
	}
	t.State = pb.TrialState_TRIAL_STATE_PENDING
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

// Heartbeat renews the leases a worker still holds and returns the attempts it must stop:
// those whose lease it no longer holds (expired, cancelled or requeued elsewhere), named
// exactly as the worker named them, so that a newer attempt of the same trial on the same
// worker is never stopped by mistake. A lease past its deadline is not renewed (see
// renewLocked): the worker is told to stop it, and the sweep requeues it.
func (s *Scheduler) Heartbeat(_ context.Context, workerID uint64, held []AttemptClaim) ([]AttemptClaim, error) {
	if err := s.db.View(func(tx *store.Tx) error {
		_, err := tx.Worker(workerID)
		return wrapStore(err, fmt.Sprintf("worker %d", workerID))
	}); err != nil {
		return nil, err
	}
	now := s.now()
	var stop []AttemptClaim
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeats[workerID] = now
	for _, h := range held {
		h.WorkerID = workerID
		if !s.renewLocked(h, now) {
			stop = append(stop, h)
		}
	}
	return stop, nil
}

// ReleaseLeases requeues at once the attempts a worker stopped on its own (it fenced
// itself while it could not reach the coordinator), instead of letting their leases run
// out. An attempt that is no longer current (already expired or requeued) is ignored.
// When the worker fenced because the coordinator itself was out, the attempt does not
// count against the delivery limit.
func (s *Scheduler) ReleaseLeases(_ context.Context, workerID uint64, released []AttemptClaim) error {
	now := s.now()
	for _, h := range released {
		h.WorkerID = workerID
		s.mu.Lock()
		l := s.leases[h.TrialID]
		current := l != nil && l.id == h.LeaseID && l.attempt == h.Attempt && l.workerID == workerID
		uncounted := current && s.lapseUncountedLocked(l, now)
		s.mu.Unlock()
		if !current {
			continue
		}
		why := fmt.Sprintf("attempt %d: worker %d fenced itself (it could not reach the coordinator)", h.Attempt, workerID)
		if err := s.lapse(h.TrialID, h.LeaseID, why, uncounted); err != nil {
			return err
		}
	}
	return nil
}

// ExpireLeases requeues every attempt whose lease ran out (as a new attempt), or, past the
// delivery limit, marks the trial lost with its reason history.
func (s *Scheduler) ExpireLeases() error {
	now := s.now()
	s.mu.Lock()
	var expired []uint64
	for id, l := range s.leases {
		if now.After(l.deadline) {
			expired = append(expired, id)
		}
	}
	s.mu.Unlock()
	for _, id := range expired {
		if err := s.expire(id, now); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scheduler) expire(trialID uint64, now time.Time) error {
	s.mu.Lock()
	l := s.leases[trialID]
	if l == nil || !now.After(l.deadline) {
		s.mu.Unlock()
		return nil // renewed or ended meanwhile
	}
	held := *l
	uncounted := s.lapseUncountedLocked(l, now)
	s.mu.Unlock()
	why := fmt.Sprintf("attempt %d: lease expired on worker %d", held.attempt, held.workerID)
	return s.lapse(trialID, held.id, why, uncounted)
}

// lapse requeues the attempt under leaseID, if it is still the trial's current one, with
// the reason why, counted against the delivery limit unless uncounted.
func (s *Scheduler) lapse(trialID uint64, leaseID, why string, uncounted bool) error {
	var t *pb.Trial
	changed := false
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		changed = false
		if t, err = tx.Trial(trialID); err != nil {
			return err
		}
		if t.State != pb.TrialState_TRIAL_STATE_RUNNING || t.LeaseId != leaseID {
			return nil
		}
		if uncounted {
			s.requeueUncounted(t, why)
		} else {
			s.requeue(t, why)
		}
		changed = true
		return tx.PutTrial(t)
	})
	if err != nil {
		return fmt.Errorf("requeue trial %d: %w", trialID, err)
	}
	s.mu.Lock()
	if cur := s.leases[trialID]; cur != nil && cur.id == leaseID {
		delete(s.leases, trialID)
	}
	s.bumpLocked(t.StudyId)
	s.notifyLocked()
	s.mu.Unlock()
	if !changed {
		return s.completeIfIdle(t.StudyId, "")
	}
	s.log.Warn("attempt lapsed", zap.Uint64("trial", trialID), zap.String("why", why),
		zap.Bool("counted", !uncounted), zap.String("state", StateName(t.State)))
	return s.afterTrialEnd(t)
}
