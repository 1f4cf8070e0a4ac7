package worker

//lint:file-ignore SA1019 the tests check the deprecated stop_trials that old workers read

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// runnerFunc is a Runner written inline by a test.
type runnerFunc func(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error)

func (f runnerFunc) Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error) {
	return f(ctx, a, emit)
}

// emitCurve emits the trial's points every evalEvery steps, pausing between them, and
// returns early with ctx's error.
func emitCurve(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint), pause time.Duration) error {
	for step := int64(evalEvery); step <= a.Trial.Steps; step += evalEvery {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		emit(&pb.CurvePoint{Step: step, TrainLoss: 1 / float64(step), WallTimeS: float64(step) / 1000})
	}
	return nil
}

// A retryable failure retried on the same worker survives the heartbeats that follow: a
// heartbeat built while the first attempt ran names that attempt's lease, and stopping it
// must not stop the retry. Heartbeats come every 10 ms, so dozens land in each attempt.
func TestRetryOnSameWorkerSurvivesHeartbeats(t *testing.T) {
	c := newCoordinatorWith(t, func(cfg *scheduler.Config) { cfg.HeartbeatInterval = 10 * time.Millisecond })
	var mu sync.Mutex
	stopped := map[int32]bool{}
	runner := runnerFunc(func(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error) {
		if a.Attempt == 1 {
			// Long enough for heartbeats to carry this lease, then a crash.
			time.Sleep(100 * time.Millisecond)
			return RunResult{}, &RunError{Class: pb.FailureClass_FAILURE_CLASS_OTHER, Reason: "injected crash"}
		}
		err := emitCurve(ctx, a, emit, 20*time.Millisecond)
		if err != nil {
			mu.Lock()
			stopped[a.Attempt] = true
			mu.Unlock()
		}
		return RunResult{}, err
	})
	startAgent(t, c.agentConfig(1, runner))
	id := c.createStudy(t, simSpec(fastFlops, 1, 1))
	st := c.waitStudyDone(t, id)
	if st.TrialsByState["succeeded"] != 1 {
		t.Fatalf("trials %v, want the retry succeeded", st.TrialsByState)
	}
	tr, points := c.trial(t, c.trials(t, id)[0].Id)
	if tr.Attempt != 2 || len(tr.ReasonHistory) != 1 {
		t.Errorf("trial ended at attempt %d with history %q, want attempt 2 after one crash", tr.Attempt, tr.ReasonHistory)
	}
	checkContiguous(t, tr, points)
	mu.Lock()
	defer mu.Unlock()
	if len(stopped) != 0 {
		t.Errorf("attempts stopped by the worker: %v", stopped)
	}
}

// gatedRunner blocks each attempt until its context ends, then until the test lets it
// return (train.py checkpointing on SIGTERM), and records whether two attempts of one
// trial ever ran at once.
type gatedRunner struct {
	mu      sync.Mutex
	active  map[uint64]int
	overlap bool
	started map[int32]chan struct{}
	release map[int32]chan struct{}
}

func newGatedRunner(attempts ...int32) *gatedRunner {
	r := &gatedRunner{active: map[uint64]int{}, started: map[int32]chan struct{}{}, release: map[int32]chan struct{}{}}
	for _, n := range attempts {
		r.started[n] = make(chan struct{})
		r.release[n] = make(chan struct{})
	}
	return r
}

func (r *gatedRunner) Run(ctx context.Context, a *pb.Assignment, _ func(*pb.CurvePoint)) (RunResult, error) {
	r.mu.Lock()
	r.active[a.Trial.Id]++
	if r.active[a.Trial.Id] > 1 {
		r.overlap = true
	}
	r.mu.Unlock()
	close(r.started[a.Attempt])
	<-ctx.Done()
	<-r.release[a.Attempt]
	r.mu.Lock()
	r.active[a.Trial.Id]--
	r.mu.Unlock()
	return RunResult{}, ctx.Err()
}

