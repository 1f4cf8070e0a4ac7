package gpuexec

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CommandTemplate is a team's own trainer command line: argv elements with {placeholders}
// that [TrainSpec] fields fill in. It is never given to a shell: each element stays one
// argument whatever its value, so a value cannot add arguments or run anything.
//
// An element whose placeholders include one that is empty for a run (no checkpoint
// folder, a CPU run's {gpus}) is left out, so an optional flag is written as one element:
// "--checkpoint-dir={checkpoint_dir}". "{{" and "}}" stand for literal braces.
type CommandTemplate struct {
	args []string
}

// Placeholders a template may use, with what they expand to (docs/train-protocol.md).
var templateFields = map[string]func(s TrainSpec) string{
	"python":   func(s TrainSpec) string { return s.Python },
	"data_dir": func(s TrainSpec) string { return s.DataDir },
	"domains":  func(s TrainSpec) string { return strings.Join(s.Domains, ",") },
	"mixture":  func(s TrainSpec) string { return joinWeights(s.Mixture) },
	"preset":   func(s TrainSpec) string { return s.Preset },
	"scale":    func(s TrainSpec) string { return s.Scale },
	"steps":    func(s TrainSpec) string { return strconv.FormatInt(s.Steps, 10) },
	"schedule_steps": func(s TrainSpec) string {
		return strconv.FormatInt(max(s.ScheduleSteps, s.Steps), 10)
	},
	"eval_every":       func(s TrainSpec) string { return positive(s.EvalEvery) },
	"log_every":        func(s TrainSpec) string { return positive(s.LogEvery) },
	"seed":             func(s TrainSpec) string { return strconv.FormatUint(s.Seed, 10) },
	"device":           func(s TrainSpec) string { return device(s) },
	"gpus":             func(s TrainSpec) string { return strings.Join(s.GPUs, ",") },
	"nproc":            func(s TrainSpec) string { return strconv.Itoa(max(len(s.GPUs), 1)) },
	"checkpoint_dir":   func(s TrainSpec) string { return s.CheckpointDir },
	"checkpoint_every": func(s TrainSpec) string { return positive(s.CheckpointEvery) },
	"batch_size":       func(s TrainSpec) string { return positive(int64(s.BatchSize)) },
	"micro_batch":      func(s TrainSpec) string { return positive(int64(s.MicroBatch)) },
	"seq_len":          func(s TrainSpec) string { return positive(int64(s.SeqLen)) },
	"threads":          func(s TrainSpec) string { return positive(int64(s.Threads)) },
	"lr": func(s TrainSpec) string {
		if s.LR <= 0 {
			return ""
		}
		return strconv.FormatFloat(s.LR, 'g', -1, 64)
	},
}

// TemplatePlaceholders lists the placeholder names a template may use, sorted.
func TemplatePlaceholders() []string {
	names := make([]string, 0, len(templateFields))
	for k := range templateFields {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func positive(v int64) string {
	if v <= 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

func device(s TrainSpec) string {
	if len(s.GPUs) == 0 {
		return "cpu"
	}
	return "cuda"
}

func joinWeights(ws []float64) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = strconv.FormatFloat(w, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// Template bounds: a command line is configuration, not data.
const (
	maxTemplateArgs     = 256
	maxTemplateArgBytes = 4096
)

// ParseCommandTemplate reads a template: a JSON array of strings (for arguments holding
// spaces), or else arguments separated by white space. The program (the first element) is
// {python} or an absolute path without placeholders, so it is always the worker's own
// configuration.
func ParseCommandTemplate(s string) (*CommandTemplate, error) {
	s = strings.TrimSpace(s)
	var args []string
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &args); err != nil {
			return nil, fmt.Errorf("command template: not a JSON array of strings: %w", err)
		}
	} else {
		args = strings.Fields(s)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("command template: empty")
	}
	if len(args) > maxTemplateArgs {
		return nil, fmt.Errorf("command template: %d arguments, at most %d", len(args), maxTemplateArgs)
	}
	for i, a := range args {
		if len(a) > maxTemplateArgBytes || strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("command template: argument %d is longer than %d bytes or holds a NUL", i, maxTemplateArgBytes)
		}
		names, err := placeholders(a)
		if err != nil {
			return nil, fmt.Errorf("command template: argument %d %q: %w", i, a, err)
		}
		for _, n := range names {
			if _, ok := templateFields[n]; !ok {
				return nil, fmt.Errorf("command template: argument %d %q: unknown placeholder {%s} (known: %s)",
					i, a, n, strings.Join(TemplatePlaceholders(), ", "))
			}
		}
		if i == 0 && a != "{python}" && (len(names) > 0 || !cleanAbs(a)) {
			return nil, fmt.Errorf("command template: the program %q must be {python} or an absolute path without placeholders", a)
		}
	}
	return &CommandTemplate{args: args}, nil
}

// placeholders returns the names of arg's placeholders in order, or an error for a brace
// that opens or closes nothing.
func placeholders(arg string) ([]string, error) {
	var names []string
	for i := 0; i < len(arg); i++ {
		switch arg[i] {
		case '{':
			if strings.HasPrefix(arg[i:], "{{") {
				i++
				continue
			}
			j := strings.IndexByte(arg[i:], '}')
			if j < 0 {
				return nil, fmt.Errorf("unclosed {")
			}
			names = append(names, arg[i+1:i+j])
			i += j
		case '}':
			if strings.HasPrefix(arg[i:], "}}") {
				i++
				continue
			}
			return nil, fmt.Errorf("} without {")
		}
	}
	return names, nil
}

// UsesPython reports whether the template runs {python}: the worker then probes it.
func (t *CommandTemplate) UsesPython() bool {
	return slices.ContainsFunc(t.args, func(a string) bool { return strings.Contains(a, "{python}") })
}

// Name is the trainer's name for provenance: the first Python script named (past torchrun's
// own arguments), else the module {python} -m runs, else the program.
func (t *CommandTemplate) Name() string {
	for _, a := range t.args[1:] {
		if strings.HasSuffix(a, ".py") && !strings.HasPrefix(a, "-") && !strings.ContainsAny(a, "{}=") {
			return filepath.Base(a)
		}
	}
	if t.args[0] == "{python}" && len(t.args) > 2 && t.args[1] == "-m" {
		return t.args[2]
	}
	return filepath.Base(t.args[0])
}

// String is the template as JSON, which ParseCommandTemplate reads back.
func (t *CommandTemplate) String() string {
	b, _ := json.Marshal(t.args)
	return string(b)
}

// Expand fills the template from spec, which the caller has validated.
func (t *CommandTemplate) Expand(spec TrainSpec) ([]string, error) {
	out := make([]string, 0, len(t.args))
	for i, a := range t.args {
		var b strings.Builder
		empty := false
		for j := 0; j < len(a); j++ {
			c := a[j]
			if (c == '{' || c == '}') && j+1 < len(a) && a[j+1] == c {
				b.WriteByte(c)
				j++
				continue
			}
			if c != '{' {
				b.WriteByte(c)
				continue
			}
			k := strings.IndexByte(a[j:], '}')
			v := templateFields[a[j+1:j+k]](spec)
			empty = empty || v == ""
			b.WriteString(v)
			j += k
		}
		if empty {
			if i == 0 {
				return nil, fmt.Errorf("command template: the program {python} is not set: %w", ErrInvalidSpec)
			}
			continue
		}
		out = append(out, b.String())
	}
	return out, nil
}
