// Package sim provides simulator sources: functions from (mixture, scale, steps) to a loss
// curve. Simulated workers replay them instead of training, and the optimizer benchmark
// evaluates policies against them in-process.
//
// Three sources exist: NewDataModelSource (the paper's fitted MLP), NewSynthetic (a
// closed-form scaling-law shape, docs/synthetic-source.md) and LoadRecording (real runs
// replayed, docs/recording-format.md); Open picks one from a spec string. All are safe for
// concurrent use, and the package does no I/O beyond reading the files it is given.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

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

// mixtureSumTolerance bounds |1 - sum(mixture)|: candidates come from optimizers on the
// simplex, so anything further off is a caller bug rather than rounding.
const mixtureSumTolerance = 1e-6

// maxPoints bounds a curve's length so a tiny EvalEvery cannot exhaust memory.
const maxPoints = 1 << 20

// validateRequest checks what every source relies on.
func validateRequest(req Request) error {
	if len(req.Domains) == 0 {
		return fmt.Errorf("request has no domains")
	}
	seen := make(map[string]bool, len(req.Domains))
	for i, d := range req.Domains {
		if d == "" {
			return fmt.Errorf("request domain %d is empty", i)
		}
		if seen[d] {
			return fmt.Errorf("request domain %q appears twice", d)
		}
		seen[d] = true
	}
	if err := checkMixture(req.Mixture, len(req.Domains)); err != nil {
		return fmt.Errorf("request mixture: %w", err)
	}
	switch {
	case req.Steps < 1:
		return fmt.Errorf("request steps %d: must be at least 1", req.Steps)
	case req.EvalEvery < 0:
		return fmt.Errorf("request eval every %d: must not be negative", req.EvalEvery)
	case req.TokensPerStep < 0:
		return fmt.Errorf("request tokens per step %d: must not be negative", req.TokensPerStep)
	case !(req.Params >= 0) || math.IsInf(req.Params, 0):
		return fmt.Errorf("request params %g: must be finite and not negative", req.Params)
	case !(req.FlopsPerStep >= 0) || math.IsInf(req.FlopsPerStep, 0):
		return fmt.Errorf("request flops per step %g: must be finite and not negative", req.FlopsPerStep)
	}
	return nil
}

// checkMixture checks that w has n finite, non-negative weights summing to 1.
func checkMixture(w []float64, n int) error {
	if len(w) != n {
		return fmt.Errorf("has %d weights for %d domains", len(w), n)
	}
	sum := 0.0
	for i, x := range w {
		if !(x >= 0) || math.IsInf(x, 0) {
			return fmt.Errorf("weight %d is %g, want finite and not negative", i, x)
		}
		sum += x
	}
	if math.Abs(sum-1) > mixtureSumTolerance {
		return fmt.Errorf("weights sum to %.9g, want 1", sum)
	}
	return nil
}

// stepGrid lists the steps of a model source's curve: multiples of every from "from" up to
// steps, and steps itself so the trial always ends on its final observation.
func stepGrid(from, every, steps int64) ([]int64, error) {
	if every < 1 {
		return nil, fmt.Errorf("eval every %d: must be at least 1", every)
	}
	if steps/every > maxPoints {
		return nil, fmt.Errorf("eval every %d gives more than %d points for %d steps", every, maxPoints, steps)
	}
	first := (from + every - 1) / every * every
	if first < every {
		first = every
	}
	var grid []int64
	for s := first; s <= steps; s += every {
		grid = append(grid, s)
	}
	if len(grid) == 0 || grid[len(grid)-1] != steps {
		grid = append(grid, steps)
	}
	return grid, nil
}

// modelledFLOPS is the throughput that turns FLOPs into modelled wall time: 100 TFLOP/s,
// roughly what one modern accelerator sustains on LLM training.
const modelledFLOPS = 1e14

// noiser adds reproducible Gaussian noise. Each (step, metric) value gets a draw that depends
// only on the request's seed, scale and mixture and on the step, so a point reads the same
// whatever the run's length or eval interval (a resumed or re-run trial sees the same curve),
// while trials with different mixtures but a shared seed get independent noise.
type noiser struct {
	sd  float64
	key uint64
}

func newNoiser(sd float64, req Request) noiser {
	h := fnv.New64a()
	h.Write([]byte(req.Scale))
	var b [8]byte
	for _, w := range req.Mixture {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(w))
		h.Write(b[:])
	}
	return noiser{sd: sd, key: req.Seed ^ h.Sum64()}
}

// at returns the draws for one step, or nil when noise is off.
func (n noiser) at(step int64) *rand.Rand {
	if n.sd == 0 {
		return nil
	}
	return rand.New(rand.NewPCG(n.key, uint64(step)))
}

// parseScaleName reads a parameter count from a scale name such as "20M", "1.3B" or "350k".
func parseScaleName(name string) (float64, bool) {
	s := strings.TrimSpace(name)
	if len(s) < 2 {
		return 0, false
	}
	mult := 0.0
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1e3
	case 'm', 'M':
		mult = 1e6
	case 'b', 'B', 'g', 'G':
		mult = 1e9
	case 't', 'T':
		mult = 1e12
	default:
		return 0, false
	}
	v, err := strconv.ParseFloat(s[:len(s)-1], 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, false
	}
	return v * mult, true
}