// bareAgent is an agent connected to nothing, that last reached the coordinator now: its
// trials must make no call (the gated runner emits nothing and ends by being stopped).
func bareAgent(t *testing.T, clock *testutil.Clock, runner Runner, log *zap.Logger) *Agent {
	t.Helper()
	cfg := Config{Clock: clock, Runner: runner, Logger: log}
	cfg.setDefaults()
	a := &Agent{cfg: cfg, log: cfg.Logger, trials: map[string]*trialRun{}, released: map[string]*pb.HeldLease{},
		slotFree: make(chan struct{}, 1), hbEvery: time.Second}
	a.mu.Lock()
	a.setIntervalsLocked(0, (20 * time.Second).Milliseconds())
	a.mu.Unlock()
	a.contact()
	return a
}

func assignment(trial uint64, attempt int32, lease string) *pb.Assignment {
	return &pb.Assignment{Trial: &pb.Trial{Id: trial, Steps: 100}, LeaseId: lease, Attempt: attempt}
}

func leaseIDs(ls []*pb.HeldLease) []string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.LeaseId)
	}
	return ids
}

// A trial requeued back to this worker while its old attempt still stops is tracked as
// its own attempt: the old attempt's end does not drop it from heartbeats, fencing and
// re-registration, and it starts only once the old attempt has stopped.
func TestAttemptReleasedToSameWorkerIsTracked(t *testing.T) {
	clock := testutil.NewClock()
	runner := newGatedRunner(1, 2)
	a := bareAgent(t, clock, runner, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		close(runner.release[2])
		wg.Wait()
	}()

	a.start(ctx, &wg, assignment(7, 1, "lease-1"))
	<-runner.started[1]
	// The coordinator says the first attempt is no longer ours, and leases the trial
	// to this worker again while the first attempt is still stopping.
	a.stopAttempt(&pb.HeldLease{TrialId: 7, LeaseId: "lease-1", Attempt: 1}, "test")
	a.start(ctx, &wg, assignment(7, 2, "lease-2"))
	if got := leaseIDs(a.heldLeases()); len(got) != 1 || got[0] != "lease-2" {
		t.Fatalf("held leases %v while the first attempt stops, want only lease-2", got)
	}
	close(runner.release[1])
	<-runner.started[2]
	if got := leaseIDs(a.heldLeases()); len(got) != 1 || got[0] != "lease-2" {
		t.Fatalf("held leases %v after the first attempt ended, want lease-2", got)
	}
	runner.mu.Lock()
	overlap := runner.overlap
	runner.mu.Unlock()
	if overlap {
		t.Error("two attempts of one trial ran at once")
	}
	// The fence still reaches the second attempt.
	clock.Advance(21 * time.Second)
	a.checkFence()
	a.mu.Lock()
	tr := a.trials["lease-2"]
	a.mu.Unlock()
	if tr == nil || !abandoned(tr) {
		t.Fatal("the fence did not stop the second attempt")
	}
}

