package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// LaunchOptions tune supervision; zero values take the defaults shown.
type LaunchOptions struct {
	// Dir is the child's working directory (default: the current one).
	Dir string
	// Stderr receives a copy of the child's stderr (e.g. the worker's log); nil drops it.
	Stderr io.Writer
	// StderrTailBytes is how much of the end of stderr Result keeps (64 KiB).
	StderrTailBytes int
	// MaxLineBytes bounds one stdout line; longer lines are dropped and counted (1 MiB).
	MaxLineBytes int
	// EventBuffer is the capacity of the Events channel (256).
	EventBuffer int
	// StopGrace is the SIGTERM grace period when ctx ends (30s): enough for a checkpoint.
	StopGrace time.Duration
	// KillWait bounds the wait after SIGKILL (10s).
	KillWait time.Duration
	// WaitDelay bounds how long Wait waits for stdout/stderr after the child exits, when a
	// leftover process still holds them (5s).
	WaitDelay time.Duration
	// Environ is the base environment (os.Environ() when nil).
	Environ []string

	// procs is the process table (/proc when nil); tests inject fakes.
	procs procSource
	// leftoverPoll is how often processes that outlived KillWait are checked again (1s).
	leftoverPoll time.Duration
}

// DefaultStopGrace is how long a stopped run may take to checkpoint and exit after
// SIGTERM before it is killed, when LaunchOptions.StopGrace is not set.
const DefaultStopGrace = 30 * time.Second

