package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// CSVOptions says how to read a table of other people's runs (one row per run, or per
// point of a run's curve) into a recording.
type CSVOptions struct {
	// Domains are the mixture columns, in mixture order; their names become the domains.
	Domains []string
	// Metrics are the columns that become eval metrics (e.g. pile_cc_ce, mean_ce).
	Metrics []string
	// TrainLoss names the train_loss column (default "train_loss").
	TrainLoss string
	// TokensPerStep gives tokens (step × it) for tables with no tokens column.
	TokensPerStep int64
	// FlopsPerSecond gives wall_time_s (FLOPs so far ÷ it) for tables with no wall_time_s
	// column; FLOPs per step are flops_per_step, else 6 × params × tokens per step.
	FlopsPerSecond float64
	// Source is recorded as each run's provenance.
	Source string
}

// RunsFromCSV converts a CSV table with a header row into recorded runs. Columns it knows:
// run_id (rows sharing one form a curve; without it each row is a run), scale, params,
// steps or step, tokens, tokens_per_step, flops_per_step, wall_time_s, the train_loss
// column, and opts' domain and metric columns. Every problem is reported with its line and
// column; runs holds only runs that validate.
func RunsFromCSV(r io.Reader, opts CSVOptions) (runs []RecordedRun, problems []Problem, err error) {
	if len(opts.Domains) == 0 {
		return nil, nil, errors.New("domains: name the mixture columns")
	}
	if opts.TrainLoss == "" {
		opts.TrainLoss = "train_loss"
	}
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	need := append(append([]string{"scale", "params", opts.TrainLoss}, opts.Domains...), opts.Metrics...)
	for _, name := range need {
		if _, ok := col[name]; !ok {
			return nil, nil, fmt.Errorf("csv header: no column %q (columns: %s)", name, strings.Join(header, ", "))
		}
	}
	stepCol, ok := col["steps"]
	if !ok {
		if stepCol, ok = col["step"]; !ok {
			return nil, nil, errors.New(`csv header: no "steps" or "step" column`)
		}
	}
	_, hasTokens := col["tokens"]
	_, hasWall := col["wall_time_s"]
	_, hasTokensPerStep := col["tokens_per_step"]
	if !hasTokens && !hasTokensPerStep && opts.TokensPerStep <= 0 {
		return nil, nil, errors.New(`tokens: no "tokens" or "tokens_per_step" column; give TokensPerStep`)
	}
	if !hasWall && !(opts.FlopsPerSecond > 0) {
		return nil, nil, errors.New(`wall_time_s: no "wall_time_s" column; give FlopsPerSecond to derive it`)
	}
	byID := map[string]*RecordedRun{}
	lines := map[string]int{}
	var order []string
	for lineNo := 2; ; lineNo++ {
		rec, rerr := cr.Read()
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			problems = append(problems, Problem{Line: lineNo, Message: rerr.Error()})
			continue
		}
		bad := func(field, format string, a ...any) {
			problems = append(problems, Problem{Line: lineNo, Field: field, Message: fmt.Sprintf(format, a...)})
		}
		num := func(name string) (float64, bool) {
			s := strings.TrimSpace(rec[col[name]])
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				bad(name, "%q is not a finite number", s)
				return 0, false
			}
			return v, true
		}
		id := fmt.Sprintf("csv-line-%d", lineNo)
		if i, ok := col["run_id"]; ok && strings.TrimSpace(rec[i]) != "" {
			id = strings.TrimSpace(rec[i])
		}
		ok := true
		mixture := make([]float64, len(opts.Domains))
		for i, d := range opts.Domains {
			v, good := num(d)
			mixture[i], ok = v, ok && good
		}
		params, good := num("params")
		ok = ok && good
		stepF, good := num(header[stepCol])
		ok = ok && good
		loss, good := num(opts.TrainLoss)
		ok = ok && good
		eval := map[string]float64{}
		for _, m := range opts.Metrics {
			v, good := num(m)
			eval[m], ok = v, ok && good
		}
		if !ok {
			continue
		}
		step := int64(stepF)
		run := byID[id]
		if run == nil {
			tokensPerStep, flopsPerStep := opts.TokensPerStep, 0.0
			if _, ok := col["tokens_per_step"]; ok {
				v, good := num("tokens_per_step")
				if !good || v != math.Trunc(v) || v <= 0 {
					if good {
						bad("tokens_per_step", "%v is not a positive whole number", v)
					}
					continue
				}
				tokensPerStep = int64(v)
			}
			if _, ok := col["flops_per_step"]; ok {
				v, good := num("flops_per_step")
				if !good {
					continue
				}
				flopsPerStep = v
			}
			run = &RecordedRun{Format: RecordingFormat, RunID: id, Domains: opts.Domains, Mixture: mixture,
				Scale: strings.TrimSpace(rec[col["scale"]]), Params: params}
			if opts.Source != "" {
				run.Source = map[string]any{"converted_from": opts.Source}
			}
			run.TokensPerStep, run.FlopsPerStep = tokensPerStep, flopsPerStep
			byID[id], lines[id] = run, lineNo
			order = append(order, id)
		}
		p := RecordedPoint{Step: step, TrainLoss: loss, Eval: eval}
		if hasTokens {
			v, good := num("tokens")
			if !good {
				continue
			}
			p.Tokens = int64(v)
		} else {
			p.Tokens = step * run.TokensPerStep
		}
		if hasWall {
			v, good := num("wall_time_s")
			if !good {
				continue
			}
			p.WallTimeS = v
		} else {
			fps := run.FlopsPerStep
			if fps == 0 {
				fps = 6 * run.Params * float64(run.TokensPerStep)
			}
			p.WallTimeS = float64(step) * fps / opts.FlopsPerSecond
		}
		run.Points = append(run.Points, p)
	}
	for _, id := range order {
		run := byID[id]
		sort.Slice(run.Points, func(i, j int) bool { return run.Points[i].Step < run.Points[j].Step })
		run.Steps = run.Points[len(run.Points)-1].Step
		if w := renormaliseRounded(run); w != "" {
			problems = append(problems, problemOf(lines[id], w, true))
		}
		if err := run.Validate(); err != nil {
			p := problemOf(lines[id], err.Error(), false)
			p.Message += " (run " + id + ")"
			problems = append(problems, p)
			continue
		}
		runs = append(runs, *run)
	}
	return runs, problems, nil
}
