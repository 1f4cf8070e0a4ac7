package scheduler

import (
	"context"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// stopperPolicy stops every running trial that has reported at least minPoints points.
type stopperPolicy struct {
	*fakePolicy
	minPoints int
}

func (p stopperPolicy) StopEarly(_ context.Context, req bo.Request) ([]int, error) {
	var idx []int
	for i, pend := range req.Pending {
		for _, o := range req.Observations {
			if !o.Done && o.Scale == pend.Scale && len(o.Curve) >= p.minPoints {
				idx = append(idx, i)
				break
			}
		}
	}
	return idx, nil
}

// A policy that stops trials early: at the next decision the running trial is marked, its
// worker's next report says stop, and finishing ends it stopped with its prefix.
func TestPolicyStopsATrialEarly(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(e *env) {
		e.policy = &fakePolicy{}
		e.cfg.NewPolicy = func(string) (bo.Policy, error) { return stopperPolicy{e.policy, 2}, nil }
	})
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	if _, stop, err := e.s.ReportPoints(ctx, h, pts(1, 2)); err != nil || stop {
		t.Fatalf("first report: stop %v, %v", stop, err)
	}
	e.mustAcquire(w) // the next decision applies the policy's early stop
	tr, _ := e.trial(a.Trial.Id)
	if !tr.StopRequested || tr.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Fatalf("after the decision: stop requested %v, state %v", tr.StopRequested, tr.State)
	}
	if _, stop, err := e.s.ReportPoints(ctx, h, pts(3, 3)); err != nil || !stop {
		t.Fatalf("report after the early stop: stop %v, %v; want stop", stop, err)
	}
	e.finish(h, 3)
	tr, got := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_STOPPED || len(got) != 3 {
		t.Fatalf("stopped trial: %v with %d points, want stopped with its 3", tr.State, len(got))
	}
}
