package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mixopt/mixopt/internal/coordinator"
	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const (
	// pollDeadline bounds every wait for an asynchronous outcome; outcomes normally come
	// within a second or two.
	pollDeadline = 30 * time.Second
	testAttempts = 3
	evalEvery    = 10
)

// testCoordinator is the real coordinator services over the real scheduler and store,
// served in-process over bufconn.
type testCoordinator struct {
	control pb.ControlServiceClient
	dial    grpc.DialOption
}

func newCoordinator(t *testing.T) *testCoordinator {
	t.Helper()
	return newCoordinatorWith(t, nil)
}

// newCoordinatorWith is newCoordinator with the scheduler's configuration changed by tune
// (when not nil) and the given server options (interceptors).
func newCoordinatorWith(t *testing.T, tune func(*scheduler.Config), opts ...grpc.ServerOption) *testCoordinator {
	t.Helper()
	db := testutil.TempStore(t)
	// The lease TTL is far beyond every test: only the worker's own calls (and
	// registrations) end or requeue attempts. The scheduler's expiry loop is not run.
	cfg := scheduler.Config{LeaseTTL: 10 * time.Minute, MaxWait: time.Second, MaxAttempts: testAttempts}
	if tune != nil {
		tune(&cfg)
	}
	sched, err := scheduler.New(db, cfg)
	if err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	srv := testutil.Serve(t, func(srv *grpc.Server) {
		pb.RegisterWorkerServiceServer(srv, &coordinator.WorkerService{Sched: sched})
		pb.RegisterControlServiceServer(srv, &coordinator.ControlService{Sched: sched})
	}, opts)
	return &testCoordinator{control: pb.NewControlServiceClient(srv.Conn), dial: srv.Dial}
}

// agentConfig is a simulated worker of the given capacity talking to c.
func (c *testCoordinator) agentConfig(capacity int32, runner Runner) Config {
	return Config{
		Addr: testutil.Addr, DialOptions: []grpc.DialOption{c.dial},
		Hostname: "sim-worker", Capacity: capacity, Runner: runner,
		PollWait: 200 * time.Millisecond, FlushInterval: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// startAgent runs an agent until the returned stop is called (or the test ends) and
// checks that it returned cleanly.
func startAgent(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent Run: %v", err)
			}
		})
	}
	t.Cleanup(stop) // runs before the coordinator's cleanups, registered earlier
	return stop
}

// waitFor polls cond until it holds or pollDeadline passes; cond says what it saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(pollDeadline)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %v; last saw %s", what, pollDeadline, saw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// simSpec is a one-scale study of 200-step trials with a point every 10 steps. Each
// step is modelled at flopsPerStep/1e14 seconds, which the simulated runner replays.
func simSpec(flopsPerStep float64, maxTrials, maxParallel int32) *pb.StudySpec {
	const steps = 200
	return &pb.StudySpec{
		Name:        "agent",
		Domains:     []*pb.Domain{{Name: "wiki"}, {Name: "code"}},
		Scales:      []*pb.Scale{{Name: "small", Params: 1e6, FlopsPerStep: flopsPerStep}},
		Steps:       []int64{steps},
		Objective:   &pb.Objective{Metric: "train_loss"},
		Target:      &pb.Fidelity{Scale: "small", Steps: steps},
		BudgetFlops: 1e6 * flopsPerStep * steps,
		MaxTrials:   maxTrials,
		MaxParallel: maxParallel,
		EvalEvery:   evalEvery,
		Policy:      "random",
		Seed:        11,
	}
}

const (
	fastFlops = 1e9    // 10 µs a step: a trial replays at once
	slowFlops = 2.5e12 // 25 ms a step, 250 ms a point: a trial takes 5 s
)

func (c *testCoordinator) createStudy(t *testing.T, spec *pb.StudySpec) uint64 {
	t.Helper()
	resp, err := c.control.CreateStudy(context.Background(), &pb.CreateStudyRequest{Spec: spec})
	if err != nil {
		t.Fatalf("CreateStudy: %v", err)
	}
	return resp.Study.Id
}

