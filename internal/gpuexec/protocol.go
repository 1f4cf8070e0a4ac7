package gpuexec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode/utf8"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// ProtocolVersion is the version of train.py's JSON-lines protocol this package reads.
const ProtocolVersion = 1

// Kind is an event type of the protocol.
type Kind string

// Event kinds; docs/train-protocol.md describes their fields.
const (
	KindStart      Kind = "start"
	KindPoint      Kind = "point"
	KindEval       Kind = "eval"
	KindCheckpoint Kind = "checkpoint"
	KindDone       Kind = "done"
	KindError      Kind = "error"
	// KindWarning is something the trainer worked around (torch.compile failed and it
	// runs eager); the run goes on, and the worker logs it.
	KindWarning Kind = "warning"
)

// Event is one parsed protocol line. Fields not carried by an event's kind are zero.
type Event struct {
	Kind Kind
	// UnixTime is when train.py wrote the line.
	UnixTime float64
	Step     int64
	Tokens   int64
	// WallTime is seconds of training so far, carried across resumes.
	WallTime float64
	// TrainLoss: the step's loss (point) or the mean since the last eval (eval, when
	// HasTrainLoss). NaN when train.py reported a non-finite value.
	TrainLoss    float64
	HasTrainLoss bool
	// LR, GradNorm and TokensPerSecond come with points.
	LR              float64
	GradNorm        float64
	TokensPerSecond float64
	// Metrics of an eval: "<domain>_ce" per domain and "mean_ce"; NaN for non-finite values.
	Metrics map[string]float64
	// Start, Done, Error and Warning are set for their kinds.
	Start   *StartInfo
	Done    *DoneInfo
	Error   *ErrorInfo
	Warning *WarningInfo
	// CheckpointPath is the file a checkpoint event wrote.
	CheckpointPath string
}

// StartInfo is the resolved configuration a run reports first.
type StartInfo struct {
	ResumedFromStep int64
	Preset          string
	Params          int64
	TokensPerStep   int64
	FlopsPerStep    float64
	Device          string
	WorldSize       int
	Domains         []string
	Mixture         []float64
	// Config is the whole configuration object, for recording.
	Config json.RawMessage
}

// DoneInfo ends a successful or stopped run.
type DoneInfo struct {
	// Status is "completed" or "stopped" (on SIGTERM, after a checkpoint).
	Status string
	// DomainSequences counts training sequences drawn per domain.
	DomainSequences map[string]int64
	// PeakMemoryMiB is the peak device memory when train.py measured it, else 0.
	PeakMemoryMiB float64
}

// ErrorInfo is train.py's own account of a failure.
type ErrorInfo struct {
	// Class is train.py's error class (see [ParseFailureClass]).
	Class    pb.FailureClass
	Message  string
	ExitCode int
	// Step is the last completed step, or -1 when the error came before training.
	Step int64
}

// WarningInfo is a trainer's account of something it worked around.
type WarningInfo struct {
	// Code names the kind of warning (e.g. "compile_fallback"): what alerts and greps key on.
	Code string
	// Message says what happened, at most MaxWarningBytes (longer ones are cut).
	Message string
}

// Protocol limits: a line is bounded by the reader; these bound what one line may allocate.
const (
	maxMetrics   = 1024
	maxNameBytes = 128
	// MaxWarningBytes bounds a warning's message; a longer one is cut, not refused, since
	// the warning still matters.
	MaxWarningBytes = 4096
)

// warningCodeRE is what a warning code may be: a short plain name.
var warningCodeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ErrProtocol wraps every reason a line is not a valid protocol event.
var ErrProtocol = errors.New("invalid protocol line")