func (o *LaunchOptions) defaults() {
	if o.StderrTailBytes <= 0 {
		o.StderrTailBytes = 64 << 10
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 1 << 20
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 256
	}
	if o.StopGrace <= 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.KillWait <= 0 {
		o.KillWait = 10 * time.Second
	}
	if o.WaitDelay <= 0 {
		o.WaitDelay = 5 * time.Second
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.procs == nil {
		o.procs = procFS{root: "/proc"}
	}
	if o.leftoverPoll <= 0 {
		o.leftoverPoll = time.Second
	}
}

// Class says how a run ended.
type Class string

// Classes of [Result]; train.py's error classes map onto them (see [Classify]).
const (
	ClassSucceeded Class = "succeeded"
	// ClassStopped: stopped on our request (Stop or ctx), gracefully or not.
	ClassStopped Class = "stopped"
	// ClassKilled: ended by a termination signal nobody here sent (preemption, the kernel's
	// OOM killer); a crash signal such as SIGSEGV is ClassCrashed.
	ClassKilled   Class = "killed"
	ClassOOM      Class = "oom"
	ClassDiverged Class = "diverged"
	ClassBadData  Class = "bad_data"
	ClassBadInput Class = "bad_input"
	// ClassCrashed: any other failure.
	ClassCrashed Class = "crashed"
)

// FailureClass is the failure class a worker reports to the coordinator for a run that
// ended this way. Crashes, kills nobody here asked for (preemption) and stops are other:
// worth another attempt. Succeeded is unspecified.
func (c Class) FailureClass() pb.FailureClass {
	switch c {
	case ClassSucceeded:
		return pb.FailureClass_FAILURE_CLASS_UNSPECIFIED
	case ClassOOM:
		return pb.FailureClass_FAILURE_CLASS_OOM
	case ClassDiverged:
		return pb.FailureClass_FAILURE_CLASS_DIVERGED
	case ClassBadData:
		return pb.FailureClass_FAILURE_CLASS_BAD_DATA
	case ClassBadInput:
		return pb.FailureClass_FAILURE_CLASS_BAD_INPUT
	default:
		return pb.FailureClass_FAILURE_CLASS_OTHER
	}
}

// Sentinel errors wrapped by Result.Err, one per failing class, for errors.Is.
var (
	ErrStopped  = errors.New("training stopped")
	ErrKilled   = errors.New("training killed by a signal")
	ErrOOM      = errors.New("training ran out of memory")
	ErrDiverged = errors.New("training diverged")
	ErrBadData  = errors.New("training data is bad")
	ErrBadInput = errors.New("training input is bad")
	ErrCrashed  = errors.New("training crashed")
)

var classErr = map[Class]error{
	ClassStopped: ErrStopped, ClassKilled: ErrKilled, ClassOOM: ErrOOM, ClassDiverged: ErrDiverged,
	ClassBadData: ErrBadData, ClassBadInput: ErrBadInput, ClassCrashed: ErrCrashed,
}

// Exit codes of train.py (docs/train-protocol.md).
const (
	ExitOK       = 0
	ExitOther    = 1
	ExitBadInput = 2
	ExitBadData  = 3
	ExitOOM      = 4
	ExitDiverged = 5
	ExitStopped  = 143
)

// Result is how a run ended.
type Result struct {
	Class Class
	// Err is nil on success, else describes the failure and wraps the class's sentinel.
	Err error
	// ExitCode is the child's exit status, -1 when a signal ended it (then Signal is set).
	ExitCode int
	Signal   syscall.Signal
	// StopRequested is true when Stop was called or ctx ended.
	StopRequested bool
	// Error and Done are the last error and done events, if any.
	Error *ErrorInfo
	Done  *DoneInfo
	// LastStep is the highest step of any point or eval event (-1 if none).
	LastStep int64
	// StderrTail is the end of stderr, plus any non-protocol stdout lines.
	StderrTail string
	// DroppedLines counts stdout lines over MaxLineBytes; IgnoredLines non-JSON stdout lines;
	// BadLines JSON lines that are not valid events (FirstBadLine says why).
	DroppedLines int
	IgnoredLines int
	BadLines     int
	FirstBadLine error
	// WaitErr is an error of the wait itself (exec.ErrWaitDelay: a leftover process held
	// stdout), not of training.
	WaitErr  error
	Duration time.Duration
	// Leftovers are processes of the run (ranks, DataLoader workers) still alive KillWait
	// after SIGKILL, typically stuck in the kernel on a device; [Run.Gone] closes once they
	// are gone. Empty normally.
	Leftovers []int
}

// Run is a launched training process.
type Run struct {
	cmd     *exec.Cmd
	pgid    int
	opts    LaunchOptions
	events  chan Event
	done    chan struct{}
	reaped  chan struct{} // closed once the child has been waited for
	gone    chan struct{} // closed once no process of the run is left
	stopReq atomic.Bool
	treeMu  sync.Mutex // serialises tree, used by Stop and supervise
	tree    *procTree
	token   string // RunTokenEnv's value in the run's environment
	start   time.Time
	stderr  *tailBuffer

	// Written by the stdout goroutine only, read after done is closed.
	lines    *lineWriter
	lastErr  *ErrorInfo
	lastDone *DoneInfo
	lastStep int64
	ignored  int
	badLines int
	firstBad error

	result Result
}

// Launch validates spec and starts train.py in its own process group. Cancelling ctx stops
// the run in stages (see [Run.Stop]) with opts.StopGrace.
func Launch(ctx context.Context, spec TrainSpec, opts LaunchOptions) (*Run, error) {
	argv, err := spec.Argv()
	if err != nil {
		return nil, err
	}
	files := []string{argv[0]}
	if spec.Command == nil {
		files = append(files, spec.Script)
	}
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("launch training: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("launch training: %w", err)
	}
	opts.defaults()
	token, err := newRunToken()
	if err != nil {
		return nil, fmt.Errorf("launch training: %w", err)
	}
	r := &Run{
		opts:     opts,
		events:   make(chan Event, opts.EventBuffer),
		done:     make(chan struct{}),
		reaped:   make(chan struct{}),
		gone:     make(chan struct{}),
		stderr:   &tailBuffer{max: opts.StderrTailBytes, out: opts.Stderr},
		lastStep: -1,
	}
	r.lines = &lineWriter{max: opts.MaxLineBytes, fn: r.handleLine}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(spec.Environ(opts.Environ), RunTokenEnv+"="+token)
	cmd.Dir = opts.Dir
	cmd.Stdin = nil
	// Non-*os.File writers make exec copy through pipes; WaitDelay then bounds Wait when a
	// leftover grandchild keeps the pipe open after the child exits.
	cmd.Stdout = r.lines
	cmd.Stderr = r.stderr
	cmd.WaitDelay = opts.WaitDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch training: %w", err)
	}
	r.cmd = cmd
	r.pgid = cmd.Process.Pid // Setpgid with Pgid 0 makes the child its group's leader
	r.tree = newProcTree(opts.procs, r.pgid, token)
	r.token = token
	go r.supervise()
	go func() {
		select {
		case <-ctx.Done():
			// The error is reported through Wait's result; nothing else to do with it here.
			_ = r.Stop(opts.StopGrace)
		case <-r.done:
		}
	}()
	return r, nil
}

// Pid is the child's process id, which is also its process group id.
func (r *Run) Pid() int { return r.pgid }

// Token is the run's [RunTokenEnv] value, by which a process that did not start the run (the
// worker's fence watchdog) finds all of it: see [StopProcesses].
func (r *Run) Token() string { return r.token }

// Events delivers parsed protocol events in order and is closed when stdout ends. Callers
// must drain it: a full channel blocks the child's stdout.
func (r *Run) Events() <-chan Event { return r.events }

// Done is closed when the run has ended and Wait would not block.
func (r *Run) Done() <-chan struct{} { return r.done }

