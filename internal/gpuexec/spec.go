package gpuexec

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// TrainSpec is everything a training run is built from. Launch turns it into argv for
// scripts/train.py, or for a team's own trainer through Command; no field is ever
// interpreted by a shell.
type TrainSpec struct {
	// Python is the absolute path of the interpreter that has torch (with a Command, only
	// needed when it uses {python}).
	Python string
	// Script is the absolute path of scripts/train.py (unused with a Command).
	Script string
	// Command, when set, is the trainer's command line instead of train.py's.
	Command *CommandTemplate
	// Scale is the study's name of the scale ({scale} in a Command); optional.
	Scale string
	// DataDir is the absolute path of a directory written by scripts/prepare_data.py.
	DataDir string
	// Domains and Mixture: the mixture's weights (summing to 1) in the order of Domains.
	Domains []string
	Mixture []float64
	// Preset names the model size ("20M" … "1B", or "tiny" for CPU tests).
	Preset string
	// Steps is the step to train to; ScheduleSteps the cosine horizon (0: Steps). Set the
	// horizon to the largest fidelity to extend a run later along the same curve.
	Steps         int64
	ScheduleSteps int64
	// EvalEvery and LogEvery are the eval and point intervals in steps (0: train.py's default).
	EvalEvery int64
	LogEvery  int64
	Seed      uint64
	// CheckpointDir (absolute; empty for none) is where the run checkpoints and resumes from.
	CheckpointDir   string
	CheckpointEvery int64
	// GPUs are the CUDA_VISIBLE_DEVICES names ([GPU.ID]) of the set; empty runs on the CPU,
	// more than one runs under torchrun.
	GPUs []string
	// Optional overrides of the preset (0: the preset's value).
	BatchSize  int
	MicroBatch int
	SeqLen     int
	LR         float64
	// Threads caps CPU threads per process (0: torch's default).
	Threads int
	// Env adds environment variables (NCCL_*, TORCH_*); names must be plain and not reserved.
	Env map[string]string
}

// ErrInvalidSpec wraps every validation failure of a [TrainSpec].
var ErrInvalidSpec = errors.New("invalid train spec")

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	gpuIDRE  = regexp.MustCompile(`^(?:[0-9]{1,4}|GPU-[0-9a-fA-F-]{1,64}|MIG-[0-9A-Za-z/-]{1,80})$`)
	reserved = map[string]bool{
		"CUDA_VISIBLE_DEVICES": true, "PYTHONUNBUFFERED": true, "RANK": true, "WORLD_SIZE": true,
		"LOCAL_RANK": true, "MASTER_ADDR": true, "MASTER_PORT": true, RunTokenEnv: true,
	}
)

// mixtureTolerance matches train.py's check of the weights' sum.
const mixtureTolerance = 1e-6

