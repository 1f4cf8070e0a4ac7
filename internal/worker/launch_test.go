package worker

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mixopt/mixopt/internal/gpuexec"
)

// A trainer's warning (train.py's torch.compile fallback) is logged with its code and
// message, and the run's provenance names it, so a recording says the run went eager.
func TestTrainRunnerLogsTrainerWarnings(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewTrainRunner(TrainConfig{Python: exe, Script: exe, DataDir: t.TempDir(),
		Presets: map[string]string{"small": "tiny"}, Logger: zap.New(core),
		Env: map[string]string{"MIXOPT_FAKE_TRAIN": "warn"}})
	if err != nil {
		t.Fatal(err)
	}
	var c collect
	res, err := r.Run(context.Background(), trainAssignment(5, 20), c.emit)
	if err != nil {
		t.Fatal(err)
	}
	warned := logs.FilterMessage("trainer warning").All()
	if len(warned) != 1 {
		t.Fatalf("%d trainer warnings logged, want 1: %v", len(warned), logs.All())
	}
	fields := warned[0].ContextMap()
	if fields["code"] != "compile_fallback" || fields["message"] != "torch.compile failed; running eager" || fields["trial"] != uint64(5) {
		t.Errorf("warning logged with %v", fields)
	}
	if got, _ := res.Provenance["warnings"].([]string); !slices.Equal(got, []string{"compile_fallback"}) {
		t.Errorf("provenance warnings %v", res.Provenance["warnings"])
	}
	if got := c.steps(); !slices.Equal(got, []int64{10, 20}) {
		t.Errorf("steps %v: a warning must not disturb the curve", got)
	}
}

// The trial's GPU is free for the next trial once Run returns, and not before: while the
// run lives another trial is refused it.
func TestTrainRunnerHoldsGPUsUntilTheRunIsGone(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewTrainRunner(TrainConfig{Python: exe, Script: exe, DataDir: t.TempDir(),
		Presets: map[string]string{"small": "tiny"}, GPUs: []gpuexec.GPU{{Index: 0, UUID: "GPU-aaaa"}},
		StopGrace: 5 * time.Second, Env: map[string]string{"MIXOPT_FAKE_TRAIN": "slow"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var c collect
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, trainAssignment(6, 100000), c.emit)
		done <- err
	}()
	deadline := time.Now().Add(pollDeadline)
	for len(c.steps()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no points from the run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := r.acquire("other", []int32{0}); err == nil {
		t.Fatal("gpu 0 handed to another trial while the run holds it")
	}
	cancel()
	<-done
	if _, err := r.acquire("other", []int32{0}); err != nil {
		t.Fatalf("gpu 0 still held after the run ended: %v", err)
	}
}
