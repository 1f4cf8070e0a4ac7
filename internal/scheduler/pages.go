package scheduler

import (
	"context"
	"fmt"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Page asks for the records of a listing whose id is above After (0: from the first),
// at most Size of them (1 to MaxPageSize).
type Page struct {
	After uint64
	Size  int
}

func (p Page) check() error {
	if p.Size < 1 || p.Size > MaxPageSize {
		return fmt.Errorf("page_size: %d out of range (1 to %d): %w", p.Size, MaxPageSize, ErrInvalid)
	}
	return nil
}

// StudiesPage returns the status of the studies of one page, ascending id, and whether
// more follow. Only the page's studies are read and summarised.
func (s *Scheduler) StudiesPage(ctx context.Context, p Page) ([]*pb.StudyStatus, bool, error) {
	if err := p.check(); err != nil {
		return nil, false, err
	}
	var ids []uint64
	var more bool
	err := s.db.View(func(tx *store.Tx) error {
		studies, m, err := tx.StudiesAfter(p.After, p.Size)
		ids, more = ids[:0], m
		for _, st := range studies {
			ids = append(ids, st.Id)
		}
		return err
	})
	if err != nil {
		return nil, false, err
	}
	out := make([]*pb.StudyStatus, 0, len(ids))
	for _, id := range ids {
		st, err := s.StudyStatus(ctx, id)
		if err != nil {
			return nil, false, err
		}
		out = append(out, st)
	}
	return out, more, nil
}

// TrialsPage returns one page of a study's trials, optionally filtered by state and scale
// as Trials does, and whether more follow.
func (s *Scheduler) TrialsPage(_ context.Context, studyID uint64, state pb.TrialState, scale string, p Page) ([]*pb.Trial, bool, error) {
	if err := p.check(); err != nil {
		return nil, false, err
	}
	keep := func(t *pb.Trial) bool {
		return (state == pb.TrialState_TRIAL_STATE_UNSPECIFIED || t.State == state) && (scale == "" || t.Scale == scale)
	}
	var out []*pb.Trial
	var more bool
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		out, more, err = tx.TrialsOfStudyAfter(studyID, p.After, p.Size, keep)
		return wrapStore(err, fmt.Sprintf("study %d", studyID))
	})
	return out, more, err
}

// WorkersPage returns one page of the workers as Workers shows them (state, running
// trials), and whether more follow. Workers are few next to trials, so it slices the full
// view rather than keep a second copy of how a worker is shown.
func (s *Scheduler) WorkersPage(ctx context.Context, p Page) ([]*pb.Worker, bool, error) {
	if err := p.check(); err != nil {
		return nil, false, err
	}
	all, err := s.Workers(ctx)
	if err != nil {
		return nil, false, err
	}
	var out []*pb.Worker
	for i, w := range all { // ascending id
		if w.Id <= p.After {
			continue
		}
		if len(out) == p.Size {
			return out, true, nil
		}
		out = append(out, all[i])
	}
	return out, false, nil
}
