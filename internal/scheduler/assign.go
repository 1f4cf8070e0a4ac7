package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Assigning trials: AcquireTrial's long poll and the group decision behind it, which
// reads every running study once, plans a trial for each asking worker (a pending one
// that fits, or a new one from the study's policy) and commits the plans, with their
// leases, in one transaction.

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

// assignReq is one worker's request for a trial, queued for the next group decision.
type assignReq struct {
	workerID uint64
	studyID  uint64 // only this study's trials (0: any)
	a        *pb.Assignment
	err      error
	done     chan struct{}
}

// tryAssign decides a trial for the worker, or nil when none is available now. Requests
// that arrive while a decision runs are decided together at the next one, in one read of
// each study and one write transaction: a fleet of workers asking at once pays for one
// disk sync, not one each (flat combining over decideMu).
func (s *Scheduler) tryAssign(ctx context.Context, workerID, studyID uint64) (*pb.Assignment, error) {
	start := time.Now()
	req := &assignReq{workerID: workerID, studyID: studyID, done: make(chan struct{})}
	s.mu.Lock()
	s.assignQueue = append(s.assignQueue, req)
	s.mu.Unlock()
	s.decideMu.Lock()
	s.mu.Lock()
	batch := s.assignQueue
	s.assignQueue = nil
	s.mu.Unlock()
	if len(batch) > 0 {
		// The batch serves other callers too: one caller going away must not cancel it.
		s.assignBatch(context.WithoutCancel(ctx), batch)
	}
	s.decideMu.Unlock()
	<-req.done // served by this batch or by an earlier holder's
	if req.a != nil {
		s.cfg.Metrics.ObserveAssignment(time.Since(start))
	}
	return req.a, req.err
}

// plannedTrial is a trial a group decision will lease (workerID != 0) or store pending.
type plannedTrial struct {
	study       *studySnapshot
	trial       *pb.Trial
	req         *assignReq // nil while only stored pending
	gpus        []int32
	isNew       bool
	prevAttempt int32
}

// assignBatch serves a group of requests. Callers hold decideMu.
func (s *Scheduler) assignBatch(ctx context.Context, batch []*assignReq) {
	began := time.Now()
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	workers := map[uint64]*pb.Worker{}
	var studies []*studySnapshot
	err := s.db.View(func(tx *store.Tx) error {
		for _, r := range batch {
			w, err := tx.Worker(r.workerID)
			if err != nil {
				r.err = wrapStore(err, fmt.Sprintf("worker %d", r.workerID))
				continue
			}
			workers[w.Id] = w
		}
		all, err := tx.Studies()
		if err != nil {
			return err
		}
		for _, st := range all {
			if st.State != pb.StudyState_STUDY_STATE_RUNNING {
				continue
			}
			snap, err := s.loadSnapshot(tx, st.Id)
			if err != nil {
				return err
			}
			studies = append(studies, snap)
		}
		return nil
	})
	if err != nil {
		for _, r := range batch {
			r.err = err
		}
		return
	}
	now := s.now()
	free := map[uint64][]*pb.Gpu{}
	s.mu.Lock()
	for id, w := range workers {
		s.heartbeats[id] = now
		free[id] = s.freeGPUsLocked(w)
	}
	s.mu.Unlock()

	for _, snap := range studies {
		if err := s.stopEarly(ctx, snap); err != nil {
			s.log.Warn("early stopping", zap.Uint64("study", snap.study.Id), zap.Error(err))
		}
	}
	var plans []*plannedTrial
	ending := map[uint64]string{} // studies that can start nothing more, and why
	for _, r := range batch {
		w := workers[r.workerID]
		if r.err != nil || w == nil || w.Draining {
			continue
		}
		for _, snap := range studies {
			if !acceptsWorker(snap.study.Spec.Workers, w) || r.studyID != 0 && snap.study.Id != r.studyID {
				continue
			}
			p, why, err := s.plan(ctx, snap, &plans, w, free[w.Id])
			if err != nil {
				r.err = err
				break
			}
			if why != "" {
				ending[snap.study.Id] = why
			}
			if p != nil {
				p.req = r
				free[w.Id] = withoutGPUs(free[w.Id], p.gpus)
				break
			}
		}
	}
	planned := time.Now()
	defer func() {
		s.log.Debug("group decision", zap.Int("requests", len(batch)), zap.Int("plans", len(plans)),
			zap.Duration("read_and_plan", planned.Sub(began)), zap.Duration("commit", time.Since(planned)))
	}()
	if err := s.commitPlans(plans); err != nil {
		for _, r := range batch {
			if r.err == nil && r.a == nil {
				r.err = err
			}
		}
		return
	}
	for id, why := range ending {
		if err := s.completeIfIdle(id, why); err != nil {
			s.log.Error("complete study", zap.Uint64("study", id), zap.Error(err))
		}
	}
}