// Gone is closed once every process of the run has ended: the child, its process group,
// and processes in other sessions (torchrun's ranks) found by [RunTokenEnv] or by their
// parent chain. It closes with Done, unless some process outlived SIGKILL
// ([Result.Leftovers]); the GPUs of the run are free only then.
func (r *Run) Gone() <-chan struct{} { return r.gone }

// Wait blocks until the run ends and returns how it ended.
func (r *Run) Wait() Result {
	<-r.done
	return r.result
}

// Stop asks the run to end: SIGTERM to its process group (train.py checkpoints and exits;
// torchrun forwards it to its ranks), and after grace SIGKILL to every process of the run
// (see [Run.Gone]), then a bounded wait. It returns nil once the run has ended with no
// process left, and an error if it outlives the SIGKILL wait. Safe to call more than once.
func (r *Run) Stop(grace time.Duration) error {
	r.stopReq.Store(true)
	select {
	case <-r.done:
		return nil
	default:
	}
	if err := r.signal(syscall.SIGTERM); err != nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.done:
		return r.leftoverErr()
	case <-t.C:
	}
	r.treeMu.Lock()
	err := r.killTree()
	r.treeMu.Unlock()
	if err != nil {
		return err
	}
	k := time.NewTimer(r.opts.KillWait)
	defer k.Stop()
	select {
	case <-r.reaped:
	case <-k.C:
		return fmt.Errorf("stop training: process group %d still not reaped %v after SIGKILL", r.pgid, r.opts.KillWait)
	}
	// Once the child is reaped, supervise's sweep of what is left is itself bounded.
	<-r.done
	return r.leftoverErr()
}

func (r *Run) leftoverErr() error {
	if l := r.result.Leftovers; len(l) > 0 {
		return fmt.Errorf("stop training: processes %v of the run outlived SIGKILL by %v", l, r.opts.KillWait)
	}
	return nil
}

// killTree SIGKILLs every process of the run; the group is always signalled, so a host
// without a readable /proc still loses the group. Only failing to signal the group is an
// error: whether the rest went is checked afterwards ([Result.Leftovers]). Callers hold
// treeMu.
func (r *Run) killTree() error {
	_, _ = r.tree.kill()
	return r.signal(syscall.SIGKILL)
}

