package gpuexec

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// realPython returns an interpreter with torch and numpy, failing (never skipping) without
// one: CI installs python3-torch and python3-numpy, so a missing torch is a broken setup.
// MIXOPT_PYTHON overrides the choice.
func realPython(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("MIXOPT_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	var tried bytes.Buffer
	for _, p := range candidates {
		if p == "" {
			continue
		}
		out, err := exec.Command(p, "-c", "import torch, numpy").CombinedOutput()
		if err == nil {
			return p
		}
		tried.WriteString(p + ": " + string(bytes.TrimSpace(out)) + "\n")
	}
	t.Fatalf("no python with torch and numpy; install them with "+
		"`apt-get install -y --no-install-recommends python3-torch python3-numpy` or set MIXOPT_PYTHON\n%s", tried.String())
	return ""
}

// toyData prepares the synthetic byte-level corpus and returns the scripts dir and data dir.
func toyData(t *testing.T, python string) (scripts, data string) {
	t.Helper()
	scripts, err := filepath.Abs(filepath.Join("..", "..", "scripts"))
	if err != nil {
		t.Fatal(err)
	}
	data = t.TempDir()
	cmd := exec.Command(python, filepath.Join(scripts, "prepare_data.py"), "--out-dir", data, "--synthetic",
		"--tokenizer", "byte", "--synthetic-chars", "40000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("prepare_data.py: %v\n%s", err, out)
	}
	return scripts, data
}

func TestRealTrainPy(t *testing.T) {
	python := realPython(t)
	scripts, data := toyData(t, python)
	spec := TrainSpec{
		Python: python, Script: filepath.Join(scripts, "train.py"), DataDir: data,
		Domains: []string{"prose", "code", "math"}, Mixture: []float64{0.5, 0.3, 0.2},
		Preset: "tiny", Steps: 30, EvalEvery: 10, LogEvery: 5, Seed: 3, SeqLen: 32, Threads: 1,
		CheckpointDir: t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("completes", func(t *testing.T) {
		run, err := Launch(ctx, spec, LaunchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var evals []Event
		var kinds []Kind
		for ev := range run.Events() {
			kinds = append(kinds, ev.Kind)
			if ev.Kind == KindEval {
				evals = append(evals, ev)
			}
		}
		res := run.Wait()
		if res.Class != ClassSucceeded {
			t.Fatalf("class %s: %v\n%s", res.Class, res.Err, res.StderrTail)
		}
		if kinds[0] != KindStart || kinds[len(kinds)-1] != KindDone || len(evals) != 4 || res.LastStep != 30 {
			t.Fatalf("events %v, last step %d", kinds, res.LastStep)
		}
		first, last := evals[0].Metrics["mean_ce"], evals[3].Metrics["mean_ce"]
		if !(last < first-1) {
			t.Fatalf("mean_ce went from %v to %v", first, last)
		}
		if n := res.Done.DomainSequences["prose"] + res.Done.DomainSequences["code"] + res.Done.DomainSequences["math"]; n != 30*16 {
			t.Fatalf("domain sequences %v", res.Done.DomainSequences)
		}
	})

	t.Run("stop checkpoints and extends", func(t *testing.T) {
		long := spec
		long.Steps, long.LogEvery = 100000, 1
		run, err := Launch(ctx, long, LaunchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stopped, resumedFrom := false, int64(-1)
		for ev := range run.Events() {
			if ev.Kind == KindStart {
				resumedFrom = ev.Start.ResumedFromStep
			}
			if ev.Kind == KindPoint && ev.Step > 31 && !stopped {
				stopped = true
				go func() { _ = run.Stop(60 * time.Second) }()
			}
		}
		res := run.Wait()
		if res.Class != ClassStopped || res.Done == nil || res.Done.Status != "stopped" || res.ExitCode != ExitStopped {
			t.Fatalf("result %+v\n%s", res, res.StderrTail)
		}
		if resumedFrom != 30 {
			t.Fatalf("extension resumed from step %d, want the completed run's 30", resumedFrom)
		}
		if _, err := os.Stat(filepath.Join(spec.CheckpointDir, "ckpt.pt")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad data", func(t *testing.T) {
		bad := spec
		bad.Domains, bad.Mixture, bad.CheckpointDir = []string{"klingon"}, []float64{1}, ""
		run, err := Launch(ctx, bad, LaunchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for range run.Events() {
		}
		res := run.Wait()
		if res.Class != ClassBadData || res.Error == nil || res.ExitCode != ExitBadData {
			t.Fatalf("result %+v", res)
		}
	})
}
