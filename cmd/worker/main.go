// Command worker takes trials from a mixopt coordinator and runs them: as real training
// through scripts/train.py on this host's GPUs (or its CPU), or, with -simulate, by replaying
// a simulator source. docs/worker.md describes both modes and every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/mixopt/mixopt/internal/buildinfo"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mixopt/mixopt/internal/auth"
	"github.com/mixopt/mixopt/internal/gpuexec"
	"github.com/mixopt/mixopt/internal/logging"
	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/worker"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// flags are the command line, kept together so that checks can name what was set.
type flags struct {
	simulate, logLevel, stateDir, faults, record                 string
	dataDir, python, trainScript, checkpointDir, gpus, presetMap string
	trainCommand                                                 string
	labels                                                       []string
	tokenFile, tlsCA, tlsCert, tlsKey, tlsServerName             string
	speedup, noise, farReplay                                    float64
	slots, threads                                               int
	checkpointEvery                                              int64
	stopGrace                                                    time.Duration
	useTLS                                                       bool
	set                                                          map[string]bool
}

// Flags that only mean something in one mode; giving one in the other is a mistake worth
// an error rather than a silent no-op.
var (
	simOnly  = []string{"speedup", "noise", "slots", "inject-faults", "far-replay"}
	realOnly = []string{"data-dir", "python", "train-script", "train-command", "checkpoint-dir", "checkpoint-every", "gpus", "preset-map", "threads", "stop-grace"}
)

func main() {
	// The same binary is each real run's fence watchdog (internal/worker/watchdog.go).
	if worker.IsFenceWatchdog() {
		os.Exit(worker.RunFenceWatchdog())
	}
	var cfg worker.Config
	var f flags
	host, _ := os.Hostname()
	flag.StringVar(&cfg.Addr, "coordinator", "127.0.0.1:7070", "coordinator gRPC address")
	flag.StringVar(&cfg.Hostname, "hostname", host, "name this worker reports")
	flag.StringVar(&f.simulate, "simulate", "", `replay a simulator source instead of training: "synthetic", "recording:FILE.jsonl" or "datamodel:FILE.json"`)
	flag.Float64Var(&f.speedup, "speedup", 1, "simulated mode: replay this many times faster than the modelled wall time")
	flag.Float64Var(&f.noise, "noise", 0, "simulated mode: standard deviation of Gaussian noise added to model sources' metrics")
	flag.IntVar(&f.slots, "slots", 1, "simulated mode: trials run at once (virtual GPUs)")
	flag.Float64Var(&f.farReplay, "far-replay", 0.05, "simulated mode: log a warning when a recording answers with a run this far (L1 distance of mixtures) from the one asked for")
	flag.StringVar(&f.faults, "inject-faults", "", `simulated mode: fail attempts on purpose, "RATE:CLASS[,CLASS...]" with classes crash, oom, diverged, bad_data (fault drills)`)
	flag.StringVar(&f.dataDir, "data-dir", "", "real mode: folder written by scripts/prepare_data.py (required)")
	flag.StringVar(&f.python, "python", "", "real mode: Python interpreter with torch and numpy (default: the python3 on PATH when it has torch, else "+gpuexec.FallbackPython+")")
	flag.StringVar(&f.trainScript, "train-script", "", "real mode: scripts/train.py (default: ../scripts/train.py beside this binary's folder, as in a checkout's bin/)")
	flag.StringVar(&f.trainCommand, "train-command", "", `real mode: run this trainer instead of train.py: a command line (or JSON array) with placeholders such as {python} {data_dir} {domains} {mixture} {steps}; no shell (docs/train-protocol.md)`)
	flag.Func("label", "KEY=VALUE the worker reports, for studies to select on (repeatable)", func(v string) error {
		f.labels = append(f.labels, v)
		return nil
	})
	flag.StringVar(&f.checkpointDir, "checkpoint-dir", "", "real mode: folder for per-trial checkpoints, so a requeued attempt resumes (default: -state-dir/checkpoints; none without -state-dir)")
	flag.Int64Var(&f.checkpointEvery, "checkpoint-every", 0, "real mode: checkpoint interval in steps (0: at the end and when stopped)")
	flag.StringVar(&f.gpus, "gpus", "", `real mode: GPUs to use instead of nvidia-smi's and CUDA_VISIBLE_DEVICES' ("none", "0,1" or "0:81920,1:81920" with memory in MiB)`)
	flag.StringVar(&f.presetMap, "preset-map", "", `real mode: train.py preset per scale, "SCALE=PRESET,..." (a scale not listed uses the preset of its own name)`)
	flag.IntVar(&f.threads, "threads", 0, "real mode: CPU threads per training process (0: torch's default)")
	flag.DurationVar(&f.stopGrace, "stop-grace", 30*time.Second, "real mode: time a stopped trial gets to checkpoint before it is killed")
	flag.StringVar(&f.record, "record", "", "append each trial that succeeds to this recording (JSONL, docs/recording-format.md)")
	flag.StringVar(&f.stateDir, "state-dir", "", "folder for the worker's id (kept across restarts) and points spilled while the coordinator is away")
	flag.IntVar(&cfg.MaxBufferedPoints, "max-buffered-points", 100000, "points per trial kept in memory while the coordinator is away (more spill to -state-dir)")
	flag.StringVar(&f.tokenFile, "token-file", "", "file holding this worker's token (else $"+auth.EnvTokenFile+", else $"+auth.EnvToken+")")
	flag.BoolVar(&f.useTLS, "tls", false, "connect with TLS, trusting the system's roots (implied by the other -tls flags)")
	flag.StringVar(&f.tlsCA, "tls-ca", "", "CA file to verify the coordinator's certificate with")
	flag.StringVar(&f.tlsCert, "tls-cert", "", "client certificate for mutual TLS (with -tls-key)")
	flag.StringVar(&f.tlsKey, "tls-key", "", "client key for mutual TLS (with -tls-cert)")
	flag.StringVar(&f.tlsServerName, "tls-server-name", "", "name to check the coordinator's certificate against (default: the host dialled)")
	flag.StringVar(&f.logLevel, "log-level", "info", "log level: debug (also copies train.py's stderr), info, warn, error")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("worker"))
		return
	}
	f.set = map[string]bool{}
	flag.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })

	log, err := logging.New(f.logLevel)
	if err != nil {
		fail(fmt.Errorf("-log-level: %w", err))
	}
	defer log.Sync()
	cfg.Logger = log.With(zap.String("hostname", cfg.Hostname))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := configure(ctx, &cfg, &f); err != nil {
		fail(err)
	}
	if f.record != "" {
		file, err := worker.OpenRecording(f.record)
		if err != nil {
			fail(fmt.Errorf("-record: %w", err))
		}
		defer file.Close()
		cfg.Runner = &worker.RecordingRunner{Runner: cfg.Runner, File: file, Hostname: cfg.Hostname, Logger: cfg.Logger}
	}
	if err := worker.Run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker failed", zap.Error(err))
		fail(err)
	}
}

