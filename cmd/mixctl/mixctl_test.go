package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestReadSpecYAMLAndJSON(t *testing.T) {
	spec, err := readSpec(filepath.Join("..", "..", "examples", "demo-study.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Domains) != 5 || spec.Domains[4].MaxWeight != 0.6 || spec.Target.GetScale() != "1B" ||
		spec.Objective.GetMetric() != "stackexchange_ce" || spec.BudgetFlops != 1.9e19 {
		t.Fatalf("demo spec parsed wrongly: %v", spec)
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "spec.json")
	os.WriteFile(js, []byte(`{"name":"j","maxParallel":3,"target":{"scale":"s","steps":10}}`), 0o644)
	spec, err = readSpec(js)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "j" || spec.MaxParallel != 3 || spec.Target.Steps != 10 {
		t.Fatalf("json spec parsed wrongly: %v", spec)
	}
}

func TestReadSpecErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", "name: x\nbudget: 3\n", `unknown field "budget"`},
		{"wrong type", "max_parallel: many\n", "maxParallel"},
		{"bad yaml", "name: [\n", "yaml"},
		{"duplicate key", "name: x\nsteps: [1]\nname: y\n", `key "name" already set`},
		{"duplicate key in JSON", `{"name": "x", "name": "y"}`, `key "name" already set`},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
		os.WriteFile(p, []byte(tc.body), 0o644)
		_, err := readSpec(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to mention %q", tc.name, err, tc.want)
		}
		if exitCode(err) != 2 {
			t.Errorf("%s: exit code %d, want 2 (usage)", tc.name, exitCode(err))
		}
	}
	if _, err := readSpec(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("boom"), 1},
		{usageError{errors.New("bad flag")}, 2},
		{status.Error(codes.InvalidArgument, "x"), 3},
		{status.Error(codes.NotFound, "x"), 4},
		{status.Error(codes.FailedPrecondition, "x"), 5},
		{status.Error(codes.Unavailable, "x"), 6},
		{status.Error(codes.DeadlineExceeded, "x"), 6},
		{status.Error(codes.Unauthenticated, "x"), 7},
		{status.Error(codes.PermissionDenied, "x"), 8},
		{status.Error(codes.Internal, "x"), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"trial", "abc"},
		{"trials", "0"},
		{"study", "create"},
		{"status", "-o", "yaml"},
		{"status", "--no-such-flag"},
	} {
		var out bytes.Buffer
		cmd := newRootCmd(&out)
		cmd.SetArgs(args)
		cmd.SetErr(&out)
		err := cmd.Execute()
		if code := exitCode(err); code != 2 {
			t.Errorf("mixctl %v: exit %d (%v), want 2", args, code, err)
		}
	}
}

func fixtureStatus() ([]*pb.StudyStatus, []*pb.Worker) {
	spec := &pb.StudySpec{
		Name: "demo", Policy: "mfms", BudgetFlops: 1.9e19,
		Domains:   []*pb.Domain{{Name: "web"}, {Name: "code"}},
		Objective: &pb.Objective{Metric: "web_ce"},
		Target:    &pb.Fidelity{Scale: "1B", Steps: 2000},
	}
	studies := []*pb.StudyStatus{
		{
			Study:         &pb.Study{Id: 1, Spec: spec, State: pb.StudyState_STUDY_STATE_RUNNING, SpentFlops: 4.75e18, SpentGpuHours: 12.25},
			TrialsByState: map[string]int32{"running": 2, "succeeded": 7, "failed": 1, "lost": 1},
			Recommendation: &pb.Recommendation{Mixture: []float64{0.625, 0.375}, Value: 2.9871, Lower: 2.95, Upper: 3.02,
				HasInterval: true, StudyState: pb.StudyState_STUDY_STATE_RUNNING,
				Label: "extrapolated from smaller scales and shorter runs: no trial at the target (1B, 2000 steps) has finished"},
		},
		{
			Study:         &pb.Study{Id: 2, Spec: &pb.StudySpec{Policy: "random", BudgetFlops: 1e18}, State: pb.StudyState_STUDY_STATE_PAUSED},
			TrialsByState: map[string]int32{},
		},
	}
	now := time.UnixMilli(1_800_000_000_000)
	workers := []*pb.Worker{
		{Id: 1, Hostname: "gpu-a", State: pb.WorkerState_WORKER_STATE_ALIVE, Gpus: []*pb.Gpu{{}, {}},
			RunningTrials: []uint64{9, 11}, LastHeartbeatUnixMs: now.Add(-2 * time.Second).UnixMilli()},
		{Id: 2, Hostname: "sim-1", State: pb.WorkerState_WORKER_STATE_LOST, SimulatedCapacity: 4,
			LastHeartbeatUnixMs: now.Add(-95 * time.Second).UnixMilli()},
	}
	return studies, workers
}