// plan picks the worker's next trial from one study: a pending trial that fits its free
// GPUs, or else a new one from the study's policy. A new trial that fits no free GPU of
// this worker is planned pending, for a worker it fits. The snapshot is updated in memory
// so that the next request of the group sees this decision as pending. why, when set,
// says the study can start nothing more.
func (s *Scheduler) plan(ctx context.Context, snap *studySnapshot, plans *[]*plannedTrial, w *pb.Worker, free []*pb.Gpu) (p *plannedTrial, why string, err error) {
	study, spec := snap.study, snap.study.Spec
	if len(free) == 0 {
		return nil, "", nil
	}
	active, waiting := 0, false
	for _, t := range snap.trials {
		switch t.State {
		case pb.TrialState_TRIAL_STATE_PENDING:
			active++
			gpus := placeOn(w, free, scaleOf(spec, t.Scale))
			if gpus == nil {
				waiting = true
				continue
			}
			// A trial this group planned pending is taken over; a stored one starts a
			// new attempt.
			for _, q := range *plans {
				if q.trial == t {
					s.leaseInMemory(t, w.Id, gpus)
					q.gpus = gpus
					return q, "", nil
				}
			}
			prev := t.Attempt
			s.leaseInMemory(t, w.Id, gpus)
			q := &plannedTrial{study: snap, trial: t, gpus: gpus, prevAttempt: prev}
			*plans = append(*plans, q)
			return q, "", nil
		case pb.TrialState_TRIAL_STATE_RUNNING:
			active++
		}
	}
	// A trial already waits for a worker it fits: deciding more for this worker would
	// pile up pending trials that it cannot run either.
	if active >= int(spec.MaxParallel) || waiting {
		return nil, "", nil
	}
	if spec.MaxTrials > 0 && study.TrialsCreated >= spec.MaxTrials {
		return nil, "max trials reached", nil
	}
	policy, err := s.cfg.NewPolicy(spec.Policy)
	if err != nil {
		return nil, "", err
	}
	req := snap.nextRequest()
	budgetLeft := req.Problem.BudgetLeft
	start := time.Now() // wall time, not the injected clock: this measures the policy
	d, err := policy.Next(ctx, req)
	s.cfg.Metrics.ObserveDecision(spec.Policy, time.Since(start))
	if d.FitTime > 0 {
		s.cfg.Metrics.ObserveGPFit(d.FitTime)
	}
	if errors.Is(err, bo.ErrNoTrialFits) {
		return nil, "budget exhausted", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("study %d: policy %s: %w", study.Id, spec.Policy, err)
	}
	if err := checkDecision(spec, d.Trial, budgetLeft); err != nil {
		return nil, "", fmt.Errorf("study %d: policy %s decided an invalid trial: %w", study.Id, spec.Policy, err)
	}
	t := &pb.Trial{
		StudyId: study.Id, Mixture: d.Trial.Mixture, Scale: spec.Scales[d.Trial.Scale].Name, Steps: d.Trial.Steps,
		CreateTimeUnixMs: unixMs(s.now()), State: pb.TrialState_TRIAL_STATE_PENDING,
	}
	snap.addDecided(t, d.Trial, d.State)
	q := &plannedTrial{study: snap, trial: t, isNew: true}
	*plans = append(*plans, q)
	gpus := placeOn(w, free, spec.Scales[d.Trial.Scale])
	if gpus == nil {
		s.log.Info("trial pending: it fits no free GPUs of the asking worker", zap.Uint64("study", study.Id),
			zap.String("scale", t.Scale), zap.Uint64("worker", w.Id))
		return nil, "", nil
	}
	s.leaseInMemory(t, w.Id, gpus)
	q.gpus = gpus
	return q, "", nil
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

// commitPlans stores a group decision in one transaction. A plan whose study or trial
// changed state since the snapshot (paused, cancelled, stopped) is dropped: its worker
// gets no trial this time.
func (s *Scheduler) commitPlans(plans []*plannedTrial) error {
	if len(plans) == 0 {
		return nil
	}
	kept := make([]bool, len(plans))
	err := s.db.Update(func(tx *store.Tx) error {
		clear(kept)
		studies := map[uint64]*pb.Study{}
		for i, p := range plans {
			st, ok := studies[p.study.study.Id]
			if !ok {
				var err error
				if st, err = tx.Study(p.study.study.Id); err != nil {
					return err
				}
				studies[st.Id] = st
			}
			if st.State != pb.StudyState_STUDY_STATE_RUNNING {
				continue
			}
			if p.isNew {
				id, err := tx.NextTrialID()
				if err != nil {
					return err
				}
				p.trial.Id = id
				st.TrialsCreated++
			} else {
				cur, err := tx.Trial(p.trial.Id)
				if err != nil {
					return err
				}
				if cur.State != pb.TrialState_TRIAL_STATE_PENDING || cur.Attempt != p.prevAttempt {
					continue
				}
			}
			if err := tx.PutTrial(p.trial); err != nil {
				return err
			}
			kept[i] = true
		}
		for id, st := range studies {
			if err := tx.PutStudy(st); err != nil {
				return err
			}
			for _, p := range plans {
				if p.study.study.Id == id && p.isNew {
					if err := tx.PutPolicyState(id, p.study.policyState); err != nil {
						return err
					}
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lease trials: %w", err)
	}
	s.mu.Lock()
	for i, p := range plans {
		if !kept[i] {
			continue
		}
		t := p.trial
		if p.req != nil {
			now := s.now()
			s.leases[t.Id] = &lease{id: t.LeaseId, attempt: t.Attempt, workerID: t.WorkerId, studyID: t.StudyId, gpus: p.gpus,
				deadline: now.Add(s.cfg.LeaseTTL), granted: now}
		}
		s.bumpLocked(t.StudyId)
	}
	s.notifyLocked()
	s.mu.Unlock()
	for i, p := range plans {
		if !kept[i] || p.req == nil {
			continue
		}
		t, spec := p.trial, p.study.study.Spec
		s.log.Info("trial leased", zap.Uint64("study", t.StudyId), zap.Uint64("trial", t.Id),
			zap.Uint64("worker", t.WorkerId), zap.Int32("attempt", t.Attempt), zap.Int32s("gpus", p.gpus),
			zap.String("scale", t.Scale), zap.Int64("steps", t.Steps))
		p.req.a = &pb.Assignment{
			Trial:      proto.Clone(t).(*pb.Trial),
			Domains:    domainNames(spec),
			Scale:      spec.Scales[ScaleIndex(spec, t.Scale)],
			LeaseId:    t.LeaseId,
			Attempt:    t.Attempt,
			LeaseTtlMs: s.cfg.LeaseTTL.Milliseconds(),
			EvalEvery:  spec.EvalEvery,
			Seed:       spec.Seed ^ t.Id,
			GpuIndices: p.gpus,
		}
	}
	return nil
}

func domainNames(spec *pb.StudySpec) []string {
	names := make([]string, len(spec.Domains))
	for i, d := range spec.Domains {
		names[i] = d.Name
	}
	return names
}
