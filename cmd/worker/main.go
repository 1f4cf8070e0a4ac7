// Command worker takes trials from a mixopt coordinator and runs them: as real training
// through scripts/train.py, or, with -simulate, by replaying a simulator source.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/logging"
	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/worker"
)

func main() {
	var cfg worker.Config
	var simulate, logLevel, stateDir, faults string
	var speedup, noise float64
	var slots int
	host, _ := os.Hostname()
	flag.StringVar(&cfg.Addr, "coordinator", "127.0.0.1:7070", "coordinator gRPC address")
	flag.StringVar(&cfg.Hostname, "hostname", host, "name this worker reports")
	flag.StringVar(&simulate, "simulate", "", `replay a simulator source instead of training: "synthetic", "recording:FILE.jsonl" or "datamodel:FILE.json"`)
	flag.Float64Var(&speedup, "speedup", 1, "simulated mode: replay this many times faster than the modelled wall time")
	flag.Float64Var(&noise, "noise", 0, "simulated mode: standard deviation of Gaussian noise added to model sources' metrics")
	flag.IntVar(&slots, "slots", 1, "simulated mode: trials run at once (virtual GPUs)")
	flag.StringVar(&stateDir, "state-dir", "", "folder for the worker's id (kept across restarts) and points spilled while the coordinator is away")
	flag.IntVar(&cfg.MaxBufferedPoints, "max-buffered-points", 100000, "points per trial kept in memory while the coordinator is away (more spill to -state-dir)")
	flag.StringVar(&faults, "inject-faults", "", `simulated mode: fail attempts on purpose, "RATE:CLASS[,CLASS...]" with classes crash, oom, diverged, bad_data (fault drills)`)
	flag.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	log, err := logging.New(logLevel)
	if err != nil {
		fail(err)
	}
	defer log.Sync()
	cfg.Logger = log.With(zap.String("hostname", cfg.Hostname))

	if simulate == "" {
		fail(errors.New("-simulate is required until the real training mode lands (see docs/training.md)"))
	}
	if slots < 1 || slots > 10000 {
		fail(fmt.Errorf("-slots: %d out of range (1 to 10000)", slots))
	}
	if speedup <= 0 {
		fail(fmt.Errorf("-speedup: must be positive, got %v", speedup))
	}
	src, err := sim.Open(simulate, sim.OpenOptions{Noise: noise})
	if err != nil {
		fail(fmt.Errorf("-simulate: %w", err))
	}
	injected, err := worker.ParseFaults(faults)
	if err != nil {
		fail(fmt.Errorf("-inject-faults: %w", err))
	}
	if stateDir != "" {
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			fail(fmt.Errorf("-state-dir: %w", err))
		}
		cfg.IDFile = filepath.Join(stateDir, "worker-id")
		cfg.SpillDir = stateDir
	}
	cfg.Runner = worker.SimRunner{Source: src, Speedup: speedup, Faults: injected}
	cfg.Capacity = int32(slots)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := worker.Run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker failed", zap.Error(err))
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "worker:", err)
	os.Exit(1)
}
