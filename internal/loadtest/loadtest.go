// Package loadtest drives one real coordinator process with many in-process simulated
// workers over loopback gRPC, measures ingestion and decision latency, and verifies that
// every point a worker emitted is stored exactly once.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/worker"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Config sets up one load run.
type Config struct {
	// CoordinatorBin is the coordinator binary to start.
	CoordinatorBin string
	// Workers simulated workers, each running one trial at a time.
	Workers int
	// TrialsPerWorker sets the study's size: Workers x TrialsPerWorker trials.
	TrialsPerWorker int
	// PointsPerTrial is the curve length of each trial.
	PointsPerTrial int
	// Policy decides the trials ("random" keeps the decision itself cheap).
	Policy string
	// TrialSeconds is how long a worker takes to replay one trial (0: as fast as it can,
	// which saturates the coordinator: latency is then queueing, N / throughput).
	TrialSeconds float64
	// Dir holds the database and logs.
	Dir string
	// Timeout bounds the whole run.
	Timeout time.Duration
	// CPUProfile, when set, is where the coordinator writes its CPU profile.
	CPUProfile string
	// Kills is how many times the coordinator is killed with SIGKILL under load and
	// started again on the same database and address: evenly over the study, when
	// 1/(Kills+1), 2/(Kills+1), ... of its trials have succeeded. Workers keep
	// training through each outage, buffer their points and flush them after.
	Kills int
}

// Result is what one run measured.
type Result struct {
	Workers, Trials   int
	PointsSent        int64 // emitted by the workers' runners
	PointsStored      int64 // in the database after the run
	Lost, Duplicated  int64
	Elapsed           time.Duration
	PointsPerSecond   float64
	DecisionP50       time.Duration // AcquireTrial calls that returned a trial, seen by workers
	DecisionP99       time.Duration
	ServerP50         time.Duration // the same, measured inside the coordinator
	ServerP99         time.Duration
	CoordinatorPeakMB float64       // peak resident memory of the coordinator process (the last one started)
	Kills             int           // SIGKILLs of the coordinator during the run
	RestartMax        time.Duration // longest time from a SIGKILL to the new coordinator serving
	TrialsRetried     int           // trials that needed more than one attempt
}

// countingRunner counts the points each attempt emitted.
type countingRunner struct {
	inner worker.Runner
	mu    sync.Mutex
	sent  map[[2]uint64]int64 // (trial, attempt) -> points
	total atomic.Int64
}

func (r *countingRunner) Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (worker.RunResult, error) {
	key := [2]uint64{a.Trial.Id, uint64(a.Attempt)}
	return r.inner.Run(ctx, a, func(p *pb.CurvePoint) {
		r.mu.Lock()
		r.sent[key]++
		r.mu.Unlock()
		r.total.Add(1)
		emit(p)
	})
}

