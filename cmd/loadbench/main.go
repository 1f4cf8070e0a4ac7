// Command loadbench measures one coordinator under many simulated workers on loopback:
// points ingested per second, decision latency, coordinator memory, and that no point was
// lost or duplicated. It prints a table; see docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/mixopt/mixopt/internal/buildinfo"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mixopt/mixopt/internal/loadtest"
)

func main() {
	var cfg loadtest.Config
	var workers string
	flag.StringVar(&cfg.CoordinatorBin, "coordinator", "bin/coordinator", "coordinator binary")
	flag.StringVar(&workers, "workers", "100,500,1000", "worker counts to run, comma-separated")
	flag.IntVar(&cfg.TrialsPerWorker, "trials-per-worker", 4, "study size: workers x this many trials")
	flag.IntVar(&cfg.PointsPerTrial, "points", 200, "curve points per trial")
	flag.StringVar(&cfg.Policy, "policy", "random", "decision policy")
	flag.Float64Var(&cfg.TrialSeconds, "trial-seconds", 4, "replay time of one trial (0: as fast as possible, saturating the coordinator)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on each run")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "have the coordinator write a CPU profile here (last run)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.IntVar(&cfg.Kills, "kills", 0, "kill the coordinator with SIGKILL this many times under load, evenly over the study, restarting it on the same database")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("loadbench"))
		return
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "trial replay %gs, %d points per trial, policy %s\n", cfg.TrialSeconds, cfg.PointsPerTrial, cfg.Policy)
	fmt.Fprintln(tw, "workers\ttrials\tpoints\tseconds\tpoints/s\tassign p50 (coord)\tassign p99 (coord)\tacquire p50 (worker)\tacquire p99 (worker)\tcoordinator peak MB\tkills\tmax restart\tretried\tlost\tduplicated\t")
	failed := false
	for _, w := range strings.Split(workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "loadbench: -workers: %q is not a positive count\n", w)
			os.Exit(2)
		}
		cfg.Workers = n
		dir, err := os.MkdirTemp("", "loadbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(1)
		}
		cfg.Dir = dir
		res, err := loadtest.Run(context.Background(), cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadbench: %d workers: %v (logs in %s)\n", n, err, dir)
			failed = true
			continue
		}
		if os.Getenv("MIXOPT_LOADTEST_DEBUG") == "" {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "loadbench: logs kept in %s\n", dir)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%d\t%s\t%d\t%d\t%d\t\n", res.Workers, res.Trials, res.PointsStored,
			res.Elapsed.Seconds(), res.PointsPerSecond, res.ServerP50.Round(time.Millisecond), res.ServerP99.Round(time.Millisecond),
			res.DecisionP50.Round(time.Millisecond), res.DecisionP99.Round(time.Millisecond), res.CoordinatorPeakMB,
			res.Kills, res.RestartMax.Round(time.Millisecond), res.TrialsRetried, res.Lost, res.Duplicated)
		fmt.Fprintf(os.Stderr, "loadbench: %d workers done\n", n) // the table prints at the end, aligned
		if res.Lost != 0 || res.Duplicated != 0 {
			failed = true
		}
	}
	tw.Flush()
	if failed {
		os.Exit(1)
	}
}
