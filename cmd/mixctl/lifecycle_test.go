package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestParseMixture(t *testing.T) {
	spec := &pb.StudySpec{Domains: []*pb.Domain{{Name: "web"}, {Name: "code"}, {Name: "books"}}}
	for _, tc := range []struct {
		in   string
		want []float64
		err  string
	}{
		{"0.2,0.3,0.5", []float64{0.2, 0.3, 0.5}, ""},
		{"books=0.5, web=0.2,code=0.3", []float64{0.2, 0.3, 0.5}, ""},
		{"web=0.2,code=0.8", nil, "2 of the study's 3 domains named"},
		{"web=0.2,web=0.3,books=0.5", nil, "web given twice"},
		{"web=0.2,math=0.3,books=0.5", nil, `"math" is not a domain`},
		{"web=0.2,0.3,books=0.5", nil, "give every weight as DOMAIN=WEIGHT"},
		{"0.2,x,0.5", nil, `"x" is not a number`},
		{"0.5,0.5", []float64{0.5, 0.5}, ""}, // the coordinator checks the count, naming the domains
	} {
		got, err := parseMixture(tc.in, spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != 2 {
				t.Errorf("%q: error %v, want a usage error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestEndedBadly(t *testing.T) {
	if err := endedBadly(&pb.Study{Id: 1, State: pb.StudyState_STUDY_STATE_COMPLETED}); err != nil {
		t.Errorf("completed: %v", err)
	}
	for _, st := range []pb.StudyState{pb.StudyState_STUDY_STATE_FAILED, pb.StudyState_STUDY_STATE_CANCELLED} {
		err := endedBadly(&pb.Study{Id: 4, State: st, EndReason: "why"})
		if err == nil || exitCode(err) != 1 || !strings.HasSuffix(err.Error(), ": why") {
			t.Errorf("%v: %v, want exit 1 with the reason", st, err)
		}
	}
}

// The recommendation's value shows an interval only from a model and names its basis.
func TestFormatValueShowsBasis(t *testing.T) {
	for _, tc := range []struct {
		r    *pb.Recommendation
		want string
	}{
		{&pb.Recommendation{Value: 3, Lower: 2.9, Upper: 3.1, HasInterval: true, TargetObserved: true}, "3.0000 [2.9000, 3.1000]"},
		{&pb.Recommendation{Value: 3, Lower: 2.9, Upper: 3.1, HasInterval: true}, "3.0000 [2.9000, 3.1000] extrapolated"},
		{&pb.Recommendation{Value: 3, Lower: 3, Upper: 3, ValueObserved: true, ObservedScale: "20M", ObservedSteps: 200}, "3.0000 observed at 20M/200"},
		{&pb.Recommendation{Value: 3, ValueObserved: true, ObservedScale: "1B", ObservedSteps: 2000, TargetObserved: true,
			StudyState: pb.StudyState_STUDY_STATE_CANCELLED}, "3.0000 observed at 1B/2000 (study cancelled)"},
	} {
		if got := formatValue(tc.r); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
	var out bytes.Buffer
	spec := &pb.StudySpec{Objective: &pb.Objective{Metric: "mean_ce"}, Domains: []*pb.Domain{{Name: "a"}}}
	printRecommendation(&out, spec, &pb.Recommendation{StudyId: 1, Mixture: []float64{1}, Value: 2, Label: "observed at the target (s, 10 steps)"})
	if !strings.Contains(out.String(), "\n  observed at the target (s, 10 steps)\n") {
		t.Errorf("best does not print the label:\n%s", out.String())
	}
}

func TestStudyGetShowsStateReasonAndSpec(t *testing.T) {
	var out bytes.Buffer
	c := &cli{out: &out, output: "table"}
	spec := &pb.StudySpec{Name: "demo", Policy: "mfms", BudgetFlops: 1e18, MaxConsecutiveFailures: 5,
		Domains: []*pb.Domain{{Name: "web", MaxWeight: 1}, {Name: "code", MaxWeight: 1}}, Objective: &pb.Objective{Metric: "mean_ce"},
		Target: &pb.Fidelity{Scale: "1B", Steps: 2000}}
	st := &pb.StudyStatus{
		Study: &pb.Study{Id: 3, Spec: spec, State: pb.StudyState_STUDY_STATE_FAILED, TrialsCreated: 5, ConsecutiveFailures: 5,
			EndReason: "5 trials in a row failed or were lost (max_consecutive_failures 5)"},
		TrialsByState: map[string]int32{"failed": 5},
		Recommendation: &pb.Recommendation{Mixture: []float64{0.5, 0.5}, Value: 3, Lower: 3, Upper: 3, ValueObserved: true,
			ObservedScale: "20M", ObservedSteps: 100, Label: "observed at scale 20M after 100 steps, not at the target"},
	}
	if err := printStudy(c, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"study 3 (demo): failed: 5 trials in a row failed or were lost (max_consecutive_failures 5)\n",
		"5 failed, 0 stopped, 0 lost; 5 failed in a row (limit 5)",
		"best: mean_ce = 3.0000 observed at 20M/100 (web=0.50 code=0.50)\n      observed at scale 20M after 100 steps, not at the target\n",
		"spec:\n  budget_flops: 1000000000000000000\n", // YAML that study create -f reads back
		"  target:\n    scale: 1B\n",
		"  max_consecutive_failures: 5\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("study get lacks %q:\n%s", want, out.String())
		}
	}
	// The spec shown is one study create -f reads back as the same spec.
	_, shown, _ := strings.Cut(out.String(), "spec:\n")
	path := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(shown, "\n  ", "\n")[2:]), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := readSpec(path)
	if err != nil || !proto.Equal(back, spec) {
		t.Errorf("spec read back = %v, %v; want %v", back, err, spec)
	}
}
