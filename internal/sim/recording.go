package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// RecordingFormat is the format tag every line of a recording carries.
const RecordingFormat = "mixopt.recording.v1"

// exactTolerance is the largest per-weight difference at which a recorded mixture counts as
// the requested one: far above float rounding, far below any meaningful mixture change.
const exactTolerance = 1e-9

// maxRecordingLine bounds one line (one run) so a corrupt file cannot exhaust memory; a
// 20k-step run with 50 metrics every step is about 20 MiB.
const maxRecordingLine = 64 << 20

// RecordedRun is one line of a recording: a finished training run and its curve. The JSON
// form is documented in docs/recording-format.md.
type RecordedRun struct {
	Format        string          `json:"format"`
	RunID         string          `json:"run_id"`
	Domains       []string        `json:"domains"`
	Mixture       []float64       `json:"mixture"`
	Scale         string          `json:"scale"`
	Params        float64         `json:"params"`
	Steps         int64           `json:"steps"`
	TokensPerStep int64           `json:"tokens_per_step"`
	FlopsPerStep  float64         `json:"flops_per_step,omitempty"`
	Points        []RecordedPoint `json:"points"`
	// Source is free-form provenance: who ran it, where, code version, data paths.
	Source map[string]any `json:"source,omitempty"`
}

// RecordedPoint is one point of a recorded curve.
type RecordedPoint struct {
	Step      int64              `json:"step"`
	Tokens    int64              `json:"tokens"`
	TrainLoss float64            `json:"train_loss"`
	Eval      map[string]float64 `json:"eval,omitempty"`
	WallTimeS float64            `json:"wall_time_s"`
}

// Validate checks every field; its errors name the field.
func (r RecordedRun) Validate() error {
	switch {
	case r.Format != RecordingFormat:
		return fmt.Errorf("format: %q, want %q", r.Format, RecordingFormat)
	case r.RunID == "":
		return fmt.Errorf("run_id: empty")
	case len(r.Domains) == 0:
		return fmt.Errorf("domains: empty")
	}
	seen := make(map[string]bool, len(r.Domains))
	for i, d := range r.Domains {
		if d == "" {
			return fmt.Errorf("domains[%d]: empty", i)
		}
		if seen[d] {
			return fmt.Errorf("domains[%d]: %q appears twice", i, d)
		}
		seen[d] = true
	}
	if err := checkMixture(r.Mixture, len(r.Domains)); err != nil {
		return fmt.Errorf("mixture: %w", err)
	}
	switch {
	case r.Scale == "":
		return fmt.Errorf("scale: empty")
	case !(r.Params > 0) || math.IsInf(r.Params, 0):
		return fmt.Errorf("params: %g, want finite and positive", r.Params)
	case r.Steps < 1:
		return fmt.Errorf("steps: %d, want at least 1", r.Steps)
	case r.TokensPerStep < 0:
		return fmt.Errorf("tokens_per_step: %d, want not negative", r.TokensPerStep)
	case !(r.FlopsPerStep >= 0) || math.IsInf(r.FlopsPerStep, 0):
		return fmt.Errorf("flops_per_step: %g, want finite and not negative", r.FlopsPerStep)
	case len(r.Points) == 0:
		return fmt.Errorf("points: empty")
	}
	var prev RecordedPoint
	for i, p := range r.Points {
		if err := p.validate(i, prev); err != nil {
			return err
		}
		prev = p
	}
	if last := r.Points[len(r.Points)-1].Step; last != r.Steps {
		return fmt.Errorf("steps: %d, but the last point is at step %d (steps is the last recorded step)", r.Steps, last)
	}
	return nil
}