func (c *testCoordinator) study(t *testing.T, id uint64) *pb.StudyStatus {
	t.Helper()
	resp, err := c.control.GetStudy(context.Background(), &pb.GetStudyRequest{StudyId: id})
	if err != nil {
		t.Fatalf("GetStudy: %v", err)
	}
	return resp.Status
}

func (c *testCoordinator) trials(t *testing.T, studyID uint64) []*pb.Trial {
	t.Helper()
	resp, err := c.control.ListTrials(context.Background(), &pb.ListTrialsRequest{StudyId: studyID})
	if err != nil {
		t.Fatalf("ListTrials: %v", err)
	}
	return resp.Trials
}

func (c *testCoordinator) trial(t *testing.T, id uint64) (*pb.Trial, []*pb.CurvePoint) {
	t.Helper()
	resp, err := c.control.GetTrial(context.Background(), &pb.GetTrialRequest{TrialId: id})
	if err != nil {
		t.Fatalf("GetTrial: %v", err)
	}
	return resp.Trial, resp.Points
}

// waitOnlyTrialRunning waits until the study's one trial runs with at least minPoints
// points, and returns it.
func (c *testCoordinator) waitOnlyTrialRunning(t *testing.T, studyID uint64, minPoints uint64) *pb.Trial {
	t.Helper()
	var tr *pb.Trial
	waitFor(t, "a running trial with points", func() (bool, string) {
		ts := c.trials(t, studyID)
		if len(ts) != 1 {
			return false, fmt.Sprintf("%d trials", len(ts))
		}
		tr = ts[0]
		return tr.State == pb.TrialState_TRIAL_STATE_RUNNING && tr.LastSeq >= minPoints, fmt.Sprintf("%v with %d points", tr.State, tr.LastSeq)
	})
	return tr
}

func (c *testCoordinator) waitStudyDone(t *testing.T, id uint64) *pb.StudyStatus {
	t.Helper()
	var st *pb.StudyStatus
	waitFor(t, fmt.Sprintf("study %d to complete", id), func() (bool, string) {
		st = c.study(t, id)
		// A study whose trials all failed ends failed: it is done too.
		done := st.Study.State == pb.StudyState_STUDY_STATE_COMPLETED || st.Study.State == pb.StudyState_STUDY_STATE_FAILED
		return done, fmt.Sprintf("%v %v", st.Study.State, st.TrialsByState)
	})
	return st
}

// checkContiguous checks that a trial's curve has every point from seq 1 to its last
// committed one, in step order.
func checkContiguous(t *testing.T, tr *pb.Trial, points []*pb.CurvePoint) {
	t.Helper()
	if uint64(len(points)) != tr.LastSeq {
		t.Errorf("trial %d: %d points stored, last_seq %d", tr.Id, len(points), tr.LastSeq)
	}
	for i, p := range points {
		if p.Seq != uint64(i+1) {
			t.Errorf("trial %d: point %d has seq %d", tr.Id, i, p.Seq)
			return
		}
		if want := int64(evalEvery * (i + 1)); p.Step != want {
			t.Errorf("trial %d: point %d at step %d, want %d", tr.Id, i, p.Step, want)
		}
	}
	if n := len(points); n > 0 && tr.StepsDone != points[n-1].Step {
		t.Errorf("trial %d: steps_done %d, last point at step %d", tr.Id, tr.StepsDone, points[n-1].Step)
	}
}

func synthetic() sim.Source { return sim.NewSynthetic(sim.SyntheticOptions{}) }

