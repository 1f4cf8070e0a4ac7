package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// fakeWorkerEnv makes the test binary a stand-in for a real worker process (see
// fakeWorker): the test can SIGSTOP it without stopping itself.
const fakeWorkerEnv = "MIXOPT_FAKE_WORKER"

// longSteps makes the slow fake train.py run for about half an hour unless stopped.
const longSteps = 100_000

// fakeWorker runs one real-mode trial of the slow fake train.py, in dir, with a fence
// watchdog, and reports a fence limit that contact keeps renewing (a live worker a
// second from its limit at every moment), until it is killed.
func fakeWorker(dir string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := NewTrainRunner(TrainConfig{
		Python: exe, Script: exe, DataDir: dir, Presets: map[string]string{"small": "tiny"},
		StopGrace: 5 * time.Second, FenceWatchdog: exe,
		Env: map[string]string{
			"MIXOPT_FAKE_TRAIN": "slow", "MIXOPT_FAKE_PIDFILE": filepath.Join(dir, "train.pid"),
			"MIXOPT_FAKE_SIGTERM_MARK": filepath.Join(dir, "sigterm"),
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r.setFence(func() (time.Duration, bool) { return time.Second, true })
	_, err = r.Run(context.Background(), trainAssignment(1, longSteps), func(*pb.CurvePoint) {})
	fmt.Fprintln(os.Stderr, "fake worker: run ended:", err)
	return 0
}

// procState is the state letter of a process ("R", "S", "T", "Z"), or "" once it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name in parentheses may hold spaces; the state follows it.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	if f := strings.Fields(rest); len(f) > 0 {
		return f[0]
	}
	return ""
}

// SIGSTOP of a real worker stops its train.py too: the fence watchdog, a process of its
// own, finds the worker silent past the fence limit and stops the run with SIGTERM, as the
// worker's fence would. Before that, a live worker's run is left alone.
func TestFenceWatchdogStopsRunOfFrozenWorker(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(exe)
	helper.Env = append(os.Environ(), fakeWorkerEnv+"="+dir)
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	trainPid := 0
	t.Cleanup(func() {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		if trainPid > 0 {
			_ = syscall.Kill(-trainPid, syscall.SIGKILL)
		}
	})
	waitFor(t, "the fake train.py to start", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(dir, "train.pid"))
		if err != nil {
			return false, err.Error()
		}
		trainPid, err = strconv.Atoi(string(b))
		return err == nil, string(b)
	})
	// Twice the fence limit and its slack: the live worker's feed keeps the run going.
	time.Sleep(3 * time.Second)
	if st := procState(trainPid); st == "" || st == "Z" {
		t.Fatalf("train.py (pid %d) stopped while its worker was alive: state %q", trainPid, st)
	}

	if err := helper.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "train.py to stop while its worker is frozen", func() (bool, string) {
		st := procState(trainPid)
		// A zombie: it exited, and its frozen parent cannot reap it.
		return st == "" || st == "Z", fmt.Sprintf("state %q", st)
	})
	if _, err := os.Stat(filepath.Join(dir, "sigterm")); err != nil {
		t.Errorf("train.py was not stopped with SIGTERM (no checkpoint chance): %v", err)
	}
	if st := procState(helper.Process.Pid); st != "T" {
		t.Errorf("the worker is in state %q, want still stopped (T)", st)
	}
}

// In process: a worker whose feed stops (its fence goroutine frozen) gets its run stopped
// by the watchdog, and Run reports the attempt fenced, not failed.
func TestFenceWatchdogFencesTheRun(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	r, err := NewTrainRunner(TrainConfig{
		Python: exe, Script: exe, DataDir: t.TempDir(), Presets: map[string]string{"small": "tiny"},
		StopGrace: 5 * time.Second, FenceWatchdog: exe, Logger: zap.New(core),
		Env: map[string]string{"MIXOPT_FAKE_TRAIN": "slow"},
	})
	if err != nil {
		t.Fatal(err)
	}
	thaw := make(chan struct{})
	fed := 0
	r.setFence(func() (time.Duration, bool) {
		if fed++; fed > 1 {
			<-thaw // frozen after the first word: 300 ms left
		}
		return 300 * time.Millisecond, true
	})
	type result struct {
		res RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.Run(context.Background(), trainAssignment(1, longSteps), func(*pb.CurvePoint) {})
		done <- result{res, err}
	}()
	var pid int
	waitFor(t, "training to start", func() (bool, string) {
		started := logs.FilterMessage("training started").All()
		if len(started) == 0 {
			return false, "not yet"
		}
		pid = int(started[0].ContextMap()["pid"].(int64))
		return true, ""
	})
	waitFor(t, "the watchdog to stop training", func() (bool, string) {
		st := procState(pid)
		return st == "" || st == "Z", fmt.Sprintf("state %q", st)
	})
	close(thaw)
	out := <-done
	if !errors.Is(out.err, errWatchdogFenced) {
		t.Fatalf("Run = %v, want the watchdog's fence", out.err)
	}
}

// startSlowTrain starts the slow fake train.py in a process group of its own, as gpuexec
// would, and returns its pid and the file it marks when SIGTERM reaches it.
func startSlowTrain(t *testing.T) (pid int, mark string, done chan struct{}) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mark = filepath.Join(dir, "sigterm")
	pidFile := filepath.Join(dir, "train.pid") // written once it handles SIGTERM
	cmd := exec.Command(exe, "train.py", fmt.Sprintf("--steps=%d", longSteps))
	cmd.Env = append(os.Environ(), "MIXOPT_FAKE_TRAIN=slow", "MIXOPT_FAKE_SIGTERM_MARK="+mark, "MIXOPT_FAKE_PIDFILE="+pidFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	waitFor(t, "the fake train.py to start", func() (bool, string) {
		_, err := os.Stat(pidFile)
		return err == nil, fmt.Sprint(err)
	})
	return cmd.Process.Pid, mark, done
}

// The watchdog's feed: "exit" ends it quietly with the run untouched; a feed that ends
// without it (the worker died) or a deadline that passes stops the group with SIGTERM;
// "-1" (no fence limit known) sets no deadline.
func TestWatchdogFeed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		feed  string // written, then the pipe is closed unless it ends the watch first
		close bool
		want  int
	}{
		{"exit", "5000\nexit\n", false, watchdogQuiet},
		{"feed ends without exit", "5000\n", true, watchdogTripped},
		{"deadline passes", "100\n", false, watchdogTripped},
		{"no limit known, then the worker dies", "-1\n", true, watchdogTripped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid, mark, trainDone := startSlowTrain(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := make(chan int, 1)
			go func() { got <- watch(r, runProcesses{pgid: pid, token: "no-such-token"}, 5*time.Second) }()
			if _, err := w.WriteString(tc.feed); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				w.Close()
			} else {
				defer w.Close()
			}
			if code := <-got; code != tc.want {
				t.Fatalf("watch = %d, want %d", code, tc.want)
			}
			if tc.want == watchdogQuiet {
				select {
				case <-trainDone:
					t.Error("the run ended though the watch ended quietly")
				default:
				}
				return
			}
			<-trainDone
			if _, markErr := os.Stat(mark); markErr != nil {
				t.Errorf("the run was not stopped with SIGTERM: %v", markErr)
			}
		})
	}
}
