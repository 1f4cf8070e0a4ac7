package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
)

// roundedSumTolerance is how far from 1 a recorded mixture may sum and still be read as
// weights rounded to a few decimals (17 domains at 3 decimals are off by up to 0.0085):
// such a mixture is renormalised with a warning; a larger gap is an error.
const roundedSumTolerance = 0.02

// Problem is one thing wrong with a line of a recording. A warning is something loading
// mends and reports (a rounded mixture renormalised); anything else stops loading.
type Problem struct {
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

func (p Problem) String() string {
	kind := "error"
	if p.Warning {
		kind = "warning"
	}
	if p.Field == "" {
		return fmt.Sprintf("line %d: %s: %s", p.Line, kind, p.Message)
	}
	return fmt.Sprintf("line %d: %s: %s: %s", p.Line, kind, p.Field, p.Message)
}

// CheckRecording reads a whole recording and reports every problem of every line (where
// LoadRecording stops at the first), with its line and field, and the warnings loading
// prints. runs counts the lines that load.
func CheckRecording(r io.Reader) (runs int, problems []Problem, err error) {
	ids := make(map[string]int)
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, rerr := readLine(br)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			problems = append(problems, Problem{Line: lineNo, Message: rerr.Error()})
			return runs, problems, nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			run, warnings, perr := parseRecordedRun(line)
			for _, w := range warnings {
				problems = append(problems, problemOf(lineNo, w, true))
			}
			switch {
			case perr != nil:
				problems = append(problems, problemOf(lineNo, perr.Error(), false))
			case ids[run.RunID] != 0:
				problems = append(problems, Problem{Line: lineNo, Field: "run_id", Message: fmt.Sprintf("%q already used on line %d", run.RunID, ids[run.RunID])})
			default:
				ids[run.RunID] = lineNo
				runs++
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
	}
	if runs == 0 && len(problems) == 0 {
		problems = append(problems, Problem{Message: "the recording holds no runs"})
	}
	return runs, problems, nil
}

// keyBeforeValue finds the JSON key whose value starts where a syntax error is.
var keyBeforeValue = regexp.MustCompile(`"([^"\\]{1,200})"\s*:\s*$`)

var fieldPrefix = regexp.MustCompile(`^([a-z_]+(\[[^\]]*\])?(\.[a-z_]+(\[[^\]]*\])?)*): (.*)$`)

// problemOf splits a "field: message" error of the validators into its parts.
func problemOf(line int, msg string, warning bool) Problem {
	if m := fieldPrefix.FindStringSubmatch(msg); m != nil {
		return Problem{Line: line, Field: m[1], Message: m[5], Warning: warning}
	}
	return Problem{Line: line, Message: msg, Warning: warning}
}

// describeDecodeError names the field a JSON syntax error sits in: Python's json module
// writes NaN and Infinity, which JSON does not have, and "invalid character 'N'" alone
// does not say which value of a long line is at fault.
func describeDecodeError(line []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) || se.Offset <= 0 || int(se.Offset) > len(line) {
		return fmt.Errorf("invalid json: %w", err)
	}
	before := line[:se.Offset-1]
	key := ""
	if m := keyBeforeValue.FindSubmatch(before); m != nil {
		key = string(m[1])
	} else if i := bytes.LastIndex(before, []byte(`":`)); i > 0 {
		if j := bytes.LastIndexByte(before[:i], '"'); j >= 0 {
			key = string(before[j+1 : i])
		}
	}
	rest := strings.TrimSpace(string(line[se.Offset-1 : min(len(line), int(se.Offset)+8)]))
	for _, bad := range []string{"NaN", "Infinity", "-Infinity"} {
		if strings.HasPrefix(rest, bad) {
			if key == "" {
				return fmt.Errorf("%s is not a JSON number (a diverged run is recorded up to its last finite point)", bad)
			}
			return fmt.Errorf("%s: %s is not a JSON number (a diverged run is recorded up to its last finite point)", key, bad)
		}
	}
	if key != "" {
		return fmt.Errorf("%s: invalid json at byte %d: %w", key, se.Offset, err)
	}
	return fmt.Errorf("invalid json at byte %d: %w", se.Offset, err)
}

// requirePointFields reports a point that lacks train_loss, tokens or wall_time_s:
// decoding alone would read each as a silent 0.
func requirePointFields(line []byte) error {
	var shape struct {
		Points []map[string]json.RawMessage `json:"points"`
	}
	if err := json.Unmarshal(line, &shape); err != nil {
		return nil // the typed decode reports it
	}
	for i, p := range shape.Points {
		for _, f := range []string{"step", "tokens", "train_loss", "wall_time_s"} {
			if v, ok := p[f]; !ok || string(v) == "null" {
				return fmt.Errorf("points[%d].%s: missing (required: docs/recording-format.md)", i, f)
			}
		}
	}
	return nil
}

// renormaliseRounded scales a mixture whose weights were rounded (sum off 1 by more than
// float error but within roundedSumTolerance) back onto the simplex, and says so.
func renormaliseRounded(run *RecordedRun) (warning string) {
	sum := 0.0
	for _, w := range run.Mixture {
		if !(w >= 0) || math.IsInf(w, 0) {
			return "" // Validate reports it
		}
		sum += w
	}
	gap := math.Abs(sum - 1)
	if gap <= mixtureSumTolerance || gap > roundedSumTolerance || sum == 0 {
		return ""
	}
	for i := range run.Mixture {
		run.Mixture[i] /= sum
	}
	return fmt.Sprintf("mixture: weights sum to %.6g (rounded?); renormalised to 1", sum)
}

// MixtureIn reorders a run's mixture into the order of domains (a study's), matching
// domains by name; it fails when the two sets of domains differ.
func (r RecordedRun) MixtureIn(domains []string) ([]float64, error) {
	if len(r.Domains) != len(domains) {
		return nil, fmt.Errorf("run %s has %d domains [%s], the study %d [%s]", r.RunID, len(r.Domains),
			strings.Join(r.Domains, " "), len(domains), strings.Join(domains, " "))
	}
	out := make([]float64, len(domains))
	for i, d := range domains {
		j := indexOf(r.Domains, d)
		if j < 0 {
			return nil, fmt.Errorf("run %s has no domain %q (its domains: [%s])", r.RunID, d, strings.Join(r.Domains, " "))
		}
		out[i] = r.Mixture[j]
	}
	return out, nil
}
