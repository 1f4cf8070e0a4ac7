package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// virtualGPUMemoryMiB is the memory of a simulated worker's virtual GPUs: large enough for
// any scale, since a replay needs none.
const virtualGPUMemoryMiB = math.MaxInt64

// gpuSlots returns the GPUs trials can be placed on: the worker's registered GPUs, or one
// virtual GPU per slot of a simulated worker.
func gpuSlots(w *pb.Worker) []*pb.Gpu {
	if w.SimulatedCapacity > 0 {
		slots := make([]*pb.Gpu, w.SimulatedCapacity)
		for i := range slots {
			slots[i] = &pb.Gpu{Index: int32(i), Name: "virtual", MemoryMib: virtualGPUMemoryMiB}
		}
		return slots
	}
	if len(w.Gpus) == 0 {
		// A worker that declares nothing runs one trial at a time (a CPU worker).
		return []*pb.Gpu{{Index: 0, Name: "cpu", MemoryMib: virtualGPUMemoryMiB}}
	}
	return w.Gpus
}

// freeGPUsLocked lists the worker's GPUs no lease holds. Callers hold s.mu.
func (s *Scheduler) freeGPUsLocked(w *pb.Worker) []*pb.Gpu {
	used := map[int32]bool{}
	for _, l := range s.leases {
		if l.workerID == w.Id {
			for _, g := range l.gpus {
				used[g] = true
			}
		}
	}
	var free []*pb.Gpu
	for _, g := range gpuSlots(w) {
		if !used[g.Index] {
			free = append(free, g)
		}
	}
	return free
}

// place picks GPUs for one trial at the scale from the free ones: as many as the scale
// needs (at least one), each with the memory it needs. Nil when the trial does not fit.
func place(free []*pb.Gpu, sc *pb.Scale) []int32 {
	need := max(int(sc.Gpus), 1)
	var picked []int32
	for _, g := range free {
		if g.MemoryMib >= sc.MinGpuMemoryMib {
			picked = append(picked, g.Index)
			if len(picked) == need {
				return picked
			}
		}
	}
	return nil
}

// placeOn places a trial at the scale on the worker's free GPUs. A simulated worker's
// virtual GPU is one trial slot: a replay runs simulated_capacity trials at once, whatever
// GPUs the scale needs.
func placeOn(w *pb.Worker, free []*pb.Gpu, sc *pb.Scale) []int32 {
	if w.SimulatedCapacity > 0 {
		return place(free, &pb.Scale{Name: sc.Name})
	}
	return place(free, sc)
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
	free := s.freeGPUsLocked(worker)
	s.mu.Unlock()
	if worker.Draining || len(free) == 0 {
		return nil, nil
	}
	for _, id := range studyIDs {
		a, err := s.assignFromStudy(ctx, id, worker, free)
		if a != nil || err != nil {
			return a, err
		}
	}
	return nil, nil
}

// assignFromStudy leases a pending trial of the study that fits the worker's free GPUs, or
// else a new one decided by its policy, or completes the study when nothing more can run.
// A new trial that does not fit this worker is stored pending for one it fits. Callers
// hold decideMu.
func (s *Scheduler) assignFromStudy(ctx context.Context, studyID uint64, worker *pb.Worker, free []*pb.Gpu) (*pb.Assignment, error) {
	var snap *studySnapshot
	if err := s.db.View(func(tx *store.Tx) (err error) { snap, err = s.loadSnapshot(tx, studyID); return err }); err != nil {
		return nil, err
	}
	study, spec := snap.study, snap.study.Spec
	if study.State != pb.StudyState_STUDY_STATE_RUNNING {
		return nil, nil
	}
	active := 0
	for _, t := range snap.trials {
		switch t.State {
		case pb.TrialState_TRIAL_STATE_PENDING:
			active++
			if gpus := placeOn(worker, free, scaleOf(spec, t.Scale)); gpus != nil {
				return s.startAttempt(study, t, worker.Id, gpus, nil, false)
			}
		case pb.TrialState_TRIAL_STATE_RUNNING:
			active++
		}
	}
	if active >= int(spec.MaxParallel) {
		return nil, nil
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
	gpus := placeOn(worker, free, spec.Scales[d.Trial.Scale])
	if gpus == nil {
		_, err := s.startAttempt(study, t, 0, nil, d.State, true)
		return nil, err
	}
	return s.startAttempt(study, t, worker.Id, gpus, d.State, true)
}

func scaleOf(spec *pb.StudySpec, name string) *pb.Scale {
	if i := ScaleIndex(spec, name); i >= 0 {
		return spec.Scales[i]
	}
	return &pb.Scale{Name: name}
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

// startAttempt, in one transaction, starts a new attempt of t leased to the worker on the
// given GPUs, or with workerID 0 stores t pending for a worker it fits. isNew creates t,
// together with the study's decision count and the policy state.
func (s *Scheduler) startAttempt(study *pb.Study, t *pb.Trial, workerID uint64, gpus []int32, policyState []byte, isNew bool) (*pb.Assignment, error) {
	now := s.now()
	prevAttempt := t.Attempt
	if workerID == 0 {
		t.State = pb.TrialState_TRIAL_STATE_PENDING
	} else {
		t.State = pb.TrialState_TRIAL_STATE_RUNNING
		t.Attempt++
		t.LeaseId = newLeaseID()
		t.WorkerId = workerID
		t.GpuIndices = gpus
		t.LastSeq, t.StepsDone, t.HasValue, t.LastValue, t.AttemptWallTimeS = 0, 0, false, 0, 0
		t.StartTimeUnixMs = unixMs(now)
	}
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(study.Id)
		if err != nil {
			return err
		}
		// The snapshot the decision came from may be stale: the study may have been
		// paused or cancelled, or the pending trial stopped, since.
		if st.State != pb.StudyState_STUDY_STATE_RUNNING {
			return errGone
		}
		if !isNew {
			cur, err := tx.Trial(t.Id)
			if err != nil {
				return err
			}
			if cur.State != pb.TrialState_TRIAL_STATE_PENDING || cur.Attempt != prevAttempt {
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
	if workerID != 0 {
		s.leases[t.Id] = &lease{id: t.LeaseId, attempt: t.Attempt, workerID: workerID, gpus: gpus, deadline: now.Add(s.cfg.LeaseTTL)}
	}
	s.bumpLocked(study.Id)
	s.notifyLocked()
	s.mu.Unlock()
	spec := study.Spec
	if workerID == 0 {
		s.log.Info("trial pending: it fits no free GPUs of the asking worker", zap.Uint64("study", study.Id),
			zap.Uint64("trial", t.Id), zap.String("scale", t.Scale))
		return nil, nil
	}
	s.log.Info("trial leased", zap.Uint64("study", study.Id), zap.Uint64("trial", t.Id),
		zap.Uint64("worker", workerID), zap.Int32("attempt", t.Attempt), zap.Int32s("gpus", gpus),
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
		GpuIndices: gpus,
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
