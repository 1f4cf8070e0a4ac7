package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// faultSpec is a study of equal trials: one scale, one step budget, 40 points each.
func faultSpec(maxTrials, maxParallel int) string {
	return fmt.Sprintf(`
name: e2e-faults
domains: [{name: web}, {name: code}, {name: books}]
scales: [{name: large, params: 1.0e9, tokens_per_step: 65536}]
steps: [1000]
eval_every: 25
objective: {metric: mean_ce}
target: {scale: large, steps: 1000}
budget_flops: 1.0e30
max_parallel: %d
max_trials: %d
policy: random
seed: 11
workers: {kinds: [WORKER_KIND_SIMULATED]}
# Fault tests inject failures on purpose: the failure budget must not end them.
max_consecutive_failures: 1000
`, maxParallel, maxTrials)
}

type cluster struct {
	t    *testing.T
	dir  string
	addr string
	args []string
}

func newCluster(t *testing.T, leaseTTL string) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, addr: testutil.FreeAddr(t)}
	c.args = []string{"-listen", c.addr, "-http-listen", "127.0.0.1:0", "-init", "-db", filepath.Join(dir, "mixopt.db"), "-lease-ttl", leaseTTL,
		"-restart-grace", "20s", "-log-level", "debug"}
	return c
}

func (c *cluster) coordinator() *proc { return start(c.t, c.dir, "coordinator", c.args...) }

// worker starts a simulated worker; one 1000-step trial replays in about 1000/speedup x 39 s.
func (c *cluster) worker(name string, speedup string, extra ...string) *proc {
	args := append([]string{"-coordinator", c.addr, "-hostname", name, "-simulate", "synthetic",
		"-speedup", speedup, "-slots", "1", "-log-level", "debug"}, extra...)
	return start(c.t, c.dir, "worker", args...)
}

func (c *cluster) createStudy(spec string) {
	c.t.Helper()
	path := filepath.Join(c.dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		c.t.Fatal(err)
	}
	eventually(c.t, 30*time.Second, "coordinator to serve", func() bool {
		_, err := mixctl(c.t, c.addr, "study", "create", "-f", path)
		return err == nil
	})
}

func (c *cluster) wait(limit string) {
	c.t.Helper()
	if _, err := mixctl(c.t, c.addr, "study", "wait", "1", "--limit", limit); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) trials() []*pb.Trial {
	c.t.Helper()
	var resp pb.ListTrialsResponse
	mixctlJSON(c.t, c.addr, &resp, "trials", "1")
	return resp.Trials
}

// checkCurve asserts the trial's current attempt holds each of its points exactly once.
func (c *cluster) checkCurve(tr *pb.Trial, every int64) {
	c.t.Helper()
	var got pb.GetTrialResponse
	mixctlJSON(c.t, c.addr, &got, "trial", fmt.Sprint(tr.Id))
	want := int(tr.StepsDone / every)
	if tr.State == pb.TrialState_TRIAL_STATE_SUCCEEDED {
		want = int(tr.Steps / every)
	}
	if len(got.Points) != want {
		c.t.Errorf("trial %d: %d points, want %d", tr.Id, len(got.Points), want)
	}
	for i, p := range got.Points {
		if p.Seq != uint64(i+1) || p.Step != every*int64(i+1) {
			c.t.Errorf("trial %d: point %d has seq %d step %d", tr.Id, i, p.Seq, p.Step)
			return
		}
	}
}

// runningWithPoints waits until some trial runs with points committed and returns it.
func (c *cluster) runningWithPoints() *pb.Trial {
	c.t.Helper()
	var found *pb.Trial
	eventually(c.t, time.Minute, "a running trial with points", func() bool {
		for _, tr := range c.trials() {
			if tr.State == pb.TrialState_TRIAL_STATE_RUNNING && tr.LastSeq > 0 {
				found = tr
				return true
			}
		}
		return false
	})
	return found
}

// Kill -9 the coordinator three times during a study with four workers: the study ends
// with the planned trials, every point exactly once, and no trial ran twice.
func TestCoordinatorKilledThreeTimes(t *testing.T) {
	c := newCluster(t, "15s")
	coord := c.coordinator()
	for i := 1; i <= 4; i++ {
		c.worker(fmt.Sprintf("w%d", i), "500") // about 3 s a trial: time for three kills
	}
	c.createStudy(faultSpec(16, 4))
	for kill := 1; kill <= 3; kill++ {
		c.runningWithPoints()
		coord.kill9(t)
		time.Sleep(500 * time.Millisecond)
		coord = c.coordinator()
	}
	c.wait("3m")
	trials := c.trials()
	if len(trials) != 16 {
		t.Fatalf("%d trials, want the 16 planned", len(trials))
	}
	for _, tr := range trials {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 1 {
			t.Errorf("trial %d: %s attempt %d %v; want succeeded on its only attempt", tr.Id, tr.State, tr.Attempt, tr.ReasonHistory)
		}
		c.checkCurve(tr, 25)
	}
}

