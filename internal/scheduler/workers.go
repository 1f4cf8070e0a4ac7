package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Workers: registering (and re-registering) them, draining, forgetting and listing them.

// Registration is what a worker announces.
type Registration struct {
	// WorkerID is zero on first registration, the earlier id when the worker comes back.
	WorkerID          uint64
	Hostname          string
	GPUs              []*pb.Gpu
	SimulatedCapacity int32
	// Claims lists the leases the worker still holds; on re-registration every other trial
	// leased to it is requeued (the worker restarted and lost it).
	Claims []AttemptClaim
	// Identity is what the worker says it is (nil from workers that predate it).
	Identity *pb.WorkerIdentity
}

// Register records a worker and returns its id. A known id keeps its identity and the
// leases it says it holds; the trials it no longer runs are requeued at once rather than
// after their leases expire. An unknown non-zero id gets a fresh one.
func (s *Scheduler) Register(_ context.Context, r Registration) (uint64, error) {
	if r.Hostname == "" || len(r.Hostname) > MaxHostnameBytes {
		return 0, fmt.Errorf("hostname: must be 1-%d bytes: %w", MaxHostnameBytes, ErrInvalid)
	}
	if r.SimulatedCapacity < 0 || r.SimulatedCapacity > MaxSimulatedCapacity {
		return 0, fmt.Errorf("simulated_capacity: %d out of range (0 to %d): %w", r.SimulatedCapacity, MaxSimulatedCapacity, ErrInvalid)
	}
	if len(r.GPUs) > MaxGPUsPerWorker {
		return 0, fmt.Errorf("gpus: %d, at most %d: %w", len(r.GPUs), MaxGPUsPerWorker, ErrInvalid)
	}
	seenIndex := map[int32]bool{}
	for i, g := range r.GPUs {
		if g.MemoryMib < 0 || g.Index < 0 {
			return 0, fmt.Errorf("gpus[%d]: negative index or memory: %w", i, ErrInvalid)
		}
		if seenIndex[g.Index] {
			return 0, fmt.Errorf("gpus[%d].index: %d appears twice: %w", i, g.Index, ErrInvalid)
		}
		seenIndex[g.Index] = true
	}
	if err := CheckIdentity(r.Identity); err != nil {
		return 0, err
	}
	if len(r.Claims) > MaxHeldLeases {
		return 0, fmt.Errorf("leases: %d, at most %d: %w", len(r.Claims), MaxHeldLeases, ErrInvalid)
	}
	stillHeld := map[uint64]string{}
	for _, h := range r.Claims {
		stillHeld[h.TrialID] = h.LeaseID
	}
	now := s.now()
	var id uint64
	var requeued []*pb.Trial
	err := s.db.Update(func(tx *store.Tx) error {
		requeued = requeued[:0]
		w, err := tx.Worker(r.WorkerID)
		if r.WorkerID == 0 || errors.Is(err, store.ErrNotFound) {
			if id, err = tx.NextWorkerID(); err != nil {
				return err
			}
			w = &pb.Worker{Id: id, RegisterTimeUnixMs: unixMs(now)}
		} else if err != nil {
			return err
		}
		id = w.Id
		w.Hostname, w.Gpus, w.SimulatedCapacity = r.Hostname, r.GPUs, r.SimulatedCapacity
		w.Identity = r.Identity
		w.State = pb.WorkerState_WORKER_STATE_ALIVE
		w.LastHeartbeatUnixMs = unixMs(now)
		if err := tx.PutWorker(w); err != nil {
			return err
		}
		running, err := tx.AllTrials(pb.TrialState_TRIAL_STATE_RUNNING)
		if err != nil {
			return err
		}
		for _, t := range running {
			if t.WorkerId != id || stillHeld[t.Id] == t.LeaseId {
				continue
			}
			s.requeue(t, fmt.Sprintf("attempt %d: worker %d restarted without it", t.Attempt, id))
			if err := tx.PutTrial(t); err != nil {
				return err
			}
			requeued = append(requeued, t)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("register worker: %w", err)
	}
	s.mu.Lock()
	s.heartbeats[id] = now
	for _, t := range requeued {
		delete(s.leases, t.Id)
		s.bumpLocked(t.StudyId)
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("worker registered", zap.Uint64("worker", id), zap.String("hostname", r.Hostname),
		zap.Int("requeued_trials", len(requeued)))
	for _, t := range requeued {
		if err := s.afterTrialEnd(t); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// CheckIdentity bounds what a worker says about itself (it is stored and shown); the
// error names the field. Register checks it, and so does the gRPC adapter before it.
func CheckIdentity(id *pb.WorkerIdentity) error {
	if id == nil {
		return nil
	}
	if _, ok := pb.WorkerKind_name[int32(id.Kind)]; !ok {
		return invalid("identity.kind", "unknown kind %d", id.Kind)
	}
	if len(id.SimSource) > MaxSimSourceBytes {
		return invalid("identity.sim_source", "longer than %d bytes", MaxSimSourceBytes)
	}
	if err := CheckLabels("identity.labels", id.Labels); err != nil {
		return err
	}
	if in := id.Interpreter; in != nil {
		if len(in.Path) > MaxPathBytes {
			return invalid("identity.interpreter.path", "longer than %d bytes", MaxPathBytes)
		}
		for field, v := range map[string]string{"python_version": in.PythonVersion, "torch_version": in.TorchVersion, "cuda_version": in.CudaVersion} {
			if len(v) > MaxVersionBytes {
				return invalid("identity.interpreter."+field, "longer than %d bytes", MaxVersionBytes)
			}
		}
	}
	return nil
}

// DrainWorker stops (or, with undrain, resumes) assigning new trials to a worker; its
// running trials go on to the end.
func (s *Scheduler) DrainWorker(ctx context.Context, id uint64, undrain bool) (*pb.Worker, error) {
	err := s.db.Update(func(tx *store.Tx) error {
		w, err := tx.Worker(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("worker %d", id))
		}
		w.Draining = !undrain
		return tx.PutWorker(w)
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	s.log.Info("worker drain changed", zap.Uint64("worker", id), zap.Bool("draining", !undrain))
	workers, err := s.Workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range workers {
		if w.Id == id {
			return w, nil
		}
	}
	return nil, fmt.Errorf("worker %d: %w", id, ErrNotFound)
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

// Workers lists the registered workers with their liveness and the trials they hold.
// A worker is alive while it was heard from within three heartbeat intervals.
func (s *Scheduler) Workers(_ context.Context) ([]*pb.Worker, error) {
	var workers []*pb.Worker
	if err := s.db.View(func(tx *store.Tx) (err error) { workers, err = tx.Workers(); return err }); err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range workers {
		if seen, ok := s.heartbeats[w.Id]; ok {
			w.LastHeartbeatUnixMs = unixMs(seen)
		}
		switch {
		case now.Sub(time.UnixMilli(w.LastHeartbeatUnixMs)) > 3*s.cfg.HeartbeatInterval:
			w.State = pb.WorkerState_WORKER_STATE_LOST
		case w.Draining:
			w.State = pb.WorkerState_WORKER_STATE_DRAINING
		default:
			w.State = pb.WorkerState_WORKER_STATE_ALIVE
		}
		w.RunningTrials = w.RunningTrials[:0]
		for tid, l := range s.leases {
			if l.workerID == w.Id {
				w.RunningTrials = append(w.RunningTrials, tid)
			}
		}
		slices.Sort(w.RunningTrials)
	}
	return workers, nil
}