func (p RecordedPoint) validate(i int, prev RecordedPoint) error {
	switch {
	case p.Step < 1:
		return fmt.Errorf("points[%d].step: %d, want at least 1", i, p.Step)
	case i > 0 && p.Step <= prev.Step:
		return fmt.Errorf("points[%d].step: %d, want more than the previous %d", i, p.Step, prev.Step)
	case p.Tokens < 0 || (i > 0 && p.Tokens < prev.Tokens):
		return fmt.Errorf("points[%d].tokens: %d, want not negative and not decreasing", i, p.Tokens)
	case !finite(p.TrainLoss):
		return fmt.Errorf("points[%d].train_loss: %g, want finite", i, p.TrainLoss)
	case !(p.WallTimeS >= 0) || math.IsInf(p.WallTimeS, 0) || (i > 0 && p.WallTimeS < prev.WallTimeS):
		return fmt.Errorf("points[%d].wall_time_s: %g, want finite, not negative and not decreasing", i, p.WallTimeS)
	}
	for k, v := range p.Eval {
		if k == "" {
			return fmt.Errorf("points[%d].eval: empty metric name", i)
		}
		if !finite(v) {
			return fmt.Errorf("points[%d].eval[%q]: %g, want finite", i, k, v)
		}
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// WriteRecordedRun appends r to w as one line, filling Format when empty. It validates
// first so that a recording never holds a line that LoadRecording would refuse, and writes
// the line with a single Write so concurrent appenders to an O_APPEND file do not interleave.
func WriteRecordedRun(w io.Writer, r RecordedRun) error {
	if r.Format == "" {
		r.Format = RecordingFormat
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("recorded run %q: %w", r.RunID, err)
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode recorded run %q: %w", r.RunID, err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write recorded run %q: %w", r.RunID, err)
	}
	return nil
}

// NewRecordedRun builds the record of a finished trial from its request and curve, for
// workers that record what they train (--record).
func NewRecordedRun(runID string, req Request, points []Point, source map[string]any) RecordedRun {
	r := RecordedRun{
		Format:        RecordingFormat,
		RunID:         runID,
		Domains:       append([]string(nil), req.Domains...),
		Mixture:       append([]float64(nil), req.Mixture...),
		Scale:         req.Scale,
		Params:        req.Params,
		TokensPerStep: req.TokensPerStep,
		FlopsPerStep:  req.FlopsPerStep,
		Source:        source,
	}
	for _, p := range points {
		r.Points = append(r.Points, RecordedPoint{
			Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: p.Eval, WallTimeS: p.WallTime,
		})
	}
	if len(points) > 0 {
		r.Steps = points[len(points)-1].Step
	}
	return r
}

// Recording is a set of recorded runs; it answers a request with the run whose mixture is
// nearest to the requested one. It is read-only after loading and safe for concurrent use.
type Recording struct {
	name     string
	runs     []RecordedRun // sorted by RunID, so the first of equals is the lowest run_id
	warnings []string
}

var _ Source = (*Recording)(nil)

// LoadRecording reads a recording file (JSONL, one run per line).
func LoadRecording(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	defer f.Close()
	return ReadRecording(f, path)
}

// ReadRecording parses a recording from r; name labels errors and the source.
func ReadRecording(r io.Reader, name string) (*Recording, error) {
	rec := &Recording{name: name}
	ids := make(map[string]int)
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("recording %s line %d: %w", name, lineNo, err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			run, warnings, perr := parseRecordedRun(line)
			for _, w := range warnings {
				rec.warnings = append(rec.warnings, fmt.Sprintf("line %d: %s", lineNo, w))
			}
			if perr != nil {
				return nil, fmt.Errorf("recording %s line %d: %w", name, lineNo, perr)
			}
			if first, dup := ids[run.RunID]; dup {
				return nil, fmt.Errorf("recording %s line %d: run_id: %q already used on line %d", name, lineNo, run.RunID, first)
			}
			ids[run.RunID] = lineNo
			rec.runs = append(rec.runs, run)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(rec.runs) == 0 {
		return nil, fmt.Errorf("recording %s holds no runs", name)
	}
	sort.Slice(rec.runs, func(i, j int) bool { return rec.runs[i].RunID < rec.runs[j].RunID })
	return rec, nil
}

// readLine returns the next line without its newline, refusing lines over the bound.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		line = append(line, chunk...)
		if len(line) > maxRecordingLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxRecordingLine)
		}
		if err != nil || !isPrefix {
			return line, err
		}
	}
}

// parseRecordedRun decodes and validates one line. Unknown fields are refused so a typo
// ("train_los") is an error rather than a silently missing value, and so are missing point
// fields; a mixture rounded to a few decimals is renormalised with a warning.
func parseRecordedRun(line []byte) (RecordedRun, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var run RecordedRun
	if err := dec.Decode(&run); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return RecordedRun{}, nil, fmt.Errorf("%s: want %s, got %s: %w", te.Field, te.Type, te.Value, err)
		}
		return RecordedRun{}, nil, describeDecodeError(line, err)
	}
	if dec.More() {
		return RecordedRun{}, nil, fmt.Errorf("invalid json: more than one value on the line")
	}
	if err := requirePointFields(line); err != nil {
		return RecordedRun{}, nil, err
	}
	var warnings []string
	if w := renormaliseRounded(&run); w != "" {
		warnings = append(warnings, w)
	}
	if err := run.Validate(); err != nil {
		return RecordedRun{}, warnings, err
	}
	// Empty and absent maps mean the same; keep one form so runs compare equal.
	if len(run.Source) == 0 {
		run.Source = nil
	}
	for i := range run.Points {
		if len(run.Points[i].Eval) == 0 {
			run.Points[i].Eval = nil
		}
	}
	return run, warnings, nil
}

