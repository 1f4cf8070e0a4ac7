package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestLineNamesBinaryAndGo(t *testing.T) {
	l := Line("worker")
	if !strings.HasPrefix(l, "mixopt worker ") || !strings.HasSuffix(l, runtime.Version()) {
		t.Fatalf("Line = %q", l)
	}
}
