package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Held identifies the trial attempt a worker claims to hold.
type Held struct {
	WorkerID uint64
	TrialID  uint64
	LeaseID  string
	Attempt  int32
}

// AcquireTrial leases the next trial to a worker with free capacity. It waits up to wait
// (capped by Config.MaxWait and the context) for work to appear and returns nil, nil when
// none did.
func (s *Scheduler) AcquireTrial(ctx context.Context, workerID uint64, wait time.Duration) (*pb.Assignment, error) {
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
		a, err := s.tryAssign(ctx, workerID)
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

// capacity is how many trials a worker runs at once.
func capacity(w *pb.Worker) int {
	switch {
	case w.SimulatedCapacity > 0:
		return int(w.SimulatedCapacity)
	case len(w.Gpus) > 0:
		return len(w.Gpus)
	default:
		return 1
	}
}

func (s *Scheduler) heldBy(workerID uint64) int {
	n := 0
	for _, l := range s.leases {
		if l.workerID == workerID {
			n++
		}
	}
	return n
}

func (s *Scheduler) tryAssign(ctx context.Context, workerID uint64) (*pb.Assignment, error) {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	var worker *pb.Worker
	var studyIDs []uint64
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		if worker, err = tx.Worker(workerID); err != nil {
			return wrapStore(err, fmt.Sprintf("worker %d", workerID))
		}
		studies, err := tx.Studies()
		for _, st := range studies {
			if st.State == pb.StudyState_STUDY_STATE_RUNNING {
				studyIDs = append(studyIDs, st.Id)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.heartbeats[workerID] = s.now()
	full := s.heldBy(workerID) >= capacity(worker)
	s.mu.Unlock()
	if full {
		return nil, nil
	}
	for _, id := range studyIDs {
		a, err := s.assignFromStudy(ctx, id, workerID)
		if a != nil || err != nil {
			return a, err
		}
	}
	return nil, nil
}

// assignFromStudy leases a requeued trial of the study, or else a new one decided by its
// policy, or completes the study when nothing more can run. Callers hold decideMu.
func (s *Scheduler) assignFromStudy(ctx context.Context, studyID, workerID uint64) (*pb.Assignment, error) {
	var snap *studySnapshot
	if err := s.db.View(func(tx *store.Tx) (err error) { snap, err = loadSnapshot(tx, studyID); return err }); err != nil {
		return nil, err
	}
	study, spec := snap.study, snap.study.Spec
	if study.State != pb.StudyState_STUDY_STATE_RUNNING {
		return nil, nil
	}
	running := snap.running()
	if running >= int(spec.MaxParallel) {
		return nil, nil
	}
	for _, t := range snap.trials {
		if t.State == pb.TrialState_TRIAL_STATE_PENDING {
			return s.lease(study, t, workerID, nil, false)
		}
	}
	if spec.MaxTrials > 0 && study.TrialsCreated >= spec.MaxTrials {
		return nil, s.completeIfIdle(studyID, "max trials reached")
	}
	budgetLeft := spec.BudgetFlops - study.SpentFlops - snap.committed()
	policy, err := s.cfg.NewPolicy(spec.Policy)
	if err != nil {
		return nil, err
	}
	d, err := policy.Next(ctx, snap.request(budgetLeft))
	if errors.Is(err, bo.ErrNoTrialFits) {
		return nil, s.completeIfIdle(studyID, "budget exhausted")
	}
	if err != nil {
		return nil, fmt.Errorf("study %d: policy %s: %w", studyID, spec.Policy, err)
	}
	if err := checkDecision(spec, d.Trial, budgetLeft); err != nil {
		return nil, fmt.Errorf("study %d: policy %s decided an invalid trial: %w", studyID, spec.Policy, err)
	}
	t := &pb.Trial{
		StudyId: studyID, Mixture: d.Trial.Mixture, Scale: spec.Scales[d.Trial.Scale].Name, Steps: d.Trial.Steps,
		CreateTimeUnixMs: unixMs(s.now()),
	}
	return s.lease(study, t, workerID, d.State, true)
}

func checkDecision(spec *pb.StudySpec, t bo.Trial, budgetLeft float64) error {
	if t.Scale < 0 || t.Scale >= len(spec.Scales) {
		return fmt.Errorf("scale index %d out of range", t.Scale)
	}
	if len(t.Mixture) != len(spec.Domains) {
		return fmt.Errorf("mixture has %d weights for %d domains", len(t.Mixture), len(spec.Domains))
	}
	sum := 0.0
	for i, w := range t.Mixture {
		d := spec.Domains[i]
		if math.IsNaN(w) || w < d.MinWeight-1e-6 || w > d.MaxWeight+1e-6 {
			return fmt.Errorf("weight %v of %s outside [%v, %v]", w, d.Name, d.MinWeight, d.MaxWeight)
		}
		sum += w
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("mixture sums to %v", sum)
	}
	if cost := spec.Scales[t.Scale].FlopsPerStep * float64(t.Steps); cost > budgetLeft*(1+1e-9) {
		return fmt.Errorf("cost %.3g exceeds the budget left %.3g", cost, budgetLeft)
	}
	return nil
}

// lease starts a new attempt of t on the worker in one transaction (creating t when isNew,
// together with the study's decision count and the policy state).
func (s *Scheduler) lease(study *pb.Study, t *pb.Trial, workerID uint64, policyState []byte, isNew bool) (*pb.Assignment, error) {
	now := s.now()
	t.State = pb.TrialState_TRIAL_STATE_RUNNING
	t.Attempt++
	t.LeaseId = newLeaseID()
	t.WorkerId = workerID
	t.LastSeq, t.StepsDone, t.HasValue, t.LastValue = 0, 0, false, 0
	t.StartTimeUnixMs = unixMs(now)
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(study.Id)
		if err != nil {
			return err
		}
		// The snapshot the decision came from may be stale: the study may have been
		// paused or cancelled, or the requeued trial stopped, since.
		if st.State != pb.StudyState_STUDY_STATE_RUNNING {
			return errGone
		}
		if !isNew {
			cur, err := tx.Trial(t.Id)
			if err != nil {
				return err
			}
			if cur.State != pb.TrialState_TRIAL_STATE_PENDING || cur.Attempt != t.Attempt-1 {
				return errGone
			}
		}
		if isNew {
			if t.Id, err = tx.NextTrialID(); err != nil {
				return err
			}
			st.TrialsCreated++
			if err := tx.PutStudy(st); err != nil {
				return err
			}
			if err := tx.PutPolicyState(st.Id, policyState); err != nil {
				return err
			}
		}
		return tx.PutTrial(t)
	})
	if errors.Is(err, errGone) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease trial: %w", err)
	}
	s.mu.Lock()
	s.leases[t.Id] = &lease{id: t.LeaseId, attempt: t.Attempt, workerID: workerID, deadline: now.Add(s.cfg.LeaseTTL)}
	s.bumpLocked(study.Id)
	s.mu.Unlock()
	spec := study.Spec
	s.log.Info("trial leased", zap.Uint64("study", study.Id), zap.Uint64("trial", t.Id),
		zap.Uint64("worker", workerID), zap.Int32("attempt", t.Attempt),
		zap.String("scale", t.Scale), zap.Int64("steps", t.Steps))
	return &pb.Assignment{
		Trial:      t,
		Domains:    domainNames(spec),
		Scale:      spec.Scales[ScaleIndex(spec, t.Scale)],
		LeaseId:    t.LeaseId,
		Attempt:    t.Attempt,
		LeaseTtlMs: s.cfg.LeaseTTL.Milliseconds(),
		EvalEvery:  spec.EvalEvery,
		Seed:       spec.Seed ^ t.Id,
	}, nil
}

