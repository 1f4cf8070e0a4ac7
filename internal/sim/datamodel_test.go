package sim

import (
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mixopt/mixopt/internal/sim/simtest"
)

var (
	modelOnce sync.Once
	model     *DataModel
	modelErr  error
)

func loadModel(tb testing.TB) *DataModel {
	tb.Helper()
	path := simtest.SharedFile(tb, "slimpajama-datamodel-v1.json")
	modelOnce.Do(func() { model, modelErr = LoadDataModel(path) })
	if modelErr != nil {
		tb.Fatalf("load benchmark data model: %v", modelErr)
	}
	return model
}

var slimDomains = []string{"wikipedia", "stackexchange", "github", "arxiv", "book"}

func uniform(k int) []float64 {
	w := make([]float64, k)
	for i := range w {
		w[i] = 1 / float64(k)
	}
	return w
}

func TestDataModelReferenceEvaluations(t *testing.T) {
	m := loadModel(t)
	if len(m.ReferenceEvaluations) == 0 {
		t.Fatal("benchmark data model has no reference evaluations")
	}
	src := NewDataModelSource(m)
	for i, ref := range m.ReferenceEvaluations {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got := m.Eval(ref.Mixture, ref.SizeM, ref.Step)
			if len(got) != len(ref.Outputs) {
				t.Fatalf("Eval gave %d outputs, want %d", len(got), len(ref.Outputs))
			}
			for j := range got {
				if math.Abs(got[j]-ref.Outputs[j]) > 1e-6 {
					t.Errorf("%s = %.9f, want %.9f", m.Outputs[j], got[j], ref.Outputs[j])
				}
			}
			// The source must give the same values at the end of a run of that length.
			scale := ""
			for _, sc := range m.Scales {
				if sc.SizeM == ref.SizeM {
					scale = sc.Name
				}
			}
			run, err := src.Run(Request{Domains: slimDomains, Mixture: ref.Mixture, Scale: scale, Steps: int64(ref.Step)})
			if err != nil {
				t.Fatal(err)
			}
			last := run.Points[len(run.Points)-1]
			if last.Step != int64(ref.Step) {
				t.Fatalf("last step %d, want %g", last.Step, ref.Step)
			}
			for j, name := range m.Outputs {
				if math.Abs(last.Eval[name]-ref.Outputs[j]) > 1e-6 {
					t.Errorf("source %s = %.9f, want %.9f", name, last.Eval[name], ref.Outputs[j])
				}
			}
			if math.Abs(last.TrainLoss-ref.Outputs[m.OutputIndex("train_ce")]) > 1e-6 {
				t.Errorf("train loss %.9f, want train_ce", last.TrainLoss)
			}
		})
	}
}

func TestDataModelSourceCurve(t *testing.T) {
	m := loadModel(t)
	src := NewDataModelSource(m)
	req := Request{
		Domains: slimDomains, Mixture: []float64{0.1, 0.4, 0.2, 0.2, 0.1}, Scale: "150M",
		TokensPerStep: 1 << 19, FlopsPerStep: 4e14, Steps: 1050,
	}
	run, err := src.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, p := range run.Points {
		steps = append(steps, p.Step)
	}
	want := []int64{100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1050}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("steps %v, want %v", steps, want)
	}
	p := run.Points[2]
	if p.Tokens != 300<<19 {
		t.Errorf("tokens %d, want %d", p.Tokens, 300<<19)
	}
	if want := 300 * 4e14 / 1e14; math.Abs(p.WallTime-want) > 1e-9 {
		t.Errorf("wall time %g, want %g", p.WallTime, want)
	}
	out := m.Eval(req.Mixture, 150, 300)
	mean := 0.0
	for _, d := range slimDomains {
		mean += out[m.OutputIndex(d+"_ce")]
	}
	if got := p.Eval["mean_ce"]; math.Abs(got-mean/5) > 1e-12 {
		t.Errorf("mean_ce %g, want %g", got, mean/5)
	}
	if got := p.Eval["hellaswag_acc_norm"]; got != out[m.OutputIndex("hellaswag_acc_norm")] {
		t.Errorf("hellaswag_acc_norm %g, want %g", got, out[m.OutputIndex("hellaswag_acc_norm")])
	}
	if run.SourceRun != "" || run.Distance != 0 {
		t.Errorf("model source set SourceRun %q, Distance %g", run.SourceRun, run.Distance)
	}

	// Without FlopsPerStep the model's own FLOPs per step give the wall time.
	req.FlopsPerStep = 0
	req.EvalEvery = 500
	run, err = src.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Points) != 3 || run.Points[0].Step != 500 || run.Points[2].Step != 1050 {
		t.Fatalf("EvalEvery 500 gave %d points starting at %d", len(run.Points), run.Points[0].Step)
	}
	if want := 500 * 617976.805982208e9 / 1e14; math.Abs(run.Points[0].WallTime-want) > 1e-6 {
		t.Errorf("wall time %g, want %g", run.Points[0].WallTime, want)
	}
}

