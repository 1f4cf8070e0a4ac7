package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// CreateStudy validates the spec and stores a running study. Nothing is stored when the
// spec is invalid.
func (s *Scheduler) CreateStudy(ctx context.Context, spec *pb.StudySpec) (*pb.Study, error) {
	spec, err := NormalizeSpec(spec)
	if err != nil {
		return nil, err
	}
	if spec.MaxConsecutiveFailures < 0 || spec.MaxConsecutiveFailures > maxConsecutiveFailuresLimit {
		return nil, invalid("max_consecutive_failures", "%d is out of range (0 for the default %d, up to %d)",
			spec.MaxConsecutiveFailures, DefaultMaxConsecutiveFailures, maxConsecutiveFailuresLimit)
	}
	if spec.MaxConsecutiveFailures == 0 {
		spec.MaxConsecutiveFailures = DefaultMaxConsecutiveFailures
	}
	if err := s.checkAffordable(ctx, spec); err != nil {
		return nil, err
	}
	study := &pb.Study{Spec: spec, State: pb.StudyState_STUDY_STATE_RUNNING, CreateTimeUnixMs: unixMs(s.now())}
	err = s.db.Update(func(tx *store.Tx) error {
		id, err := tx.NextStudyID()
		if err != nil {
			return err
		}
		study.Id = id
		return tx.PutStudy(study)
	})
	if err != nil {
		return nil, fmt.Errorf("create study: %w", err)
	}
	s.log.Info("study created", zap.Uint64("study", study.Id), zap.String("policy", spec.Policy))
	s.notify()
	return study, nil
}

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

// PauseStudy stops new trials from starting; running ones finish.
func (s *Scheduler) PauseStudy(_ context.Context, id uint64) (*pb.Study, error) {
	return s.transitionStudy(id, pb.StudyState_STUDY_STATE_PAUSED, pb.StudyState_STUDY_STATE_RUNNING)
}

// ResumeStudy lets a paused study start trials again.
func (s *Scheduler) ResumeStudy(_ context.Context, id uint64) (*pb.Study, error) {
	return s.transitionStudy(id, pb.StudyState_STUDY_STATE_RUNNING, pb.StudyState_STUDY_STATE_PAUSED)
}

func (s *Scheduler) transitionStudy(id uint64, to, from pb.StudyState) (*pb.Study, error) {
	var out *pb.Study
	err := s.db.Update(func(tx *store.Tx) error {
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if st.State == to {
			out = st
			return nil
		}
		if st.State != from {
			return fmt.Errorf("study %d is %s, not %s: %w", id, studyStateName(st.State), studyStateName(from), ErrConflict)
		}
		st.State = to
		out = st
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	return out, nil
}

// CancelStudy ends a study: its running trials are stopped (their observed prefix is kept)
// and their workers told to stop at their next heartbeat or report.
func (s *Scheduler) CancelStudy(_ context.Context, id uint64) (*pb.Study, error) {
	st, err := s.endStudy(id, pb.StudyState_STUDY_STATE_CANCELLED, "cancelled")
	if err == nil && st.State != pb.StudyState_STUDY_STATE_CANCELLED {
		// Like pausing an ended study: cancelling one that ended otherwise is refused, so
		// the operator is not told it was cancelled. Cancelling a cancelled one repeats.
		return nil, fmt.Errorf("study %d is %s, not running or paused: %w", id, studyStateName(st.State), ErrConflict)
	}
	return st, err
}

// endStudy moves a study that has not ended to a terminal state with its reason; its
// running and pending trials are stopped (their observed prefix is kept) and their
// workers told to stop at their next heartbeat or report. An ended study is returned as
// it is.
func (s *Scheduler) endStudy(id uint64, to pb.StudyState, reason string) (*pb.Study, error) {
	var out *pb.Study
	var stopped []uint64
	err := s.db.Update(func(tx *store.Tx) error {
		stopped = stopped[:0]
		st, err := tx.Study(id)
		if err != nil {
			return wrapStore(err, fmt.Sprintf("study %d", id))
		}
		if isTerminalStudy(st.State) {
			out = st
			return nil
		}
		trials, err := tx.TrialsOfStudy(id)
		if err != nil {
			return err
		}
		now := unixMs(s.now())
		for _, t := range trials {
			if t.State != pb.TrialState_TRIAL_STATE_RUNNING && t.State != pb.TrialState_TRIAL_STATE_PENDING {
				continue
			}
			t.State = pb.TrialState_TRIAL_STATE_STOPPED
			t.FailureReason = "study " + studyStateName(to)
			t.EndTimeUnixMs = now
			if err := tx.PutTrial(t); err != nil {
				return err
			}
			stopped = append(stopped, t.Id)
		}
		st.State = to
		st.EndReason = reason
		st.EndTimeUnixMs = now
		out = st
		return tx.PutStudy(st)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, tid := range stopped {
		delete(s.leases, tid)
	}
	s.bumpLocked(id)
	s.notifyLocked()
	s.mu.Unlock()
	s.sealFinalRecommendation(id)
	s.log.Info("study ended", zap.Uint64("study", id), zap.String("state", studyStateName(out.State)),
		zap.String("reason", out.EndReason), zap.Int("stopped_trials", len(stopped)))
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

func isTerminalStudy(st pb.StudyState) bool {
	return st == pb.StudyState_STUDY_STATE_COMPLETED || st == pb.StudyState_STUDY_STATE_CANCELLED ||
		st == pb.StudyState_STUDY_STATE_FAILED
}

// StateName is a trial state's short lower-case name ("running").
func StateName(st pb.TrialState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "TRIAL_STATE_"))
}

func studyStateName(st pb.StudyState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "STUDY_STATE_"))
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
