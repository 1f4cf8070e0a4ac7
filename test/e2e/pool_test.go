package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A study restricted to a recording's mixtures (--pool) and started from its smallest
// scale's runs (--prior), through the real binaries: every trial is a pool mixture the
// recording answers exactly, none repeats a prior run, the prior costs nothing, and a
// restarted coordinator still shows them.
func TestPoolAndPriorStudy(t *testing.T) {
	c := newCluster(t, "10s")
	rec := filepath.Join(repoRoot(), "testdata", "recordings", "tiny-cpu.jsonl")
	pool := map[string][][]float64{}
	var prior []string
	priorMix := map[string]bool{}
	f, err := os.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var run struct {
			Scale   string    `json:"scale"`
			Mixture []float64 `json:"mixture"`
		}
		if err := json.Unmarshal(sc.Bytes(), &run); err != nil {
			t.Fatal(err)
		}
		pool[run.Scale] = append(pool[run.Scale], run.Mixture)
		if run.Scale == "tiny" {
			prior = append(prior, sc.Text())
			priorMix[key(run.Mixture)] = true
		}
	}
	f.Close()
	priorFile := filepath.Join(c.dir, "prior.jsonl")
	os.WriteFile(priorFile, []byte(strings.Join(prior, "\n")+"\n"), 0o644)
	spec, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "recording-study.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(c.dir, "spec.yaml")
	os.WriteFile(specPath, []byte(strings.Replace(string(spec), "max_trials: 24", "max_trials: 6", 1)), 0o644)

	c.coordinator()
	c.worker("w1", "20000", "-simulate", "recording:"+rec, "-slots", "2")
	eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		_, err := mixctl(t, c.addr, "study", "create", "-f", specPath, "--pool", rec, "--prior", priorFile)
		return err == nil
	})
	c.wait("3m")
	for _, tr := range c.trials() {
		if !inPoolE2E(pool[tr.Scale], tr.Mixture) {
			t.Errorf("trial %d at %s: %v is not a recorded mixture of that scale", tr.Id, tr.Scale, tr.Mixture)
		}
		if tr.State == pb.TrialState_TRIAL_STATE_SUCCEEDED && tr.SourceDistance != 0 {
			t.Errorf("trial %d replayed from distance %v, want an exact answer", tr.Id, tr.SourceDistance)
		}
		if tr.Scale == "tiny" && priorMix[key(tr.Mixture)] {
			t.Errorf("trial %d repeats a prior run at tiny", tr.Id)
		}
	}
	var st pb.StudyStatus
	mixctlJSON(t, c.addr, &st, "study", "get", "1")
	flopsPerStep := map[string]float64{}
	for _, sc := range st.Study.Spec.Scales {
		flopsPerStep[sc.Name] = sc.FlopsPerStep
	}
	var spent float64
	for _, tr := range c.trials() {
		spent += float64(tr.StepsDone) * flopsPerStep[tr.Scale]
	}
	if got := st.Study.SpentFlops; math.Abs(got-spent) > 1e-6*spent {
		t.Errorf("spent %v, the trials' own cost is %v: prior runs must be free", got, spent)
	}
	if r := st.Recommendation; r == nil || !inPoolE2E(pool["tiny-l"], r.Mixture) {
		t.Errorf("recommendation %v is not a recorded target mixture", r)
	}
	out, err := mixctl(t, c.addr, "study", "get", "1")
	wantPools := fmt.Sprintf("candidate pools: tiny: %d, tiny-m: %d, tiny-l: %d", len(pool["tiny"]), len(pool["tiny-m"]), len(pool["tiny-l"]))
	if err != nil || !strings.Contains(out, fmt.Sprintf("prior runs (free, observed from the first decision): tiny: %d", len(prior))) ||
		!strings.Contains(out, wantPools) {
		t.Fatalf("study get: %v\n%s", err, out)
	}
}

func key(w []float64) string { b, _ := json.Marshal(w); return string(b) }

func inPoolE2E(pool [][]float64, w []float64) bool {
	for _, m := range pool {
		same := len(m) == len(w)
		for i := 0; same && i < len(m); i++ {
			same = math.Abs(m[i]-w[i]) < 1e-9
		}
		if same {
			return true
		}
	}
	return false
}
