package gpuexec

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// fakeSpec is a valid spec whose interpreter is this test binary in fake mode.
func fakeSpec(t *testing.T, mode string) TrainSpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return TrainSpec{
		Python: exe, Script: exe, DataDir: t.TempDir(), Domains: []string{"a", "b"}, Mixture: []float64{0.25, 0.75},
		Preset: "tiny", Steps: 10, EvalEvery: 5, Seed: 1,
		Env: map[string]string{"GPUEXEC_FAKE": mode},
	}
}

// startWithPidFile starts the fake in mode with GPUEXEC_PIDFILE set (where the fake's
// other processes write their pids) and drains its events in the background.
func startWithPidFile(t *testing.T, mode string) (run *Run, pidFile string) {
	t.Helper()
	spec := fakeSpec(t, mode)
	pidFile = filepath.Join(t.TempDir(), "pids")
	spec.Env["GPUEXEC_PIDFILE"] = pidFile
	run, err := Launch(context.Background(), spec, LaunchOptions{KillWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range run.Events() {
		}
	}()
	return run, pidFile
}

func launchFake(t *testing.T, mode string, opts LaunchOptions) (*Run, []Event) {
	t.Helper()
	run, err := Launch(context.Background(), fakeSpec(t, mode), opts)
	if err != nil {
		t.Fatalf("launch %s: %v", mode, err)
	}
	t.Cleanup(func() { _ = run.Stop(time.Millisecond) })
	var evs []Event
	for ev := range run.Events() {
		evs = append(evs, ev)
	}
	return run, evs
}

func TestRunSucceeds(t *testing.T) {
	run, evs := launchFake(t, "ok", LaunchOptions{})
	res := run.Wait()
	if res.Class != ClassSucceeded || res.Err != nil {
		t.Fatalf("class %s err %v, stderr %q", res.Class, res.Err, res.StderrTail)
	}
	kinds := []Kind{}
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	want := []Kind{KindStart, KindPoint, KindPoint, KindPoint, KindEval, KindDone}
	if strings.Join(kindStrings(kinds), ",") != strings.Join(kindStrings(want), ",") {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if evs[4].Metrics["mean_ce"] != 2.5 || res.LastStep != 3 || res.Done.DomainSequences["a"] != 3 {
		t.Fatalf("eval %+v, last step %d, done %+v", evs[4], res.LastStep, res.Done)
	}
	// The argv train.py sees: script first, then --flag=value pairs.
	var argv []string
	if err := unmarshalField(evs[0].Start.Config, "argv", &argv); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(argv[1:], " ")
	for _, want := range []string{"--preset=tiny", "--domains=a,b", "--mixture=0.25,0.75", "--steps=10", "--device=cpu", "--eval-every=5"} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv %q lacks %s", joined, want)
		}
	}
}