// Kill -9 a worker mid-trial: its lease expires, the trial is requeued and another worker
// completes it as a new attempt.
func TestWorkerKilledMidTrial(t *testing.T) {
	c := newCluster(t, "3s")
	c.coordinator()
	a := c.worker("doomed", "400") // a trial takes about 4 s
	c.createStudy(faultSpec(1, 1))
	victim := c.runningWithPoints()
	a.kill9(t)
	c.worker("rescuer", "400")
	c.wait("2m")
	trials := c.trials()
	if len(trials) != 1 {
		t.Fatalf("%d trials, want 1", len(trials))
	}
	tr := trials[0]
	if tr.Id != victim.Id || tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 2 ||
		len(tr.ReasonHistory) != 1 || !strings.Contains(tr.ReasonHistory[0], "lease expired") {
		t.Fatalf("trial %d: %s attempt %d %v; want succeeded on attempt 2 after a lease expiry",
			tr.Id, tr.State, tr.Attempt, tr.ReasonHistory)
	}
	c.checkCurve(tr, 25)
}

// A restarted worker reports the trials it no longer runs: they are requeued at once.
func TestWorkerRestartRequeuesAtOnce(t *testing.T) {
	c := newCluster(t, "60s") // far longer than the test: only the restart can requeue
	c.coordinator()
	state := filepath.Join(c.dir, "worker-state")
	a := c.worker("phoenix", "400", "-state-dir", state)
	c.createStudy(faultSpec(1, 1))
	c.runningWithPoints()
	a.kill9(t)
	c.worker("phoenix", "400", "-state-dir", state)
	c.wait("2m")
	tr := c.trials()[0]
	if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 2 ||
		len(tr.ReasonHistory) != 1 || !strings.Contains(tr.ReasonHistory[0], "restarted") {
		t.Fatalf("trial %d: %s attempt %d %v; want succeeded on attempt 2 after the restart", tr.Id, tr.State, tr.Attempt, tr.ReasonHistory)
	}
	var workers pb.ListWorkersResponse
	mixctlJSON(t, c.addr, &workers, "workers")
	if len(workers.Workers) != 1 {
		t.Fatalf("%d workers registered, want the restarted one under its old id", len(workers.Workers))
	}
	c.checkCurve(tr, 25)
}

// Freeze a worker past its lease, then thaw it: its stale reports are refused, it fences
// itself, and nothing is duplicated.
func TestFrozenWorkerFencesItself(t *testing.T) {
	c := newCluster(t, "3s")
	c.coordinator()
	frozen := c.worker("frozen", "400")
	c.createStudy(faultSpec(1, 1))
	victim := c.runningWithPoints()
	frozen.signal(syscall.SIGSTOP)
	c.worker("rescuer", "400")
	eventually(t, time.Minute, "the trial to be requeued to the rescuer", func() bool {
		tr := c.trials()[0]
		return tr.Attempt == 2 && tr.State == pb.TrialState_TRIAL_STATE_RUNNING
	})
	frozen.signal(syscall.SIGCONT)
	c.wait("2m")
	tr := c.trials()[0]
	if tr.Id != victim.Id || tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 2 {
		t.Fatalf("trial %d: %s attempt %d; want succeeded on attempt 2", tr.Id, tr.State, tr.Attempt)
	}
	c.checkCurve(tr, 25)
	eventually(t, 30*time.Second, "the thawed worker to stop its stale attempt", func() bool {
		b, _ := os.ReadFile(frozen.log)
		return strings.Contains(string(b), "fence limit") || strings.Contains(string(b), "lease refused") ||
			strings.Contains(string(b), "coordinator asked to stop")
	})
}

// Training failures are classified: deterministic ones fail the trial, crashes are retried
// up to the delivery limit, and the worker keeps taking trials.
func TestTrainingFailuresAreClassified(t *testing.T) {
	c := newCluster(t, "10s")
	c.coordinator()
	c.worker("flaky", "20000", "-inject-faults", "0.6:crash,oom,diverged")
	c.createStudy(faultSpec(12, 2))
	c.wait("2m")
	counts := map[pb.TrialState]int{}
	for _, tr := range c.trials() {
		counts[tr.State]++
		switch tr.State {
		case pb.TrialState_TRIAL_STATE_FAILED:
			if !strings.HasPrefix(tr.FailureReason, "oom: ") && !strings.HasPrefix(tr.FailureReason, "diverged: ") {
				t.Errorf("trial %d failed with %q, want a deterministic class", tr.Id, tr.FailureReason)
			}
		case pb.TrialState_TRIAL_STATE_LOST:
			if tr.Attempt != 3 || len(tr.ReasonHistory) != 3 {
				t.Errorf("lost trial %d after %d attempts %v, want 3", tr.Id, tr.Attempt, tr.ReasonHistory)
			}
		case pb.TrialState_TRIAL_STATE_SUCCEEDED:
			for _, why := range tr.ReasonHistory {
				if !strings.Contains(why, "other: injected fault: crash") {
					t.Errorf("trial %d retried after %q, want only crashes retried", tr.Id, why)
				}
			}
			c.checkCurve(tr, 25)
		default:
			t.Errorf("trial %d ended %s", tr.Id, tr.State)
		}
	}
	if counts[pb.TrialState_TRIAL_STATE_FAILED] == 0 || counts[pb.TrialState_TRIAL_STATE_SUCCEEDED] == 0 {
		t.Errorf("trial outcomes %v: want both failures and successes from one healthy worker", counts)
	}
	var workers pb.ListWorkersResponse
	mixctlJSON(t, c.addr, &workers, "workers")
	if len(workers.Workers) != 1 || workers.Workers[0].State != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Errorf("workers after the faults: %v", workers.Workers)
	}
}
