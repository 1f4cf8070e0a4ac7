// Package sim provides simulator sources: functions from (mixture, scale, steps) to a loss
// curve. Simulated workers replay them instead of training, and the optimizer benchmark
// evaluates policies against them in-process.
package sim

import "errors"

// Request asks a source for the curve of one trial.
type Request struct {
	// Domains names the mixture's coordinates, in order.
	Domains []string
	// Mixture weights, summing to 1, in the order of Domains.
	Mixture []float64
	// Scale is the scale's name (for example "20M"); Params its parameter count.
	Scale  string
	Params float64
	// FlopsPerStep and TokensPerStep of the scale (tokens may be 0: unknown).
	FlopsPerStep  float64
	TokensPerStep int64
	// Steps is the trial's step budget; the curve ends there.
	Steps int64
	// EvalEvery is the step interval between points (0: the source's natural interval).
	EvalEvery int64
	// Seed makes noisy sources reproducible.
	Seed uint64
}

// Point is one curve point of a simulated run.
type Point struct {
	Step      int64
	Tokens    int64
	TrainLoss float64
	// Eval holds per-domain losses ("<domain>_ce", "mean_ce") and other metrics by name.
	Eval map[string]float64
	// WallTime is the modelled seconds since the run started, for replay pacing.
	WallTime float64
}

// Run is a simulated curve and where it came from.
type Run struct {
	Points []Point
	// SourceRun names the recorded run that answered (empty for model sources).
	SourceRun string
	// Distance is the L1 distance between the requested and the recorded mixture.
	Distance float64
}

// Source produces curves.
type Source interface {
	// Name describes the source for logs and status.
	Name() string
	// Run returns the curve of the requested trial.
	Run(req Request) (Run, error)
}

// ErrNoRun is returned when a source has nothing that can answer a request.
var ErrNoRun = errors.New("no recorded run can answer the request")