func TestDataModelSourceScaleMapping(t *testing.T) {
	m := loadModel(t)
	src := NewDataModelSource(m)
	tests := []struct {
		scale  string
		params float64
		want   float64 // size_m the request maps to; 0: error
	}{
		{"1B", 0, 1000},
		{"1b", 0, 1000},
		{"20M", 1.2e9, 20}, // the name wins over params
		{"small", 2.1e7, 20},
		{"big", 9e8, 1000},
		{"mid", 3.1e8, 300},
		{"700M", 0, 700},
		{"800M", 0, 700}, // read from the name, within the tolerance
		{"2B", 0, 0},
		{"small", 4e7, 0}, // between 20M and 60M, near neither
		{"huge", 0, 0},
		{"tiny", 1e6, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%g", tc.scale, tc.params), func(t *testing.T) {
			req := Request{Domains: slimDomains, Mixture: uniform(5), Scale: tc.scale, Params: tc.params, Steps: 1000, EvalEvery: 1000}
			run, err := src.Run(req)
			if tc.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "unknown to the model") {
					t.Fatalf("err = %v, want unknown scale", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := m.Eval(req.Mixture, tc.want, 1000)[m.OutputIndex("train_ce")]
			if got := run.Points[0].TrainLoss; got != want {
				t.Errorf("train loss %g, want %g (size %gM)", got, want, tc.want)
			}
		})
	}
}

