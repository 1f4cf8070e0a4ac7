package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testRun builds a valid recorded run with points every 100 steps.
func testRun(id, scale string, mix []float64, steps int64) RecordedRun {
	r := RecordedRun{
		Format: RecordingFormat, RunID: id, Domains: []string{"a", "b", "c"}, Mixture: mix,
		Scale: scale, Params: 2e7, Steps: steps, TokensPerStep: 10,
		Source: map[string]any{"host": "test"},
	}
	for s := int64(100); s <= steps; s += 100 {
		r.Points = append(r.Points, RecordedPoint{
			Step: s, Tokens: 10 * s, TrainLoss: 5 - float64(s)/1000, WallTimeS: float64(s) / 10,
			Eval: map[string]float64{"a_ce": 4, "mean_ce": 4 - float64(s)/1000},
		})
	}
	return r
}

func encodeRuns(t *testing.T, runs ...RecordedRun) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range runs {
		if err := WriteRecordedRun(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestRecordingRoundTrip(t *testing.T) {
	runs := []RecordedRun{
		testRun("r2", "20M", []float64{0.2, 0.3, 0.5}, 1000),
		testRun("r1", "60M", []float64{1, 0, 0}, 500),
	}
	runs[1].Format = "" // WriteRecordedRun fills it
	path := filepath.Join(t.TempDir(), "runs.jsonl")
	writeFile(t, path, "\n"+string(encodeRuns(t, runs...))+"\n\n")
	rec, err := LoadRecording(path)
	if err != nil {
		t.Fatal(err)
	}
	runs[1].Format = RecordingFormat
	want := []RecordedRun{runs[1], runs[0]} // ordered by run_id
	if !reflect.DeepEqual(rec.Runs(), want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", rec.Runs(), want)
	}
	if !strings.Contains(rec.Name(), "runs.jsonl (2 runs)") {
		t.Errorf("name %q", rec.Name())
	}
}

func TestRecordingRun(t *testing.T) {
	rec, err := ReadRecording(bytes.NewReader(encodeRuns(t,
		testRun("b-exact", "20M", []float64{0.2, 0.3, 0.5}, 1000),
		testRun("a-near", "20M", []float64{0.25, 0.25, 0.5}, 1000),
		testRun("c-far", "20M", []float64{0.6, 0.2, 0.2}, 3000),
		testRun("d-tie", "20M", []float64{0.6, 0.2, 0.2}, 3000),
		testRun("e-other-scale", "60M", []float64{0.2, 0.3, 0.5}, 5000),
		testRun("f-exact-dup", "20M", []float64{0.2, 0.3, 0.5}, 1000),
	)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		mix       []float64
		domains   []string
		scale     string
		steps     int64
		every     int64
		wantRun   string
		wantDist  float64
		wantSteps []int64
	}{
		{name: "exact", mix: []float64{0.2, 0.3, 0.5}, scale: "20M", steps: 1000, wantRun: "b-exact", wantSteps: steps(100, 1000, 100)},
		{name: "exact within 1e-9", mix: []float64{0.2 + 5e-10, 0.3 - 5e-10, 0.5}, scale: "20M", steps: 300, wantRun: "b-exact", wantDist: 1e-9, wantSteps: []int64{100, 200, 300}},
		{name: "nearest", mix: []float64{0.24, 0.26, 0.5}, scale: "20M", steps: 1000, wantRun: "a-near", wantDist: 0.02, wantSteps: steps(100, 1000, 100)},
		{name: "enough steps", mix: []float64{0.2, 0.3, 0.5}, scale: "20M", steps: 2000, wantRun: "c-far", wantDist: 0.8, wantSteps: steps(100, 2000, 100)},
		{name: "tie goes to lowest id", mix: []float64{0.6, 0.2, 0.2}, scale: "20M", steps: 3000, every: 1000, wantRun: "c-far", wantSteps: []int64{1000, 2000, 3000}},
		{name: "cut between points", mix: []float64{0.2, 0.3, 0.5}, scale: "20M", steps: 250, wantRun: "b-exact", wantSteps: []int64{100, 200}},
		{name: "thin keeps last", mix: []float64{0.2, 0.3, 0.5}, scale: "20M", steps: 950, every: 400, wantRun: "b-exact", wantSteps: []int64{400, 800, 900}},
		{name: "other scale", mix: []float64{0.2, 0.3, 0.5}, scale: "60M", steps: 100, wantRun: "e-other-scale", wantSteps: []int64{100}},
		{name: "domains by name", domains: []string{"c", "a", "b"}, mix: []float64{0.5, 0.2, 0.3}, scale: "20M", steps: 100, wantRun: "b-exact", wantSteps: []int64{100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			domains := tc.domains
			if domains == nil {
				domains = []string{"a", "b", "c"}
			}
			run, err := rec.Run(Request{Domains: domains, Mixture: tc.mix, Scale: tc.scale, Steps: tc.steps, EvalEvery: tc.every})
			if err != nil {
				t.Fatal(err)
			}
			if run.SourceRun != tc.wantRun || abs(run.Distance-tc.wantDist) > 1e-12 {
				t.Errorf("answered by %s at %g, want %s at %g", run.SourceRun, run.Distance, tc.wantRun, tc.wantDist)
			}
			var got []int64
			for _, p := range run.Points {
				got = append(got, p.Step)
			}
			if !reflect.DeepEqual(got, tc.wantSteps) {
				t.Errorf("steps %v, want %v", got, tc.wantSteps)
			}
			p := run.Points[0]
			if p.Tokens != 10*p.Step || p.WallTime != float64(p.Step)/10 || p.Eval["a_ce"] != 4 {
				t.Errorf("point %+v", p)
			}
		})
	}

	// The replayed curve is a copy: changing it leaves the recording intact.
	run, _ := rec.Run(Request{Domains: []string{"a", "b", "c"}, Mixture: []float64{0.2, 0.3, 0.5}, Scale: "20M", Steps: 100})
	run.Points[0].Eval["a_ce"] = 99
	if rec.Runs()[1].Points[0].Eval["a_ce"] != 4 {
		t.Error("changing a replayed point changed the recording")
	}
}

func steps(from, to, every int64) []int64 {
	var s []int64
	for x := from; x <= to; x += every {
		s = append(s, x)
	}
	return s
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestRecordingNoRun(t *testing.T) {
	rec, err := ReadRecording(bytes.NewReader(encodeRuns(t, testRun("r", "20M", []float64{0.2, 0.3, 0.5}, 1000))), "mem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"too many steps", Request{Domains: []string{"a", "b", "c"}, Mixture: uniform(3), Scale: "20M", Steps: 1001}, "no run at scale 20M with at least 1001 steps"},
		{"unknown scale", Request{Domains: []string{"a", "b", "c"}, Mixture: uniform(3), Scale: "1B", Steps: 100}, "no run at scale 1B"},
		{"other domains", Request{Domains: []string{"a", "b", "x"}, Mixture: uniform(3), Scale: "20M", Steps: 100}, "over domains [a b x]"},
		{"fewer domains", Request{Domains: []string{"a", "b"}, Mixture: uniform(2), Scale: "20M", Steps: 100}, "over domains [a b]"},
		{"before first point", Request{Domains: []string{"a", "b", "c"}, Mixture: uniform(3), Scale: "20M", Steps: 50}, "no point at or before step 50"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rec.Run(tc.req)
			if !errors.Is(err, ErrNoRun) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrNoRun containing %q", err, tc.want)
			}
		})
	}
	if _, err := rec.Run(Request{Domains: []string{"a"}, Mixture: []float64{2}, Scale: "20M", Steps: 100}); err == nil || errors.Is(err, ErrNoRun) {
		t.Errorf("invalid request: err = %v, want a validation error", err)
	}
}

func TestRecordingBadLines(t *testing.T) {
	good := string(encodeRuns(t, testRun("ok", "20M", []float64{0.2, 0.3, 0.5}, 200)))
	mutate := func(f func(r *RecordedRun)) string {
		r := testRun("x", "20M", []float64{0.2, 0.3, 0.5}, 200)
		f(&r)
		// Bypass WriteRecordedRun's validation to produce the bad line.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	tests := []struct {
		name, line, want string
	}{
		{"not json", "{not json}\n", "line 2: invalid json"},
		{"two values", `{"format":"x"} {}` + "\n", "line 2: invalid json"},
		{"wrong type", `{"format":"mixopt.recording.v1","run_id":"x","steps":"many"}` + "\n", "line 2: steps: want int64"},
		{"unknown field", `{"format":"mixopt.recording.v1","run_idd":"x"}` + "\n", `line 2: invalid json: json: unknown field "run_idd"`},
		{"format", mutate(func(r *RecordedRun) { r.Format = "v0" }), `line 2: format: "v0"`},
		{"run id", mutate(func(r *RecordedRun) { r.RunID = "" }), "line 2: run_id: empty"},
		{"duplicate run id", mutate(func(r *RecordedRun) { r.RunID = "ok" }), `line 2: run_id: "ok" already used on line 1`},
		{"no domains", mutate(func(r *RecordedRun) { r.Domains = nil }), "line 2: domains: empty"},
		{"duplicate domain", mutate(func(r *RecordedRun) { r.Domains = []string{"a", "b", "a"} }), `line 2: domains[2]: "a" appears twice`},
		{"mixture length", mutate(func(r *RecordedRun) { r.Mixture = []float64{1} }), "line 2: mixture: has 1 weights for 3 domains"},
		{"mixture sum", mutate(func(r *RecordedRun) { r.Mixture = []float64{0.2, 0.2, 0.2} }), "line 2: mixture: weights sum to 0.6"},
		{"scale", mutate(func(r *RecordedRun) { r.Scale = "" }), "line 2: scale: empty"},
		{"params", mutate(func(r *RecordedRun) { r.Params = 0 }), "line 2: params: 0"},
		{"steps", mutate(func(r *RecordedRun) { r.Steps = 300 }), "line 2: steps: 300, but the last point is at step 200"},
		{"tokens per step", mutate(func(r *RecordedRun) { r.TokensPerStep = -1 }), "line 2: tokens_per_step: -1"},
		{"no points", mutate(func(r *RecordedRun) { r.Points = nil }), "line 2: points: empty"},
		{"step order", mutate(func(r *RecordedRun) { r.Points[1].Step = 100 }), "line 2: points[1].step: 100, want more than the previous 100"},
		{"tokens fall", mutate(func(r *RecordedRun) { r.Points[1].Tokens = 1 }), "line 2: points[1].tokens: 1"},
		{"wall time", mutate(func(r *RecordedRun) { r.Points[0].WallTimeS = -1 }), "line 2: points[0].wall_time_s: -1"},
		{"eval name", mutate(func(r *RecordedRun) { r.Points[0].Eval[""] = 1 }), "line 2: points[0].eval: empty metric name"},
		{"too long", strings.Repeat(" ", maxRecordingLine+1) + "\n", "line 2: line longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRecording(strings.NewReader(good+tc.line), "f.jsonl")
			if err == nil || !strings.Contains(err.Error(), "recording f.jsonl "+tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := ReadRecording(strings.NewReader("\n\n"), "empty"); err == nil || !strings.Contains(err.Error(), "holds no runs") {
		t.Errorf("empty recording: err = %v", err)
	}
	if _, err := LoadRecording(filepath.Join(t.TempDir(), "none.jsonl")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestWriteRecordedRunValidates(t *testing.T) {
	r := testRun("x", "20M", []float64{0.5, 0.5, 0.5}, 200)
	var buf bytes.Buffer
	if err := WriteRecordedRun(&buf, r); err == nil || !strings.Contains(err.Error(), `recorded run "x": mixture`) {
		t.Errorf("err = %v", err)
	}
	if buf.Len() != 0 {
		t.Error("an invalid run was written")
	}
}

func TestNewRecordedRunReplays(t *testing.T) {
	src := NewSynthetic(SyntheticOptions{})
	req := Request{Domains: []string{"a", "b"}, Mixture: []float64{0.4, 0.6}, Scale: "20M", Params: 2e7, TokensPerStep: 64, FlopsPerStep: 1e12, Steps: 1000}
	run, err := src.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	rr := NewRecordedRun("trial-7", req, run.Points, map[string]any{"worker": "w1"})
	rec, err := ReadRecording(bytes.NewReader(encodeRuns(t, rr)), "mem")
	if err != nil {
		t.Fatal(err)
	}
	replay, err := rec.Run(req)
	if err != nil {
		t.Fatal(err)
	}
	if replay.SourceRun != "trial-7" || replay.Distance != 0 || !reflect.DeepEqual(replay.Points, run.Points) {
		t.Errorf("replay differs from the recorded curve: %+v", replay)
	}
}

// FuzzLoadRecording checks that the parser never panics, that what it accepts is valid,
// and that writing an accepted run back and reading it again gives the same run.
func FuzzLoadRecording(f *testing.F) {
	var buf bytes.Buffer
	for _, r := range []RecordedRun{
		testRun("a", "20M", []float64{0.2, 0.3, 0.5}, 300),
		testRun("b", "1B", []float64{0, 0, 1}, 100),
	} {
		if err := WriteRecordedRun(&buf, r); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"mixopt.recording.v1","run_id":"x","domains":["a"],"mixture":[1],"scale":"s","params":1,"steps":1,"tokens_per_step":0,"points":[{"step":1,"tokens":0,"train_loss":1,"wall_time_s":0}]}`))
	f.Add([]byte(`{"format":"mixopt.recording.v1","run_id":"x","domains":["a","a"]}`))
	f.Add([]byte("{}\n{\"source\":{\"a\":[1,{}]}}"))
	f.Add([]byte("\n\n{"))
	f.Add([]byte(`{"points":[{"eval":{"x":1e400}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ReadRecording(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		for _, r := range rec.Runs() {
			if err := r.Validate(); err != nil {
				t.Fatalf("accepted an invalid run: %v", err)
			}
		}
		var out bytes.Buffer
		for _, r := range rec.Runs() {
			if err := WriteRecordedRun(&out, r); err != nil {
				t.Fatalf("cannot write an accepted run: %v", err)
			}
		}
		again, err := ReadRecording(&out, "again")
		if err != nil {
			t.Fatalf("cannot read back: %v", err)
		}
		if !reflect.DeepEqual(rec.Runs(), again.Runs()) {
			t.Fatalf("round trip changed the runs:\n%+v\n%+v", rec.Runs(), again.Runs())
		}
		for _, r := range rec.Runs() {
			req := Request{Domains: r.Domains, Mixture: r.Mixture, Scale: r.Scale, Steps: r.Steps}
			if _, err := rec.Run(req); err != nil && validateRequest(req) == nil {
				t.Fatalf("a recorded run cannot answer its own request: %v", err)
			}
		}
	})
}
