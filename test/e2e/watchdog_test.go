package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// longTrainSpec is one real CPU trial far longer than the test.
const longTrainSpec = `
name: e2e-watchdog
domains: [{name: prose}, {name: code}, {name: math}]
scales: [{name: tiny, params: 127296, tokens_per_step: 1024}]
steps: [100000]
eval_every: 10
objective: {metric: mean_ce}
target: {scale: tiny, steps: 100000}
budget_flops: 1.0e18
max_parallel: 1
max_trials: 1
policy: random
seed: 5
`

// childPids lists the children of a process (every thread's).
func childPids(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// stateOf is a process's state letter, "" once it is gone.
func stateOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 {
		return f[0]
	}
	return ""
}

// SIGSTOP of a real worker stops its train.py: bin/worker's fence watchdog stops the run
// once the worker has been silent past the fence limit. Thawed, the worker releases the
// fenced attempt and takes the trial again as its next attempt.
func TestFrozenRealWorkerStopsTrainPy(t *testing.T) {
	requireTorch(t)
	c := newCluster(t, "3s")
	c.args = append(c.args, "-http-listen", "")
	data := filepath.Join(c.dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prep := exec.CommandContext(ctx, python, filepath.Join(repoRoot(), "scripts", "prepare_data.py"),
		"--out-dir", data, "--synthetic", "--tokenizer", "byte", "--synthetic-chars", "60000")
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("prepare_data.py: %v\n%s", err, out)
	}
	c.coordinator()
	w := c.start("worker", "-coordinator", c.addr, "-hostname", "cpu-1", "-log-level", "debug",
		"-data-dir", data, "-python", python, "-train-script", filepath.Join(repoRoot(), "scripts", "train.py"),
		"-checkpoint-dir", filepath.Join(c.dir, "ckpt"), "-threads", "1", "-stop-grace", "5s")
	c.createStudy(longTrainSpec)
	first := c.runningWithPoints()
	train := 0
	eventually(t, 30*time.Second, "train.py among the worker's children", func() bool {
		for _, pid := range childPids(w.cmd.Process.Pid) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), "train.py") {
				train = pid
				return true
			}
		}
		return false
	})

	w.signal(syscall.SIGSTOP)
	eventually(t, 30*time.Second, "train.py to stop while its worker is frozen", func() bool {
		st := stateOf(train)
		return st == "" || st == "Z" // a zombie: exited, its frozen parent cannot reap it
	})
	w.signal(syscall.SIGCONT)
	eventually(t, time.Minute, "the trial's next attempt on the thawed worker", func() bool {
		tr := c.trials()[0]
		return tr.Id == first.Id && tr.Attempt == 2 && tr.State == pb.TrialState_TRIAL_STATE_RUNNING
	})
	tr := c.trials()[0]
	if len(tr.ReasonHistory) != 1 {
		t.Errorf("reason history %q, want the first attempt's lapse", tr.ReasonHistory)
	}
	b, _ := os.ReadFile(w.log)
	if !strings.Contains(string(b), "the fence watchdog stopped training") {
		t.Errorf("the worker did not log the watchdog's stop")
	}
}
