package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// toySpec is a study the toy trainer answers: two domains, one scale, three trials.
const toySpec = `
name: e2e-own-trainer
domains: [{name: web}, {name: code}]
scales: [{name: toy-s, params: 4096, tokens_per_step: 512}]
steps: [20, 40]
eval_every: 10
objective: {metric: mean_ce}
target: {scale: toy-s, steps: 40}
budget_flops: 1.0e15
max_parallel: 1
max_trials: 3
policy: random-mf
seed: 9
`

// toyCE is testdata/trainers/toy_trainer.py's loss of a domain of weight w at step.
func toyCE(w float64, step int64) float64 {
	return 2 + 3/(1+float64(step)/10) + 0.5*(1-w)*(1-w)
}

// plainPython is an interpreter for a standard-library trainer: the python3 on PATH, which
// need not have torch.
func plainPython(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		p = python
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func writeMeta(t *testing.T, dir string, domains ...string) {
	t.Helper()
	ds := map[string]any{}
	for _, d := range domains {
		ds[d] = map[string]any{"train_tokens": 1000, "val_tokens": 100}
	}
	b, err := json.Marshal(map[string]any{"version": 1, "tokenizer": "byte", "vocab_size": 256, "domains": ds})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "meta.json"), string(b))
}

// A team's own trainer, launched through -train-command by a real worker binary, runs a
// study to the end against a real coordinator: the flags it was given (mixture, domains,
// steps, eval interval) are the trial's, since every point it reports is the closed form of
// exactly those, and its warning event reaches the worker's log.
func TestOwnTrainerThroughCommandTemplate(t *testing.T) {
	c := newCluster(t, "30s")
	c.args = append(c.args, "-http-listen", "")
	data := filepath.Join(c.dir, "data")
	writeMeta(t, data, "web", "code")
	c.coordinator()
	trainer := filepath.Join(repoRoot(), "testdata", "trainers", "toy_trainer.py")
	command, err := json.Marshal([]string{"{python}", trainer, "--data-dir={data_dir}", "--domains={domains}",
		"--mixture={mixture}", "--steps={steps}", "--eval-every={eval_every}", "--seed={seed}", "--scale={scale}",
		"--checkpoint-dir={checkpoint_dir}"})
	if err != nil {
		t.Fatal(err)
	}
	w := c.start("worker", "-coordinator", c.addr, "-hostname", "own-trainer-1", "-log-level", "debug",
		"-data-dir", data, "-python", plainPython(t), "-train-command", string(command),
		"-checkpoint-dir", filepath.Join(c.dir, "ckpt"), "-label", "team=e2e")
	c.createStudy(toySpec)
	c.wait("2m")

	trials := c.trials()
	if len(trials) != 3 {
		t.Fatalf("%d trials, want 3", len(trials))
	}
	for _, tr := range trials {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 1 {
			t.Errorf("trial %d: %s attempt %d %q; want succeeded on its first attempt", tr.Id, tr.State, tr.Attempt, tr.FailureReason)
			continue
		}
		c.checkCurve(tr, 10)
		var got pb.GetTrialResponse
		mixctlJSON(t, c.addr, &got, "trial", fmt.Sprint(tr.Id))
		web, code := tr.Mixture[0], tr.Mixture[1]
		for _, p := range got.Points {
			want := map[string]float64{"web_ce": toyCE(web, p.Step), "code_ce": toyCE(code, p.Step),
				"mean_ce": (toyCE(web, p.Step) + toyCE(code, p.Step)) / 2}
			for m, v := range want {
				if math.Abs(p.Eval[m]-v) > 1e-9 {
					t.Errorf("trial %d step %d: %s = %v, want %v for mixture %v", tr.Id, p.Step, m, p.Eval[m], v, tr.Mixture)
				}
			}
			if loss := web*toyCE(web, p.Step) + code*toyCE(code, p.Step); math.Abs(p.TrainLoss-loss) > 1e-9 || p.Tokens != p.Step*512 {
				t.Errorf("trial %d step %d: train loss %v tokens %d, want %v and %d", tr.Id, p.Step, p.TrainLoss, p.Tokens, loss, p.Step*512)
			}
		}
	}
	log, err := os.ReadFile(w.log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `"trainer warning"`); n != len(trials) || !strings.Contains(string(log), `"code":"toy_trainer"`) {
		t.Errorf("worker log holds %d trainer warnings, want one per trial with code toy_trainer", n)
	}
	// A standard-library trainer needs no torch: the worker says so and goes on.
	if !strings.Contains(string(log), "training interpreter") {
		t.Errorf("worker log does not report the probed interpreter")
	}
}

// Real mode with train.py refuses, at start and with the reason, an interpreter that
// cannot import torch, instead of failing every trial later.
func TestRealWorkerRefusesPythonWithoutTorch(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeMeta(t, data, "web")
	fake := filepath.Join(dir, "python3")
	writeFile(t, fake, "#!/bin/sh\necho '{\"v\": 1, \"python\": \"3.12.1\", \"torch_error\": \"ModuleNotFoundError: No module named torch\"}'\n")
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	w := start(t, dir, "worker", "-coordinator", testutil.FreeAddr(t), "-data-dir", data, "-python", fake,
		"-train-script", filepath.Join(repoRoot(), "scripts", "train.py"))
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		t.Fatal("worker kept running with an interpreter that has no torch")
	}
	if code := w.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("worker exited 0")
	}
	log, _ := os.ReadFile(w.log)
	for _, want := range []string{"train.py needs torch", fake, "No module named torch"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("worker's error lacks %q:\n%s", want, log)
		}
	}
}