// configure turns flags into cfg: connection security, state, and the runner of the mode.
func configure(ctx context.Context, cfg *worker.Config, f *flags) error {
	if err := security(cfg, f); err != nil {
		return err
	}
	if f.stateDir != "" {
		if err := os.MkdirAll(f.stateDir, 0o755); err != nil {
			return fmt.Errorf("-state-dir: %w", err)
		}
		// Check before registering: a worker that registers and then cannot keep its id
		// leaves a ghost registration behind.
		if err := worker.CheckWritable(f.stateDir); err != nil {
			return fmt.Errorf("-state-dir: %w", err)
		}
		cfg.IDFile = filepath.Join(f.stateDir, "worker-id")
		cfg.SpillDir = f.stateDir
	}
	labels, err := worker.ParseLabels(f.labels)
	if err != nil {
		return fmt.Errorf("-label: %w", err)
	}
	if f.simulate != "" {
		for _, name := range realOnly {
			if f.set[name] {
				return fmt.Errorf("-%s: only for real training, not with -simulate", name)
			}
		}
		cfg.Identity = worker.SimulatedIdentity(f.simulate, labels)
		return configureSimulated(cfg, f)
	}
	for _, name := range simOnly {
		if f.set[name] {
			return fmt.Errorf("-%s: only for simulated workers (-simulate)", name)
		}
	}
	return configureReal(ctx, cfg, f, labels)
}

