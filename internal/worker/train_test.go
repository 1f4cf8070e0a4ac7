package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/gpuexec"
	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The test binary doubles as a fake train.py (the helper-process pattern): TrainRunner runs
// it as "python" with MIXOPT_FAKE_TRAIN naming the behaviour. It speaks protocol v1 and
// keeps a checkpoint (a JSON file) so that resuming can be tested without torch.
func TestMain(m *testing.M) {
	if mode := os.Getenv("MIXOPT_FAKE_TRAIN"); mode != "" {
		os.Exit(fakeTrain(mode, os.Args[2:]))
	}
	if IsFenceWatchdog() {
		os.Exit(RunFenceWatchdog())
	}
	if dir := os.Getenv(fakeWorkerEnv); dir != "" {
		os.Exit(fakeWorker(dir))
	}
	os.Exit(m.Run())
}

func fakeEmit(kind string, fields map[string]any) {
	rec := map[string]any{"v": 1, "event": kind, "time": float64(time.Now().UnixMilli()) / 1000}
	for k, v := range fields {
		rec[k] = v
	}
	b, _ := json.Marshal(rec)
	fmt.Println(string(b))
}

func fakeTrain(mode string, args []string) int {
	flags := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[k] = v
	}
	steps, _ := strconv.Atoi(flags["steps"])
	every, _ := strconv.Atoi(flags["eval-every"])
	if every == 0 {
		every = 10
	}
	fmt.Fprintln(os.Stderr, "fake train.py", strings.Join(args, " "))
	if mode == "bad_input" {
		fakeEmit("error", map[string]any{"class": "bad_input", "message": "unknown preset " + flags["preset"], "exit_code": 2, "step": nil})
		return 2
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if f := os.Getenv("MIXOPT_FAKE_PIDFILE"); f != "" {
		_ = os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	ckpt := ""
	step := 0
	if d := flags["checkpoint-dir"]; d != "" {
		ckpt = filepath.Join(d, "ckpt.json")
		if b, err := os.ReadFile(ckpt); err == nil {
			step, _ = strconv.Atoi(string(b))
		}
	}
	resumed := step
	fakeEmit("start", map[string]any{"step": step, "resumed_from_step": resumed, "config": map[string]any{
		"preset": flags["preset"], "params": 1000, "tokens_per_step": 64, "flops_per_step": 384000.0,
		"device": "cpu", "world_size": 1, "torch": "fake", "argv": args}})
	if mode == "warn" {
		fakeEmit("warning", map[string]any{"code": "compile_fallback", "message": "torch.compile failed; running eager"})
	}
	loss := func(s int) float64 { return 5 / (1 + float64(s)/10) }
	eval := func(s int, train any) {
		fakeEmit("eval", map[string]any{"step": s, "tokens": s * 64, "train_loss": train,
			"metrics": map[string]any{"a_ce": loss(s) + 0.1, "b_ce": loss(s) + 0.3, "mean_ce": loss(s) + 0.2}})
	}
	if step == 0 {
		eval(0, nil)
	}
	for step < steps {
		if mode == "slow" {
			time.Sleep(20 * time.Millisecond)
		}
		step++
		stopping := false
		select {
		case <-term:
			stopping = true
		default:
		}
		if mode == "nan" && step == 25 {
			fakeEmit("point", map[string]any{"step": step, "tokens": step * 64, "train_loss": nil})
			fakeEmit("error", map[string]any{"class": "diverged", "message": "training loss is nan at step 25", "exit_code": 5, "step": 24})
			return 5
		}
		if mode == "oom" && step == 15 {
			fakeEmit("error", map[string]any{"class": "oom", "message": "CUDA out of memory", "exit_code": 4, "step": 14})
			return 4
		}
		if step%every == 0 || step == steps {
			fakeEmit("point", map[string]any{"step": step, "tokens": step * 64, "train_loss": loss(step)})
		}
		if step%every == 0 || step == steps || stopping {
			eval(step, loss(step)+0.05)
		}
		if stopping {
			if f := os.Getenv("MIXOPT_FAKE_SIGTERM_MARK"); f != "" {
				_ = os.WriteFile(f, []byte(strconv.Itoa(step)), 0o644)
			}
			if ckpt != "" {
				_ = os.WriteFile(ckpt, []byte(strconv.Itoa(step)), 0o644)
			}
			fakeEmit("done", map[string]any{"status": "stopped", "step": step, "tokens": step * 64, "domain_sequences": map[string]int{}})
			return 143
		}
	}
	if ckpt != "" {
		_ = os.WriteFile(ckpt, []byte(strconv.Itoa(step)), 0o644)
	}
	fakeEmit("done", map[string]any{"status": "completed", "step": step, "tokens": step * 64, "domain_sequences": map[string]int{}})
	return 0
}

func fakeRunner(t *testing.T, mode string, ckRoot string) *TrainRunner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewTrainRunner(TrainConfig{
		Python: exe, Script: exe, DataDir: t.TempDir(), CheckpointRoot: ckRoot,
		Presets: map[string]string{"small": "tiny"}, StopGrace: 5 * time.Second,
		Env: map[string]string{"MIXOPT_FAKE_TRAIN": mode},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func trainAssignment(trialID uint64, steps int64) *pb.Assignment {
	return &pb.Assignment{
		Trial:   &pb.Trial{Id: trialID, StudyId: 1, Mixture: []float64{0.25, 0.75}, Steps: steps, Scale: "small"},
		Domains: []string{"a", "b"}, Scale: &pb.Scale{Name: "small", Params: 900, TokensPerStep: 64},
		Attempt: 1, EvalEvery: 10, Seed: math.MaxUint64, GpuIndices: []int32{0},
	}
}

// collect is an emit that keeps copies of the points.
type collect struct {
	mu  sync.Mutex
	pts []*pb.CurvePoint
}

func (c *collect) emit(p *pb.CurvePoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pts = append(c.pts, p)
}

func (c *collect) steps() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []int64
	for _, p := range c.pts {
		s = append(s, p.Step)
	}
	return s
}

func TestTrainRunnerEmitsMergedPointsAtEvalSteps(t *testing.T) {
	r := fakeRunner(t, "ok", t.TempDir())
	var c collect
	res, err := r.Run(context.Background(), trainAssignment(1, 45), c.emit)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := c.steps(), []int64{10, 20, 30, 40, 45}; !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v (eval steps, none at 0)", got, want)
	}
	for _, p := range c.pts {
		// The step's own loss (from the point event), not the eval interval's mean.
		if want := 5 / (1 + float64(p.Step)/10); p.TrainLoss != want || p.Tokens != p.Step*64 {
			t.Errorf("step %d: train_loss %v tokens %d, want %v and %d", p.Step, p.TrainLoss, p.Tokens, want, p.Step*64)
		}
		if len(p.Eval) != 3 || p.Eval["mean_ce"] == 0 {
			t.Errorf("step %d: eval %v, want a_ce, b_ce, mean_ce", p.Step, p.Eval)
		}
	}
	if res.Params != 1000 || res.TokensPerStep != 64 || res.Provenance["preset"] != "tiny" {
		t.Errorf("result %+v: want train.py's measured params, tokens and the mapped preset", res)
	}
}

func TestTrainRunnerClassifiesFailures(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		class pb.FailureClass
		steps []int64
	}{
		{"oom", pb.FailureClass_FAILURE_CLASS_OOM, []int64{10}},
		{"nan", pb.FailureClass_FAILURE_CLASS_DIVERGED, []int64{10, 20}},
		{"bad_input", pb.FailureClass_FAILURE_CLASS_BAD_INPUT, nil},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			root := t.TempDir()
			var c collect
			_, err := fakeRunner(t, tc.mode, root).Run(context.Background(), trainAssignment(2, 40), c.emit)
			var re *RunError
			if !errors.As(err, &re) || re.Class != tc.class {
				t.Fatalf("error %v, want a RunError of class %s", err, tc.class)
			}
			if got := c.steps(); !slices.Equal(got, tc.steps) {
				t.Errorf("points at %v, want the finite prefix %v", got, tc.steps)
			}
			// Deterministic failures are not retried: nothing is kept to resume.
			if left, _ := filepath.Glob(filepath.Join(root, "study-1", "trial-*")); len(left) != 0 {
				t.Errorf("checkpoint folders left: %v", left)
			}
		})
	}
}