func TestDataModelSourceErrors(t *testing.T) {
	m := loadModel(t)
	src := NewDataModelSource(m)
	ok := Request{Domains: slimDomains, Mixture: uniform(5), Scale: "20M", Steps: 1000}
	tests := []struct {
		name string
		edit func(r *Request)
		want string
	}{
		{"steps below min", func(r *Request) { r.Steps = 50 }, "outside the model's range [100, 19500]"},
		{"steps above max", func(r *Request) { r.Steps = 19531 }, "outside the model's range"},
		{"domains reordered", func(r *Request) {
			r.Domains = []string{"stackexchange", "wikipedia", "github", "arxiv", "book"}
		}, "differ from the model's"},
		{"domain renamed", func(r *Request) {
			r.Domains = []string{"wiki", "stackexchange", "github", "arxiv", "book"}
		}, "differ from the model's"},
		{"fewer domains", func(r *Request) { r.Domains, r.Mixture = slimDomains[:4], uniform(4) }, "differ from the model's"},
		{"mixture length", func(r *Request) { r.Mixture = uniform(4) }, "4 weights for 5 domains"},
		{"mixture sum", func(r *Request) { r.Mixture = []float64{0.5, 0.5, 0.5, 0, 0} }, "sum to 1.5"},
		{"negative weight", func(r *Request) { r.Mixture = []float64{1.2, -0.2, 0, 0, 0} }, "weight 1 is -0.2"},
		{"nan weight", func(r *Request) { r.Mixture = []float64{math.NaN(), 0, 0, 0, 1} }, "weight 0 is NaN"},
		{"duplicate domain", func(r *Request) {
			r.Domains = []string{"book", "stackexchange", "github", "arxiv", "book"}
		}, `"book" appears twice`},
		{"zero steps", func(r *Request) { r.Steps = 0 }, "at least 1"},
		{"negative eval every", func(r *Request) { r.EvalEvery = -1 }, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ok
			req.Domains = append([]string(nil), ok.Domains...)
			req.Mixture = append([]float64(nil), ok.Mixture...)
			tc.edit(&req)
			_, err := src.Run(req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := src.Run(ok); err != nil {
		t.Fatalf("valid request: %v", err)
	}
}

func TestDataModelSourceNoise(t *testing.T) {
	m := loadModel(t)
	clean := NewDataModelSource(m)
	noisy := NewDataModelSource(m, DataModelOptions{Noise: 0.05})
	req := Request{Domains: slimDomains, Mixture: uniform(5), Scale: "60M", Steps: 2000, Seed: 7}
	a, err := noisy.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := noisy.Run(req)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different noisy curves")
	}
	c, _ := clean.Run(req)
	var sq float64
	n := 0
	for i := range a.Points {
		for k, v := range a.Points[i].Eval {
			if k == "mean_ce" {
				continue
			}
			d := v - c.Points[i].Eval[k]
			sq += d * d
			n++
		}
	}
	if sd := math.Sqrt(sq / float64(n)); sd < 0.04 || sd > 0.06 {
		t.Errorf("noise sd %g, want about 0.05", sd)
	}
	// A point reads the same whatever the run's length or interval.
	short := req
	short.Steps, short.EvalEvery = 1000, 500
	s, _ := noisy.Run(short)
	if !reflect.DeepEqual(s.Points[1], a.Points[9]) {
		t.Errorf("step 1000 differs between runs of 1000 and 2000 steps:\n%v\n%v", s.Points[1], a.Points[9])
	}
	other := req
	other.Seed = 8
	d, _ := noisy.Run(other)
	if reflect.DeepEqual(a, d) {
		t.Error("different seeds gave the same noisy curve")
	}
	if !strings.Contains(noisy.Name(), "noise 0.05") || clean.Name() != "datamodel:slimpajama-datamodel-v1" {
		t.Errorf("names %q, %q", clean.Name(), noisy.Name())
	}
}

func TestDataModelSourceConcurrent(t *testing.T) {
	src := NewDataModelSource(loadModel(t), DataModelOptions{Noise: 0.01})
	req := Request{Domains: slimDomains, Mixture: uniform(5), Scale: "1B", Steps: 5000, Seed: 1}
	want, err := src.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := src.Run(req)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("concurrent run differs (err %v)", err)
			}
		}()
	}
	wg.Wait()
}

func TestLoadDataModelErrors(t *testing.T) {
	if _, err := LoadDataModel(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file loaded")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, bad, `{"domains":["a"],"x_mean":[0,0],"x_std":[1,1]}`)
	if _, err := LoadDataModel(bad); err == nil || !strings.Contains(err.Error(), "x_mean and x_std need 3") {
		t.Errorf("err = %v", err)
	}
}

func BenchmarkDataModelEval(b *testing.B) {
	m := loadModel(b)
	w := uniform(5)
	b.ReportAllocs()
	for b.Loop() {
		m.Eval(w, 1000, 19500)
	}
}

func BenchmarkDataModelSourceRun(b *testing.B) {
	src := NewDataModelSource(loadModel(b))
	req := Request{Domains: slimDomains, Mixture: uniform(5), Scale: "1B", Steps: 19500, EvalEvery: 500}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.Run(req); err != nil {
			b.Fatal(err)
		}
	}
}