func configureSimulated(cfg *worker.Config, f *flags) error {
	if f.slots < 1 || f.slots > 10000 {
		return fmt.Errorf("-slots: %d out of range (1 to 10000)", f.slots)
	}
	if f.speedup <= 0 {
		return fmt.Errorf("-speedup: must be positive, got %v", f.speedup)
	}
	src, err := sim.Open(f.simulate, sim.OpenOptions{Noise: f.noise})
	if err != nil {
		return fmt.Errorf("-simulate: %w", err)
	}
	cfg.Logger.Info("simulator loaded", zap.String("source", src.Name()))
	if rec, ok := src.(*sim.Recording); ok {
		for _, w := range rec.Warnings() {
			cfg.Logger.Warn("recording mended", zap.String("what", w))
		}
	}
	if !(f.farReplay > 0) {
		return fmt.Errorf("-far-replay: must be positive, got %v", f.farReplay)
	}
	injected, err := worker.ParseFaults(f.faults)
	if err != nil {
		return fmt.Errorf("-inject-faults: %w", err)
	}
	cfg.Runner = worker.SimRunner{Source: src, Speedup: f.speedup, Faults: injected, FarDistance: f.farReplay,
		OnFar: func(trialID uint64, run string, distance float64) {
			cfg.Logger.Warn("replayed a recorded run far from the requested mixture", zap.Uint64("trial", trialID),
				zap.String("run", run), zap.Float64("l1_distance", distance), zap.Float64("far_replay", f.farReplay))
		}}
	cfg.Capacity = int32(f.slots)
	return nil
}

func configureReal(ctx context.Context, cfg *worker.Config, f *flags, labels map[string]string) error {
	if f.dataDir == "" {
		return errors.New("-data-dir: required for real training (or give -simulate SOURCE to replay)")
	}
	abs := func(flagName, p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("-%s: %w", flagName, err)
		}
		if _, err := os.Stat(a); err != nil {
			return "", fmt.Errorf("-%s: %w", flagName, err)
		}
		return a, nil
	}
	var tc worker.TrainConfig
	var err error
	if tc.DataDir, err = abs("data-dir", f.dataDir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(tc.DataDir, "meta.json")); err != nil {
		return fmt.Errorf("-data-dir: %s has no meta.json; write it with scripts/prepare_data.py: %w", tc.DataDir, err)
	}
	if f.trainCommand != "" {
		if f.set["train-script"] {
			return errors.New("-train-command: runs instead of -train-script; give one of them")
		}
		if tc.Command, err = gpuexec.ParseCommandTemplate(f.trainCommand); err != nil {
			return fmt.Errorf("-train-command: %w", err)
		}
	}
	if err := interpreter(ctx, cfg, &tc, f, labels); err != nil {
		return err
	}
	script := f.trainScript
	if tc.Command != nil {
		script = "" // the command names its own trainer
	} else if script == "" {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return fmt.Errorf("-train-script: not given, and this binary's path is unknown: %w", err)
		}
		script = filepath.Join(filepath.Dir(exe), "..", "scripts", "train.py")
	}
	if script != "" {
		if tc.Script, err = abs("train-script", script); err != nil {
			return err
		}
	}
	ckdir := f.checkpointDir
	if ckdir == "" && f.stateDir != "" {
		ckdir = filepath.Join(f.stateDir, "checkpoints")
	}
	if ckdir != "" {
		if err := os.MkdirAll(ckdir, 0o755); err != nil {
			return fmt.Errorf("-checkpoint-dir: %w", err)
		}
		if tc.CheckpointRoot, err = abs("checkpoint-dir", ckdir); err != nil {
			return err
		}
	}
	if f.checkpointEvery < 0 {
		return fmt.Errorf("-checkpoint-every: %d is negative", f.checkpointEvery)
	}
	if f.threads < 0 {
		return fmt.Errorf("-threads: %d is negative", f.threads)
	}
	if f.stopGrace <= 0 {
		return fmt.Errorf("-stop-grace: %v must be positive", f.stopGrace)
	}
	if tc.Presets, err = worker.ParsePresetMap(f.presetMap); err != nil {
		return fmt.Errorf("-preset-map: %w", err)
	}
	if tc.GPUs, err = gpuexec.Discover(ctx, gpuexec.DiscoverOptions{Override: f.gpus}); err != nil {
		return fmt.Errorf("-gpus: discover gpus: %w", err)
	}
	tc.CheckpointEvery, tc.Threads, tc.StopGrace = f.checkpointEvery, f.threads, f.stopGrace
	tc.Logger = cfg.Logger
	if f.logLevel == "debug" {
		tc.Stderr = os.Stderr
	}
	if tc.FenceWatchdog, err = os.Executable(); err != nil {
		return fmt.Errorf("fence watchdog: %w", err)
	}
	runner, err := worker.NewTrainRunner(tc)
	if err != nil {
		return err
	}
	cfg.Runner = runner
	for _, g := range tc.GPUs {
		cfg.GPUs = append(cfg.GPUs, &pb.Gpu{Index: int32(g.Index), Name: g.Name, MemoryMib: g.MemoryMiB})
	}
	// One trial per GPU set the scheduler places; a CPU-only host runs one trial at a time.
	cfg.Capacity = int32(max(len(tc.GPUs), 1))
	trainer := tc.Script
	if tc.Command != nil {
		trainer = tc.Command.String()
	}
	cfg.Logger.Info("real training", zap.Int("gpus", len(tc.GPUs)), zap.String("data_dir", tc.DataDir),
		zap.String("trainer", trainer), zap.String("checkpoint_dir", tc.CheckpointRoot))
	return nil
}

