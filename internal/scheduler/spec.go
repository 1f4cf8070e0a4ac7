package scheduler

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/mixopt/mixopt/internal/bo"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// boundsSlack absorbs rounding in bounds that sum to exactly 1. The spec's limits are in
// limits.go.
const boundsSlack = 1e-9

// DefaultPolicy is used when a spec names none.
const DefaultPolicy = "random"

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// MaxSpecBytes bounds a spec file ParseSpec reads.
const MaxSpecBytes = 1 << 20

// ParseSpec reads a YAML or JSON study spec (JSON is YAML). Field names follow the proto
// (snake_case or lowerCamelCase); an unknown field, or a key given twice in one mapping,
// is an error that names it, since a silently dropped value would start a study the
// operator did not write. It does not validate the spec: NormalizeSpec does.
func ParseSpec(raw []byte) (*pb.StudySpec, error) {
	if len(raw) > MaxSpecBytes {
		return nil, fmt.Errorf("spec: %d bytes, at most %d: %w", len(raw), MaxSpecBytes, ErrInvalid)
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, fmt.Errorf("spec: %v: %w", err, ErrInvalid)
	}
	spec := new(pb.StudySpec)
	if err := protojson.Unmarshal(js, spec); err != nil {
		return nil, fmt.Errorf("spec: %v: %w", err, ErrInvalid)
	}
	return spec, nil
}

// NormalizeSpec fills defaults into a copy of spec and validates it. Every error names the
// offending field and wraps ErrInvalid.
func NormalizeSpec(spec *pb.StudySpec) (*pb.StudySpec, error) {
	if spec == nil {
		return nil, invalid("spec", "missing")
	}
	s := cloneSpec(spec)
	if s.Policy == "" {
		s.Policy = DefaultPolicy
	}
	if s.MaxParallel == 0 {
		s.MaxParallel = 1
	}
	for _, sc := range s.Scales {
		if sc.FlopsPerStep == 0 && sc.TokensPerStep > 0 {
			// The cost model of ARCHITECTURE.md: 6 x parameters x tokens per step.
			sc.FlopsPerStep = 6 * sc.Params * float64(sc.TokensPerStep)
		}
	}
	for _, d := range s.Domains {
		// An unset max_weight is 1, also when min_weight alone is given: a domain whose
		// weight must be 0 would not be a domain of the search.
		if d.MaxWeight == 0 {
			d.MaxWeight = 1
		}
	}
	if err := validateSpec(s); err != nil {
		return nil, err
	}
	if err := checkPoolsAndPrior(s); err != nil {
		return nil, err
	}
	return s, nil
}

// cloneSpec deep-copies a spec, so that NormalizeSpec never changes its caller's.
func cloneSpec(s *pb.StudySpec) *pb.StudySpec { return proto.Clone(s).(*pb.StudySpec) }

func validateSpec(s *pb.StudySpec) error {
	if n := utf8.RuneCountInString(s.Name); n > MaxSpecNameRunes || !utf8.ValidString(s.Name) {
		return invalid("name", "%d characters, at most %d (valid UTF-8)", n, MaxSpecNameRunes)
	}
	if err := validateExtraMetrics(s.ExtraMetrics); err != nil {
		return err
	}
	if err := validateSelector(s.Workers); err != nil {
		return err
	}
	if err := validateDomains(s.Domains); err != nil {
		return err
	}
	if err := validateScales(s.Scales); err != nil {
		return err
	}
	if len(s.Steps) == 0 {
		return invalid("steps", "at least one step budget is required")
	}
	if len(s.Steps) > maxStepBudgets {
		return invalid("steps", "more than %d step budgets", maxStepBudgets)
	}
	for i, st := range s.Steps {
		if st <= 0 || st > maxSteps {
			return invalid(fmt.Sprintf("steps[%d]", i), "%d is out of range (1 to %d)", st, maxSteps)
		}
		if i > 0 && st <= s.Steps[i-1] {
			return invalid(fmt.Sprintf("steps[%d]", i), "step budgets must be strictly ascending")
		}
	}
	if err := validateObjective(s); err != nil {
		return err
	}
	if s.Target == nil {
		return invalid("target", "missing")
	}
	if ScaleIndex(s, s.Target.Scale) < 0 {
		return invalid("target.scale", "%.80q is not among the scales", s.Target.Scale)
	}
	if !slices.Contains(s.Steps, s.Target.Steps) {
		return invalid("target.steps", "%d is not among the step budgets", s.Target.Steps)
	}
	if !(s.BudgetFlops > 0) || math.IsInf(s.BudgetFlops, 0) {
		return invalid("budget_flops", "must be a positive finite number of FLOPs, got %v", s.BudgetFlops)
	}
	if s.MaxParallel < 0 || s.MaxParallel > maxParallel {
		return invalid("max_parallel", "%d is out of range (1 to %d)", s.MaxParallel, maxParallel)
	}
	if s.MaxTrials < 0 {
		return invalid("max_trials", "must not be negative")
	}
	if s.EvalEvery < 0 || (s.EvalEvery > 0 && s.EvalEvery > s.Steps[len(s.Steps)-1]) {
		return invalid("eval_every", "%d is out of range (0 to the largest step budget)", s.EvalEvery)
	}
	if len(s.Policy) > maxPolicyBytes {
		return invalid("policy", "%d bytes, at most %d", len(s.Policy), maxPolicyBytes)
	}
	if _, err := bo.New(s.Policy); err != nil {
		return invalid("policy", "%v", err)
	}
	return nil
}

