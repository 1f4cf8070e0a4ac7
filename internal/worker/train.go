package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// This file is the TrainRunner itself: its configuration, and launching and supervising
// one trial's train.py. train_curve.go turns the run's events into curve points and the
// run's result; train_checkpoint.go keeps a trial's checkpoint folder for resuming.

// TrainConfig is a real worker's training set-up. All of it is worker-side configuration:
// nothing received over the wire becomes a path, a command or an interpreter.
type TrainConfig struct {
	// Python, Script and DataDir are absolute paths: the interpreter with torch,
	// scripts/train.py and a folder written by scripts/prepare_data.py.
	Python  string
	Script  string
	DataDir string
	// Command, when set, launches a team's own trainer instead of Script (its {python} is
	// Python; Script is then unused). docs/train-protocol.md has the contract.
	Command *gpuexec.CommandTemplate
	// CheckpointRoot (absolute) holds one folder per trial, so that a requeued attempt on
	// this worker resumes where the last one stopped; "" disables checkpoints and resuming.
	CheckpointRoot string
	// CheckpointEvery is train.py's checkpoint interval in steps (0: at the end and on stop).
	CheckpointEvery int64
	// Presets maps a scale name to a train.py preset; a scale missing from it is run with
	// the preset of its own name.
	Presets map[string]string
	// GPUs are the GPUs this worker registered; assignments name them by Index. Empty: CPU.
	GPUs []gpuexec.GPU
	// Threads caps train.py's CPU threads (0: torch's default).
	Threads int
	// StopGrace is how long a stopped run may take to checkpoint before SIGKILL (30s).
	StopGrace time.Duration
	// Env adds environment variables to train.py's (NCCL_*, TORCH_*).
	Env map[string]string
	// Stderr receives a copy of train.py's stderr (nil drops it; the tail is kept anyway).
	Stderr io.Writer
	// FenceWatchdog (absolute) is the executable started beside each run as its fence
	// watchdog: it stops train.py when the worker is frozen or dead past the fence limit
	// (see watchdog.go). It must call RunFenceWatchdog when IsFenceWatchdog says so, as
	// bin/worker does; "" runs without one.
	FenceWatchdog string
	Logger        *zap.Logger
}

// TrainRunner runs trials as real training: scripts/train.py through gpuexec.
type TrainRunner struct {
	cfg   TrainConfig
	alloc *gpuexec.Allocator
	log   *zap.Logger
	// fence tells how long the worker may still run unfenced (set by the agent).
	fence atomic.Pointer[func() (time.Duration, bool)]
}

// setFence is how the agent tells the runner its fence state, for the watchdog.
func (r *TrainRunner) setFence(remaining func() (time.Duration, bool)) { r.fence.Store(&remaining) }

func (r *TrainRunner) fenceRemaining() (time.Duration, bool) {
	if f := r.fence.Load(); f != nil {
		return (*f)()
	}
	return 0, false
}

var _ Runner = (*TrainRunner)(nil)

// presetRE matches a scale or preset name that may become a train.py argument.
var presetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// NewTrainRunner checks cfg; its errors name the field.
func NewTrainRunner(cfg TrainConfig) (*TrainRunner, error) {
	if err := checkPaths(cfg); err != nil {
		return nil, err
	}
	if cfg.CheckpointEvery < 0 || cfg.Threads < 0 {
		return nil, fmt.Errorf("train config: negative CheckpointEvery or Threads")
	}
	for scale, preset := range cfg.Presets {
		if !presetRE.MatchString(scale) || !presetRE.MatchString(preset) {
			return nil, fmt.Errorf("train config: Presets entry %q=%q is not a pair of plain names", scale, preset)
		}
	}
	seen := map[int]bool{}
	for _, g := range cfg.GPUs {
		if seen[g.Index] {
			return nil, fmt.Errorf("train config: GPUs lists index %d twice", g.Index)
		}
		seen[g.Index] = true
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cfg.Presets = maps.Clone(cfg.Presets)
	cfg.GPUs = slices.Clone(cfg.GPUs)
	return &TrainRunner{cfg: cfg, alloc: gpuexec.NewAllocator(cfg.GPUs, gpuexec.AllocatorOptions{}), log: cfg.Logger}, nil
}

// checkPaths checks that cfg's paths are absolute and that those it runs exist.
func checkPaths(cfg TrainConfig) error {
	paths := []struct{ name, v string }{{"DataDir", cfg.DataDir}}
	if cfg.Command == nil {
		paths = append(paths, struct{ name, v string }{"Script", cfg.Script})
	}
	if cfg.Command == nil || cfg.Command.UsesPython() {
		paths = append(paths, struct{ name, v string }{"Python", cfg.Python})
	}
	for _, p := range paths {
		if !filepath.IsAbs(p.v) {
			return fmt.Errorf("train config: %s %q is not an absolute path", p.name, p.v)
		}
		if _, err := os.Stat(p.v); err != nil {
			return fmt.Errorf("train config: %s: %w", p.name, err)
		}
	}
	if cfg.FenceWatchdog != "" && !filepath.IsAbs(cfg.FenceWatchdog) {
		return fmt.Errorf("train config: FenceWatchdog %q is not an absolute path", cfg.FenceWatchdog)
	}
	if cfg.CheckpointRoot != "" && !filepath.IsAbs(cfg.CheckpointRoot) {
		return fmt.Errorf("train config: CheckpointRoot %q is not an absolute path", cfg.CheckpointRoot)
	}
	return nil
}

// ParsePresetMap reads "scale=preset,scale=preset" (the worker's -preset-map flag).
func ParsePresetMap(s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ",") {
		scale, preset, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !presetRE.MatchString(scale) || !presetRE.MatchString(preset) {
			return nil, fmt.Errorf("entry %q: want SCALE=PRESET with plain names", kv)
		}
		if _, dup := m[scale]; dup {
			return nil, fmt.Errorf("scale %q mapped twice", scale)
		}
		m[scale] = preset
	}
	return m, nil
}