// endTree kills whatever is left of the run once the child has exited and waits, up to
// KillWait, for it to go; it returns what is still alive then. Callers hold treeMu.
func (r *Run) endTree() []procInfo {
	deadline := time.Now().Add(r.opts.KillWait)
	for {
		_ = r.signal(syscall.SIGKILL)
		killed, err := r.tree.kill()
		if err != nil || len(killed) == 0 {
			// Nothing left, or no process table to look in: the group kill is all we have.
			return nil
		}
		for {
			left := r.tree.left(killed)
			if len(left) == 0 {
				break // and scan once more for anything not seen before
			}
			if time.Now().After(deadline) {
				return left
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// awaitGone closes gone once the leftovers have ended, killing them again on every look.
// It ends when they do: a process the kernel will not let die keeps its GPUs held, which
// is the point.
func (r *Run) awaitGone(left []procInfo) {
	defer close(r.gone)
	tick := time.NewTicker(r.opts.leftoverPoll)
	defer tick.Stop()
	for range tick.C {
		r.treeMu.Lock()
		for _, p := range left {
			_ = r.opts.procs.signal(p, syscall.SIGKILL)
		}
		left = r.tree.left(left)
		if len(left) == 0 {
			// A last full scan, in case a leftover had started something.
			if ms, err := r.tree.members(); err == nil && len(ms) > 0 {
				_ = r.killTree()
				left = ms
			}
		}
		r.treeMu.Unlock()
		if len(left) == 0 {
			return
		}
	}
}

// signal sends sig to the whole process group; a group already gone is not an error.
func (r *Run) signal(sig syscall.Signal) error {
	err := syscall.Kill(-r.pgid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("signal process group %d with %v: %w", r.pgid, sig, err)
}

func (r *Run) supervise() {
	waitErr := r.cmd.Wait()
	close(r.reaped)
	// Leftovers (DataLoader workers, torchrun's ranks in their own sessions) must not keep
	// GPUs that the allocator then hands out again.
	r.treeMu.Lock()
	left := r.endTree()
	r.treeMu.Unlock()
	r.lines.flush()
	close(r.events)

	res := Result{
		StopRequested: r.stopReq.Load(),
		Error:         r.lastErr,
		Done:          r.lastDone,
		LastStep:      r.lastStep,
		DroppedLines:  r.lines.dropped,
		IgnoredLines:  r.ignored,
		BadLines:      r.badLines,
		FirstBadLine:  r.firstBad,
		Duration:      time.Since(r.start),
		ExitCode:      -1,
		Leftovers:     pids(left),
	}
	if ps := r.cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		res.WaitErr = waitErr
	}
	res.StderrTail = r.stderr.String()
	res.Class = Classify(ExitInfo{
		ExitCode: res.ExitCode, Signal: res.Signal, StopRequested: res.StopRequested,
		Error: res.Error, Done: res.Done, StderrTail: res.StderrTail,
	})
	res.Err = describe(res)
	r.result = res
	if len(left) == 0 {
		close(r.gone)
	} else {
		go r.awaitGone(left)
	}
	close(r.done)
}

func (r *Run) handleLine(line []byte) {
	if len(strings.TrimSpace(string(line))) == 0 {
		return
	}
	ev, err := ParseLine(line)
	if err != nil {
		if line[0] != '{' {
			// Some library printed to stdout; keep it with stderr for the failure report.
			r.ignored++
			_, _ = r.stderr.Write(append(append([]byte("stdout: "), line...), '\n'))
			return
		}
		r.badLines++
		if r.firstBad == nil {
			r.firstBad = err
		}
		return
	}
	switch ev.Kind {
	case KindError:
		r.lastErr = ev.Error
	case KindDone:
		r.lastDone = ev.Done
	case KindPoint, KindEval:
		r.lastStep = max(r.lastStep, ev.Step)
	}
	r.events <- ev
}

// ExitInfo is what [Classify] decides from.
type ExitInfo struct {
	ExitCode      int
	Signal        syscall.Signal
	StopRequested bool
	Error         *ErrorInfo
	Done          *DoneInfo
	StderrTail    string
}

// oomMarkers and divergeMarkers find failures train.py could not report itself (a rank other
// than 0 under torchrun, or a crash in C++).
var (
	oomMarkers = []string{"out of memory", "outofmemoryerror", "cublas_status_alloc_failed",
		"cudnn_status_alloc_failed", "memoryerror"}
	divergeMarkers = []string{"diverged", "loss is nan", "non-finite loss"}
)

// Classify decides how a run ended. train.py's error event wins, since it knows best; then a
// requested stop; then exit codes and signals; then stderr markers.
func Classify(in ExitInfo) Class {
	if in.ExitCode == ExitOK && in.Done != nil && in.Done.Status == "completed" {
		return ClassSucceeded
	}
	if in.Error != nil {
		switch in.Error.Class {
		case pb.FailureClass_FAILURE_CLASS_OOM:
			return ClassOOM
		case pb.FailureClass_FAILURE_CLASS_DIVERGED:
			return ClassDiverged
		case pb.FailureClass_FAILURE_CLASS_BAD_DATA:
			return ClassBadData
		case pb.FailureClass_FAILURE_CLASS_BAD_INPUT:
			return ClassBadInput
		}
	}
	if in.StopRequested {
		return ClassStopped
	}
	switch in.Signal {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP:
		return ClassKilled
	}
	if in.ExitCode == ExitStopped || (in.Done != nil && in.Done.Status == "stopped") {
		return ClassKilled
	}
	switch in.ExitCode {
	case ExitOOM:
		return ClassOOM
	case ExitDiverged:
		return ClassDiverged
	case ExitBadData:
		return ClassBadData
	case ExitBadInput:
		return ClassBadInput
	}
	tail := strings.ToLower(in.StderrTail)
	for _, m := range oomMarkers {
		if strings.Contains(tail, m) {
			return ClassOOM
		}
	}
	for _, m := range divergeMarkers {
		if strings.Contains(tail, m) {
			return ClassDiverged
		}
	}
	return ClassCrashed
}

func describe(res Result) error {
	sentinel, failed := classErr[res.Class]
	if !failed {
		return nil
	}
	how := fmt.Sprintf("exit code %d", res.ExitCode)
	if res.Signal != 0 {
		how = "signal " + res.Signal.String()
	}
	switch {
	case res.Error != nil:
		return fmt.Errorf("train.py %s: %s: %w", how, res.Error.Message, sentinel)
	case res.ExitCode == ExitOK && res.Done == nil && res.Class == ClassCrashed:
		return fmt.Errorf("train.py %s without a done event: %w", how, sentinel)
	default:
		return fmt.Errorf("train.py %s: %s: %w", how, lastLine(res.StderrTail), sentinel)
	}
}

// lastLine is the last non-empty stderr line, usually the exception, for one-line reports.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 300 {
		l = l[:300] + "…"
	}
	if l == "" {
		return "no stderr"
	}
	return l
}

var _ io.Writer = (*lineWriter)(nil)