// errGone aborts a lease whose study or trial changed state since the decision.
var errGone = errors.New("study or trial no longer runnable")

func domainNames(spec *pb.StudySpec) []string {
	names := make([]string, len(spec.Domains))
	for i, d := range spec.Domains {
		names[i] = d.Name
	}
	return names
}

// completeIfIdle ends a study that can start nothing more once its last trial is done.
// An empty reason asks it to find one: the trial limit reached, or no trial of the space
// affordable with the budget left; without one the study goes on.
func (s *Scheduler) completeIfIdle(studyID uint64, reason string) error {
	completed := false
	err := s.db.Update(func(tx *store.Tx) error {
		completed = false
		st, err := tx.Study(studyID)
		if err != nil || st.State != pb.StudyState_STUDY_STATE_RUNNING {
			return err
		}
		trials, err := tx.TrialsOfStudy(studyID)
		if err != nil {
			return err
		}
		for _, t := range trials {
			if t.State == pb.TrialState_TRIAL_STATE_RUNNING || t.State == pb.TrialState_TRIAL_STATE_PENDING {
				return nil
			}
		}
		if reason == "" {
			if reason = doneReason(st); reason == "" {
				return nil
			}
		}
		st.State = pb.StudyState_STUDY_STATE_COMPLETED
		st.EndReason = reason
		st.EndTimeUnixMs = unixMs(s.now())
		completed = true
		return tx.PutStudy(st)
	})
	if completed {
		s.log.Info("study completed", zap.Uint64("study", studyID), zap.String("reason", reason))
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
func checkHeld(t *pb.Trial, h Held) error {
	if t.State != pb.TrialState_TRIAL_STATE_RUNNING || t.WorkerId != h.WorkerID ||
		t.LeaseId != h.LeaseID || t.Attempt != h.Attempt {
		return fmt.Errorf("trial %d attempt %d is %s and not held by worker %d under lease %q: %w",
			t.Id, h.Attempt, StateName(t.State), h.WorkerID, h.LeaseID, ErrStaleLease)
	}
	return nil
}

// ReportPoints commits a batch of curve points of a held attempt and returns the highest
// sequence number committed. Points at or below it are acknowledged again without being
// written twice; a gap in the sequence is refused.
func (s *Scheduler) ReportPoints(_ context.Context, h Held, points []*pb.CurvePoint) (uint64, error) {
	if err := validatePoints(points); err != nil {
		return 0, err
	}
	var acked uint64
	var studyID uint64
	err := s.db.Update(func(tx *store.Tx) error {
		t, err := tx.Trial(h.TrialID)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", h.TrialID))
		}
		if err := checkHeld(t, h); err != nil {
			return err
		}
		studyID = t.StudyId
		var fresh []*pb.CurvePoint
		for i, p := range points {
			if p.Seq <= t.LastSeq {
				continue // already committed: a re-sent batch
			}
			if p.Seq != t.LastSeq+uint64(len(fresh))+1 {
				return fmt.Errorf("points[%d].seq: got %d, want %d (no gaps): %w", i, p.Seq, t.LastSeq+uint64(len(fresh))+1, ErrInvalid)
			}
			if p.Step > t.Steps {
				return fmt.Errorf("points[%d].step: %d is beyond the trial's %d steps: %w", i, p.Step, t.Steps, ErrInvalid)
			}
			fresh = append(fresh, p)
		}
		if len(fresh) == 0 {
			acked = t.LastSeq
			return nil
		}
		if err := tx.AppendPoints(t.Id, t.Attempt, fresh); err != nil {
			return err
		}
		study, err := tx.Study(t.StudyId)
		if err != nil {
			return err
		}
		last := fresh[len(fresh)-1]
		if last.Step > t.StepsDone {
			study.SpentFlops += float64(last.Step-t.StepsDone) * study.Spec.Scales[ScaleIndex(study.Spec, t.Scale)].FlopsPerStep
			t.StepsDone = last.Step
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
		return 0, err
	}
	s.mu.Lock()
	if l := s.leases[h.TrialID]; l != nil && l.id == h.LeaseID {
		l.deadline = s.now().Add(s.cfg.LeaseTTL)
	}
	s.heartbeats[h.WorkerID] = s.now()
	s.bumpLocked(studyID)
	s.mu.Unlock()
	return acked, nil
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
		}
		if len(p.Eval) > 256 {
			return fmt.Errorf("points[%d].eval: %d metrics, at most 256: %w", i, len(p.Eval), ErrInvalid)
		}
	}
	return nil
}

// FinishTrial marks a held attempt succeeded once every point up to finalSeq is committed.
func (s *Scheduler) FinishTrial(_ context.Context, h Held, finalSeq uint64, sourceRun string, sourceDistance float64) error {
	return s.endTrial(h, func(t *pb.Trial) error {
		if t.LastSeq != finalSeq {
			return fmt.Errorf("final_seq: %d, but points up to %d are committed: %w", finalSeq, t.LastSeq, ErrConflict)
		}
		t.State = pb.TrialState_TRIAL_STATE_SUCCEEDED
		t.SourceRun, t.SourceDistance = sourceRun, sourceDistance
		return nil
	})
}

// FailTrial marks a held attempt failed with the worker's reason.
func (s *Scheduler) FailTrial(_ context.Context, h Held, reason, class string) error {
	if reason == "" {
		return fmt.Errorf("reason: missing: %w", ErrInvalid)
	}
	return s.endTrial(h, func(t *pb.Trial) error {
		t.State = pb.TrialState_TRIAL_STATE_FAILED
		t.FailureReason = reason
		if class != "" {
			t.FailureReason = class + ": " + reason
		}
		return nil
	})
}

func (s *Scheduler) endTrial(h Held, end func(t *pb.Trial) error) error {
	var t *pb.Trial
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		if t, err = tx.Trial(h.TrialID); err != nil {
			return wrapStore(err, fmt.Sprintf("trial %d", h.TrialID))
		}
		if err := checkHeld(t, h); err != nil {
			return err
		}
		if err := end(t); err != nil {
			return err
		}
		t.EndTimeUnixMs = unixMs(s.now())
		return tx.PutTrial(t)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.leases, t.Id)
	s.bumpLocked(t.StudyId)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("trial ended", zap.Uint64("trial", t.Id), zap.String("state", StateName(t.State)),
		zap.Uint64("points", t.LastSeq), zap.String("reason", t.FailureReason))
	// Complete now rather than at the next worker's request: none may come.
	return s.completeIfIdle(t.StudyId, "")
}