// Preset is the train.py preset a scale runs with.
func (r *TrainRunner) Preset(scale string) string {
	if p, ok := r.cfg.Presets[scale]; ok {
		return p
	}
	return scale
}

// Run trains one attempt. Points go to emit at every eval step (train loss and eval metrics
// merged); cancelling ctx stops train.py in stages and returns ctx's error.
func (r *TrainRunner) Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error) {
	start := time.Now()
	t, sc := a.GetTrial(), a.GetScale()
	if t == nil || sc == nil {
		return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_BAD_DATA, Reason: "assignment without trial or scale"}
	}
	log := r.log.With(zap.Uint64("trial", t.Id), zap.Int32("attempt", a.Attempt))
	key := fmt.Sprintf("trial-%d", t.Id)
	gpus, err := r.acquire(key, a.GpuIndices)
	if err != nil {
		// A busy or unknown GPU is this worker's state, not the trial's fault: retryable.
		return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_OTHER, Reason: err.Error()}
	}
	// Until a run is launched the GPUs go back at once; after, only when every process of
	// the run has ended (releaseWhenGone).
	launched := false
	defer func() {
		if !launched {
			r.alloc.Release(key)
		}
	}()

	spec := r.trainSpec(a, gpus)
	if err := spec.Validate(); err != nil {
		return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_BAD_DATA, Reason: err.Error()}
	}
	var ck *trialCheckpoint
	if r.cfg.CheckpointRoot != "" {
		ck, err = openTrialCheckpoint(r.cfg.CheckpointRoot, a, spec)
		if err != nil {
			return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_OTHER, Reason: err.Error()}
		}
		spec.CheckpointDir = ck.dir
	}

	run, err := gpuexec.Launch(ctx, spec, gpuexec.LaunchOptions{Stderr: r.cfg.Stderr, StopGrace: r.cfg.StopGrace})
	if err != nil {
		if ctx.Err() != nil {
			return RunResult{}, ctx.Err()
		}
		return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_OTHER, Reason: err.Error()}
	}
	launched = true
	defer r.releaseWhenGone(key, run, log)
	log.Info("training started", zap.Int("pid", run.Pid()), zap.String("preset", spec.Preset),
		zap.Strings("gpus", spec.GPUs), zap.String("checkpoint_dir", spec.CheckpointDir))
	watch := r.startWatch(run, log)
	res := r.drainEvents(run, &curveBuilder{start: start, emit: emit, ck: ck, log: log}, log)
	out := run.Wait()
	if ck != nil {
		ck.close()
	}
	return res, runError(ctx, out, ck, watch, log)
}

