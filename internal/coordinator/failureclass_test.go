package coordinator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// failure_class wins; an older worker's error_class string is read only when it is
// unspecified; unknown values of either are InvalidArgument naming the field.
func TestFailureClassOf(t *testing.T) {
	for _, tc := range []struct {
		name      string
		enum      pb.FailureClass
		legacy    string
		want      pb.FailureClass
		wantField string // "" for success
	}{
		{"enum", pb.FailureClass_FAILURE_CLASS_DIVERGED, "", pb.FailureClass_FAILURE_CLASS_DIVERGED, ""},
		{"enum wins over string", pb.FailureClass_FAILURE_CLASS_OTHER, "oom", pb.FailureClass_FAILURE_CLASS_OTHER, ""},
		{"neither is other", 0, "", pb.FailureClass_FAILURE_CLASS_OTHER, ""},
		{"legacy oom", 0, "oom", pb.FailureClass_FAILURE_CLASS_OOM, ""},
		{"legacy diverged", 0, "diverged", pb.FailureClass_FAILURE_CLASS_DIVERGED, ""},
		{"legacy bad_data", 0, "bad_data", pb.FailureClass_FAILURE_CLASS_BAD_DATA, ""},
		{"legacy bad_input", 0, "bad_input", pb.FailureClass_FAILURE_CLASS_BAD_INPUT, ""},
		{"legacy other", 0, "other", pb.FailureClass_FAILURE_CLASS_OTHER, ""},
		{"legacy unknown", 0, "cosmic_ray", 0, "error_class"},
		{"legacy unspecified is not a name", 0, "unspecified", 0, "error_class"},
		{"unknown enum", pb.FailureClass(42), "", 0, "failure_class"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			//lint:ignore SA1019 the deprecated field is the fallback under test
			got, err := failureClassOf(&pb.FailTrialRequest{FailureClass: tc.enum, ErrorClass: tc.legacy})
			if tc.wantField != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tc.wantField+":") {
					t.Fatalf("err %v, want InvalidArgument naming %s", err, tc.wantField)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
