package gpuexec

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// toyTrainer is testdata/trainers/toy_trainer.py through a template, with the python3 on
// PATH (it needs no torch).
func toyTrainer(t *testing.T, stepSeconds string) TrainSpec {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		python = FallbackPython
	}
	if python, err = filepath.Abs(python); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "trainers", "toy_trainer.py"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseCommandTemplate("{python} " + script + " --data-dir={data_dir} --domains={domains} --mixture={mixture} " +
		"--steps={steps} --eval-every={eval_every} --checkpoint-dir={checkpoint_dir} --step-seconds=" + stepSeconds)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "meta.json"), []byte(`{"version": 1, "domains": {"web": {}, "code": {}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return TrainSpec{Python: python, Command: tmpl, DataDir: data, Domains: []string{"web", "code"},
		Mixture: []float64{0.25, 0.75}, Preset: "toy", Steps: 100000, EvalEvery: 10, CheckpointDir: t.TempDir()}
}

// The second trainer honours the stop half of the contract: SIGTERM → checkpoint, a stopped
// done event, exit 143; a relaunch resumes from the checkpoint; an unknown domain is
// bad_data before any training.
func TestToyTrainerStopsAndResumes(t *testing.T) {
	spec := toyTrainer(t, "0.002")
	run, err := Launch(context.Background(), spec, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ckptStep int64 = -1
	for ev := range run.Events() {
		if ev.Kind == KindPoint && ev.Step == 20 {
			go func() { _ = run.Stop(time.Minute) }()
		}
		if ev.Kind == KindCheckpoint {
			ckptStep = ev.Step
		}
	}
	res := run.Wait()
	if res.Class != ClassStopped || res.ExitCode != ExitStopped || res.Done == nil || res.Done.Status != "stopped" || ckptStep < 20 {
		t.Fatalf("stop: class %s exit %d done %+v checkpoint at %d\n%s", res.Class, res.ExitCode, res.Done, ckptStep, res.StderrTail)
	}

	spec.Steps = ckptStep + 10
	run, err = Launch(context.Background(), spec, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resumed := int64(-1)
	for ev := range run.Events() {
		if ev.Kind == KindStart {
			resumed = ev.Start.ResumedFromStep
		}
	}
	if res := run.Wait(); res.Class != ClassSucceeded || resumed != ckptStep || res.LastStep != spec.Steps {
		t.Fatalf("resume: class %s (%v), resumed from %d (want %d), last step %d", res.Class, res.Err, resumed, ckptStep, res.LastStep)
	}

	spec.Domains, spec.Mixture, spec.CheckpointDir = []string{"klingon"}, []float64{1}, ""
	run, err = Launch(context.Background(), spec, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range run.Events() {
	}
	if res := run.Wait(); res.Class != ClassBadData || res.Error == nil || res.ExitCode != ExitBadData {
		t.Fatalf("unknown domain: class %s, error %+v, exit %d", res.Class, res.Error, res.ExitCode)
	}
}