func validateDomains(domains []*pb.Domain) error {
	if len(domains) < 2 {
		return invalid("domains", "at least two domains are required")
	}
	if len(domains) > maxDomains {
		return invalid("domains", "more than %d domains", maxDomains)
	}
	seen := map[string]bool{}
	var sumMin, sumMax float64
	for i, d := range domains {
		field := fmt.Sprintf("domains[%d]", i)
		if !namePattern.MatchString(d.Name) {
			return invalid(field+".name", "%.80q must be 1-64 letters, digits, '_', '.' or '-'", d.Name)
		}
		if seen[d.Name] {
			return invalid(field+".name", "%q appears twice", d.Name)
		}
		seen[d.Name] = true
		if !(d.MinWeight >= 0 && d.MinWeight <= d.MaxWeight && d.MaxWeight <= 1) {
			return invalid(field, "bounds [%v, %v] must satisfy 0 <= min_weight <= max_weight <= 1", d.MinWeight, d.MaxWeight)
		}
		sumMin += d.MinWeight
		sumMax += d.MaxWeight
	}
	if sumMin > 1+boundsSlack || sumMax < 1-boundsSlack {
		return invalid("domains", "bounds cannot sum to 1 (min_weight sums to %v, max_weight to %v)", sumMin, sumMax)
	}
	return nil
}

func validateScales(scales []*pb.Scale) error {
	if len(scales) == 0 {
		return invalid("scales", "at least one scale is required")
	}
	if len(scales) > maxScales {
		return invalid("scales", "more than %d scales", maxScales)
	}
	seen := map[string]bool{}
	for i, sc := range scales {
		field := fmt.Sprintf("scales[%d]", i)
		if !namePattern.MatchString(sc.Name) {
			return invalid(field+".name", "%.80q must be 1-64 letters, digits, '_', '.' or '-'", sc.Name)
		}
		if seen[sc.Name] {
			return invalid(field+".name", "%q appears twice", sc.Name)
		}
		seen[sc.Name] = true
		if !(sc.Params > 0) || math.IsInf(sc.Params, 0) {
			return invalid(field+".params", "must be a positive parameter count")
		}
		if !(sc.FlopsPerStep > 0) || math.IsInf(sc.FlopsPerStep, 0) {
			return invalid(field+".flops_per_step", "must be positive (or give tokens_per_step to derive it)")
		}
		if sc.TokensPerStep < 0 || sc.Gpus < 0 || sc.MinGpuMemoryMib < 0 {
			return invalid(field, "tokens_per_step, gpus and min_gpu_memory_mib must not be negative")
		}
		// No worker can register more: such a trial would wait forever.
		if sc.Gpus > MaxGPUsPerWorker {
			return invalid(field+".gpus", "%d, but a worker has at most %d GPUs", sc.Gpus, MaxGPUsPerWorker)
		}
		if sc.MinGpuMemoryMib > MaxGPUMemoryMiB {
			return invalid(field+".min_gpu_memory_mib", "%d, at most %d", sc.MinGpuMemoryMib, MaxGPUMemoryMiB)
		}
	}
	return nil
}

