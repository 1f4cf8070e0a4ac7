package scheduler

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// An ended study keeps the recommendation it had when it ended: its status after a
// restart answers it without recomputing (the policy is not asked) and unchanged.
func TestEndedStudyKeepsItsRecommendation(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 2 })
	for i := 0; i < 2; i++ {
		a := e.mustAcquire(w)
		e.runToEnd(heldOf(w, a), a.Trial.Steps)
	}
	ended := e.study(st.Id)
	if ended.Study.State != pb.StudyState_STUDY_STATE_COMPLETED || ended.Recommendation == nil {
		t.Fatalf("study %v, recommendation %v", ended.Study.State, ended.Recommendation)
	}
	e.restart()
	asked := e.policy.recommendCalls()
	again := e.study(st.Id)
	if !proto.Equal(again.Recommendation, ended.Recommendation) || again.Study.FinalRecommendation != nil {
		t.Errorf("after a restart: %v, want %v (shown once)", again.Recommendation, ended.Recommendation)
	}
	if n := e.policy.recommendCalls(); n != asked {
		t.Errorf("the policy was asked %d more times for an ended study's recommendation", n-asked)
	}
	if again.TrialsByState["succeeded"] != 2 {
		t.Errorf("trial counts %v", again.TrialsByState)
	}
	if _, err := e.s.StudyStatus(context.Background(), 999); err == nil {
		t.Error("status of a missing study answered")
	}
}

// A study that ended before recommendations were kept (its record has none) is read
// from its curves at its first status only; that answer is kept for the next ones.
func TestEndedStudyWithoutKeptRecommendationKeepsItOnce(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
	a := e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), a.Trial.Steps)
	if err := e.db.Update(func(tx *store.Tx) error {
		old, err := tx.Study(st.Id)
		if err != nil {
			return err
		}
		old.FinalRecommendation = nil // as a database written before the field existed
		return tx.PutStudy(old)
	}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	before := e.policy.recommendCalls()
	if e.study(st.Id).Recommendation == nil {
		t.Fatal("no recommendation for the ended study")
	}
	if n := e.policy.recommendCalls() - before; n != 1 {
		t.Fatalf("first status asked the policy %d times, want 1", n)
	}
	e.study(st.Id)
	if n := e.policy.recommendCalls() - before; n != 1 {
		t.Errorf("second status asked the policy again (%d calls in all)", n)
	}
}