// latencies records the duration of AcquireTrial calls that returned an assignment: the
// decision as a worker sees it (queueing, policy, the lease transaction, the network).
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if r, ok := reply.(*pb.AcquireTrialResponse); ok && err == nil && r.Assignment != nil {
		l.mu.Lock()
		l.d = append(l.d, time.Since(start))
		l.mu.Unlock()
	}
	return err
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Run performs one load run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	dbPath := filepath.Join(cfg.Dir, "load.db")
	logFile, err := os.Create(filepath.Join(cfg.Dir, "coordinator.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// Fixed ports, so that a restarted coordinator is where the workers look for it.
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	coord := &coordinatorProcess{cfg: cfg, dbPath: dbPath, addr: addr, httpAddr: httpAddr, log: logFile}
	if err := coord.start(ctx, cfg.CPUProfile); err != nil {
		return nil, err
	}
	defer coord.kill()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	control := pb.NewControlServiceClient(conn)

	trials := cfg.Workers * cfg.TrialsPerWorker
	const every = 10
	steps := int64(cfg.PointsPerTrial * every)
	spec := &pb.StudySpec{
		Name:        "load",
		Domains:     []*pb.Domain{{Name: "web"}, {Name: "code"}, {Name: "books"}},
		Scales:      []*pb.Scale{{Name: "s", Params: 2e7, FlopsPerStep: 1e12}},
		Steps:       []int64{steps},
		EvalEvery:   every,
		Objective:   &pb.Objective{Metric: "mean_ce"},
		Target:      &pb.Fidelity{Scale: "s", Steps: steps},
		BudgetFlops: 1e30,
		MaxParallel: int32(cfg.Workers),
		MaxTrials:   int32(trials),
		Policy:      cfg.Policy,
		Seed:        1,
	}

	// The synthetic source models wall time as FLOPs / 1e14 per second; pick the speed-up
	// that makes one trial last TrialSeconds.
	speedup := 1e12
	if cfg.TrialSeconds > 0 {
		speedup = float64(steps) * spec.Scales[0].FlopsPerStep / 1e14 / cfg.TrialSeconds
	}
	runner := &countingRunner{inner: worker.SimRunner{Source: sim.NewSynthetic(sim.SyntheticOptions{}), Speedup: speedup},
		sent: map[[2]uint64]int64{}}
	lat := &latencies{}
	workCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := worker.Run(workCtx, worker.Config{
				Addr: addr, Hostname: fmt.Sprintf("load-%d", i), Capacity: 1, Runner: runner,
				PollWait:    time.Second,
				DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(lat.interceptor)},
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(os.Stderr, "loadtest: worker:", err)
			}
		}()
	}
	// Let the workers register before the clock starts, so the run measures steady work.
	if err := waitWorkers(ctx, control, cfg.Workers); err != nil {
		return nil, err
	}
	begin := time.Now()
	if _, err := control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec}); err != nil {
		return nil, fmt.Errorf("create study: %w", err)
	}
	var restartMax time.Duration
	for k := 1; k <= cfg.Kills; k++ {
		if err := waitSucceeded(ctx, control, k*trials/(cfg.Kills+1)); err != nil {
			return nil, err
		}
		down, err := coord.restart(ctx)
		if err != nil {
			return nil, fmt.Errorf("restart %d: %w", k, err)
		}
		restartMax = max(restartMax, down)
	}
	if err := waitStudy(ctx, control); err != nil {
		return nil, err
	}
	elapsed := time.Since(begin)
	peak, _ := peakRSSMB(coord.cmd.Process.Pid)
	serverP50, serverP99, err := assignmentQuantiles(ctx, httpAddr)
	if err != nil {
		return nil, err
	}
	stopWorkers()
	wg.Wait()
	coord.stop()

	res := &Result{Workers: cfg.Workers, Trials: trials, PointsSent: runner.total.Load(), Elapsed: elapsed,
		DecisionP50: lat.quantile(0.5), DecisionP99: lat.quantile(0.99), CoordinatorPeakMB: peak,
		ServerP50: serverP50, ServerP99: serverP99, Kills: cfg.Kills, RestartMax: restartMax}
	if err := verify(dbPath, runner, res); err != nil {
		return nil, err
	}
	res.PointsPerSecond = float64(res.PointsStored) / elapsed.Seconds()
	return res, nil
}

// verify compares, attempt by attempt, the points stored with those the workers emitted.
func verify(dbPath string, runner *countingRunner, res *Result) error {
	db, err := store.Open(dbPath, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *store.Tx) error {
		trials, err := tx.AllTrials(pb.TrialState_TRIAL_STATE_UNSPECIFIED)
		if err != nil {
			return err
		}
		for _, t := range trials {
			if t.Attempt > 1 {
				res.TrialsRetried++
			}
			all, err := tx.AllPoints(t.Id)
			if err != nil {
				return err
			}
			for attempt, pts := range all {
				stored := int64(len(pts))
				res.PointsStored += stored
				sent := runner.sent[[2]uint64{t.Id, uint64(attempt)}]
				for i, p := range pts {
					if p.Seq != uint64(i+1) {
						res.Duplicated++ // keys are unique: a wrong seq means a gap or a repeat
					}
				}
				if t.State == pb.TrialState_TRIAL_STATE_SUCCEEDED && attempt == t.Attempt && stored != sent {
					res.Lost += sent - stored
				}
			}
		}
		return nil
	})
}

