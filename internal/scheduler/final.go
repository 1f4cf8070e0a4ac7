package scheduler

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// An ended study's data no longer changes, so its recommendation is computed once, when
// it ends, and kept in the study record: listing ended studies then reads their trials but
// none of their curves, and a coordinator with years of history answers its first status
// as fast as its last.

// sealFinalRecommendation stores an ended study's recommendation in its record (nothing
// when the policy has none). A failure is logged, not returned: the study has ended
// either way, and its status falls back to computing the recommendation.
func (s *Scheduler) sealFinalRecommendation(id uint64) {
	snap, err := s.viewSnapshot(id)
	if err != nil || !isTerminalStudy(snap.study.State) || snap.study.FinalRecommendation != nil {
		return
	}
	rec, err := s.recommend(context.Background(), snap, s.version(id))
	if errors.Is(err, ErrNoRecommendation) {
		return
	}
	if err != nil {
		s.log.Warn("could not compute the ended study's recommendation", zap.Uint64("study", id), zap.Error(err))
		return
	}
	s.keepFinalRecommendation(id, rec)
}

// keepFinalRecommendation stores rec as the ended study's final recommendation unless
// one is kept already. StudyStatus calls it too, so that a study that ended before
// recommendations were kept is read from its curves once, not at every listing.
func (s *Scheduler) keepFinalRecommendation(id uint64, rec *pb.Recommendation) {
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(id)
		if err != nil || !isTerminalStudy(st.State) || st.FinalRecommendation != nil {
			return err
		}
		st.FinalRecommendation = rec
		return tx.PutStudy(st)
	})
	if err != nil {
		s.log.Warn("could not keep the ended study's recommendation", zap.Uint64("study", id), zap.Error(err))
	}
}

// endedStatus answers StudyStatus for an ended study whose recommendation is kept,
// without reading curves; ok is false when the study needs the full path.
func (s *Scheduler) endedStatus(id uint64) (st *pb.StudyStatus, ok bool, err error) {
	err = s.db.View(func(tx *store.Tx) error {
		study, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if !isTerminalStudy(study.State) || study.FinalRecommendation == nil {
			return nil
		}
		trials, err := tx.TrialsOfStudy(id)
		if err != nil {
			return err
		}
		snap := &studySnapshot{study: study, trials: trials}
		st = &pb.StudyStatus{Study: study, TrialsByState: map[string]int32{}, CommittedFlops: snap.committed(),
			Recommendation: study.FinalRecommendation}
		study.FinalRecommendation = nil // shown once, as the status's recommendation
		for _, t := range trials {
			st.TrialsByState[StateName(t.State)]++
		}
		ok = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return st, ok, nil
}
