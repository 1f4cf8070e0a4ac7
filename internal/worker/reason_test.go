package worker

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mixopt/mixopt/internal/scheduler"
)

func TestBoundReasonFitsTheCoordinatorsLimit(t *testing.T) {
	if maxReasonBytes != scheduler.MaxReasonBytes {
		t.Fatalf("worker bound %d, coordinator's %d", maxReasonBytes, scheduler.MaxReasonBytes)
	}
	if got := boundReason("short"); got != "short" {
		t.Errorf("short reason changed: %q", got)
	}
	// A traceback of multi-byte characters, cut where a character would be split.
	long := "Traceback " + strings.Repeat("é", maxReasonBytes)
	got := boundReason(long)
	if len(got) > maxReasonBytes || !utf8.ValidString(got) || !strings.HasPrefix(got, "Traceback é") || !strings.HasSuffix(got, "…") {
		t.Errorf("bounded reason: %d bytes, valid %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-8:])
	}
}
