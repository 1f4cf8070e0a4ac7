package scheduler

import (
	"fmt"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// studySnapshot is a study's data read in one transaction: what a decision or a
// recommendation depends on.
type studySnapshot struct {
	study       *pb.Study
	trials      []*pb.Trial
	curves      map[uint64][]bo.CurvePoint // objective curve of the current attempt by trial id
	policyState []byte

	// A group decision asks the policy once per worker; these carry the request and the
	// committed compute from one decision to the next, updated by addDecided, instead of
	// rebuilding them from every trial each time.
	decisionReq   *bo.Request
	committedNow  float64
	committedDone bool
}

func (s *Scheduler) loadSnapshot(tx *store.Tx, id uint64) (*studySnapshot, error) {
	study, err := tx.Study(id)
	if err != nil {
		return nil, err
	}
	trials, err := tx.TrialsOfStudy(id)
	if err != nil {
		return nil, err
	}
	snap := &studySnapshot{study: study, trials: trials, curves: map[uint64][]bo.CurvePoint{}}
	for _, t := range trials {
		curve, err := s.curves.curve(tx, t, study.Spec.Objective.Metric)
		if err != nil {
			return nil, err
		}
		if len(curve) > 0 {
			snap.curves[t.Id] = curve
		}
	}
	if snap.policyState, err = tx.PolicyState(id); err != nil {
		return nil, err
	}
	return snap, nil
}

// viewSnapshot reads a study's snapshot in its own read transaction.
func (s *Scheduler) viewSnapshot(id uint64) (*studySnapshot, error) {
	var snap *studySnapshot
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		snap, err = s.loadSnapshot(tx, id)
		return err
	})
	if err != nil {
		return nil, wrapStore(err, fmt.Sprintf("study %d", id))
	}
	return snap, nil
}

// committed is the compute running trials may still spend.
func (snap *studySnapshot) committed() float64 {
	c := 0.0
	for _, t := range snap.trials {
		if t.State == pb.TrialState_TRIAL_STATE_RUNNING || t.State == pb.TrialState_TRIAL_STATE_PENDING {
			c += remainingCost(snap.study.Spec, t)
		}
	}
	return c
}

func remainingCost(spec *pb.StudySpec, t *pb.Trial) float64 {
	i := ScaleIndex(spec, t.Scale)
	if i < 0 {
		return 0
	}
	return spec.Scales[i].FlopsPerStep * float64(max(t.Steps-t.StepsDone, 0))
}

// problem maps the spec to the policy's terms.
func problem(study *pb.Study, budgetLeft float64) bo.Problem {
	spec := study.Spec
	p := bo.Problem{
		Steps:       append([]int64(nil), spec.Steps...),
		TargetScale: ScaleIndex(spec, spec.Target.Scale),
		TargetSteps: spec.Target.Steps,
		Maximize:    spec.Objective.Maximize,
		BudgetLeft:  budgetLeft,
		Seed:        spec.Seed,
	}
	for _, d := range spec.Domains {
		p.Domains = append(p.Domains, d.Name)
		p.Lower = append(p.Lower, d.MinWeight)
		p.Upper = append(p.Upper, d.MaxWeight)
	}
	for _, sc := range spec.Scales {
		p.Scales = append(p.Scales, bo.Scale{Name: sc.Name, Params: sc.Params, FlopsPerStep: sc.FlopsPerStep, Pool: poolOf(sc)})
	}
	return p
}

// request builds the policy's input: every trial with points is an observation of the
// objective metric (non-finite values left out), running trials are pending.
func (snap *studySnapshot) request(budgetLeft float64) bo.Request {
	spec := snap.study.Spec
	req := bo.Request{
		Problem:  problem(snap.study, budgetLeft),
		Decision: int(snap.study.TrialsCreated),
		State:    snap.policyState,
		Prior:    priorObservations(spec),
	}
	for _, t := range snap.trials {
		trial := bo.Trial{Mixture: t.Mixture, Scale: ScaleIndex(spec, t.Scale), Steps: t.Steps}
		if isActive(t) {
			req.Pending = append(req.Pending, trial)
		}
		curve := snap.curves[t.Id]
		if len(curve) == 0 {
			continue
		}
		req.Observations = append(req.Observations, bo.Observation{
			Trial: trial, Curve: curve, Done: t.State == pb.TrialState_TRIAL_STATE_SUCCEEDED,
		})
	}
	return req
}

// pending lists the trials behind request().Pending, in the same order.
func (snap *studySnapshot) pending() []*pb.Trial {
	var out []*pb.Trial
	for _, t := range snap.trials {
		if isActive(t) {
			out = append(out, t)
		}
	}
	return out
}

// nextRequest is the policy's input for the snapshot's next decision, with the budget left
// after what is spent and committed to active trials.
func (snap *studySnapshot) nextRequest() bo.Request {
	if !snap.committedDone {
		snap.committedNow, snap.committedDone = snap.committed(), true
	}
	spec := snap.study.Spec
	budgetLeft := spec.BudgetFlops - snap.study.SpentFlops - snap.committedNow
	if snap.decisionReq == nil {
		req := snap.request(budgetLeft)
		snap.decisionReq = &req
	}
	req := *snap.decisionReq
	req.Problem.BudgetLeft = budgetLeft
	req.Decision = int(snap.study.TrialsCreated)
	req.State = snap.policyState
	return req
}

// addDecided records a trial the group decision just created, so the next decision
// counts it as pending and its cost as committed.
func (snap *studySnapshot) addDecided(t *pb.Trial, decided bo.Trial, state []byte) {
	snap.trials = append(snap.trials, t)
	snap.study.TrialsCreated++
	snap.policyState = state
	if snap.committedDone {
		snap.committedNow += remainingCost(snap.study.Spec, t)
	}
	if snap.decisionReq != nil {
		snap.decisionReq.Pending = append(snap.decisionReq.Pending, decided)
	}
}
