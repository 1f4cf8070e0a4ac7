package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const restartSpec = `
name: e2e-restart
domains: [{name: web}, {name: code}, {name: books}]
scales:
  - {name: small, params: 2.0e7, tokens_per_step: 65536}
  - {name: large, params: 1.0e9, tokens_per_step: 65536}
steps: [500, 1000]
eval_every: 50
objective: {metric: mean_ce}
target: {scale: large, steps: 1000}
budget_flops: 1.0e30
max_parallel: 4
max_trials: 12
policy: random-mf
seed: 3
workers: {kinds: [WORKER_KIND_SIMULATED]}
`

// TestCoordinatorKill9MidStudy runs a coordinator and two simulated workers through a
// study, kills the coordinator with SIGKILL while trials run, restarts it on the same
// database and address, and checks that the study ends with every planned trial once and
// every point exactly once.
func TestCoordinatorKill9MidStudy(t *testing.T) {
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	db := filepath.Join(dir, "mixopt.db")
	coordArgs := []string{"-listen", addr, "-http-listen", "127.0.0.1:0", "-init", "-db", db, "-lease-ttl", "10s", "-restart-grace", "20s", "-log-level", "debug"}
	coord := start(t, dir, "coordinator", coordArgs...)
	for i := 1; i <= 2; i++ {
		// A trial of 1000 steps at the large scale replays in about 5 s.
		start(t, dir, "worker", "-coordinator", addr, "-hostname", fmt.Sprintf("w%d", i),
			"-simulate", "synthetic", "-speedup", "700", "-slots", "2")
	}
	specPath := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(specPath, []byte(restartSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		_, err := mixctl(t, addr, "study", "create", "-f", specPath)
		return err == nil
	})

	// Kill while trials are running and some points are committed.
	eventually(t, time.Minute, "running trials with committed points", func() bool {
		var trials pb.ListTrialsResponse
		mixctlJSON(t, addr, &trials, "trials", "1")
		running, withPoints, succeeded := 0, 0, 0
		for _, tr := range trials.Trials {
			switch tr.State {
			case pb.TrialState_TRIAL_STATE_RUNNING:
				running++
				if tr.LastSeq > 0 {
					withPoints++
				}
			case pb.TrialState_TRIAL_STATE_SUCCEEDED:
				succeeded++
			}
		}
		if succeeded == 12 {
			t.Fatal("study finished before the coordinator was killed; slow the replay down")
		}
		return running >= 2 && withPoints >= 1
	})
	coord.kill9(t)
	time.Sleep(time.Second) // workers keep replaying and buffer their points meanwhile
	start(t, dir, "coordinator", coordArgs...)

	if _, err := mixctl(t, addr, "study", "wait", "1", "--limit", "3m"); err != nil {
		t.Fatal(err)
	}
	var trials pb.ListTrialsResponse
	mixctlJSON(t, addr, &trials, "trials", "1")
	if len(trials.Trials) != 12 {
		t.Fatalf("study has %d trials, want the 12 planned", len(trials.Trials))
	}
	for _, tr := range trials.Trials {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 1 {
			t.Errorf("trial %d: %s attempt %d, want succeeded on its first attempt (%v)", tr.Id, tr.State, tr.Attempt, tr.ReasonHistory)
			continue
		}
		var got pb.GetTrialResponse
		mixctlJSON(t, addr, &got, "trial", fmt.Sprint(tr.Id))
		want := int(tr.Steps / 50)
		if len(got.Points) != want {
			t.Errorf("trial %d: %d points, want %d (one every 50 of %d steps)", tr.Id, len(got.Points), want, tr.Steps)
		}
		for i, p := range got.Points {
			if p.Seq != uint64(i+1) || p.Step != int64(50*(i+1)) {
				t.Errorf("trial %d: point %d has seq %d step %d, want seq %d step %d", tr.Id, i, p.Seq, p.Step, i+1, 50*(i+1))
				break
			}
		}
	}

	// mixctl status -o json reports the finished study and its recommendation.
	out, err := mixctl(t, addr, "status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Studies []json.RawMessage `json:"studies"`
		Workers []json.RawMessage `json:"workers"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if len(status.Studies) != 1 || len(status.Workers) != 2 {
		t.Fatalf("status lists %d studies and %d workers, want 1 and 2:\n%s", len(status.Studies), len(status.Workers), out)
	}
	var st pb.StudyStatus
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(status.Studies[0], &st); err != nil {
		t.Fatal(err)
	}
	if st.Study.State != pb.StudyState_STUDY_STATE_COMPLETED || st.TrialsByState["succeeded"] != 12 {
		t.Fatalf("status: state %s, %v; want completed with 12 succeeded", st.Study.State, st.TrialsByState)
	}
	if st.Recommendation == nil || len(st.Recommendation.Mixture) != 3 {
		t.Fatalf("status has no recommendation: %v", st.Recommendation)
	}
}