// interpreter probes the training interpreter (the one -python names, else the default)
// and sets the worker's identity. train.py needs torch: without it real mode is refused
// here rather than failing every trial. A -train-command that does not run {python} needs
// no interpreter.
func interpreter(ctx context.Context, cfg *worker.Config, tc *worker.TrainConfig, f *flags, labels map[string]string) error {
	if tc.Command != nil && !tc.Command.UsesPython() {
		if f.set["python"] {
			return errors.New("-python: the -train-command does not use {python}")
		}
		cfg.Identity = worker.RealIdentity(nil, labels)
		return nil
	}
	var in gpuexec.Interpreter
	var err error
	if f.python != "" {
		p, aerr := filepath.Abs(f.python)
		if aerr != nil {
			return fmt.Errorf("-python: %w", aerr)
		}
		in, err = gpuexec.ProbeInterpreter(ctx, p, gpuexec.ProbeOptions{})
	} else {
		in, err = gpuexec.FindInterpreter(ctx, gpuexec.ProbeOptions{})
	}
	if err != nil {
		return fmt.Errorf("-python: %w", err)
	}
	if err := in.RequireTorch(); err != nil {
		if tc.Command == nil {
			return fmt.Errorf("-python: train.py needs torch: %w", err)
		}
		// A team's trainer may bring its own environment; say what {python} lacks.
		cfg.Logger.Warn("the interpreter of -train-command has no torch", zap.String("python", in.Path), zap.String("why", in.TorchError))
	}
	tc.Python = in.Path
	cfg.Identity = worker.RealIdentity(&in, labels)
	cfg.Logger.Info("training interpreter", zap.String("python", in.Path), zap.String("offers", in.Summary()),
		zap.Strings("devices", in.Devices), zap.String("compile_unavailable_because", in.CompileError))
	return nil
}

// security sets TLS and the bearer token from the flags.
func security(cfg *worker.Config, f *flags) error {
	useTLS := f.useTLS || f.tlsCA != "" || f.tlsCert != "" || f.tlsKey != "" || f.tlsServerName != ""
	if useTLS {
		tc, err := auth.ClientTLSConfig(f.tlsCA, f.tlsCert, f.tlsKey, f.tlsServerName)
		if err != nil {
			return fmt.Errorf("-tls-ca/-tls-cert/-tls-key: %w", err)
		}
		cfg.TransportCredentials = credentials.NewTLS(tc)
	}
	tok, err := auth.ClientToken(f.tokenFile)
	if err != nil {
		return fmt.Errorf("-token-file: %w", err)
	}
	if tok == "" {
		return nil
	}
	if !useTLS && !auth.IsLoopback(cfg.Addr) {
		return fmt.Errorf("-token-file: refusing to send the token without TLS to %s (not loopback); add -tls-ca or -tls", cfg.Addr)
	}
	creds, err := auth.NewTokenCredentials(tok, useTLS)
	if err != nil {
		return fmt.Errorf("-token-file: %w", err)
	}
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithPerRPCCredentials(creds))
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "worker:", err)
	os.Exit(1)
}
