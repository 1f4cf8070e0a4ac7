package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestCreateStudyRejectsInvalidSpecs(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		mut   func(s *pb.StudySpec)
		field string // the error message starts with "<field>: "
	}{
		{"name too long", func(s *pb.StudySpec) { s.Name = strings.Repeat("n", 201) }, "name"},
		{"one domain", func(s *pb.StudySpec) { s.Domains = s.Domains[:1] }, "domains"},
		{"no domains", func(s *pb.StudySpec) { s.Domains = nil }, "domains"},
		{"too many domains", func(s *pb.StudySpec) {
			s.Domains = nil
			for i := range maxDomains + 1 {
				s.Domains = append(s.Domains, &pb.Domain{Name: fmt.Sprintf("d%d", i)})
			}
		}, "domains"},
		{"max bounds sum below 1", func(s *pb.StudySpec) {
			s.Domains[0].MaxWeight, s.Domains[1].MinWeight, s.Domains[1].MaxWeight = 0.4, 0, 0.4
		}, "domains"},
		{"min bounds sum above 1", func(s *pb.StudySpec) {
			s.Domains[0].MinWeight, s.Domains[0].MaxWeight = 0.6, 1
			s.Domains[1].MinWeight, s.Domains[1].MaxWeight = 0.6, 1
		}, "domains"},
		{"min above max", func(s *pb.StudySpec) { s.Domains[1].MinWeight, s.Domains[1].MaxWeight = 0.5, 0.4 }, "domains[1]"},
		{"max above 1", func(s *pb.StudySpec) { s.Domains[1].MaxWeight = 1.5 }, "domains[1]"},
		{"negative min", func(s *pb.StudySpec) { s.Domains[1].MinWeight = -0.1 }, "domains[1]"},
		{"NaN bound", func(s *pb.StudySpec) { s.Domains[0].MaxWeight = math.NaN() }, "domains[0]"},
		{"empty domain name", func(s *pb.StudySpec) { s.Domains[0].Name = "" }, "domains[0].name"},
		{"domain name with a space", func(s *pb.StudySpec) { s.Domains[1].Name = "a b" }, "domains[1].name"},
		{"domain name as a path", func(s *pb.StudySpec) { s.Domains[1].Name = "../etc" }, "domains[1].name"},
		{"duplicate domain", func(s *pb.StudySpec) { s.Domains[1].Name = "wiki" }, "domains[1].name"},
		{"no scales", func(s *pb.StudySpec) { s.Scales = nil }, "scales"},
		{"duplicate scale", func(s *pb.StudySpec) { s.Scales[1].Name = "small" }, "scales[1].name"},
		{"bad scale name", func(s *pb.StudySpec) { s.Scales[0].Name = "-x" }, "scales[0].name"},
		{"zero params", func(s *pb.StudySpec) { s.Scales[0].Params = 0 }, "scales[0].params"},
		{"infinite params", func(s *pb.StudySpec) { s.Scales[0].Params = math.Inf(1) }, "scales[0].params"},
		{"no flops and no tokens", func(s *pb.StudySpec) { s.Scales[1].TokensPerStep = 0 }, "scales[1].flops_per_step"},
		{"negative flops", func(s *pb.StudySpec) { s.Scales[0].FlopsPerStep = -1 }, "scales[0].flops_per_step"},
		{"infinite flops", func(s *pb.StudySpec) { s.Scales[0].FlopsPerStep = math.Inf(1) }, "scales[0].flops_per_step"},
		{"NaN flops", func(s *pb.StudySpec) { s.Scales[0].FlopsPerStep = math.NaN() }, "scales[0].flops_per_step"},
		{"negative gpus", func(s *pb.StudySpec) { s.Scales[0].Gpus = -1 }, "scales[0]"},
		{"negative tokens", func(s *pb.StudySpec) { s.Scales[0].TokensPerStep = -1 }, "scales[0]"},
		{"no steps", func(s *pb.StudySpec) { s.Steps = nil }, "steps"},
		{"zero steps", func(s *pb.StudySpec) { s.Steps[0] = 0 }, "steps[0]"},
		{"negative steps", func(s *pb.StudySpec) { s.Steps[0] = -5 }, "steps[0]"},
		{"steps too large", func(s *pb.StudySpec) { s.Steps = append(s.Steps, maxSteps+1) }, "steps[2]"},
		{"steps descending", func(s *pb.StudySpec) { s.Steps = []int64{targetSteps, 100} }, "steps[1]"},
		{"steps repeated", func(s *pb.StudySpec) { s.Steps = []int64{100, 100, targetSteps} }, "steps[1]"},
		{"no objective", func(s *pb.StudySpec) { s.Objective = nil }, "objective.metric"},
		{"empty metric", func(s *pb.StudySpec) { s.Objective.Metric = "" }, "objective.metric"},
		{"unknown metric", func(s *pb.StudySpec) { s.Objective.Metric = "books_ce" }, "objective.metric"},
		{"no target", func(s *pb.StudySpec) { s.Target = nil }, "target"},
		{"target scale not among scales", func(s *pb.StudySpec) { s.Target.Scale = "huge" }, "target.scale"},
		{"target steps not among steps", func(s *pb.StudySpec) { s.Target.Steps = 150 }, "target.steps"},
		{"zero budget", func(s *pb.StudySpec) { s.BudgetFlops = 0 }, "budget_flops"},
		{"negative budget", func(s *pb.StudySpec) { s.BudgetFlops = -1 }, "budget_flops"},
		{"infinite budget", func(s *pb.StudySpec) { s.BudgetFlops = math.Inf(1) }, "budget_flops"},
		{"NaN budget", func(s *pb.StudySpec) { s.BudgetFlops = math.NaN() }, "budget_flops"},
		{"negative max_parallel", func(s *pb.StudySpec) { s.MaxParallel = -1 }, "max_parallel"},
		{"huge max_parallel", func(s *pb.StudySpec) { s.MaxParallel = maxParallel + 1 }, "max_parallel"},
		{"negative max_trials", func(s *pb.StudySpec) { s.MaxTrials = -1 }, "max_trials"},
		{"negative eval_every", func(s *pb.StudySpec) { s.EvalEvery = -1 }, "eval_every"},
		{"eval_every beyond the steps", func(s *pb.StudySpec) { s.EvalEvery = targetSteps + 1 }, "eval_every"},
		{"unknown policy", func(s *pb.StudySpec) { s.Policy = "bogus" }, "policy"},
		// Bounds on everything that crosses the wire (limits.go).
		{"name of 201 characters", func(s *pb.StudySpec) { s.Name = strings.Repeat("é", MaxSpecNameRunes+1) }, "name"},
		{"name not UTF-8", func(s *pb.StudySpec) { s.Name = "\xff" }, "name"},
		{"huge domain name", func(s *pb.StudySpec) { s.Domains[0].Name = strings.Repeat("d", 1<<20) }, "domains[0].name"},
		{"huge policy", func(s *pb.StudySpec) { s.Policy = strings.Repeat("p", 1<<20) }, "policy"},
		{"huge target scale", func(s *pb.StudySpec) { s.Target.Scale = strings.Repeat("t", 1<<20) }, "target.scale"},
		{"huge objective", func(s *pb.StudySpec) { s.Objective.Metric = strings.Repeat("m", 1<<20) }, "objective.metric"},
		{"too many extra metrics", func(s *pb.StudySpec) {
			for i := range MaxExtraMetrics + 1 {
				s.ExtraMetrics = append(s.ExtraMetrics, fmt.Sprintf("m%d", i))
			}
		}, "extra_metrics"},
		{"empty extra metric", func(s *pb.StudySpec) { s.ExtraMetrics = []string{"acc", ""} }, "extra_metrics[1]"},
		{"huge extra metric", func(s *pb.StudySpec) { s.ExtraMetrics = []string{strings.Repeat("m", MaxMetricNameBytes+1)} }, "extra_metrics[0]"},
		{"extra metric with a space", func(s *pb.StudySpec) { s.ExtraMetrics = []string{"hella swag"} }, "extra_metrics[0]"},
		{"extra metric twice", func(s *pb.StudySpec) { s.ExtraMetrics = []string{"acc", "acc"} }, "extra_metrics[1]"},
		{"scale needs more GPUs than a worker has", func(s *pb.StudySpec) { s.Scales[0].Gpus = math.MaxInt32 }, "scales[0].gpus"},
		{"scale needs 1025 GPUs", func(s *pb.StudySpec) { s.Scales[1].Gpus = MaxGPUsPerWorker + 1 }, "scales[1].gpus"},
		{"scale needs absurd GPU memory", func(s *pb.StudySpec) { s.Scales[0].MinGpuMemoryMib = math.MaxInt64 }, "scales[0].min_gpu_memory_mib"},
		{"too many selector kinds", func(s *pb.StudySpec) {
			s.Workers = &pb.WorkerSelector{}
			for range MaxSelectorKinds + 1 {
				s.Workers.Kinds = append(s.Workers.Kinds, pb.WorkerKind_WORKER_KIND_REAL)
			}
		}, "workers.kinds"},
		{"unknown selector kind", func(s *pb.StudySpec) { s.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{99}} }, "workers.kinds[0]"},
		{"unspecified selector kind", func(s *pb.StudySpec) { s.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{0}} }, "workers.kinds[0]"},
		{"too many selector labels", func(s *pb.StudySpec) {
			s.Workers = &pb.WorkerSelector{Labels: map[string]string{}}
			for i := range MaxLabels + 1 {
				s.Workers.Labels[fmt.Sprintf("k%d", i)] = "v"
			}
		}, "workers.labels"},
		{"empty label key", func(s *pb.StudySpec) { s.Workers = &pb.WorkerSelector{Labels: map[string]string{"": "v"}} }, "workers.labels"},
		{"huge label key", func(s *pb.StudySpec) {
			s.Workers = &pb.WorkerSelector{Labels: map[string]string{strings.Repeat("k", MaxLabelKeyBytes+1): "v"}}
		}, "workers.labels"},
		{"huge label value", func(s *pb.StudySpec) {
			s.Workers = &pb.WorkerSelector{Labels: map[string]string{"cluster": strings.Repeat("v", MaxLabelValueBytes+1)}}
		}, `workers.labels["cluster"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			tc.mut(spec)
			orig := proto.Clone(spec)
			_, err := NormalizeSpec(spec)
			checkInvalid(t, err, tc.field)
			if !proto.Equal(spec, orig) {
				t.Errorf("NormalizeSpec changed its input")
			}
			st, err := e.s.CreateStudy(context.Background(), spec)
			if st != nil {
				t.Errorf("CreateStudy returned a study with an error")
			}
			checkInvalid(t, err, tc.field)
		})
	}
	t.Run("nil spec", func(t *testing.T) {
		_, err := e.s.CreateStudy(context.Background(), nil)
		checkInvalid(t, err, "spec")
	})
	studies, err := e.s.ListStudies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(studies) != 0 {
		t.Errorf("rejected specs left %d studies in the store", len(studies))
	}
}

func TestNormalizeSpecAcceptsTheLimits(t *testing.T) {
	spec := baseSpec()
	// The name limit counts characters: 200 two-byte runes are 400 bytes and still fit.
	spec.Name = strings.Repeat("é", MaxSpecNameRunes)
	spec.Scales[0].Gpus = MaxGPUsPerWorker
	spec.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{pb.WorkerKind_WORKER_KIND_REAL}, Labels: map[string]string{}}
	for i := range MaxExtraMetrics {
		spec.ExtraMetrics = append(spec.ExtraMetrics, fmt.Sprintf("m%d_%s", i, strings.Repeat("x", MaxMetricNameBytes-8)))
	}
	for i := range MaxLabels {
		spec.Workers.Labels[fmt.Sprintf("k%02d%s", i, strings.Repeat("k", MaxLabelKeyBytes-3))] = strings.Repeat("v", MaxLabelValueBytes)
	}
	if _, err := NormalizeSpec(spec); err != nil {
		t.Fatalf("a spec at every limit: %v", err)
	}
}

func TestParseSpec(t *testing.T) {
	good := `
name: demo
domains: [{name: wiki}, {name: code}]
scales: [{name: small, params: 1e6, flops_per_step: 1e9}]
steps: [100]
objective: {metric: train_loss}
target: {scale: small, steps: 100}
budget_flops: 1e13
`
	spec, err := ParseSpec([]byte(good))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	if spec.Name != "demo" || len(spec.Domains) != 2 || spec.Scales[0].FlopsPerStep != 1e9 || spec.Target.Steps != 100 {
		t.Errorf("parsed %v", spec)
	}
	if _, err := NormalizeSpec(spec); err != nil {
		t.Errorf("parsed spec does not validate: %v", err)
	}
	js, err := ParseSpec([]byte(`{"name": "demo", "budgetFlops": 5}`))
	if err != nil || js.Name != "demo" || js.BudgetFlops != 5 {
		t.Errorf("JSON with lowerCamelCase: %v, %v", js, err)
	}

	bad := []struct {
		name, in, want string
	}{
		{"duplicate top-level key", good + "name: other\n", `"name"`},
		{"duplicate key in a list item", "scales:\n- name: a\n  params: 1\n  params: 2\n", `"params"`},
		{"duplicate key in JSON", `{"name": "a", "budget_flops": 1, "name": "b"}`, `"name"`},
		{"unknown field", good + "budget_flop: 3\n", "budget_flop"},
		{"not a mapping", "- 1\n- 2\n", "spec"},
		{"too large", strings.Repeat(" ", MaxSpecBytes+1), "bytes"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.in))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// FuzzParseSpec: whatever the bytes, parsing and validating a spec returns a spec or an
// ErrInvalid error, never panics, and a spec that validates validates again after a round
// trip through its normalized form (normalizing is idempotent).
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte("name: a\ndomains: [{name: x}, {name: y}]\nscales: [{name: s, params: 1, flops_per_step: 1}]\nsteps: [1]\nobjective: {metric: train_loss}\ntarget: {scale: s, steps: 1}\nbudget_flops: 10\n"))
	f.Add([]byte(`{"name": "a", "name": "b"}`))
	f.Add([]byte("workers: {kinds: [1], labels: {a: b}}\nextra_metrics: [acc]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		spec, err := ParseSpec(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSpec error %v is not ErrInvalid", err)
			}
			return
		}
		norm, err := NormalizeSpec(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NormalizeSpec error %v is not ErrInvalid", err)
			}
			return
		}
		again, err := NormalizeSpec(norm)
		if err != nil {
			t.Fatalf("a normalized spec no longer validates: %v", err)
		}
		if !proto.Equal(norm, again) {
			t.Fatalf("normalizing twice changed the spec: %v then %v", norm, again)
		}
	})
}

func checkInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got error %.300v, want ErrInvalid", err)
	}
	if len(err.Error()) > 4000 {
		t.Errorf("error of %d bytes echoes the input", len(err.Error()))
	}
	if !strings.HasPrefix(err.Error(), field+": ") {
		t.Errorf("error %q does not name the field %q first", err, field)
	}
}

func TestNormalizeSpecAcceptsAndFillsDefaults(t *testing.T) {
	spec := baseSpec()
	spec.ExtraMetrics = []string{"hellaswag_acc"}
	orig := proto.Clone(spec).(*pb.StudySpec)
	got, err := NormalizeSpec(spec)
	if err != nil {
		t.Fatalf("NormalizeSpec: %v", err)
	}
	if !proto.Equal(spec, orig) {
		t.Errorf("NormalizeSpec changed its input")
	}
	if got.Policy != DefaultPolicy {
		t.Errorf("policy = %q, want %q", got.Policy, DefaultPolicy)
	}
	if got.MaxParallel != 1 {
		t.Errorf("max_parallel = %d, want 1", got.MaxParallel)
	}
	if want := 6 * 1e8 * 1000.0; got.Scales[1].FlopsPerStep != want {
		t.Errorf("big flops_per_step = %v, want 6 x params x tokens = %v", got.Scales[1].FlopsPerStep, want)
	}
	if got.Scales[0].FlopsPerStep != smallFlops {
		t.Errorf("declared flops_per_step overwritten: %v", got.Scales[0].FlopsPerStep)
	}
	if d := got.Domains[0]; d.MinWeight != 0 || d.MaxWeight != 1 {
		t.Errorf("unbounded domain = [%v, %v], want [0, 1]", d.MinWeight, d.MaxWeight)
	}
	if d := got.Domains[1]; d.MinWeight != 0.1 || d.MaxWeight != 0.9 {
		t.Errorf("bounded domain = [%v, %v], want [0.1, 0.9]", d.MinWeight, d.MaxWeight)
	}

	// Values given are kept.
	spec.Policy, spec.MaxParallel = "random-mf", 4
	got, err = NormalizeSpec(spec)
	if err != nil {
		t.Fatalf("NormalizeSpec: %v", err)
	}
	if got.Policy != "random-mf" || got.MaxParallel != 4 {
		t.Errorf("policy, max_parallel = %q, %d; want random-mf, 4", got.Policy, got.MaxParallel)
	}

	// Every known metric is accepted; bounds that sum to exactly 1 are accepted.
	for _, m := range []string{"train_loss", "mean_ce", "wiki_ce", "code_ce", "hellaswag_acc"} {
		s := proto.Clone(spec).(*pb.StudySpec)
		s.Objective.Metric = m
		if _, err := NormalizeSpec(s); err != nil {
			t.Errorf("metric %q: %v", m, err)
		}
	}
	s := proto.Clone(spec).(*pb.StudySpec)
	s.Domains[0].MinWeight, s.Domains[0].MaxWeight = 0.3, 0.3
	s.Domains[1].MinWeight, s.Domains[1].MaxWeight = 0.7, 0.7
	if _, err := NormalizeSpec(s); err != nil {
		t.Errorf("fixed mixture: %v", err)
	}
}

func TestCreateStudyStoresNormalizedSpec(t *testing.T) {
	e := newEnv(t)
	st := e.createStudy(nil)
	if st.Id == 0 || st.State != pb.StudyState_STUDY_STATE_RUNNING {
		t.Fatalf("study = id %d state %v", st.Id, st.State)
	}
	got := e.study(st.Id).Study
	if got.Spec.Policy != DefaultPolicy || got.Spec.MaxParallel != 1 || got.Spec.Scales[1].FlopsPerStep == 0 {
		t.Errorf("stored spec lacks defaults: %v", got.Spec)
	}
	if got.CreateTimeUnixMs != e.clock.Now().UnixMilli() {
		t.Errorf("create time %d, want the clock's %d", got.CreateTimeUnixMs, e.clock.Now().UnixMilli())
	}
}

// min_weight alone leaves max_weight at its default 1, as documented.
func TestMinWeightAloneAccepted(t *testing.T) {
	spec := baseSpec()
	spec.Domains[0].MinWeight = 0.2
	got, err := NormalizeSpec(spec)
	if err != nil {
		t.Fatalf("min_weight alone: %v", err)
	}
	if d := got.Domains[0]; d.MinWeight != 0.2 || d.MaxWeight != 1 {
		t.Fatalf("bounds [%v, %v], want [0.2, 1]", d.MinWeight, d.MaxWeight)
	}
}
