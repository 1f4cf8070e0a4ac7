// Package worker is the worker agent: it registers with the coordinator, takes trials,
// runs them through a Runner (simulated replay or real training), streams their points with
// sequence numbers, and keeps heartbeating. While the coordinator is away it keeps running
// its trials, buffers their points and retries with backoff.
package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Runner runs one trial attempt, calling emit for each curve point in step order.
type Runner interface {
	Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error)
}

// RunResult says where a finished run's curve came from.
type RunResult struct {
	SourceRun      string
	SourceDistance float64
	// Params, TokensPerStep and FlopsPerStep are what a real run measured (train.py's start
	// event), which a recording should hold rather than the spec's nominal values; zero for
	// replays.
	Params        float64
	TokensPerStep int64
	FlopsPerStep  float64
	// Provenance is free-form facts about the run (preset, device, …) for a recording.
	Provenance map[string]any
}

// RunError is a classified training failure.
type RunError struct {
	Class  pb.FailureClass
	Reason string
}

// Error is the reason alone: the coordinator's stored reason names the class already.
func (e *RunError) Error() string { return e.Reason }

// SimRunner replays a simulator source's curve, pacing points by their modelled wall time
// divided by Speedup.
type SimRunner struct {
	Source  sim.Source
	Speedup float64
	// Faults, when set, makes some attempts fail halfway (fault tests and drills).
	Faults *Faults
	// OnFar, when set, hears of every replay whose run lies more than FarDistance (L1)
	// from the mixture asked for: a recording that answers from far away misleads.
	OnFar       func(trialID uint64, run string, distance float64)
	FarDistance float64
}

func (r SimRunner) Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error) {
	t := a.Trial
	run, err := r.Source.Run(sim.Request{
		Domains: a.Domains, Mixture: t.Mixture, Scale: a.Scale.Name, Params: a.Scale.Params,
		FlopsPerStep: a.Scale.FlopsPerStep, TokensPerStep: a.Scale.TokensPerStep,
		Steps: t.Steps, EvalEvery: a.EvalEvery, Seed: a.Seed,
	})
	if err != nil {
		return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_BAD_DATA, Reason: fmt.Sprintf("simulator %s: %v", r.Source.Name(), err)}
	}
	speedup := r.Speedup
	if speedup <= 0 {
		speedup = 1
	}
	fault, failing := r.Faults.draw(t.Id, a.Attempt)
	start := time.Now()
	for i, p := range run.Points {
		if failing && i >= len(run.Points)/2 {
			return RunResult{}, fault
		}
		due := start.Add(time.Duration(p.WallTime / speedup * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return RunResult{}, ctx.Err()
			case <-time.After(wait):
			}
		} else if ctx.Err() != nil {
			return RunResult{}, ctx.Err()
		}
		emit(&pb.CurvePoint{
			Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: p.Eval,
			// The modelled time, not the replay's: GPU-hours then mean what the run
			// would have cost.
			WallTimeS: p.WallTime,
		})
	}
	if r.OnFar != nil && run.Distance > r.FarDistance {
		r.OnFar(t.Id, run.SourceRun, run.Distance)
	}
	return RunResult{SourceRun: run.SourceRun, SourceDistance: run.Distance}, nil
}