func waitAddr(ctx context.Context, path string) (string, error) {
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("coordinator did not start: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitWorkers(ctx context.Context, c pb.ControlServiceClient, n int) error {
	for {
		if count, err := countWorkers(ctx, c); err == nil && count >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("workers did not register: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countWorkers counts the registered workers over every page of ListWorkers.
func countWorkers(ctx context.Context, c pb.ControlServiceClient) (int, error) {
	count, token := 0, ""
	for {
		r, err := c.ListWorkers(ctx, &pb.ListWorkersRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return 0, err
		}
		count += len(r.Workers)
		if r.NextPageToken == "" || r.NextPageToken == token {
			return count, nil
		}
		token = r.NextPageToken
	}
}

// waitStudy waits for study 1 to complete. An unreachable coordinator (being
// restarted) is waited for like a slow one: only the run's deadline ends the wait.
func waitStudy(ctx context.Context, c pb.ControlServiceClient) error {
	return waitStatus(ctx, c, "study did not finish", func(st *pb.StudyStatus) bool {
		return st.Study.State == pb.StudyState_STUDY_STATE_COMPLETED
	})
}

// waitSucceeded waits until n trials of study 1 have succeeded.
func waitSucceeded(ctx context.Context, c pb.ControlServiceClient, n int) error {
	return waitStatus(ctx, c, fmt.Sprintf("%d trials did not succeed", n), func(st *pb.StudyStatus) bool {
		return int(st.TrialsByState["succeeded"]) >= n || st.Study.State == pb.StudyState_STUDY_STATE_COMPLETED
	})
}

func waitStatus(ctx context.Context, c pb.ControlServiceClient, what string, done func(*pb.StudyStatus) bool) error {
	var last any = "no answer yet"
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := c.GetStudy(callCtx, &pb.GetStudyRequest{StudyId: 1})
		cancel()
		switch {
		case err == nil && done(r.Status):
			return nil
		case err == nil:
			last = r.Status.TrialsByState
		case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded:
			last = err
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (last: %v): %w", what, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// coordinatorProcess is the coordinator under test, on fixed addresses so that it can
// be killed and started again where the workers expect it.
type coordinatorProcess struct {
	cfg                    Config
	dbPath, addr, httpAddr string
	log                    *os.File
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func (c *coordinatorProcess) start(ctx context.Context, cpuProfile string) error {
	addrFile := filepath.Join(c.cfg.Dir, "addr")
	os.Remove(addrFile)
	cmd := exec.Command(c.cfg.CoordinatorBin, "-listen", c.addr, "-addr-file", addrFile, "-http-listen", c.httpAddr,
		"-init", "-db", c.dbPath, "-lease-ttl", "60s", "-register-rate", "100000", "-register-burst", "100000", "-log-level", c.cfg.logLevel())
	if cpuProfile != "" {
		cmd.Args = append(cmd.Args, "-cpuprofile", cpuProfile)
	}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start coordinator: %w", err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(c.exited) }()
	_, err := waitAddr(ctx, addrFile)
	return err
}

// restart kills the coordinator with SIGKILL, under load, and starts it again on
// the same database; it returns the time from the kill to serving again.
func (c *coordinatorProcess) restart(ctx context.Context) (time.Duration, error) {
	killed := time.Now()
	c.kill()
	// A kill -9 is not a clean stop: no profile is written past it, so none is asked for.
	if err := c.start(ctx, ""); err != nil {
		return 0, err
	}
	return time.Since(killed), nil
}

func (c *coordinatorProcess) kill() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

func (c *coordinatorProcess) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.exited
}

// freeAddr picks a loopback port that is free now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// peakRSSMB reads a process's peak resident memory (VmHWM) from /proc.
func peakRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// logLevel is the coordinator's: debug when MIXOPT_LOADTEST_DEBUG is set, to see each
// group decision's size and timing in the coordinator log.
func (cfg Config) logLevel() string {
	if os.Getenv("MIXOPT_LOADTEST_DEBUG") != "" {
		return "debug"
	}
	return "warn"
}
