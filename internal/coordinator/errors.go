// Package coordinator adapts the scheduler to gRPC: it checks each request's fields, calls
// the scheduler and maps its error classes to status codes. It holds no domain rules.
package coordinator

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
)

// toStatus is the one mapper from error class to gRPC code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, scheduler.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, scheduler.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, scheduler.ErrStaleLease), errors.Is(err, scheduler.ErrConflict):
		code = codes.FailedPrecondition
	case errors.Is(err, scheduler.ErrNoRecommendation):
		// Not "retry later" (Unavailable means the coordinator is away): the study
		// lacks the data, and asking again helps only once trials finish.
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrWrite):
		// Nothing of the write was kept and it may succeed later (the disk has room
		// again): workers buffer and retry, as when the coordinator is away.
		code = codes.Unavailable
	case errors.Is(err, store.ErrCorrupt):
		code = codes.DataLoss
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

func missing(field string) error {
	return status.Errorf(codes.InvalidArgument, "%s: missing", field)
}
