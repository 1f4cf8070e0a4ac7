package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// lifecycleSpec is a study of simulated 1000-step trials at one scale.
const lifecycleSpec = `
name: e2e-lifecycle
domains: [{name: web}, {name: code}, {name: books}]
scales: [{name: large, params: 1.0e9, tokens_per_step: 65536}]
steps: [500, 1000]
eval_every: 100
objective: {metric: mean_ce}
target: {scale: large, steps: 1000}
budget_flops: 1.0e30
max_parallel: 1
policy: random-mf
seed: 5
workers: {kinds: [WORKER_KIND_SIMULATED]}
`

func (c *cluster) writeSpec(name, spec string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) code(args ...string) (int, string) {
	c.t.Helper()
	return mixctlCode(c.t, nil, append([]string{"--addr", c.addr}, args...)...)
}

func (c *cluster) studyStatus(id string) *pb.StudyStatus {
	c.t.Helper()
	var st pb.StudyStatus
	mixctlJSON(c.t, c.addr, &st, "study", "get", id)
	return &st
}

// A worker whose every trial fails for bad data ends the study failed after
// max_consecutive_failures trials, and study wait exits non-zero saying why.
func TestFailedStudyEndsWaitNonZero(t *testing.T) {
	c := newCluster(t, "10s")
	c.coordinator()
	c.createStudy(lifecycleSpec + "max_trials: 40\nmax_consecutive_failures: 3\n")
	broken := c.worker("broken", "20000", "-inject-faults", "1:bad_data")
	code, out := c.code("study", "wait", "1", "--limit", "2m")
	if code != 1 || !strings.Contains(out, "study 1 failed: 3 trials in a row failed") {
		t.Fatalf("study wait exited %d, want 1 naming the failure:\n%s", code, out)
	}
	st := c.studyStatus("1")
	if st.Study.State != pb.StudyState_STUDY_STATE_FAILED || st.Study.TrialsCreated != 3 || st.TrialsByState["failed"] != 3 {
		t.Errorf("study %v with %d trials %v, want failed after 3", st.Study.State, st.Study.TrialsCreated, st.TrialsByState)
	}
	if !strings.Contains(st.Study.EndReason, "bad_data") {
		t.Errorf("end reason %q does not give the trials' failure", st.Study.EndReason)
	}
	// A cancelled study makes wait exit non-zero too (no worker may fail it first).
	broken.kill9(t)
	c.createStudy(lifecycleSpec)
	if _, err := mixctl(t, c.addr, "study", "cancel", "2"); err != nil {
		t.Fatal(err)
	}
	if code, out := c.code("study", "wait", "2"); code != 1 || !strings.Contains(out, "study 2 cancelled") {
		t.Errorf("wait on a cancelled study exited %d:\n%s", code, out)
	}
}

// The first finished trial that lacks the objective fails the study, naming what the
// simulator does report.
func TestUnreportedObjectiveFailsStudy(t *testing.T) {
	c := newCluster(t, "10s")
	c.coordinator()
	c.worker("sim", "20000")
	spec := strings.Replace(lifecycleSpec, "objective: {metric: mean_ce}",
		"extra_metrics: [hellaswag_acc]\nobjective: {metric: hellaswag_acc, maximize: true}", 1)
	c.createStudy(spec + "max_trials: 50\n")
	code, out := c.code("study", "wait", "1", "--limit", "2m")
	if code != 1 || !strings.Contains(out, `without reporting the objective "hellaswag_acc"; its curve reports: `) ||
		!strings.Contains(out, "mean_ce") {
		t.Fatalf("study wait exited %d:\n%s", code, out)
	}
	if st := c.studyStatus("1"); st.Study.TrialsCreated != 1 {
		t.Errorf("%d trials created, want the study to stop at the first", st.Study.TrialsCreated)
	}
}