func validateExtraMetrics(names []string) error {
	if len(names) > MaxExtraMetrics {
		return invalid("extra_metrics", "%d names, at most %d", len(names), MaxExtraMetrics)
	}
	seen := map[string]bool{}
	for i, m := range names {
		field := fmt.Sprintf("extra_metrics[%d]", i)
		if problem := MetricNameProblem(m); problem != "" {
			return invalid(field, "%s", problem)
		}
		if seen[m] {
			return invalid(field, "%q appears twice", m)
		}
		seen[m] = true
	}
	return nil
}

// MetricNameProblem says what is wrong with a metric name (an extra metric, an eval key),
// or "" when nothing is: it is 1 to MaxMetricNameBytes bytes of printable UTF-8 without
// spaces.
func MetricNameProblem(name string) string {
	if name != "" && len(name) <= MaxMetricNameBytes && printableASCII(name) {
		return "" // the usual name, checked without decoding runes
	}
	switch {
	case name == "":
		return "empty metric name"
	case len(name) > MaxMetricNameBytes:
		return fmt.Sprintf("metric name of %d bytes, at most %d", len(name), MaxMetricNameBytes)
	case !utf8.ValidString(name):
		return "metric name is not valid UTF-8"
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Sprintf("metric name %q holds a space or an unprintable character", name)
	}
	return ""
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validateSelector(sel *pb.WorkerSelector) error {
	if sel == nil {
		return nil
	}
	if len(sel.Kinds) > MaxSelectorKinds {
		return invalid("workers.kinds", "%d kinds, at most %d", len(sel.Kinds), MaxSelectorKinds)
	}
	for i, k := range sel.Kinds {
		if _, ok := pb.WorkerKind_name[int32(k)]; !ok || k == pb.WorkerKind_WORKER_KIND_UNSPECIFIED {
			return invalid(fmt.Sprintf("workers.kinds[%d]", i), "unknown worker kind %d", int32(k))
		}
	}
	return CheckLabels("workers.labels", sel.Labels)
}

// CheckLabels bounds a label map (a worker's identity, a study's selector): at most
// MaxLabels labels, keys of 1 to MaxLabelKeyBytes and values of at most MaxLabelValueBytes
// bytes of valid UTF-8. The error names field and the first bad key in sorted order.
func CheckLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid(field, "%d labels, at most %d", len(labels), MaxLabels)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := labels[k]
		switch {
		case k == "" || len(k) > MaxLabelKeyBytes || !utf8.ValidString(k):
			return invalid(field, "key %.80q must be 1-%d bytes of UTF-8", k, MaxLabelKeyBytes)
		case len(v) > MaxLabelValueBytes || !utf8.ValidString(v):
			return invalid(fmt.Sprintf("%s[%q]", field, k), "value must be at most %d bytes of UTF-8", MaxLabelValueBytes)
		}
	}
	return nil
}

func validateObjective(s *pb.StudySpec) error {
	if s.Objective == nil || s.Objective.Metric == "" {
		return invalid("objective.metric", "missing (known: %v)", KnownMetrics(s))
	}
	if !slices.Contains(KnownMetrics(s), s.Objective.Metric) {
		return invalid("objective.metric", "unknown metric %.80q (known: %v)", s.Objective.Metric, KnownMetrics(s))
	}
	return nil
}

// KnownMetrics lists the metric names an objective may use: the training loss, each
// domain's evaluation loss, their mean, and the spec's extra metrics.
func KnownMetrics(s *pb.StudySpec) []string {
	m := []string{"train_loss", "mean_ce"}
	for _, d := range s.Domains {
		m = append(m, d.Name+"_ce")
	}
	return append(m, s.ExtraMetrics...)
}

// ScaleIndex returns the position of the named scale in the spec, or -1.
func ScaleIndex(s *pb.StudySpec, name string) int {
	return slices.IndexFunc(s.Scales, func(sc *pb.Scale) bool { return sc.Name == name })
}

// scaleOf returns the spec's scale of that name, or, when the spec has none, a scale with
// only the name (no GPUs, memory or FLOPs).
func scaleOf(spec *pb.StudySpec, name string) *pb.Scale {
	if i := ScaleIndex(spec, name); i >= 0 {
		return spec.Scales[i]
	}
	return &pb.Scale{Name: name}
}

// MetricValue extracts the objective metric from a curve point.
func MetricValue(p *pb.CurvePoint, metric string) (float64, bool) {
	if metric == "train_loss" {
		return p.TrainLoss, true
	}
	v, ok := p.Eval[metric]
	return v, ok
}
