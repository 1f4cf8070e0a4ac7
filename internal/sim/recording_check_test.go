package sim

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

const goodRun = `{"format":"mixopt.recording.v1","run_id":"%s","domains":["a","b"],"mixture":[%s],"scale":"1M","params":1e6,"steps":10,"tokens_per_step":100,"points":[{"step":10,"tokens":1000,"train_loss":%s,"eval":{"a_ce":3.1},"wall_time_s":1.5}]}`

func runLine(id, mixture, loss string) string {
	s := strings.Replace(goodRun, "%s", id, 1)
	s = strings.Replace(s, "%s", mixture, 1)
	return strings.Replace(s, "%s", loss, 1)
}

// CheckRecording reports every bad line with its field, where loading stops at the first.
func TestCheckRecordingReportsEveryProblem(t *testing.T) {
	noWall := strings.Replace(runLine("r5", "0.5,0.5", "3"), `,"wall_time_s":1.5`, "", 1)
	file := strings.Join([]string{
		runLine("r1", "0.5,0.5", "3.0"),
		runLine("r2", "0.5,0.5", "NaN"),
		runLine("r3", "0.333,0.666", "3.0"), // rounded to 3 decimals: renormalised
		runLine("r1", "0.5,0.5", "3.0"),     // duplicate id
		noWall,
		runLine("r6", "0.9,0.5", "3.0"), // far off the simplex
	}, "\n")
	runs, problems, err := CheckRecording(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("runs = %d, want 2 (r1 and the renormalised r3)", runs)
	}
	want := []Problem{
		{Line: 2, Field: "train_loss", Warning: false},
		{Line: 3, Field: "mixture", Warning: true},
		{Line: 4, Field: "run_id"},
		{Line: 5, Field: "points[0].wall_time_s"},
		{Line: 6, Field: "mixture"},
	}
	if len(problems) != len(want) {
		t.Fatalf("problems:\n%v\nwant %d", problems, len(want))
	}
	for i, w := range want {
		p := problems[i]
		if p.Line != w.Line || p.Field != w.Field || p.Warning != w.Warning {
			t.Errorf("problem %d = %+v, want line %d field %q warning %v", i, p, w.Line, w.Field, w.Warning)
		}
	}
	if !strings.Contains(problems[0].Message, "NaN is not a JSON number") {
		t.Errorf("NaN message: %q", problems[0].Message)
	}
	// Loading mends the rounded mixture and says so, and stops at the NaN line.
	rec, err := ReadRecording(strings.NewReader(runLine("r3", "0.333,0.666", "3.0")), "x")
	if err != nil || len(rec.Warnings()) != 1 || rec.Runs()[0].Mixture[0] != 0.333/0.999 {
		t.Fatalf("rounded mixture: %v, warnings %v", err, rec.Warnings())
	}
	if _, err := ReadRecording(strings.NewReader(file), "x"); err == nil || !strings.Contains(err.Error(), "line 2: train_loss: NaN") {
		t.Fatalf("load error %v, want line 2's NaN named", err)
	}
}

// A CSV of runs converts into a recording that loads, with curves grouped by run_id and
// every bad cell reported by line and column.
func TestRunsFromCSV(t *testing.T) {
	csvText := `run_id,scale,params,step,w_a,w_b,loss,ce
x,1M,1e6,20,0.25,0.75,3.0,2.9
x,1M,1e6,10,0.25,0.75,3.5,3.4
y,1M,1e6,10,0.5,0.5,NaN,3.0
z,1M,1e6,10,0.333,0.666,3.2,3.1
`
	runs, problems, err := RunsFromCSV(strings.NewReader(csvText), CSVOptions{
		Domains: []string{"w_a", "w_b"}, Metrics: []string{"ce"}, TrainLoss: "loss",
		TokensPerStep: 1000, FlopsPerSecond: 1e12, Source: "test.csv"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].RunID != "x" || len(runs[0].Points) != 2 || runs[0].Steps != 20 || runs[0].Points[0].Tokens != 10000 {
		t.Fatalf("runs = %+v", runs)
	}
	if len(problems) != 2 || problems[0].Line != 4 || problems[0].Field != "loss" || !problems[1].Warning || problems[1].Line != 5 {
		t.Fatalf("problems = %v", problems)
	}
	var buf bytes.Buffer
	for _, r := range runs {
		if err := WriteRecordedRun(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := ReadRecording(&buf, "converted")
	if err != nil || len(rec.Runs()) != 2 {
		t.Fatalf("converted recording: %v", err)
	}
	// A bad tokens_per_step or flops_per_step cell is reported, not read as 0.
	cells := `run_id,scale,params,step,w_a,w_b,loss,ce,tokens_per_step,flops_per_step
x,1M,1e6,10,0.5,0.5,3.0,2.9,many,1e12
y,1M,1e6,10,0.5,0.5,3.0,2.9,1000,lots
z,1M,1e6,10,0.5,0.5,3.0,2.9,2.5,1e12
w,1M,1e6,10,0.5,0.5,3.0,2.9,1000,1e12
`
	runs, problems, err = RunsFromCSV(strings.NewReader(cells), CSVOptions{
		Domains: []string{"w_a", "w_b"}, Metrics: []string{"ce"}, TrainLoss: "loss", FlopsPerSecond: 1e12})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].RunID != "w" || runs[0].TokensPerStep != 1000 || runs[0].FlopsPerStep != 1e12 {
		t.Fatalf("runs = %+v", runs)
	}
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Field)
	}
	if want := []string{"tokens_per_step", "flops_per_step", "tokens_per_step"}; !slices.Equal(fields, want) {
		t.Fatalf("problem fields %v, want %v (%v)", fields, want, problems)
	}
	if _, _, err := RunsFromCSV(strings.NewReader("scale,params,steps\n"), CSVOptions{Domains: []string{"w_a"}}); err == nil || !strings.Contains(err.Error(), `no column "train_loss"`) {
		t.Fatalf("missing column: %v", err)
	}
}