func TestStatusTableGolden(t *testing.T) {
	studies, workers := fixtureStatus()
	var out bytes.Buffer
	printStudies(&out, studies)
	out.WriteString("\n")
	printWorkers(&out, workers, time.UnixMilli(1_800_000_000_000))
	golden(t, "status", out.String())
}

func TestStatusJSONGolden(t *testing.T) {
	studies, workers := fixtureStatus()
	var out bytes.Buffer
	if err := writeStatusJSON(&out, studies, workers); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-json", out.String())
}

func TestEmptyTablesSayNone(t *testing.T) {
	var out bytes.Buffer
	printStudies(&out, nil)
	printWorkers(&out, nil, time.Now())
	printTrials(&out, nil)
	if n := strings.Count(out.String(), "<none>"); n != 3 {
		t.Errorf("empty tables show <none> %d times, want 3:\n%s", n, out.String())
	}
}

// The workers table says what each worker is: kind, then a simulated worker's source or a
// real one's interpreter, then labels; workers that registered no identity show <none>.
func TestWorkersTableShowsIdentity(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	workers := []*pb.Worker{
		{Id: 3, Hostname: "h200-a", State: pb.WorkerState_WORKER_STATE_ALIVE, Gpus: []*pb.Gpu{{Name: "NVIDIA H200"}},
			LastHeartbeatUnixMs: now.Add(-time.Second).UnixMilli(),
			Identity: &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_REAL, Labels: map[string]string{"zone": "east", "cluster": "h200"},
				Interpreter: &pb.Interpreter{Path: "/opt/venv/bin/python3", PythonVersion: "3.11.2", TorchVersion: "2.4.0+cu121",
					CudaVersion: "12.1", CudaAvailable: true, Devices: []string{"NVIDIA H200"}, CompileAvailable: true}}},
		{Id: 4, Hostname: "sim-2", State: pb.WorkerState_WORKER_STATE_ALIVE, SimulatedCapacity: 2,
			LastHeartbeatUnixMs: now.Add(-3 * time.Second).UnixMilli(),
			Identity:            &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_SIMULATED, SimSource: "recording:tiny-cpu.jsonl"}},
		{Id: 5, Hostname: "cpu-box", State: pb.WorkerState_WORKER_STATE_ALIVE,
			LastHeartbeatUnixMs: now.Add(-4 * time.Second).UnixMilli(),
			Identity: &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_REAL,
				Interpreter: &pb.Interpreter{Path: "/usr/bin/python3", PythonVersion: "3.11.2", TorchVersion: "1.13.0a0"}}},
		{Id: 6, Hostname: "own-trainer", State: pb.WorkerState_WORKER_STATE_ALIVE,
			LastHeartbeatUnixMs: now.Add(-5 * time.Second).UnixMilli(),
			Identity:            &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_REAL, Labels: map[string]string{"team": "olmo"}}},
		{Id: 7, Hostname: "old-worker", State: pb.WorkerState_WORKER_STATE_ALIVE, SimulatedCapacity: 1,
			LastHeartbeatUnixMs: now.Add(-6 * time.Second).UnixMilli()},
	}
	var out bytes.Buffer
	printWorkers(&out, workers, now)
	golden(t, "workers", out.String())
}