// A stopped attempt checkpoints; the next attempt of the trial on this worker resumes and
// re-sends the points the checkpoint covers, so the new attempt's curve is whole.
func TestTrainRunnerResumesRequeuedAttempt(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var first collect
	done := make(chan error, 1)
	go func() {
		_, err := fakeRunner(t, "slow", root).Run(ctx, trainAssignment(3, 60), first.emit)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(first.steps()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no points from the first attempt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped attempt returned %v, want context.Canceled", err)
	}
	stopped := first.steps()
	last := stopped[len(stopped)-1]
	if last >= 60 {
		t.Fatalf("first attempt ran to the end (%v) before the stop", stopped)
	}

	a := trainAssignment(3, 60)
	a.Attempt = 2
	var second collect
	if _, err := fakeRunner(t, "ok", root).Run(context.Background(), a, second.emit); err != nil {
		t.Fatalf("resumed attempt: %v", err)
	}
	got := second.steps()
	want := stopped
	for s := (last/10 + 1) * 10; s <= 60; s += 10 {
		want = append(want, s)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed attempt sent %v, want the stopped attempt's %v and then the rest: %v", got, stopped, want)
	}
	if _, err := os.Stat(filepath.Join(root, "study-1", "trial-3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint folder of the finished trial still there: %v", err)
	}
}

// A folder left by another run with the same trial id (a fresh coordinator database) is
// cleared, not resumed.
func TestTrainRunnerIgnoresForeignCheckpoint(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "study-1", "trial-4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"ckpt.json": "30", "run.json": `{"trial_id":4,"mixture":[0.5,0.5]}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var c collect
	if _, err := fakeRunner(t, "ok", root).Run(context.Background(), trainAssignment(4, 30), c.emit); err != nil {
		t.Fatal(err)
	}
	if got := c.steps(); !slices.Equal(got, []int64{10, 20, 30}) {
		t.Fatalf("steps %v, want a fresh run's 10, 20, 30", got)
	}
}

func TestTrainRunnerMapsGPUs(t *testing.T) {
	exe, _ := os.Executable()
	r, err := NewTrainRunner(TrainConfig{Python: exe, Script: exe, DataDir: t.TempDir(),
		GPUs: []gpuexec.GPU{{Index: 0, UUID: "GPU-aaaa"}, {Index: 3, UUID: "GPU-dddd"}}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := r.acquire("t1", []int32{3})
	if err != nil || len(set) != 1 || set[0].UUID != "GPU-dddd" {
		t.Fatalf("acquire [3] = %v, %v; want GPU-dddd", set, err)
	}
	if _, err := r.acquire("t2", []int32{3}); !errors.Is(err, gpuexec.ErrBusy) {
		t.Errorf("second acquire of gpu 3: %v, want busy", err)
	}
	if _, err := r.acquire("t3", []int32{1}); err == nil || !strings.Contains(err.Error(), "did not register") {
		t.Errorf("acquire of an unknown gpu: %v", err)
	}
	r.alloc.Release("t1")
	if _, err := r.acquire("t2", []int32{3}); err != nil {
		t.Errorf("acquire after release: %v", err)
	}
}

func TestParsePresetMap(t *testing.T) {
	m, err := ParsePresetMap("20M=tiny, 150M=tiny-m")
	if err != nil || m["20M"] != "tiny" || m["150M"] != "tiny-m" || len(m) != 2 {
		t.Fatalf("got %v, %v", m, err)
	}
	for _, bad := range []string{"20M", "20M=tiny,20M=tiny-m", "a=b c", "=tiny", "x=../y"} {
		if _, err := ParsePresetMap(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// RecordingRunner appends one valid line per successful run and nothing for failed ones.
func TestRecordingRunner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.jsonl")
	f, err := OpenRecording(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := sim.Open("synthetic", sim.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &RecordingRunner{Runner: SimRunner{Source: src, Speedup: 1e9}, File: f, Hostname: "h"}
	a := &pb.Assignment{
		Trial:   &pb.Trial{Id: 7, StudyId: 2, Mixture: []float64{0.5, 0.5}, Steps: 100},
		Domains: []string{"a", "b"}, Scale: &pb.Scale{Name: "20M", Params: 2e7, FlopsPerStep: 1e12, TokensPerStep: 1000},
		Attempt: 1, EvalEvery: 25, Seed: 3,
	}
	var c collect
	if _, err := rec.Run(context.Background(), a, c.emit); err != nil {
		t.Fatal(err)
	}
	failing := &RecordingRunner{Runner: fakeRunner(t, "oom", ""), File: f, Hostname: "h"}
	if _, err := failing.Run(context.Background(), trainAssignment(8, 40), c.emit); err == nil {
		t.Fatal("oom run succeeded")
	}
	loaded, err := sim.LoadRecording(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	runs := loaded.Runs()
	if len(runs) != 1 {
		t.Fatalf("%d runs recorded, want only the successful one", len(runs))
	}
	r := runs[0]
	if r.Scale != "20M" || r.Steps != 100 || len(r.Points) != 4 || r.Source["trial_id"] != float64(7) ||
		!strings.HasPrefix(r.RunID, "h-study2-trial7-a1-") {
		t.Errorf("recorded %+v", r)
	}
}
