package worker

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Faults injects training failures into simulated runs, for fault tests and drills: an
// attempt fails with probability Rate, halfway through its curve, with a class drawn from
// Classes. The draw is a function of (trial, attempt), so a retried attempt may succeed.
type Faults struct {
	Rate    float64
	Classes []string
}

// faultClasses are the injectable faults (the -inject-faults names) and the failure
// class each reports.
var faultClasses = map[string]pb.FailureClass{
	"crash":    pb.FailureClass_FAILURE_CLASS_OTHER,
	"oom":      pb.FailureClass_FAILURE_CLASS_OOM,
	"diverged": pb.FailureClass_FAILURE_CLASS_DIVERGED,
	"bad_data": pb.FailureClass_FAILURE_CLASS_BAD_DATA,
}

// ParseFaults reads "RATE:CLASS[,CLASS...]", for example "0.3:crash,oom,diverged".
func ParseFaults(s string) (*Faults, error) {
	if s == "" {
		return nil, nil
	}
	rateStr, classes, ok := strings.Cut(s, ":")
	rate, err := strconv.ParseFloat(rateStr, 64)
	if !ok || err != nil || rate < 0 || rate > 1 {
		return nil, fmt.Errorf("faults %q: want RATE:CLASS[,CLASS...] with RATE in [0, 1]", s)
	}
	f := &Faults{Rate: rate}
	for _, c := range strings.Split(classes, ",") {
		if _, ok := faultClasses[c]; !ok {
			return nil, fmt.Errorf("faults %q: unknown class %q (known: crash, oom, diverged, bad_data)", s, c)
		}
		f.Classes = append(f.Classes, c)
	}
	return f, nil
}

// draw says whether (trial, attempt) fails and how.
func (f *Faults) draw(trialID uint64, attempt int32) (*RunError, bool) {
	if f == nil || f.Rate == 0 {
		return nil, false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", trialID, attempt)
	u := h.Sum64()
	if float64(u%1_000_000)/1_000_000 >= f.Rate {
		return nil, false
	}
	c := f.Classes[(u/1_000_000)%uint64(len(f.Classes))]
	return &RunError{Class: faultClasses[c], Reason: "injected fault: " + c}, true
}
