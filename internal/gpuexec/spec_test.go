package gpuexec

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func validSpec() TrainSpec {
	return TrainSpec{
		Python: "/usr/bin/python3", Script: "/opt/mixopt/scripts/train.py", DataDir: "/data/slimpajama",
		Domains: []string{"wiki", "github"}, Mixture: []float64{0.1, 0.9}, Preset: "1B", Steps: 20000,
		ScheduleSteps: 40000, EvalEvery: 500, Seed: 42, CheckpointDir: "/ckpt/trial-7",
		GPUs: []string{"GPU-1c2a", "GPU-77ef"}, LR: 3e-4, Env: map[string]string{"NCCL_DEBUG": "WARN"},
	}
}

func TestArgv(t *testing.T) {
	argv, err := validSpec().Argv()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/python3", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
		"/opt/mixopt/scripts/train.py", "--preset=1B", "--data-dir=/data/slimpajama", "--domains=wiki,github",
		"--mixture=0.1,0.9", "--steps=20000", "--seed=42", "--device=cuda", "--schedule-steps=40000",
		"--eval-every=500", "--checkpoint-dir=/ckpt/trial-7", "--lr=0.0003"}
	if !slices.Equal(argv, want) {
		t.Fatalf("argv\n%q\nwant\n%q", argv, want)
	}
	s := validSpec()
	s.GPUs = nil
	argv, _ = s.Argv()
	if argv[1] != s.Script || !slices.Contains(argv, "--device=cpu") {
		t.Fatalf("cpu argv %q", argv)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*TrainSpec){
		"relative python":   func(s *TrainSpec) { s.Python = "python3" },
		"unclean data dir":  func(s *TrainSpec) { s.DataDir = "/data/../etc" },
		"relative ckpt":     func(s *TrainSpec) { s.CheckpointDir = "ckpt" },
		"no domains":        func(s *TrainSpec) { s.Domains, s.Mixture = nil, nil },
		"length mismatch":   func(s *TrainSpec) { s.Mixture = []float64{1} },
		"sum":               func(s *TrainSpec) { s.Mixture = []float64{0.5, 0.6} },
		"negative":          func(s *TrainSpec) { s.Mixture = []float64{-0.5, 1.5} },
		"nan":               func(s *TrainSpec) { s.Mixture = []float64{math.NaN(), 1} },
		"flag-like domain":  func(s *TrainSpec) { s.Domains[0] = "--lr=5" },
		"path domain":       func(s *TrainSpec) { s.Domains[0] = "../x" },
		"duplicate domain":  func(s *TrainSpec) { s.Domains[1] = "wiki" },
		"bad preset":        func(s *TrainSpec) { s.Preset = "1B --fault=crash" },
		"zero steps":        func(s *TrainSpec) { s.Steps = 0 },
		"negative eval":     func(s *TrainSpec) { s.EvalEvery = -1 },
		"lr":                func(s *TrainSpec) { s.LR = 2 },
		"huge seed":         func(s *TrainSpec) { s.Seed = math.MaxUint64 },
		"gpu id":            func(s *TrainSpec) { s.GPUs = []string{"0;rm"} },
		"duplicate gpu":     func(s *TrainSpec) { s.GPUs = []string{"1", "1"} },
		"reserved env":      func(s *TrainSpec) { s.Env = map[string]string{"CUDA_VISIBLE_DEVICES": "0"} },
		"run token env":     func(s *TrainSpec) { s.Env = map[string]string{RunTokenEnv: "forged"} },
		"bad env name":      func(s *TrainSpec) { s.Env = map[string]string{"A=B": "x"} },
		"nul in env value":  func(s *TrainSpec) { s.Env = map[string]string{"X": "a\x00b"} },
		"nul in script":     func(s *TrainSpec) { s.Script = "/a\x00b" },
		"empty python path": func(s *TrainSpec) { s.Python = "" },
	} {
		s := validSpec()
		s.Domains = slices.Clone(s.Domains)
		mut(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if err := validSpec().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEnviron(t *testing.T) {
	env := validSpec().Environ([]string{"PATH=/usr/bin", "CUDA_VISIBLE_DEVICES=0", "RANK=3", "NCCL_DEBUG=INFO", RunTokenEnv + "=outer"})
	joined := strings.Join(env, "\n")
	for _, want := range []string{"PATH=/usr/bin", "CUDA_VISIBLE_DEVICES=GPU-1c2a,GPU-77ef", "PYTHONUNBUFFERED=1", "NCCL_DEBUG=WARN"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, joined)
		}
	}
	// A worker that itself runs inside another run does not pass that run's token on.
	for _, gone := range []string{"CUDA_VISIBLE_DEVICES=0", "RANK=3", "NCCL_DEBUG=INFO", RunTokenEnv + "=outer"} {
		if slices.Contains(env, gone) {
			t.Errorf("env keeps %s", gone)
		}
	}
}
