// Command mixctl operates a mixopt coordinator: create and steer studies, and see what
// they are doing. Exit codes: 0 success, 1 other error, 2 usage, 3 invalid argument,
// 4 not found, 5 failed precondition, 6 coordinator unavailable, 7 unauthenticated,
// 8 permission denied.
package main

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func main() {
	cmd := newRootCmd(os.Stdout)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mixctl:", errorMessage(err))
		os.Exit(exitCode(err))
	}
}

// usageError marks mistakes in the command line itself.
type usageError struct{ error }

// exitCode is the one map from an error to mixctl's documented exit codes.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	st, ok := status.FromError(err)
	if !ok {
		return 1
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return 3
	case codes.NotFound:
		return 4
	case codes.FailedPrecondition:
		return 5
	case codes.Unavailable, codes.DeadlineExceeded:
		return 6
	case codes.Unauthenticated:
		return 7
	case codes.PermissionDenied:
		return 8
	}
	return 1
}

func errorMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	return err.Error()
}