// An operator refuses a budget too small for any trial, changes a study's limits, adds
// the trial to confirm, sees the recommendation's basis, deletes the study and forgets a
// lost worker; a study that takes real workers only gets nothing from a simulated one.
func TestOperatorLifecycle(t *testing.T) {
	c := newCluster(t, "5s")
	c.coordinator()
	tiny := c.writeSpec("tiny.yaml", strings.Replace(lifecycleSpec, "budget_flops: 1.0e30", "budget_flops: 1.0e12", 1))
	eventually(t, 30*time.Second, "coordinator to serve", func() bool { code, _ := c.code("studies"); return code == 0 })
	if code, out := c.code("study", "create", "-f", tiny); code != 3 || !strings.Contains(out, "budget_flops") {
		t.Fatalf("tiny budget: exit %d, want 3 naming budget_flops:\n%s", code, out)
	}
	c.createStudy(lifecycleSpec + "max_trials: 1\n")
	realOnly := c.writeSpec("real.yaml", strings.Replace(lifecycleSpec, "workers: {kinds: [WORKER_KIND_SIMULATED]}", "", 1))
	if _, err := mixctl(t, c.addr, "study", "create", "-f", realOnly); err != nil {
		t.Fatal(err)
	}
	if _, err := mixctl(t, c.addr, "study", "update", "1", "--max-trials", "3"); err != nil {
		t.Fatal(err)
	}
	if code, out := c.code("study", "update", "1", "--max-parallel", "0"); code != 3 || !strings.Contains(out, "max_parallel") {
		t.Errorf("max-parallel 0: exit %d:\n%s", code, out)
	}
	out, err := mixctl(t, c.addr, "trial", "add", "1", "--mixture", "books=0.5,web=0.2,code=0.3", "--scale", "large", "--steps", "1000")
	if err != nil || !strings.Contains(out, "trial 1 added to study 1") {
		t.Fatalf("trial add: %v\n%s", err, out)
	}
	if code, out := c.code("trial", "add", "1", "--mixture", "0.5,0.6,0.1", "--scale", "large", "--steps", "1000"); code != 3 {
		t.Errorf("a mixture summing to 1.2: exit %d, want 3:\n%s", code, out)
	}
	w := c.worker("sim", "20000", "-slots", "2")
	c.wait("2m")
	trials := c.trials()
	if len(trials) != 3 {
		t.Fatalf("%d trials, want 3 (the cap raised to 3, the hand-added one among them)", len(trials))
	}
	manual := trials[0]
	if !manual.Manual || manual.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || manual.Mixture[0] != 0.2 || manual.Mixture[2] != 0.5 {
		t.Errorf("hand-added trial = %v", manual)
	}
	for _, tr := range trials[1:] {
		if tr.StartTimeUnixMs < manual.StartTimeUnixMs {
			t.Errorf("trial %d started before the hand-added one", tr.Id)
		}
	}
	// The worker had a free slot all along: the real-only study never got a trial from it.
	if st := c.studyStatus("2"); st.Study.TrialsCreated != 0 {
		t.Errorf("a simulated worker ran %d trials of a study for real workers", st.Study.TrialsCreated)
	}
	var rec pb.Recommendation
	mixctlJSON(t, c.addr, &rec, "best", "1")
	if !rec.TargetObserved || !rec.ValueObserved || rec.HasInterval || !strings.HasPrefix(rec.Label, "observed at the target (large, 1000 steps)") {
		t.Errorf("recommendation = %v", &rec)
	}
	if out, err := mixctl(t, c.addr, "best", "1"); err != nil || !strings.Contains(out, rec.Label) {
		t.Errorf("best does not show the basis %q: %v\n%s", rec.Label, err, out)
	}

	if code, out := c.code("study", "delete", "2"); code != 5 {
		t.Errorf("deleting a running study: exit %d, want 5:\n%s", code, out)
	}
	if out, err := mixctl(t, c.addr, "study", "delete", "1"); err != nil || !strings.Contains(out, "deleted with 3 trials") {
		t.Errorf("study delete: %v\n%s", err, out)
	}
	if code, _ := c.code("study", "get", "1"); code != 4 {
		t.Errorf("study get of a deleted study: exit %d, want 4", code)
	}

	if code, _ := c.code("workers", "forget", "1"); code != 5 {
		t.Errorf("forgetting a live worker: exit %d, want 5", code)
	}
	w.kill9(t)
	eventually(t, 30*time.Second, "the killed worker to be forgotten", func() bool {
		code, _ := c.code("workers", "forget", "1")
		return code == 0
	})
	var ws pb.ListWorkersResponse
	mixctlJSON(t, c.addr, &ws, "workers")
	if len(ws.Workers) != 0 {
		t.Errorf("workers after forget: %v", ws.Workers)
	}
}