// A worker runs a small study to the end: a simulated one simulated_capacity trials at a
// time whatever GPUs the scale needs, one with two GPUs a two-GPU trial on both.
func TestAgentRunsStudyToCompletion(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gpus      []*pb.Gpu
		capacity  int32
		scaleGPUs int32
		wantGPUs  []int32 // the GPUs every trial holds; nil: not checked
	}{
		{"simulated", nil, 2, 0, nil},
		{"simulated of capacity one, two-GPU scale", nil, 1, 2, nil},
		{"two GPUs, two-GPU scale", []*pb.Gpu{{Index: 0, MemoryMib: 80_000}, {Index: 1, MemoryMib: 80_000}}, 0, 2, []int32{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoordinator(t)
			cfg := c.agentConfig(tc.capacity, SimRunner{Source: synthetic()})
			cfg.GPUs = tc.gpus
			startAgent(t, cfg)
			const n = 6
			spec := simSpec(fastFlops, n, 2)
			spec.Scales[0].Gpus = tc.scaleGPUs
			id := c.createStudy(t, spec)
			st := c.waitStudyDone(t, id)
			if st.TrialsByState["succeeded"] != n || st.Study.EndReason != "max trials reached" {
				t.Fatalf("study ended %q with trials %v, want %d succeeded", st.Study.EndReason, st.TrialsByState, n)
			}
			trials := c.trials(t, id)
			if len(trials) != n {
				t.Fatalf("%d trials, want %d", len(trials), n)
			}
			for _, tr := range trials {
				full, points := c.trial(t, tr.Id)
				if full.Attempt != 1 || len(points) != 200/evalEvery || full.StepsDone != 200 || !full.HasValue {
					t.Errorf("trial %d: attempt %d, %d points, steps_done %d, value %v",
						full.Id, full.Attempt, len(points), full.StepsDone, full.HasValue)
				}
				checkContiguous(t, full, points)
				if full.GpuSeconds <= 0 {
					t.Errorf("trial %d: gpu_seconds %v, want the replay's wall time", full.Id, full.GpuSeconds)
				}
				if tc.wantGPUs != nil && !slices.Equal(full.GpuIndices, tc.wantGPUs) {
					t.Errorf("trial %d on GPUs %v, want %v", full.Id, full.GpuIndices, tc.wantGPUs)
				}
			}
			workers, err := c.control.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
			if err != nil || len(workers.Workers) != 1 {
				t.Errorf("ListWorkers = %v, %v", workers, err)
			}
		})
	}
}

// Injected failures follow the retry policy: a crash is retried until the delivery limit
// and the trial is lost; an OOM fails the trial at once. The worker goes on taking trials.
func TestAgentFaults(t *testing.T) {
	for _, tc := range []struct {
		class    string
		state    pb.TrialState
		attempts int32
	}{
		{"crash", pb.TrialState_TRIAL_STATE_LOST, testAttempts},
		{"oom", pb.TrialState_TRIAL_STATE_FAILED, 1},
	} {
		t.Run(tc.class, func(t *testing.T) {
			c := newCoordinator(t)
			faults, err := ParseFaults("1:" + tc.class)
			if err != nil {
				t.Fatal(err)
			}
			startAgent(t, c.agentConfig(1, SimRunner{Source: synthetic(), Faults: faults}))
			const n = 3
			id := c.createStudy(t, simSpec(fastFlops, n, 1))
			st := c.waitStudyDone(t, id)
			if got := st.TrialsByState[scheduler.StateName(tc.state)]; got != n {
				t.Fatalf("trials %v, want %d %s", st.TrialsByState, n, scheduler.StateName(tc.state))
			}
			class := faultClasses[tc.class]
			for _, tr := range c.trials(t, id) {
				full, points := c.trial(t, tr.Id)
				if full.Attempt != tc.attempts || len(full.ReasonHistory) != int(tc.attempts) {
					t.Errorf("trial %d: attempt %d, history %q; want %d attempts", full.Id, full.Attempt, full.ReasonHistory, tc.attempts)
				}
				for _, r := range full.ReasonHistory {
					if !strings.Contains(r, scheduler.FailureClassName(class)+": ") || !strings.Contains(r, "injected fault: "+tc.class) {
						t.Errorf("trial %d: reason %q does not name class %v and the fault", full.Id, r, class)
					}
				}
				// The last attempt's points before the failure are kept, without gaps.
				if want := 200 / evalEvery / 2; len(points) != want {
					t.Errorf("trial %d: %d points of the failed attempt, want the first %d", full.Id, len(points), want)
				}
				checkContiguous(t, full, points)
			}
		})
	}
}