// Validate checks every field; errors wrap [ErrInvalidSpec] and name the field.
func (s TrainSpec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	paths := []struct{ name, v string }{{"data dir", s.DataDir}}
	if s.Command == nil {
		paths = append(paths, struct{ name, v string }{"script", s.Script})
	}
	if s.Command == nil || s.Command.UsesPython() {
		paths = append(paths, struct{ name, v string }{"python", s.Python})
	}
	for _, p := range paths {
		if !cleanAbs(p.v) {
			return bad("%s path %q must be absolute and clean", p.name, p.v)
		}
	}
	// Only a Command can pass the scale on; train.py gets the preset.
	if s.Command != nil && s.Scale != "" && !nameRE.MatchString(s.Scale) {
		return bad("scale %q is not a plain name", s.Scale)
	}
	if s.CheckpointDir != "" && !cleanAbs(s.CheckpointDir) {
		return bad("checkpoint dir %q must be absolute and clean", s.CheckpointDir)
	}
	if len(s.Domains) == 0 {
		return bad("no domains")
	}
	if len(s.Mixture) != len(s.Domains) {
		return bad("mixture has %d weights for %d domains", len(s.Mixture), len(s.Domains))
	}
	seen := map[string]bool{}
	sum := 0.0
	for i, d := range s.Domains {
		if !nameRE.MatchString(d) {
			return bad("domain %q is not a plain name", d)
		}
		if seen[d] {
			return bad("domain %q listed twice", d)
		}
		seen[d] = true
		w := s.Mixture[i]
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return bad("weight %v of domain %s is not a finite non-negative number", w, d)
		}
		sum += w
	}
	if math.Abs(sum-1) > mixtureTolerance {
		return bad("mixture weights sum to %v, not 1", sum)
	}
	if !nameRE.MatchString(s.Preset) {
		return bad("preset %q is not a plain name", s.Preset)
	}
	if s.Steps <= 0 {
		return bad("steps %d must be positive", s.Steps)
	}
	if s.ScheduleSteps < 0 || s.EvalEvery < 0 || s.LogEvery < 0 || s.CheckpointEvery < 0 ||
		s.BatchSize < 0 || s.MicroBatch < 0 || s.SeqLen < 0 || s.Threads < 0 {
		return bad("negative interval, size or thread count")
	}
	if math.IsNaN(s.LR) || s.LR < 0 || s.LR >= 1 {
		return bad("learning rate %v must be in [0, 1)", s.LR)
	}
	if s.Seed > math.MaxInt64 {
		return bad("seed %d exceeds int64", s.Seed)
	}
	ids := map[string]bool{}
	for _, id := range s.GPUs {
		if !gpuIDRE.MatchString(id) {
			return bad("gpu id %q is neither an index nor a GPU-/MIG- uuid", id)
		}
		if ids[id] {
			return bad("gpu %q listed twice", id)
		}
		ids[id] = true
	}
	for k, v := range s.Env {
		if !envRE.MatchString(k) || reserved[k] {
			return bad("environment variable %q is not allowed", k)
		}
		if strings.ContainsRune(v, 0) {
			return bad("environment variable %s holds a NUL byte", k)
		}
	}
	return nil
}

func cleanAbs(p string) bool {
	return p != "" && filepath.IsAbs(p) && filepath.Clean(p) == p && !strings.ContainsRune(p, 0)
}

// Argv returns the command line: python train.py … for zero or one GPU, python -m
// torch.distributed.run (torchrun) for several. Flags use --flag=value so no value can be
// mistaken for a flag.
func (s TrainSpec) Argv() ([]string, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Command != nil {
		return s.Command.Expand(s)
	}
	argv := []string{s.Python}
	if len(s.GPUs) > 1 {
		argv = append(argv, "-m", "torch.distributed.run", "--standalone",
			"--nproc_per_node="+strconv.Itoa(len(s.GPUs)))
	}
	argv = append(argv, s.Script)
	flag := func(name, v string) { argv = append(argv, "--"+name+"="+v) }
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	flag("preset", s.Preset)
	flag("data-dir", s.DataDir)
	flag("domains", strings.Join(s.Domains, ","))
	flag("mixture", joinWeights(s.Mixture))
	flag("steps", i64(s.Steps))
	flag("seed", strconv.FormatUint(s.Seed, 10))
	flag("device", device(s))
	opt := func(name string, v int64) {
		if v > 0 {
			flag(name, i64(v))
		}
	}
	opt("schedule-steps", s.ScheduleSteps)
	opt("eval-every", s.EvalEvery)
	opt("log-every", s.LogEvery)
	opt("checkpoint-every", s.CheckpointEvery)
	opt("batch-size", int64(s.BatchSize))
	opt("micro-batch", int64(s.MicroBatch))
	opt("seq-len", int64(s.SeqLen))
	opt("threads", int64(s.Threads))
	if s.CheckpointDir != "" {
		flag("checkpoint-dir", s.CheckpointDir)
	}
	if s.LR > 0 {
		flag("lr", strconv.FormatFloat(s.LR, 'g', -1, 64))
	}
	return argv, nil
}

// Environ returns the child's environment: base (usually os.Environ()) without variables that
// would confuse device selection or torchrun, plus CUDA_VISIBLE_DEVICES, unbuffered output
// and s.Env.
func (s TrainSpec) Environ(base []string) []string {
	env := make([]string, 0, len(base)+len(s.Env)+2)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if reserved[k] {
			continue
		}
		if _, over := s.Env[k]; over {
			continue
		}
		env = append(env, kv)
	}
	// An empty CUDA_VISIBLE_DEVICES hides every GPU from a CPU run.
	env = append(env, "CUDA_VISIBLE_DEVICES="+strings.Join(s.GPUs, ","), "PYTHONUNBUFFERED=1")
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+s.Env[k])
	}
	return env
}
