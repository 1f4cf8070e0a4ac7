package scheduler

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// What a study shows: its status and its policy's recommendation, cached by the study's
// data version (an ended study's is kept in its record: final.go).

// StudyStatus returns a study with its trial counts, committed compute and, when the
// policy has one, its recommendation.
func (s *Scheduler) StudyStatus(ctx context.Context, id uint64) (*pb.StudyStatus, error) {
	if st, ok, err := s.endedStatus(id); ok || err != nil {
		return st, err
	}
	version := s.version(id) // before the snapshot: see recommend
	snap, err := s.viewSnapshot(id)
	if err != nil {
		return nil, err
	}
	st := &pb.StudyStatus{Study: snap.study, TrialsByState: map[string]int32{}}
	for _, t := range snap.trials {
		st.TrialsByState[StateName(t.State)]++
	}
	st.CommittedFlops = snap.committed()
	rec, err := s.recommend(ctx, snap, version)
	switch {
	case err == nil:
		st.Recommendation = rec
		if isTerminalStudy(snap.study.State) {
			s.keepFinalRecommendation(id, rec)
		}
	case errors.Is(err, ErrNoRecommendation):
	default:
		s.log.Warn("recommendation failed", zap.Uint64("study", id), zap.Error(err))
	}
	return st, nil
}

// ListStudies returns the status of every study, oldest first.
func (s *Scheduler) ListStudies(ctx context.Context) ([]*pb.StudyStatus, error) {
	var ids []uint64
	err := s.db.View(func(tx *store.Tx) error {
		studies, err := tx.Studies()
		for _, st := range studies {
			ids = append(ids, st.Id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*pb.StudyStatus, 0, len(ids))
	for _, id := range ids {
		st, err := s.StudyStatus(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Recommendation returns the study policy's recommended mixture at the target.
func (s *Scheduler) Recommendation(ctx context.Context, id uint64) (*pb.Recommendation, error) {
	version := s.version(id) // before the snapshot: see recommend
	snap, err := s.viewSnapshot(id)
	if err != nil {
		return nil, err
	}
	return s.recommend(ctx, snap, version)
}

type recCache struct {
	version uint64
	rec     *pb.Recommendation
}

func (s *Scheduler) version(studyID uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions[studyID]
}

// recommend computes, or takes from the cache, the recommendation from snap. version must
// have been read before snap was loaded: the version is bumped after every committed change
// of the study's data, so snap then holds every change up to version and a recommendation
// cached under it is the one a recomputation would give.
func (s *Scheduler) recommend(ctx context.Context, snap *studySnapshot, version uint64) (*pb.Recommendation, error) {
	id := snap.study.Id
	s.mu.Lock()
	cached, ok := s.recs[id]
	s.mu.Unlock()
	// A study that completes keeps its data version; its state is part of the answer.
	if ok && cached.version == version && cached.rec != nil && cached.rec.StudyState == snap.study.State {
		return cached.rec, nil
	}
	policy, err := s.cfg.NewPolicy(snap.study.Spec.Policy)
	if err != nil {
		return nil, err
	}
	req := snap.request(0)
	if len(req.Observations) == 0 {
		return nil, fmt.Errorf("study %d: %w", id, ErrNoRecommendation)
	}
	r, err := policy.Recommend(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("study %d: %v: %w", id, err, ErrNoRecommendation)
	}
	rec := &pb.Recommendation{
		StudyId: id, Mixture: r.Mixture, Value: r.Value, Lower: r.Lower, Upper: r.Upper,
		Basis: r.Basis, Trials: int32(len(req.Observations)),
	}
	describeRecommendation(rec, snap, r)
	s.mu.Lock()
	if s.versions[id] == version {
		s.recs[id] = recCache{version: version, rec: rec}
	}
	s.mu.Unlock()
	return rec, nil
}

// describeRecommendation says what a recommendation rests on, so that no display shows an
// extrapolation, a partial curve or a cancelled study's best as a value at the target.
func describeRecommendation(rec *pb.Recommendation, snap *studySnapshot, r bo.Recommendation) {
	spec := snap.study.Spec
	target := spec.Target
	finished := 0
	for _, t := range snap.trials {
		if t.State == pb.TrialState_TRIAL_STATE_SUCCEEDED && t.Scale == target.Scale && t.StepsDone >= target.Steps {
			finished++
		}
	}
	rec.TargetObserved = finished > 0
	rec.StudyState = snap.study.State
	targetName := fmt.Sprintf("the target (%s, %d steps)", target.Scale, target.Steps)
	switch {
	case r.Observed:
		rec.ValueObserved = true
		rec.Lower, rec.Upper = rec.Value, rec.Value
		if r.ObservedScale >= 0 && r.ObservedScale < len(spec.Scales) {
			rec.ObservedScale = spec.Scales[r.ObservedScale].Name
		}
		rec.ObservedSteps = r.ObservedSteps
		if rec.ObservedScale == target.Scale && rec.ObservedSteps >= target.Steps {
			rec.Label = "observed at " + targetName
		} else {
			rec.Label = fmt.Sprintf("observed at scale %s after %d steps, not at %s: no trial there has finished",
				rec.ObservedScale, rec.ObservedSteps, targetName)
		}
	case rec.TargetObserved:
		rec.HasInterval = rec.Lower < rec.Upper
		rec.Label = fmt.Sprintf("predicted at %s by the model, with %d trial(s) finished there", targetName, finished)
	default:
		rec.HasInterval = rec.Lower < rec.Upper
		rec.Label = fmt.Sprintf("extrapolated from smaller scales and shorter runs: no trial at %s has finished", targetName)
	}
	if st := snap.study.State; st == pb.StudyState_STUDY_STATE_CANCELLED || st == pb.StudyState_STUDY_STATE_FAILED {
		rec.Label += "; the study " + studyStateName(st) + " before it ended on its own"
	}
}