// A fenced attempt leaves the heartbeat's held leases at once (so a heartbeat cannot
// renew it), and once its run has stopped it is released to the coordinator. The fence
// warning is one line per outage, not one per check.
func TestFenceReleasesAndWarnsOncePerOutage(t *testing.T) {
	clock := testutil.NewClock()
	core, logs := observer.New(zapcore.InfoLevel)
	runner := newGatedRunner(1)
	a := bareAgent(t, clock, runner, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	a.start(ctx, &wg, assignment(7, 1, "lease-1"))
	<-runner.started[1]

	warnings := func() int {
		return logs.FilterMessage("coordinator unreachable past the fence limit; stopping trials").Len()
	}
	clock.Advance(21 * time.Second) // past the 20 s limit
	for range 30 {                  // six seconds of 200 ms checks

		a.checkFence()
		clock.Advance(200 * time.Millisecond)
	}
	if n := warnings(); n != 1 {
		t.Errorf("%d fence warnings in one outage, want 1", n)
	}
	if held := a.heldLeases(); len(held) != 0 {
		t.Errorf("fenced attempt still held: %v", leaseIDs(held))
	}
	if rel := a.releasedLeases(); len(rel) != 0 {
		t.Errorf("released %v before the run stopped", leaseIDs(rel))
	}
	close(runner.release[1])
	a.mu.Lock()
	tr := a.trials["lease-1"]
	a.mu.Unlock()
	if tr != nil {
		<-tr.done
	}
	if rel := leaseIDs(a.releasedLeases()); len(rel) != 1 || rel[0] != "lease-1" {
		t.Errorf("released leases %v after the run stopped, want lease-1", rel)
	}

	// The coordinator answers, then a second outage warns once more.
	a.contact()
	if logs.FilterMessage("coordinator reachable again").Len() != 1 {
		t.Error("no line when the coordinator was reachable again")
	}
	clock.Advance(21 * time.Second)
	for range 5 {
		a.checkFence()
	}
	if n := warnings(); n != 2 {
		t.Errorf("%d fence warnings after two outages, want 2", n)
	}
}

// A FinishTrial whose answer is lost (the coordinator committed it and crashed, say) is
// retried and answered OK: the trial ends succeeded and the worker does not log that it
// abandoned it.
func TestRetriedFinishIsNotAbandoned(t *testing.T) {
	var once sync.Once
	loseFirstFinishAnswer := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if info.FullMethod == pb.WorkerService_FinishTrial_FullMethodName && err == nil {
			lost := false
			once.Do(func() { lost = true })
			if lost {
				return nil, status.Error(codes.Unavailable, "answer lost")
			}
		}
		return resp, err
	}
	c := newCoordinatorWith(t, nil, grpc.ChainUnaryInterceptor(loseFirstFinishAnswer))
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := c.agentConfig(1, SimRunner{Source: synthetic()})
	cfg.Logger = zap.New(core)
	startAgent(t, cfg)
	id := c.createStudy(t, simSpec(fastFlops, 1, 1))
	st := c.waitStudyDone(t, id)
	if st.TrialsByState["succeeded"] != 1 {
		t.Fatalf("trials %v, want 1 succeeded", st.TrialsByState)
	}
	waitFor(t, "the worker to log the finish", func() (bool, string) {
		n := logs.FilterMessage("trial finished").Len()
		return n == 1, fmt.Sprintf("%d finished lines", n)
	})
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			t.Errorf("worker logged %s %q %v", e.Level, e.Message, e.ContextMap())
		}
	}
}

// The attempts a heartbeat's answer stops are among those it carried: named by
// stop_leases, or, from a coordinator that predates it, by trial id in stop_trials, which
// then maps onto the carried lease of that trial only.
func TestStopsOf(t *testing.T) {
	first := &pb.HeldLease{TrialId: 7, LeaseId: "lease-1", Attempt: 1}
	other := &pb.HeldLease{TrialId: 8, LeaseId: "lease-8", Attempt: 1}
	sent := []*pb.HeldLease{first, other}
	for _, tc := range []struct {
		name string
		resp *pb.HeartbeatResponse
		want []string
	}{
		{"nothing to stop", &pb.HeartbeatResponse{}, nil},
		{"stop_leases", &pb.HeartbeatResponse{StopLeases: []*pb.HeldLease{first}, StopTrials: []uint64{7}}, []string{"lease-1"}},
		{"stop_trials only (an older coordinator)", &pb.HeartbeatResponse{StopTrials: []uint64{7}}, []string{"lease-1"}},
		{"stop_trials naming a trial not carried", &pb.HeartbeatResponse{StopTrials: []uint64{9}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leaseIDs(stopsOf(tc.resp, sent)); !slices.Equal(got, tc.want) {
				t.Errorf("stopsOf = %v, want %v", got, tc.want)
			}
		})
	}
}