// wire mirrors the JSON of every event kind; pointers tell absent from zero.
type wire struct {
	V               *int                `json:"v"`
	Event           string              `json:"event"`
	Time            float64             `json:"time"`
	Step            *int64              `json:"step"`
	Tokens          *int64              `json:"tokens"`
	WallTimeS       *float64            `json:"wall_time_s"`
	TrainLoss       json.RawMessage     `json:"train_loss"`
	LR              *float64            `json:"lr"`
	GradNorm        *float64            `json:"grad_norm"`
	TokensPerS      *float64            `json:"tokens_per_s"`
	Metrics         map[string]*float64 `json:"metrics"`
	ResumedFromStep *int64              `json:"resumed_from_step"`
	Config          json.RawMessage     `json:"config"`
	Path            string              `json:"path"`
	Status          string              `json:"status"`
	DomainSequences map[string]int64    `json:"domain_sequences"`
	PeakMemoryMiB   float64             `json:"peak_memory_mib"`
	Class           string              `json:"class"`
	Code            string              `json:"code"`
	Message         *string             `json:"message"`
	ExitCode        *int                `json:"exit_code"`
}

type wireConfig struct {
	Preset        string    `json:"preset"`
	Params        int64     `json:"params"`
	TokensPerStep int64     `json:"tokens_per_step"`
	FlopsPerStep  float64   `json:"flops_per_step"`
	Device        string    `json:"device"`
	WorldSize     int       `json:"world_size"`
	Domains       []string  `json:"domains"`
	Mixture       []float64 `json:"mixture"`
}

// ParseLine parses one stdout line. Errors wrap [ErrProtocol].
func ParseLine(line []byte) (Event, error) {
	w, err := parseWire(line)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Kind: Kind(w.Event), UnixTime: w.Time}
	if w.WallTimeS != nil {
		ev.WallTime = *w.WallTimeS
	}
	parse, ok := eventParsers[ev.Kind]
	if !ok {
		return Event{}, protocolError("unknown event type %q", w.Event)
	}
	if err := parse(w, &ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// eventParsers read the fields of each event kind into an event that has its kind and
// times already.
var eventParsers = map[Kind]func(w *wire, ev *Event) error{
	KindStart:      parseStart,
	KindPoint:      parsePoint,
	KindEval:       parseEval,
	KindCheckpoint: parseCheckpoint,
	KindDone:       parseDone,
	KindError:      parseError,
	KindWarning:    parseWarning,
}

// protocolError is a reason a line is not a valid event, wrapping [ErrProtocol].
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrProtocol)
}

// parseWire decodes a line into the wire struct and checks its protocol version.
func parseWire(line []byte) (*wire, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, protocolError("not a JSON object")
	}
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		return nil, protocolError("%v", err)
	}
	if w.V == nil {
		return nil, protocolError("no protocol version")
	}
	if *w.V != ProtocolVersion {
		return nil, protocolError("protocol version %d, want %d", *w.V, ProtocolVersion)
	}
	return &w, nil
}

// parseStep reads the non-negative step, and the tokens when present, that every kind but
// error and warning must carry.
func parseStep(w *wire, ev *Event) error {
	if w.Step == nil || *w.Step < 0 {
		return protocolError("%s event without a non-negative step", w.Event)
	}
	ev.Step = *w.Step
	if w.Tokens != nil {
		if *w.Tokens < 0 {
			return protocolError("%s event with negative tokens", w.Event)
		}
		ev.Tokens = *w.Tokens
	}
	return nil
}

func parseStart(w *wire, ev *Event) error {
	if err := parseStep(w, ev); err != nil {
		return err
	}
	info := &StartInfo{Config: append(json.RawMessage(nil), w.Config...)}
	if w.ResumedFromStep != nil {
		info.ResumedFromStep = *w.ResumedFromStep
	}
	if len(w.Config) > 0 {
		var c wireConfig
		if err := json.Unmarshal(w.Config, &c); err != nil {
			return protocolError("start config: %v", err)
		}
		info.Preset, info.Params, info.TokensPerStep = c.Preset, c.Params, c.TokensPerStep
		info.FlopsPerStep, info.Device, info.WorldSize = c.FlopsPerStep, c.Device, c.WorldSize
		info.Domains, info.Mixture = c.Domains, c.Mixture
	}
	ev.Start = info
	return nil
}

func parsePoint(w *wire, ev *Event) error {
	if err := parseStep(w, ev); err != nil {
		return err
	}
	loss, ok, err := lossValue(w.TrainLoss)
	if err != nil || !ok {
		return protocolError("point event without train_loss")
	}
	ev.TrainLoss, ev.HasTrainLoss = loss, true
	ev.LR = deref(w.LR)
	ev.GradNorm = deref(w.GradNorm)
	ev.TokensPerSecond = deref(w.TokensPerS)
	return nil
}