// Warnings lists what loading mended, by line (rounded mixtures renormalised); a worker
// logs them.
func (r *Recording) Warnings() []string { return r.warnings }

// Runs returns the recorded runs, ordered by run_id. They share memory with the recording:
// do not modify them.
func (r *Recording) Runs() []RecordedRun { return r.runs }

func (r *Recording) Name() string {
	return fmt.Sprintf("recording:%s (%d runs)", r.name, len(r.runs))
}

// Run answers with the recorded run at the request's scale that has the request's domains,
// at least req.Steps steps and the nearest mixture (L1; an exact match within 1e-9 per
// weight wins; ties go to the lowest run_id). The curve is cut at req.Steps and thinned to
// EvalEvery. Domains may be recorded in another order; weights are matched by name.
func (r *Recording) Run(req Request) (Run, error) {
	if err := validateRequest(req); err != nil {
		return Run{}, fmt.Errorf("recording %s: %w", r.name, err)
	}
	best, bestDist, bestExact := -1, math.Inf(1), false
	for i := range r.runs {
		run := &r.runs[i]
		if !strings.EqualFold(run.Scale, req.Scale) || run.Steps < req.Steps {
			continue
		}
		dist, exact, ok := mixtureDistance(req, run)
		if !ok {
			continue
		}
		// Runs are sorted by run_id, so strict comparisons keep the lowest run_id on ties.
		if (exact && !bestExact) || (exact == bestExact && !bestExact && dist < bestDist) {
			best, bestDist, bestExact = i, dist, exact
		}
	}
	if best < 0 {
		return Run{}, fmt.Errorf("recording %s: no run at scale %s with at least %d steps over domains [%s]: %w",
			r.name, req.Scale, req.Steps, strings.Join(req.Domains, " "), ErrNoRun)
	}
	run := &r.runs[best]
	points := cutCurve(run.Points, req.Steps, req.EvalEvery)
	if len(points) == 0 {
		return Run{}, fmt.Errorf("recording %s: run %s at scale %s has no point at or before step %d: %w",
			r.name, run.RunID, req.Scale, req.Steps, ErrNoRun)
	}
	return Run{Points: points, SourceRun: run.RunID, Distance: bestDist}, nil
}

// mixtureDistance compares the requested mixture with a run's, matching domains by name.
// ok is false when the domain sets differ.
func mixtureDistance(req Request, run *RecordedRun) (dist float64, exact, ok bool) {
	if len(run.Domains) != len(req.Domains) {
		return 0, false, false
	}
	exact = true
	for i, d := range req.Domains {
		j := i
		if run.Domains[j] != d {
			j = indexOf(run.Domains, d)
			if j < 0 {
				return 0, false, false
			}
		}
		diff := math.Abs(req.Mixture[i] - run.Mixture[j])
		dist += diff
		if diff > exactTolerance {
			exact = false
		}
	}
	return dist, exact, true
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// cutCurve keeps the points with step <= steps and, when every > 0, the first point at or
// after each multiple of every, always keeping the last point so the trial ends on its
// final observation. Eval maps are copied so callers cannot change the recording.
func cutCurve(points []RecordedPoint, steps, every int64) []Point {
	n := sort.Search(len(points), func(i int) bool { return points[i].Step > steps })
	var out []Point
	next := every
	for i, p := range points[:n] {
		if every > 0 && p.Step < next && i != n-1 {
			continue
		}
		if every > 0 {
			next = (p.Step/every + 1) * every
		}
		var eval map[string]float64
		if p.Eval != nil {
			eval = make(map[string]float64, len(p.Eval))
			for k, v := range p.Eval {
				eval[k] = v
			}
		}
		out = append(out, Point{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: eval, WallTime: p.WallTimeS})
	}
	return out
}
