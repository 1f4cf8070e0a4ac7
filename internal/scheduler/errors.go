package scheduler

import "errors"

// Error classes. The gRPC adapters map them to status codes in one place
// (internal/coordinator), always through errors.Is.
var (
	// ErrInvalid marks bad input; the message names the field.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound marks an unknown study, trial or worker.
	ErrNotFound = errors.New("not found")
	// ErrStaleLease marks a report for a trial attempt the caller does not hold.
	ErrStaleLease = errors.New("lease not held")
	// ErrConflict marks a request that the current state does not allow
	// (resuming a cancelled study, finishing with points missing).
	ErrConflict = errors.New("not allowed in the current state")
	// ErrNoRecommendation means the study has no data to recommend from yet.
	ErrNoRecommendation = errors.New("no recommendation yet")
)