// An operator's cancel stops a running trial at its current step: it ends stopped with
// the points it made, none missing.
func TestAgentStopsAtCurrentStep(t *testing.T) {
	c := newCoordinator(t)
	startAgent(t, c.agentConfig(1, SimRunner{Source: synthetic()}))
	id := c.createStudy(t, simSpec(slowFlops, 1, 1))
	tr := c.waitOnlyTrialRunning(t, id, 2)
	if _, err := c.control.CancelTrial(context.Background(), &pb.CancelTrialRequest{TrialId: tr.Id}); err != nil {
		t.Fatalf("CancelTrial: %v", err)
	}
	var points []*pb.CurvePoint
	waitFor(t, "the trial to stop", func() (bool, string) {
		tr, points = c.trial(t, tr.Id)
		return tr.State == pb.TrialState_TRIAL_STATE_STOPPED, tr.State.String()
	})
	if planned := 200 / evalEvery; len(points) < 2 || len(points) >= planned {
		t.Errorf("stopped trial has %d points; want at least the 2 seen before the cancel and fewer than the %d planned",
			len(points), planned)
	}
	checkContiguous(t, tr, points)
	if tr.Attempt != 1 || !tr.StopRequested {
		t.Errorf("stopped trial: attempt %d stop_requested %v", tr.Attempt, tr.StopRequested)
	}
	// The study completes in a transaction of its own, just after the trial's.
	c.waitStudyDone(t, id)
}

// A restarted worker comes back under the id kept in its id file; the trial it lost in
// the restart is requeued at once, not after its lease runs out, and it takes it again.
func TestAgentRestartReusesID(t *testing.T) {
	c := newCoordinator(t)
	idFile := filepath.Join(t.TempDir(), "worker-id")
	cfg := c.agentConfig(1, SimRunner{Source: synthetic()})
	cfg.IDFile = idFile
	stop := startAgent(t, cfg)
	id := c.createStudy(t, simSpec(slowFlops, 1, 1))
	tr := c.waitOnlyTrialRunning(t, id, 1)
	workerID, err := readWorkerID(idFile)
	if err != nil || workerID == 0 || workerID != tr.WorkerId {
		t.Fatalf("id file holds %d (%v); the trial runs on worker %d", workerID, err, tr.WorkerId)
	}
	stop()

	startAgent(t, cfg)
	waitFor(t, "the lost trial's second attempt on the restarted worker", func() (bool, string) {
		tr, _ = c.trial(t, tr.Id)
		return tr.State == pb.TrialState_TRIAL_STATE_RUNNING && tr.Attempt == 2,
			fmt.Sprintf("%v attempt %d on worker %d", tr.State, tr.Attempt, tr.WorkerId)
	})
	if tr.WorkerId != workerID {
		t.Errorf("second attempt on worker %d, want the restarted worker's id %d", tr.WorkerId, workerID)
	}
	if len(tr.ReasonHistory) != 1 || !strings.Contains(tr.ReasonHistory[0], "restarted") {
		t.Errorf("reason history %q, want the restart", tr.ReasonHistory)
	}
	workers, err := c.control.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
	if err != nil || len(workers.Workers) != 1 || workers.Workers[0].Id != workerID {
		t.Errorf("ListWorkers = %v, %v; want only worker %d", workers, err, workerID)
	}
	// End it early rather than wait for the replay.
	if _, err := c.control.CancelTrial(context.Background(), &pb.CancelTrialRequest{TrialId: tr.Id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trial to stop", func() (bool, string) {
		tr, _ = c.trial(t, tr.Id)
		return tr.State == pb.TrialState_TRIAL_STATE_STOPPED, tr.State.String()
	})
}
