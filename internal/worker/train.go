package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

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
	paths := []struct{ name, v string }{{"DataDir", cfg.DataDir}}
	if cfg.Command == nil {
		paths = append(paths, struct{ name, v string }{"Script", cfg.Script})
	}
	if cfg.Command == nil || cfg.Command.UsesPython() {
		paths = append(paths, struct{ name, v string }{"Python", cfg.Python})
	}
	for _, p := range paths {
		if !filepath.IsAbs(p.v) {
			return nil, fmt.Errorf("train config: %s %q is not an absolute path", p.name, p.v)
		}
		if _, err := os.Stat(p.v); err != nil {
			return nil, fmt.Errorf("train config: %s: %w", p.name, err)
		}
	}
	if cfg.FenceWatchdog != "" && !filepath.IsAbs(cfg.FenceWatchdog) {
		return nil, fmt.Errorf("train config: FenceWatchdog %q is not an absolute path", cfg.FenceWatchdog)
	}
	if cfg.CheckpointRoot != "" && !filepath.IsAbs(cfg.CheckpointRoot) {
		return nil, fmt.Errorf("train config: CheckpointRoot %q is not an absolute path", cfg.CheckpointRoot)
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

	spec := gpuexec.TrainSpec{
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
	var watch *fenceWatch
	if r.cfg.FenceWatchdog != "" {
		grace := r.cfg.StopGrace
		if grace <= 0 {
			grace = 30 * time.Second // gpuexec's default
		}
		if watch, err = startFenceWatch(r.cfg.FenceWatchdog, run.Pid(), grace, r.fenceRemaining); err != nil {
			log.Warn("running without a fence watchdog: a frozen worker would not stop this run", zap.Error(err))
		}
	}
	c := &curveBuilder{start: start, emit: emit, ck: ck, log: log}
	var res RunResult
	var warnings []string
	for ev := range run.Events() { // drained to the end: a full channel would block train.py
		switch {
		case ev.Kind == gpuexec.KindStart && ev.Start != nil:
			res = startResult(ev.Start)
			if r.cfg.Command != nil {
				res.Provenance["runner"] = r.cfg.Command.Name()
			}
		case ev.Kind == gpuexec.KindWarning && ev.Warning != nil:
			log.Warn("trainer warning", zap.String("code", ev.Warning.Code), zap.String("message", ev.Warning.Message))
			if len(warnings) < maxWarningCodes && !slices.Contains(warnings, ev.Warning.Code) {
				warnings = append(warnings, ev.Warning.Code)
			}
		}
		c.add(ev)
	}
	c.flush()
	if len(warnings) > 0 && res.Provenance != nil {
		// A recording then says that, e.g., the run fell back from torch.compile to eager.
		res.Provenance["warnings"] = warnings
	}
	out := run.Wait()
	if ck != nil {
		ck.close()
	}
	if watch != nil && watch.finish() {
		log.Warn("the fence watchdog stopped training: this worker was silent past the fence limit",
			zap.Int64("last_step", out.LastStep))
		if ctx.Err() == nil { // else the worker's own fence got there too
			return res, errWatchdogFenced
		}
	}
	if out.Class == gpuexec.ClassSucceeded {
		ck.remove(log)
		log.Info("training completed", zap.Duration("took", out.Duration), zap.Int64("last_step", out.LastStep))
		return res, nil
	}
	if ctx.Err() != nil {
		// Stopped on request: the checkpoint stays for a requeued attempt here.
		return res, fmt.Errorf("training stopped at step %d: %w", out.LastStep, ctx.Err())
	}
	class := out.Class.FailureClass()
	if class != pb.FailureClass_FAILURE_CLASS_OTHER {
		// Deterministic failures are not retried: the checkpoint would never be used.
		ck.remove(log)
	}
	log.Warn("training failed", zap.String("class", string(out.Class)), zap.Error(out.Err),
		zap.String("stderr_tail", lastLines(out.StderrTail, 20)))
	return res, &RunError{Class: class, Reason: out.Err.Error()}
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

// maxWarningCodes bounds the distinct warning codes a run's provenance keeps.
const maxWarningCodes = 16

func startResult(s *gpuexec.StartInfo) RunResult {
	prov := map[string]any{"runner": "train.py", "preset": s.Preset}
	if s.Device != "" {
		prov["device"] = s.Device
	}
	if s.WorldSize > 0 {
		prov["world_size"] = s.WorldSize
	}
	if len(s.Config) > 0 {
		var cfg struct {
			Torch string `json:"torch"`
			Dtype string `json:"dtype"`
		}
		if json.Unmarshal(s.Config, &cfg) == nil {
			if cfg.Torch != "" {
				prov["torch"] = cfg.Torch
			}
			if cfg.Dtype != "" {
				prov["dtype"] = cfg.Dtype
			}
		}
	}
	return RunResult{Params: float64(s.Params), TokensPerStep: s.TokensPerStep, FlopsPerStep: s.FlopsPerStep, Provenance: prov}
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

// curveBuilder turns train.py's events into curve points: a step's point and eval become one
// curve point, sent when the eval arrives (train.py writes the point first). On a resumed
// run it first re-sends the points the checkpoint covers, because the new attempt's curve
// on the coordinator starts empty.
type curveBuilder struct {
	start   time.Time
	emit    func(*pb.CurvePoint)
	ck      *trialCheckpoint
	log     *zap.Logger
	pending *pb.CurvePoint
	last    int64 // highest step emitted
}

func (c *curveBuilder) add(ev gpuexec.Event) {
	switch ev.Kind {
	case gpuexec.KindStart:
		if ev.Start == nil {
			return
		}
		var stored []*pb.CurvePoint
		if c.ck != nil {
			stored = c.ck.resume(ev.Start.ResumedFromStep, c.log)
		}
		for _, p := range stored {
			c.send(p)
		}
	case gpuexec.KindPoint:
		if ev.Step <= c.last {
			return
		}
		if c.pending != nil && c.pending.Step != ev.Step {
			c.flush()
		}
		c.pending = &pb.CurvePoint{Step: ev.Step, Tokens: ev.Tokens, TrainLoss: ev.TrainLoss}
	case gpuexec.KindEval:
		// Step 0 is before training; points start at step 1.
		if ev.Step <= c.last || ev.Step == 0 {
			return
		}
		if c.pending != nil && c.pending.Step != ev.Step {
			c.flush()
		}
		p := c.pending
		if p == nil {
			// No point at this step (a resumed run's final eval): the interval's mean
			// training loss stands in.
			p = &pb.CurvePoint{Step: ev.Step, Tokens: ev.Tokens, TrainLoss: math.NaN()}
			if ev.HasTrainLoss {
				p.TrainLoss = ev.TrainLoss
			}
		}
		p.Eval = make(map[string]float64, len(ev.Metrics))
		for k, v := range ev.Metrics {
			// Non-finite metrics are left out: JSON, the store and recordings cannot hold them.
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				p.Eval[k] = v
			}
		}
		c.pending = p
		c.flush()
	case gpuexec.KindDone, gpuexec.KindError:
		c.flush()
	}
}

// flush sends the pending point unless its training loss is not finite (train.py then fails
// as diverged; the curve keeps its finite prefix).
func (c *curveBuilder) flush() {
	p := c.pending
	c.pending = nil
	if p == nil || p.Step <= c.last || math.IsNaN(p.TrainLoss) || math.IsInf(p.TrainLoss, 0) {
		return
	}
	p.WallTimeS = time.Since(c.start).Seconds()
	c.send(p)
}

func (c *curveBuilder) send(p *pb.CurvePoint) {
	c.last = p.Step
	if c.ck != nil {
		c.ck.store(p, c.log)
	}
	c.emit(p)
}

// trialCheckpoint is a trial's folder under the checkpoint root: train.py's ckpt.pt, the
// identity of the run it belongs to (run.json), and the curve sent so far (curve.jsonl).
type trialCheckpoint struct {
	dir   string
	curve *os.File
}

// runIdentity is what must match for a checkpoint to be resumed; a folder left by another
// run (a fresh coordinator database reuses trial ids) is cleared instead.
type runIdentity struct {
	StudyID uint64    `json:"study_id"`
	TrialID uint64    `json:"trial_id"`
	Domains []string  `json:"domains"`
	Mixture []float64 `json:"mixture"`
	Preset  string    `json:"preset"`
	Steps   int64     `json:"steps"`
	Seed    uint64    `json:"seed"`
}

// storedPoint is one line of curve.jsonl.
type storedPoint struct {
	Step      int64              `json:"step"`
	Tokens    int64              `json:"tokens"`
	TrainLoss float64            `json:"train_loss"`
	Eval      map[string]float64 `json:"eval,omitempty"`
}

func openTrialCheckpoint(root string, a *pb.Assignment, spec gpuexec.TrainSpec) (*trialCheckpoint, error) {
	t := a.Trial
	// The folder is named from numbers only: nothing from the wire becomes a path.
	dir := filepath.Join(root, "study-"+strconv.FormatUint(t.StudyId, 10), "trial-"+strconv.FormatUint(t.Id, 10))
	id, err := json.Marshal(runIdentity{StudyID: t.StudyId, TrialID: t.Id, Domains: spec.Domains,
		Mixture: spec.Mixture, Preset: spec.Preset, Steps: spec.Steps, Seed: spec.Seed})
	if err != nil {
		return nil, fmt.Errorf("checkpoint identity: %w", err)
	}
	idPath := filepath.Join(dir, "run.json")
	if old, err := os.ReadFile(idPath); err == nil && string(old) != string(id) {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clear checkpoint folder of another run: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint folder: %w", err)
	}
	if err := os.WriteFile(idPath, id, 0o644); err != nil {
		return nil, fmt.Errorf("checkpoint identity: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "curve.jsonl"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint curve: %w", err)
	}
	return &trialCheckpoint{dir: dir, curve: f}, nil
}

// resume returns the stored points up to step (those the checkpoint covers) and keeps only
// them in the file; train.py writes the later ones again.
func (k *trialCheckpoint) resume(step int64, log *zap.Logger) []*pb.CurvePoint {
	var keep []*pb.CurvePoint
	if step > 0 {
		if _, err := k.curve.Seek(0, io.SeekStart); err == nil {
			sc := bufio.NewScanner(k.curve)
			sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
			for sc.Scan() {
				var sp storedPoint
				if json.Unmarshal(sc.Bytes(), &sp) != nil || sp.Step > step {
					break
				}
				if len(keep) > 0 && sp.Step <= keep[len(keep)-1].Step {
					break
				}
				keep = append(keep, &pb.CurvePoint{Step: sp.Step, Tokens: sp.Tokens, TrainLoss: sp.TrainLoss, Eval: sp.Eval})
			}
		}
		log.Info("resuming from checkpoint", zap.Int64("step", step), zap.Int("points_resent", len(keep)))
	}
	// store rewrites the kept points as they are sent.
	if err := k.curve.Truncate(0); err != nil {
		log.Warn("truncate stored curve", zap.Error(err))
	}
	if _, err := k.curve.Seek(0, io.SeekStart); err != nil {
		log.Warn("rewind stored curve", zap.Error(err))
	}
	return keep
}

// store appends a sent point. A failure only costs a resumed attempt its early points, so
// it is logged, not fatal.
func (k *trialCheckpoint) store(p *pb.CurvePoint, log *zap.Logger) {
	b, err := json.Marshal(storedPoint{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: p.Eval})
	if err == nil {
		_, err = k.curve.Write(append(b, '\n'))
	}
	if err != nil {
		log.Warn("store curve point for resuming", zap.Error(err))
	}
}

func (k *trialCheckpoint) close() { _ = k.curve.Close() }

// remove deletes the folder of a trial that will not be resumed. Safe on nil.
func (k *trialCheckpoint) remove(log *zap.Logger) {
	if k == nil {
		return
	}
	if err := os.RemoveAll(k.dir); err != nil {
		log.Warn("remove checkpoint folder", zap.Error(err))
	}
}

// lastLines is the end of s, n lines at most, for logs.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