func parseEval(w *wire, ev *Event) error {
	if err := parseStep(w, ev); err != nil {
		return err
	}
	metrics, err := parseMetrics(w.Metrics)
	if err != nil {
		return err
	}
	ev.Metrics = metrics
	// The first eval has no interval to average: null here means absent.
	if string(w.TrainLoss) != "null" {
		loss, ok, err := lossValue(w.TrainLoss)
		if err != nil {
			return protocolError("eval train_loss: %v", err)
		}
		ev.TrainLoss, ev.HasTrainLoss = loss, ok
	}
	return nil
}

// parseMetrics checks an eval's metrics; a null value (not finite in train.py) is NaN.
func parseMetrics(m map[string]*float64) (map[string]float64, error) {
	if len(m) == 0 || len(m) > maxMetrics {
		return nil, protocolError("eval event with %d metrics", len(m))
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if k == "" || len(k) > maxNameBytes {
			return nil, protocolError("eval metric name of %d bytes", len(k))
		}
		if v == nil {
			out[k] = math.NaN()
		} else {
			out[k] = *v
		}
	}
	return out, nil
}

func parseCheckpoint(w *wire, ev *Event) error {
	if err := parseStep(w, ev); err != nil {
		return err
	}
	if w.Path == "" {
		return protocolError("checkpoint event without a path")
	}
	ev.CheckpointPath = w.Path
	return nil
}

func parseDone(w *wire, ev *Event) error {
	if err := parseStep(w, ev); err != nil {
		return err
	}
	if w.Status != "completed" && w.Status != "stopped" {
		return protocolError("done event with status %q", w.Status)
	}
	if len(w.DomainSequences) > maxMetrics {
		return protocolError("done event with %d domains", len(w.DomainSequences))
	}
	ev.Done = &DoneInfo{Status: w.Status, DomainSequences: w.DomainSequences, PeakMemoryMiB: w.PeakMemoryMiB}
	return nil
}

// parseError reads train.py's error event; its step is optional (null before training).
func parseError(w *wire, ev *Event) error {
	if w.Message == nil || w.ExitCode == nil {
		return protocolError("error event without message or exit_code")
	}
	info := &ErrorInfo{Class: ParseFailureClass(w.Class), Message: *w.Message, ExitCode: *w.ExitCode, Step: -1}
	if w.Step != nil {
		info.Step = *w.Step
	}
	ev.Error = info
	return nil
}

func parseWarning(w *wire, ev *Event) error {
	if !warningCodeRE.MatchString(w.Code) {
		return protocolError("warning event code %q is not a plain name of 1-64 characters", w.Code)
	}
	if w.Message == nil {
		return protocolError("warning event without message")
	}
	ev.Warning = &WarningInfo{Code: w.Code, Message: TruncateUTF8(*w.Message, MaxWarningBytes)}
	return nil
}

// TruncateUTF8 cuts s to at most n bytes without splitting a character and marks the cut
// with "…" (3 bytes more); a string of at most n bytes is returned as is.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// lossValue reads a loss that train.py writes as null when it is not finite.
func lossValue(raw json.RawMessage) (v float64, ok bool, err error) {
	if len(raw) == 0 {
		return 0, false, nil
	}
	if string(raw) == "null" {
		return math.NaN(), true, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false, err
	}
	return v, true, nil
}

// ParseFailureClass maps the class of train.py's error event (oom, diverged, bad_data,
// bad_input, other: the FailureClass names without their prefix, in lower case) onto the
// enum; this is the one place the protocol's strings become the enum. A newer train.py
// may add classes: an unknown one, like an empty one, is other.
func ParseFailureClass(name string) pb.FailureClass {
	c, ok := pb.FailureClass_value["FAILURE_CLASS_"+strings.ToUpper(name)]
	if !ok || c == int32(pb.FailureClass_FAILURE_CLASS_UNSPECIFIED) || strings.ToLower(name) != name {
		return pb.FailureClass_FAILURE_CLASS_OTHER
	}
	return pb.FailureClass(c)
}