// trainSpec is what train.py is launched with for an assignment on gpus.
func (r *TrainRunner) trainSpec(a *pb.Assignment, gpus []gpuexec.GPU) gpuexec.TrainSpec {
	t, sc := a.GetTrial(), a.GetScale()
	return gpuexec.TrainSpec{
		Python: r.cfg.Python, Script: r.cfg.Script, Command: r.cfg.Command, DataDir: r.cfg.DataDir,
		Domains: a.Domains, Mixture: t.Mixture, Preset: r.Preset(sc.Name), Scale: sc.Name,
		Steps: t.Steps, EvalEvery: a.EvalEvery,
		// Points only at eval steps: each becomes one curve point with both losses.
		LogEvery: a.EvalEvery,
		// train.py takes a non-negative int64 seed; the top bit carries no information here.
		Seed:            a.Seed & math.MaxInt64,
		CheckpointEvery: r.cfg.CheckpointEvery,
		GPUs:            gpuexec.IDs(gpus),
		Threads:         r.cfg.Threads,
		Env:             r.cfg.Env,
	}
}

// startWatch starts the run's fence watchdog, if the worker has one; nil runs without.
func (r *TrainRunner) startWatch(run *gpuexec.Run, log *zap.Logger) *fenceWatch {
	if r.cfg.FenceWatchdog == "" {
		return nil
	}
	grace := r.cfg.StopGrace
	if grace <= 0 {
		grace = gpuexec.DefaultStopGrace
	}
	watch, err := startFenceWatch(r.cfg.FenceWatchdog, runProcesses{pgid: run.Pid(), token: run.Token()}, grace, r.fenceRemaining)
	if err != nil {
		log.Warn("running without a fence watchdog: a frozen worker would not stop this run", zap.Error(err))
		return nil
	}
	return watch
}

// runError is Run's error for a run that has ended as out, and settles its checkpoint: a
// completed run or a deterministic failure removes it, a stopped run keeps it for a
// requeued attempt here.
func runError(ctx context.Context, out gpuexec.Result, ck *trialCheckpoint, watch *fenceWatch, log *zap.Logger) error {
	if watch != nil && watch.finish() {
		log.Warn("the fence watchdog stopped training: this worker was silent past the fence limit",
			zap.Int64("last_step", out.LastStep))
		if ctx.Err() == nil { // else the worker's own fence got there too
			return errWatchdogFenced
		}
	}
	if out.Class == gpuexec.ClassSucceeded {
		ck.remove(log)
		log.Info("training completed", zap.Duration("took", out.Duration), zap.Int64("last_step", out.LastStep))
		return nil
	}
	if ctx.Err() != nil {
		// Stopped on request: the checkpoint stays for a requeued attempt here.
		return fmt.Errorf("training stopped at step %d: %w", out.LastStep, ctx.Err())
	}
	class := out.Class.FailureClass()
	if class != pb.FailureClass_FAILURE_CLASS_OTHER {
		// Deterministic failures are not retried: the checkpoint would never be used.
		ck.remove(log)
	}
	log.Warn("training failed", zap.String("class", string(out.Class)), zap.Error(out.Err),
		zap.String("stderr_tail", lastLines(out.StderrTail, 20)))
	return &RunError{Class: class, Reason: out.Err.Error()}
}

// releaseWhenGone frees the trial's GPUs once no process of its run is left. A rank that
// outlives SIGKILL (stuck in the driver) keeps them held, so no new trial lands on a GPU
// whose memory it still holds; they are freed the moment it ends.
func (r *TrainRunner) releaseWhenGone(key string, run *gpuexec.Run, log *zap.Logger) {
	select {
	case <-run.Gone():
		r.alloc.Release(key)
		return
	default:
	}
	left := run.Wait().Leftovers
	log.Error("processes of the run outlived SIGKILL; its gpus stay held until they end", zap.Ints("pids", left))
	go func() {
		<-run.Gone()
		r.alloc.Release(key)
		log.Info("leftover processes ended; gpus released", zap.Ints("pids", left))
	}()
}

// acquire maps the assignment's GPU indices onto this worker's GPUs and holds them. A CPU
// worker registered no GPUs: its one slot is the CPU.
func (r *TrainRunner) acquire(key string, indices []int32) ([]gpuexec.GPU, error) {
	if len(r.cfg.GPUs) == 0 {
		return nil, nil
	}
	if len(indices) == 0 {
		return nil, errors.New("assignment names no gpus on a gpu worker")
	}
	ids := make([]string, len(indices))
	for i, idx := range indices {
		j := slices.IndexFunc(r.cfg.GPUs, func(g gpuexec.GPU) bool { return g.Index == int(idx) })
		if j < 0 {
			return nil, fmt.Errorf("assignment names gpu %d, which this worker did not register", idx)
		}
		ids[i] = r.cfg.GPUs[j].ID()
	}
	return r.alloc.AcquireIDs(key, ids)
}

// lastLines is the end of s, n lines at most, for logs.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
