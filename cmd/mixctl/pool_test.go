package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const recLine = `{"format":"mixopt.recording.v1","run_id":"%s","domains":["code","web"],"mixture":[%s],"scale":"%s","params":1e6,"steps":100,"tokens_per_step":10,"points":[{"step":100,"tokens":1000,"train_loss":3,"eval":{"web_ce":2.5},"wall_time_s":1}]}`

func recording(t *testing.T, lines ...[3]string) string {
	var b strings.Builder
	for _, l := range lines {
		s := strings.Replace(recLine, "%s", l[0], 1)
		s = strings.Replace(s, "%s", l[1], 1)
		b.WriteString(strings.Replace(s, "%s", l[2], 1) + "\n")
	}
	path := filepath.Join(t.TempDir(), "rec.jsonl")
	os.WriteFile(path, []byte(b.String()), 0o644)
	return path
}

// --pool and --prior turn a recording into pools and prior runs, reordering mixtures into
// the spec's domain order and leaving out runs at scales the spec lacks.
func TestAddRecordings(t *testing.T) {
	spec := &pb.StudySpec{Domains: []*pb.Domain{{Name: "web"}, {Name: "code"}},
		Scales: []*pb.Scale{{Name: "1M"}, {Name: "1B"}}}
	rec := recording(t, [3]string{"a", "0.2,0.8", "1M"}, [3]string{"b", "0.6,0.4", "1b"}, [3]string{"c", "0.5,0.5", "60M"})
	notes, err := addRecordings(spec, []string{rec}, []string{rec})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Scales[0].Pool) != 1 || spec.Scales[0].Pool[0].Weights[0] != 0.8 || len(spec.Scales[1].Pool) != 1 {
		t.Fatalf("pools %v %v", spec.Scales[0].Pool, spec.Scales[1].Pool)
	}
	if len(spec.PriorRuns) != 2 || spec.PriorRuns[1].Scale != "1B" || spec.PriorRuns[1].Mixture[0] != 0.4 ||
		spec.PriorRuns[0].Curve[0].Eval["web_ce"] != 2.5 || spec.PriorRuns[0].SourceRun != "a" {
		t.Fatalf("prior runs %v", spec.PriorRuns)
	}
	if len(notes) != 2 || !strings.Contains(notes[0], "1 runs at scale 60M") {
		t.Fatalf("notes %v", notes)
	}
	other := &pb.StudySpec{Domains: []*pb.Domain{{Name: "web"}, {Name: "books"}}, Scales: []*pb.Scale{{Name: "1M"}}}
	if _, err := addRecordings(other, []string{rec}, nil); err == nil || !strings.Contains(err.Error(), `no domain "books"`) {
		t.Fatalf("other domains: %v", err)
	}
	if got, _ := poolAndPriorSummary(spec); got != "1M: 1, 1B: 1" {
		t.Fatalf("summary %q", got)
	}
}