func kindStrings(ks []Kind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func TestRunEnvironment(t *testing.T) {
	spec := fakeSpec(t, "env")
	spec.GPUs = []string{"GPU-aaaa"}
	spec.Env["NCCL_DEBUG"] = "WARN"
	run, err := Launch(context.Background(), spec, LaunchOptions{Environ: []string{"CUDA_VISIBLE_DEVICES=7", "PATH=/usr/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	for range run.Events() {
	}
	res := run.Wait()
	if !strings.Contains(res.StderrTail, "CUDA_VISIBLE_DEVICES=GPU-aaaa NCCL_DEBUG=WARN") {
		t.Fatalf("child environment: %q", res.StderrTail)
	}
}

func TestClassifiesFailures(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		class    Class
		sentinel error
		msg      string
	}{
		{"crash", ClassCrashed, ErrCrashed, "RuntimeError: boom"},
		{"oom-stderr", ClassOOM, ErrOOM, "CUDA out of memory"},
		{"oom-event", ClassOOM, ErrOOM, "CUDA out of memory"},
		{"nan", ClassDiverged, ErrDiverged, "loss is nan"},
		{"nan-code-only", ClassDiverged, ErrDiverged, "exit code 5"},
		{"exit0-nodone", ClassCrashed, ErrCrashed, "without a done event"},
		{"sigkill-self", ClassKilled, ErrKilled, "signal killed"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			run, evs := launchFake(t, tc.mode, LaunchOptions{})
			res := run.Wait()
			if res.Class != tc.class {
				t.Fatalf("class %s, want %s (exit %d, stderr %q)", res.Class, tc.class, res.ExitCode, res.StderrTail)
			}
			if !errors.Is(res.Err, tc.sentinel) || !strings.Contains(res.Err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v mentioning %q", res.Err, tc.sentinel, tc.msg)
			}
			if tc.mode == "nan" {
				if len(evs) < 2 || evs[1].Kind != KindPoint || !evs[1].HasTrainLoss || evs[1].TrainLoss == evs[1].TrainLoss {
					t.Fatalf("nan point not parsed as NaN: %+v", evs)
				}
				if res.Error == nil || res.Error.Step != 1 {
					t.Fatalf("error info %+v", res.Error)
				}
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err == nil && len(b) > 0 {
			pid, err := strconv.Atoi(string(b))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("grandchild never wrote its pid")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopKillsTheWholeGroup(t *testing.T) {
	run, pidFile := startWithPidFile(t, "group")
	grandchild := readPid(t, pidFile)
	if !alive(grandchild) || !alive(run.Pid()) {
		t.Fatal("processes not running before stop")
	}
	t0 := time.Now()
	if err := run.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Fatalf("stopped after %v, before the grace period, though SIGTERM is ignored", d)
	}
	res := run.Wait()
	if res.Class != ClassStopped || res.Signal != syscall.SIGKILL || !errors.Is(res.Err, ErrStopped) {
		t.Fatalf("result %+v", res)
	}
	waitGone(t, grandchild)
}

func TestStopIsGracefulWhenTheChildCooperates(t *testing.T) {
	run, err := Launch(context.Background(), fakeSpec(t, "graceful"), LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	ended := make(chan []Event)
	go func() {
		var evs []Event
		for ev := range run.Events() {
			if ev.Kind == KindStart {
				close(started) // the fake installs its handler before start
			}
			evs = append(evs, ev)
		}
		ended <- evs
	}()
	<-started
	t0 := time.Now()
	if err := run.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) > 10*time.Second {
		t.Fatal("graceful stop waited for the grace period")
	}
	evs := <-ended
	res := run.Wait()
	if res.Class != ClassStopped || res.ExitCode != ExitStopped || res.Done == nil || res.Done.Status != "stopped" {
		t.Fatalf("result %+v", res)
	}
	if last := evs[len(evs)-1]; last.Kind != KindDone || evs[len(evs)-2].CheckpointPath != "/ckpt/ckpt.pt" {
		t.Fatalf("events %+v", evs)
	}
}

func TestContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	run, err := Launch(ctx, fakeSpec(t, "group"), LaunchOptions{StopGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range run.Events() {
		}
	}()
	cancel()
	select {
	case <-run.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("run outlived its context")
	}
	if res := run.Wait(); res.Class != ClassStopped {
		t.Fatalf("class %s", res.Class)
	}
}

func TestStdoutLinesAreBounded(t *testing.T) {
	run, evs := launchFake(t, "lines", LaunchOptions{MaxLineBytes: 1 << 20})
	res := run.Wait()
	if res.Class != ClassSucceeded {
		t.Fatalf("class %s: %v", res.Class, res.Err)
	}
	if len(evs) != 3 || evs[1].Kind != KindPoint || evs[2].Kind != KindDone {
		t.Fatalf("events %+v", evs)
	}
	if res.DroppedLines != 1 || res.IgnoredLines != 1 || res.BadLines != 2 || res.FirstBadLine == nil {
		t.Fatalf("dropped %d ignored %d bad %d (%v)", res.DroppedLines, res.IgnoredLines, res.BadLines, res.FirstBadLine)
	}
	if !strings.Contains(res.StderrTail, "stdout: a library printed this") {
		t.Fatalf("tail %q", res.StderrTail)
	}
}

func TestLeftoverHoldingStdoutCannotHangWait(t *testing.T) {
	spec := fakeSpec(t, "orphan-pipe")
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec.Env["GPUEXEC_PIDFILE"] = pidFile
	t0 := time.Now()
	run, err := Launch(context.Background(), spec, LaunchOptions{WaitDelay: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range run.Events() {
	}
	res := run.Wait()
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("wait took %v", d)
	}
	if res.Class != ClassSucceeded || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	waitGone(t, readPid(t, pidFile))
}

func TestLaunchRefusesBadSpecs(t *testing.T) {
	spec := fakeSpec(t, "ok")
	spec.Mixture = []float64{0.5, 0.4}
	if _, err := Launch(context.Background(), spec, LaunchOptions{}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err %v", err)
	}
	spec = fakeSpec(t, "ok")
	spec.Script = "/nonexistent/train.py"
	if _, err := Launch(context.Background(), spec, LaunchOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}

func TestClassify(t *testing.T) {
	done := &DoneInfo{Status: "completed"}
	for _, tc := range []struct {
		name string
		in   ExitInfo
		want Class
	}{
		{"success", ExitInfo{Done: done}, ClassSucceeded},
		{"finished before stop", ExitInfo{Done: done, StopRequested: true}, ClassSucceeded},
		{"error event wins over stop", ExitInfo{ExitCode: 4, StopRequested: true, Error: &ErrorInfo{Class: pb.FailureClass_FAILURE_CLASS_OOM}}, ClassOOM},
		{"bad data event", ExitInfo{ExitCode: 3, Error: &ErrorInfo{Class: pb.FailureClass_FAILURE_CLASS_BAD_DATA}}, ClassBadData},
		{"bad input code", ExitInfo{ExitCode: 2}, ClassBadInput},
		{"other event", ExitInfo{ExitCode: 1, Error: &ErrorInfo{Class: pb.FailureClass_FAILURE_CLASS_OTHER}}, ClassCrashed},
		{"stopped sigkill", ExitInfo{ExitCode: -1, Signal: syscall.SIGKILL, StopRequested: true}, ClassStopped},
		{"torchrun exit 1 on stop", ExitInfo{ExitCode: 1, StopRequested: true}, ClassStopped},
		{"preempted", ExitInfo{ExitCode: 143, Done: &DoneInfo{Status: "stopped"}}, ClassKilled},
		{"oom killer", ExitInfo{ExitCode: -1, Signal: syscall.SIGKILL}, ClassKilled},
		{"rank 1 oom under torchrun", ExitInfo{ExitCode: 1, StderrTail: "[rank1]: torch.OutOfMemoryError: CUDA out of memory"}, ClassOOM},
		{"cublas alloc", ExitInfo{ExitCode: 1, StderrTail: "CUBLAS_STATUS_ALLOC_FAILED"}, ClassOOM},
		{"segfault", ExitInfo{ExitCode: -1, Signal: syscall.SIGSEGV}, ClassCrashed},
		{"plain crash", ExitInfo{ExitCode: 1, StderrTail: "ValueError: x"}, ClassCrashed},
	} {
		if got := Classify(tc.in); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func unmarshalField(raw []byte, field string, into any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	return json.Unmarshal(m[field], into)
}
