package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// python is the interpreter CI installs python3-torch for (hack/test-deps.sh).
const python = "/usr/bin/python3"

// requireTorch fails, rather than skips, without torch: CI installs it, so a missing torch
// is a broken set-up that must not pass silently.
func requireTorch(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import torch, numpy, zstandard").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import torch, numpy and zstandard (%v: %s); install them with hack/test-deps.sh "+
			"(apt-get install python3-torch python3-numpy python3-zstandard)", python, err, out)
	}
}

// trainSpec is a tiny study over the synthetic corpus: two scales that both run the tiny
// preset ("tiny" by name, "xs" through -preset-map), three trials of 40 steps.
const trainSpec = `
name: e2e-train
domains: [{name: prose}, {name: code}, {name: math}]
scales:
  - {name: tiny, params: 127296, tokens_per_step: 1024}
  - {name: xs, params: 127296, tokens_per_step: 1024}
steps: [20, 40]
eval_every: 10
objective: {metric: mean_ce}
target: {scale: tiny, steps: 40}
budget_flops: 1.0e15
max_parallel: 1
max_trials: 3
policy: random-mf
seed: 5
`

// A coordinator and one real CPU worker run a tiny study with real training to the end;
// every trial's curve is whole and its loss falls, and --record wrote each run.
func TestRealWorkerRunsStudy(t *testing.T) {
	requireTorch(t)
	began := time.Now()
	c := newCluster(t, "30s")
	// The dashboard's default port may be taken on a shared machine; this test needs none.
	c.args = append(c.args, "-http-listen", "")
	data := filepath.Join(c.dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The path a team walks: a folder of .jsonl.zst files per domain (nested, as
	// SlimPajama ships them), prepared by prepare_data.py, trained by train.py.
	raw := filepath.Join(c.dir, "corpus")
	gen := exec.CommandContext(ctx, python, "-c", `
import json, os, sys, zstandard
sys.path.insert(0, sys.argv[2])
import prepare_data
for d in ("prose", "code", "math"):
    docs = list(prepare_data.synthetic_documents(d, 0, 60000))
    for part in range(2):
        folder = os.path.join(sys.argv[1], d, "chunk%d" % part)
        os.makedirs(folder)
        lines = "".join(json.dumps({"text": t}) + "\n" for t in docs[part::2]).encode()
        with open(os.path.join(folder, "part.jsonl.zst"), "wb") as f:
            f.write(zstandard.ZstdCompressor().compress(lines))
`, raw, filepath.Join(repoRoot(), "scripts"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("writing the .jsonl.zst corpus: %v\n%s", err, out)
	}
	prep := exec.CommandContext(ctx, python, filepath.Join(repoRoot(), "scripts", "prepare_data.py"),
		"--out-dir", data, "--tokenizer", "byte", "--domain", "prose="+filepath.Join(raw, "prose"),
		"--domain", "code="+filepath.Join(raw, "code"), "--domain", "math="+filepath.Join(raw, "math"))
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("prepare_data.py: %v\n%s", err, out)
	}
	c.coordinator()
	record := filepath.Join(c.dir, "runs.jsonl")
	c.start("worker", "-coordinator", c.addr, "-hostname", "cpu-1", "-log-level", "debug",
		"-data-dir", data, "-python", python, "-train-script", filepath.Join(repoRoot(), "scripts", "train.py"),
		"-checkpoint-dir", filepath.Join(c.dir, "ckpt"), "-preset-map", "xs=tiny", "-threads", "1",
		"-record", record)
	c.createStudy(trainSpec)
	c.wait("3m")

	trials := c.trials()
	if len(trials) != 3 {
		t.Fatalf("%d trials, want 3", len(trials))
	}
	for _, tr := range trials {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 1 {
			t.Errorf("trial %d: %s attempt %d %q %v; want succeeded on its first attempt",
				tr.Id, tr.State, tr.Attempt, tr.FailureReason, tr.ReasonHistory)
			continue
		}
		c.checkCurve(tr, 10)
		var got pb.GetTrialResponse
		mixctlJSON(t, c.addr, &got, "trial", fmt.Sprint(tr.Id))
		pts := got.Points
		for _, p := range pts {
			for _, m := range []string{"prose_ce", "code_ce", "math_ce", "mean_ce"} {
				if v, ok := p.Eval[m]; !ok || math.IsNaN(v) {
					t.Errorf("trial %d step %d: eval %s missing: %v", tr.Id, p.Step, m, p.Eval)
				}
			}
			if p.Tokens != p.Step*1024 {
				t.Errorf("trial %d step %d: %d tokens, want %d", tr.Id, p.Step, p.Tokens, p.Step*1024)
			}
		}
		if len(pts) >= 2 {
			first, last := pts[0], pts[len(pts)-1]
			if !(last.TrainLoss < first.TrainLoss) || !(last.Eval["mean_ce"] < first.Eval["mean_ce"]) {
				t.Errorf("trial %d: loss did not fall: train %.3f → %.3f, mean_ce %.3f → %.3f", tr.Id,
					first.TrainLoss, last.TrainLoss, first.Eval["mean_ce"], last.Eval["mean_ce"])
			}
		}
	}

	rec, err := sim.LoadRecording(record)
	if err != nil {
		t.Fatalf("--record wrote a recording LoadRecording refuses: %v", err)
	}
	runs := rec.Runs()
	if len(runs) != len(trials) {
		t.Fatalf("recording holds %d runs, want one per trial (%d)", len(runs), len(trials))
	}
	for _, tr := range trials {
		i := slices.IndexFunc(runs, func(r sim.RecordedRun) bool { return r.Source["trial_id"] == float64(tr.Id) })
		if i < 0 {
			t.Errorf("trial %d is not in the recording", tr.Id)
			continue
		}
		r := runs[i]
		if r.Scale != tr.Scale || r.Steps != tr.Steps || !slices.Equal(r.Mixture, tr.Mixture) ||
			r.Params != 127296 || r.TokensPerStep != 1024 || len(r.Points) != int(tr.Steps/10) {
			t.Errorf("trial %d recorded as scale %s, %d steps, mixture %v, %g params, %d tokens/step, %d points; want %s, %d, %v, 127296, 1024, %d",
				tr.Id, r.Scale, r.Steps, r.Mixture, r.Params, r.TokensPerStep, len(r.Points), tr.Scale, tr.Steps, tr.Mixture, tr.Steps/10)
		}
		if r.Source["preset"] != "tiny" || r.Source["runner"] != "train.py" {
			t.Errorf("trial %d provenance %v, want runner train.py and preset tiny", tr.Id, r.Source)
		}
	}
	// Checkpoints of finished trials are removed; only the root stays.
	if left, _ := filepath.Glob(filepath.Join(c.dir, "ckpt", "study-*", "trial-*")); len(left) != 0 {
		t.Errorf("checkpoint folders left after success: %v", left)
	}
	t.Logf("study of %d real trials done in %s", len(trials), time.Since(began).Round(time.Second))
}

// start runs one of the binaries in the cluster's folder.
func (c *cluster) start(name string, args ...string) *proc { return start(c.t, c.dir, name, args...) }

// A worker reaches a coordinator that requires TLS and tokens with -tls-ca and -token-file,
// and runs a study there; without its token it is refused.
func TestWorkerOverTLSWithToken(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	const admin, workerTok = "admin-token-0123456789abcdef", "worker-token-0123456789abcdef"
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, fmt.Sprintf("admin %s ops\nworker %s nodes\n", admin, workerTok))
	tokFile := filepath.Join(dir, "worker-token")
	writeFile(t, tokFile, workerTok+"\n")
	addr := testutil.FreeAddr(t)
	start(t, dir, "coordinator", "-listen", addr, "-init", "-db", filepath.Join(dir, "db"), "-tokens", tokens,
		"-tls-cert", cert, "-tls-key", key, "-http-listen", "")
	refused := start(t, dir, "worker", "-coordinator", addr, "-tls-ca", ca, "-simulate", "synthetic")
	start(t, dir, "worker", "-coordinator", addr, "-tls-ca", ca, "-token-file", tokFile,
		"-simulate", "synthetic", "-speedup", "20000")
	specPath := filepath.Join(dir, "spec.yaml")
	writeFile(t, specPath, faultSpec(2, 1))
	base := []string{"--addr", addr, "--tls-ca", ca}
	env := []string{"MIXOPT_TOKEN=" + admin}
	eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		code, _ := mixctlCode(t, env, append(base, "study", "create", "-f", specPath)...)
		return code == 0
	})
	if code, out := mixctlCode(t, env, append(base, "study", "wait", "1", "--limit", "1m")...); code != 0 {
		t.Fatalf("study wait: exit %d: %s", code, out)
	}
	select {
	case <-refused.done:
		if log, _ := os.ReadFile(refused.log); !strings.Contains(string(log), "Unauthenticated") {
			t.Errorf("worker without a token ended without an Unauthenticated error:\n%s", log)
		}
	case <-time.After(10 * time.Second):
		t.Error("worker without a token is still running")
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The shipped recording loads, and answers every fidelity of the study that replays it
// (examples/recording-study.yaml, the default of `make demo`).
func TestShippedRecordingAnswersItsStudy(t *testing.T) {
	rec, err := sim.LoadRecording(filepath.Join(repoRoot(), "testdata", "recordings", "tiny-cpu.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "recording-study.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Domains []struct{ Name string }
		Scales  []struct {
			Name          string
			Params        float64
			TokensPerStep int64 `json:"tokens_per_step"`
		}
		Steps     []int64
		EvalEvery int64 `json:"eval_every"`
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, d := range spec.Domains {
		domains = append(domains, d.Name)
	}
	mixture := make([]float64, len(domains))
	for i := range mixture {
		mixture[i] = 1 / float64(len(domains))
	}
	for _, sc := range spec.Scales {
		for _, steps := range spec.Steps {
			run, err := rec.Run(sim.Request{Domains: domains, Mixture: mixture, Scale: sc.Name, Params: sc.Params,
				TokensPerStep: sc.TokensPerStep, Steps: steps, EvalEvery: spec.EvalEvery})
			if err != nil {
				t.Errorf("scale %s, %d steps: %v", sc.Name, steps, err)
				continue
			}
			if last := run.Points[len(run.Points)-1]; last.Step != steps {
				t.Errorf("scale %s, %d steps: replay ends at step %d", sc.Name, steps, last.Step)
			}
		}
		i := slices.IndexFunc(rec.Runs(), func(r sim.RecordedRun) bool { return r.Scale == sc.Name })
		if i < 0 {
			continue // reported above
		}
		if r := rec.Runs()[i]; r.Params != sc.Params || r.TokensPerStep != sc.TokensPerStep {
			t.Errorf("scale %s: spec says %g params and %d tokens/step, the recording %g and %d",
				sc.Name, sc.Params, sc.TokensPerStep, r.Params, r.TokensPerStep)
		}
	}
}
