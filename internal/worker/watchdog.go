package worker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mixopt/mixopt/internal/gpuexec"
)

// The fence watchdog stops a training process group when its worker cannot: a worker
// that is frozen (SIGSTOP, a hung host process) or dead runs no fence, while train.py,
// in its own process group, would train on beside the attempt the coordinator requeues
// elsewhere. The watchdog is a separate process (the worker's own binary started with
// FenceWatchdogEnv set) in a process group of its own; the worker feeds it, through a
// pipe, how long it may still run unfenced. When that time passes without a new word,
// or the pipe closes without "exit" (the worker died), it stops the group as the worker
// would: SIGTERM, then SIGKILL after the stop grace.

// FenceWatchdogEnv, set to "PGID:GRACE_MS:TOKEN", makes a process that calls
// RunFenceWatchdog the watchdog of the run whose process group is PGID and whose processes
// carry gpuexec.RunTokenEnv=TOKEN, fed on file descriptor 3.
const FenceWatchdogEnv = "MIXOPT_FENCE_WATCHDOG"

// Exit codes of the watchdog.
const (
	watchdogQuiet   = 0 // told "exit": the run ended under the worker's control
	watchdogTripped = 3 // stopped the group
	watchdogBadArgs = 2
)

// watchdogSlack lets the worker's own fence act first when it is alive; the lease TTL
// exceeds the fence limit by far more.
const watchdogSlack = 500 * time.Millisecond

// feedEvery is how often the worker renews the watchdog's deadline.
const feedEvery = 200 * time.Millisecond

// IsFenceWatchdog says whether this process was started as a fence watchdog; the worker's
// main then calls RunFenceWatchdog and exits with its code, before anything else.
func IsFenceWatchdog() bool { return os.Getenv(FenceWatchdogEnv) != "" }

// RunFenceWatchdog is the watchdog process's main; it returns the exit code.
func RunFenceWatchdog() int {
	parts := strings.SplitN(os.Getenv(FenceWatchdogEnv), ":", 3)
	if len(parts) != 3 {
		parts = append(parts, "", "")
	}
	pgid, err1 := strconv.Atoi(parts[0])
	graceMs, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || pgid <= 1 || graceMs < 0 || parts[2] == "" {
		fmt.Fprintf(os.Stderr, "fence watchdog: %s=%q: want PGID:GRACE_MS:TOKEN\n", FenceWatchdogEnv, os.Getenv(FenceWatchdogEnv))
		return watchdogBadArgs
	}
	feed := os.NewFile(3, "fence-feed")
	if feed == nil {
		fmt.Fprintln(os.Stderr, "fence watchdog: no feed on descriptor 3")
		return watchdogBadArgs
	}
	run := runProcesses{pgid: pgid, token: parts[2]}
	return watch(feed, run, time.Duration(graceMs)*time.Millisecond)
}

// runProcesses names one training run's processes: its group and its run token.
type runProcesses struct {
	pgid  int
	token string
}

// watch reads the feed: each line is the milliseconds the group may still run ("-1": no
// limit known yet), "exit" ends the watch quietly.
func watch(feed io.Reader, run runProcesses, grace time.Duration) int {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(feed)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				stopRun(run, grace) // the worker died: nothing else will stop the run
				return watchdogTripped
			}
			if line == "exit" {
				return watchdogQuiet
			}
			ms, err := strconv.ParseInt(line, 10, 64)
			if err != nil {
				continue
			}
			deadline.Stop()
			if ms >= 0 {
				deadline.Reset(time.Duration(ms)*time.Millisecond + watchdogSlack)
			}
		case <-deadline.C:
			stopRun(run, grace)
			return watchdogTripped
		}
	}
}

// stopRun is the staged stop of every process of the run, ranks in other sessions too:
// SIGTERM, SIGKILL after grace unless all are gone.
func stopRun(run runProcesses, grace time.Duration) {
	if err := gpuexec.StopProcesses(run.pgid, run.token, grace); err != nil {
		fmt.Fprintf(os.Stderr, "fence watchdog: %v\n", err)
	}
}

// errWatchdogFenced is the error of a run its watchdog stopped: the worker was silent past
// the fence limit, so the attempt is fenced, not failed.
var errWatchdogFenced = errors.New("training stopped by the fence watchdog: the worker was silent past the fence limit")

// fenceWatch is the worker's end of one run's watchdog.
type fenceWatch struct {
	cmd  *exec.Cmd
	feed *os.File
	stop chan struct{}
	done sync.WaitGroup
}

// startFenceWatch starts a watchdog over the run's processes, fed every feedEvery with
// remaining(); ok false means no fence limit is known (only the worker's death trips it).
func startFenceWatch(exe string, run runProcesses, grace time.Duration, remaining func() (time.Duration, bool)) (*fenceWatch, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("fence watchdog: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%d:%s", FenceWatchdogEnv, run.pgid, grace.Milliseconds(), run.token))
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stderr = os.Stderr
	// Its own group: a SIGSTOP or SIGINT to the worker's group must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("fence watchdog: %w", err)
	}
	r.Close()
	fw := &fenceWatch{cmd: cmd, feed: w, stop: make(chan struct{})}
	fw.send(remaining)
	fw.done.Add(1)
	go func() {
		defer fw.done.Done()
		tick := time.NewTicker(feedEvery)
		defer tick.Stop()
		for {
			select {
			case <-fw.stop:
				return
			case <-tick.C:
				fw.send(remaining)
			}
		}
	}()
	return fw, nil
}

func (fw *fenceWatch) send(remaining func() (time.Duration, bool)) {
	ms := int64(-1)
	if left, ok := remaining(); ok {
		ms = max(left.Milliseconds(), 0)
	}
	// A failed write means the watchdog is gone; finish reports how it ended.
	_, _ = fmt.Fprintf(fw.feed, "%d\n", ms)
}

// finish ends the watch once the run has ended and says whether the watchdog stopped it.
func (fw *fenceWatch) finish() (tripped bool) {
	close(fw.stop)
	fw.done.Wait()
	_, _ = io.WriteString(fw.feed, "exit\n")
	fw.feed.Close()
	err := fw.cmd.Wait()
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == watchdogTripped
}
