package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Leases: a trial attempt is leased to one worker under a fresh lease id (granted by the
// group decision, assign.go); the worker renews it with heartbeats and reports, and only
// its holder may report (checkHeld). It ends with a report of its end (reports.go), with
// its study (studies.go), by expiring, by the worker releasing it after fencing itself, or
// by the worker re-registering without it (workers.go). An attempt that ends without a
// result is requeued, up to the delivery limit.

// AttemptClaim identifies the trial attempt a worker claims to hold.
type AttemptClaim struct {
	WorkerID uint64
	TrialID  uint64
	LeaseID  string
	Attempt  int32
}

// lease is the in-memory side of a trial attempt's lease; the store holds its id, attempt
// and worker, the deadline is rebuilt at start-up.
type lease struct {
	id       string
	attempt  int32
	workerID uint64
	studyID  uint64
	gpus     []int32
	deadline time.Time
	// granted is when the attempt was leased (zero for leases recovered at start-up, which
	// predate it).
	granted time.Time
}

func newLeaseID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the runtime guarantees Read never fails
	}
	return hex.EncodeToString(b[:])
}

// leaseInMemory turns t into a new running attempt on the worker; commitPlans stores it.
func (s *Scheduler) leaseInMemory(t *pb.Trial, workerID uint64, gpus []int32) {
	t.State = pb.TrialState_TRIAL_STATE_RUNNING
	t.Attempt++
	t.LeaseId = newLeaseID()
	t.WorkerId = workerID
	t.GpuIndices = gpus
	t.LastSeq, t.StepsDone, t.HasValue, t.LastValue, t.AttemptWallTimeS = 0, 0, false, 0, 0
	t.StartTimeUnixMs = unixMs(s.now())
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
