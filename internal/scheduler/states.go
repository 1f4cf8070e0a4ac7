package scheduler

import (
	"strings"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Names and classes of trial and study states.

// StateName is a trial state's short lower-case name ("running").
func StateName(st pb.TrialState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "TRIAL_STATE_"))
}

func studyStateName(st pb.StudyState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "STUDY_STATE_"))
}

func isTerminalStudy(st pb.StudyState) bool {
	return st == pb.StudyState_STUDY_STATE_COMPLETED || st == pb.StudyState_STUDY_STATE_CANCELLED ||
		st == pb.StudyState_STUDY_STATE_FAILED
}

func isActive(t *pb.Trial) bool {
	return t.State == pb.TrialState_TRIAL_STATE_RUNNING || t.State == pb.TrialState_TRIAL_STATE_PENDING
}