// Heartbeat renews the leases a worker still holds and returns the trials it must stop:
// those whose lease it no longer holds (expired, cancelled or requeued elsewhere).
func (s *Scheduler) Heartbeat(_ context.Context, workerID uint64, held []Held) ([]uint64, error) {
	if err := s.db.View(func(tx *store.Tx) error {
		_, err := tx.Worker(workerID)
		return wrapStore(err, fmt.Sprintf("worker %d", workerID))
	}); err != nil {
		return nil, err
	}
	now := s.now()
	var stop []uint64
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeats[workerID] = now
	for _, h := range held {
		l := s.leases[h.TrialID]
		if l == nil || l.id != h.LeaseID || l.attempt != h.Attempt || l.workerID != workerID {
			stop = append(stop, h.TrialID)
			continue
		}
		l.deadline = now.Add(s.cfg.LeaseTTL)
	}
	return stop, nil
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
	s.mu.Unlock()
	var t *pb.Trial
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		if t, err = tx.Trial(trialID); err != nil {
			return err
		}
		if t.State != pb.TrialState_TRIAL_STATE_RUNNING || t.LeaseId != held.id {
			return nil
		}
		reason := fmt.Sprintf("attempt %d: lease expired on worker %d", t.Attempt, t.WorkerId)
		t.ReasonHistory = append(t.ReasonHistory, reason)
		t.LeaseId, t.WorkerId = "", 0
		if t.Attempt >= s.cfg.MaxAttempts {
			t.State = pb.TrialState_TRIAL_STATE_LOST
			t.FailureReason = fmt.Sprintf("lost after %d attempts", t.Attempt)
			t.EndTimeUnixMs = unixMs(now)
		} else {
			t.State = pb.TrialState_TRIAL_STATE_PENDING
		}
		return tx.PutTrial(t)
	})
	if err != nil {
		return fmt.Errorf("expire trial %d: %w", trialID, err)
	}
	s.mu.Lock()
	if cur := s.leases[trialID]; cur != nil && cur.id == held.id {
		delete(s.leases, trialID)
	}
	s.bumpLocked(t.StudyId)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Warn("lease expired", zap.Uint64("trial", trialID), zap.Uint64("worker", held.workerID),
		zap.String("state", StateName(t.State)))
	if t.State == pb.TrialState_TRIAL_STATE_LOST {
		return s.completeIfIdle(t.StudyId, "")
	}
	return nil
}
