package scheduler

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

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
