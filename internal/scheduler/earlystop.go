package scheduler

import (
	"context"
	"slices"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Early stopping: a policy that implements bo.EarlyStopper is asked, at each group
// decision, which live curves to stop where they are.

// stopEarly asks a policy that stops trials early (bo.EarlyStopper) which running trials
// to stop at their current step, and records the requests; their workers learn it from
// their next report and finish with the prefix observed.
func (s *Scheduler) stopEarly(ctx context.Context, snap *studySnapshot) error {
	policy, err := s.cfg.NewPolicy(snap.study.Spec.Policy)
	if err != nil {
		return err
	}
	stopper, ok := policy.(bo.EarlyStopper)
	if !ok {
		return nil
	}
	idx, err := stopper.StopEarly(ctx, snap.request(0))
	if err != nil || len(idx) == 0 {
		return err
	}
	pending := snap.pending()
	var ids []uint64
	for _, i := range idx {
		if i >= 0 && i < len(pending) && pending[i].State == pb.TrialState_TRIAL_STATE_RUNNING && !pending[i].StopRequested {
			ids = append(ids, pending[i].Id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	err = s.db.Update(func(tx *store.Tx) error {
		for _, id := range ids {
			t, err := tx.Trial(id)
			if err != nil {
				return err
			}
			if t.State != pb.TrialState_TRIAL_STATE_RUNNING || t.StopRequested {
				continue
			}
			t.StopRequested = true
			if err := tx.PutTrial(t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range pending {
		if slices.Contains(ids, t.Id) {
			t.StopRequested = true
		}
	}
	s.log.Info("policy stops trials early", zap.Uint64("study", snap.study.Id), zap.Uint64s("trials", ids))
	return nil
}
