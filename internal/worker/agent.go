package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/clock"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Config is the agent's configuration; cmd/worker fills it from flags.
type Config struct {
	// Addr is the coordinator's gRPC address.
	Addr     string
	Hostname string
	GPUs     []*pb.Gpu
	// Capacity is how many trials run at once (simulated workers; real ones use their GPUs).
	Capacity int32
	Runner   Runner
	// Identity is what the worker says it is in Register (RealIdentity, SimulatedIdentity).
	Identity *pb.WorkerIdentity
	Logger   *zap.Logger
	// PollWait is how long one AcquireTrial call may wait for work.
	PollWait time.Duration
	// FlushInterval is the longest a point waits in the buffer before it is sent.
	FlushInterval time.Duration
	// MaxBatch caps points per ReportPoints call.
	MaxBatch int
	// MaxBackoff caps the delay between retries while the coordinator is unreachable.
	MaxBackoff time.Duration
	// MaxBufferedPoints bounds the points a trial keeps in memory while the coordinator
	// is away; beyond it they go to files in SpillDir (memory only when SpillDir is "").
	MaxBufferedPoints int
	SpillDir          string
	// IDFile keeps the worker's id across restarts, so that a restarted worker is known
	// and its lost trials are requeued at once ("" forgets it).
	IDFile string
	// TransportCredentials secure the connection (TLS); nil dials without transport
	// security, for loopback and tests. Per-call tokens go in DialOptions.
	TransportCredentials credentials.TransportCredentials
	DialOptions          []grpc.DialOption
	// Clock tells the time for self-fencing (tests inject a fake one).
	Clock clock.Clock
}

func (c *Config) setDefaults() {
	if c.PollWait <= 0 {
		c.PollWait = 2 * time.Second
	}
	if c.FlushInterval <= 0 {
		// Long enough that a fast curve goes in batches (one RPC and one commit for many
		// points), short enough that the dashboard stays live.
		c.FlushInterval = time.Second
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Capacity <= 0 {
		c.Capacity = int32(max(len(c.GPUs), 1))
	}
	if c.MaxBufferedPoints <= 0 {
		c.MaxBufferedPoints = 100_000
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
}

// Agent is a running worker.
type Agent struct {
	cfg    Config
	log    *zap.Logger
	client pb.WorkerServiceClient

	mu       sync.Mutex
	workerID uint64
	// trials holds this worker's attempts by lease id, not trial id: an attempt of a
	// trial requeued back to this worker may start while its old attempt still ends.
	trials      map[string]*trialRun
	slotFree    chan struct{} // signalled when a trial ends
	hbEvery     time.Duration
	fenceAfter  time.Duration // 0 until the coordinator says
	lastContact time.Time     // when an RPC last succeeded
	// fenced is set while the fence is tripped (from when it stopped the trials until
	// the coordinator answers again), so that an outage is logged once.
	fenced bool
	// released are attempts this worker fenced and has stopped, by lease id, which the
	// next heartbeat tells the coordinator about so that it requeues them at once.
	released map[string]*pb.HeldLease
}

// Run registers and works until ctx ends; running trials are stopped on the way out.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if cfg.Runner == nil {
		return errors.New("worker: no runner configured")
	}
	creds := cfg.TransportCredentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Addr, opts...)
	if err != nil {
		return fmt.Errorf("dial coordinator %s: %w", cfg.Addr, err)
	}
	defer conn.Close()
	a := &Agent{
		cfg: cfg, log: cfg.Logger, client: pb.NewWorkerServiceClient(conn),
		trials: map[string]*trialRun{}, released: map[string]*pb.HeldLease{}, slotFree: make(chan struct{}, 1), hbEvery: time.Second,
	}
	if f, ok := cfg.Runner.(interface {
		setFence(func() (time.Duration, bool))
	}); ok {
		f.setFence(a.fenceRemaining)
	}
	if a.workerID, err = readWorkerID(cfg.IDFile); err != nil {
		return err
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.heartbeatLoop(ctx) }()
	go func() { defer wg.Done(); a.fenceLoop(ctx) }()
	a.acquireLoop(ctx, &wg)
	wg.Wait()
	return nil
}

// retryable says whether an RPC error means "the coordinator is away, try again".
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}

// backoff is exponential with full jitter, capped.
type backoff struct {
	next, max time.Duration
}

func (b *backoff) wait(ctx context.Context) error {
	if b.next == 0 {
		b.next = 50 * time.Millisecond
	}
	d := time.Duration(rand.Int64N(int64(b.next)) + 1)
	b.next = min(2*b.next, b.max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (a *Agent) id() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workerID
}

// register (re-)announces the worker with the leases it holds, retrying while the
// coordinator is unreachable.
func (a *Agent) register(ctx context.Context) error {
	b := backoff{max: a.cfg.MaxBackoff}
	warned := false
	for {
		simulated := int32(0)
		if len(a.cfg.GPUs) == 0 {
			simulated = a.cfg.Capacity
		}
		resp, err := a.client.Register(ctx, &pb.RegisterRequest{
			WorkerId: a.id(), Hostname: a.cfg.Hostname, Gpus: a.cfg.GPUs, SimulatedCapacity: simulated,
			Leases: a.heldLeases(), Identity: a.cfg.Identity,
		})
		if err == nil {
			a.contact()
			a.mu.Lock()
			a.workerID = resp.WorkerId
			a.setIntervalsLocked(resp.HeartbeatIntervalMs, resp.FenceAfterMs)
			a.mu.Unlock()
			if err := writeWorkerID(a.cfg.IDFile, resp.WorkerId); err != nil {
				return err
			}
			a.log.Info("registered", zap.Uint64("worker", resp.WorkerId), zap.Stringer("kind", a.cfg.Identity.GetKind()))
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("register: %w", err)
		}
		if !warned {
			// Once per attempt to register, not per retry: the operator learns the worker
			// is waiting for its coordinator, and the log is not flooded.
			a.log.Warn("cannot reach the coordinator; retrying", zap.String("addr", a.cfg.Addr), zap.Error(err))
			warned = true
		}
		if werr := b.wait(ctx); werr != nil {
			return werr
		}
	}
}

func (a *Agent) acquireLoop(ctx context.Context, wg *sync.WaitGroup) {
	b := backoff{max: a.cfg.MaxBackoff}
	for ctx.Err() == nil {
		a.mu.Lock()
		busy := len(a.trials) >= int(a.cfg.Capacity)
		a.mu.Unlock()
		if busy {
			select {
			case <-ctx.Done():
			case <-a.slotFree:
			}
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.PollWait+5*time.Second)
		resp, err := a.client.AcquireTrial(callCtx, &pb.AcquireTrialRequest{WorkerId: a.id(), WaitMs: a.cfg.PollWait.Milliseconds()})
		cancel()
		switch {
		case err == nil:
			a.contact()
			b = backoff{max: a.cfg.MaxBackoff}
			if resp.Assignment != nil {
				a.start(ctx, wg, resp.Assignment)
			}
		case status.Code(err) == codes.NotFound:
			// The coordinator no longer knows this worker (a fresh database): register anew.
			if rerr := a.register(ctx); rerr != nil && ctx.Err() == nil {
				a.log.Error("re-register failed", zap.Error(rerr))
				_ = b.wait(ctx)
			}
		default:
			if ctx.Err() == nil {
				a.log.Debug("acquire failed; retrying", zap.Error(err))
				_ = b.wait(ctx)
			}
		}
	}
}

func (a *Agent) setIntervalsLocked(heartbeatMs, fenceMs int64) {
	if heartbeatMs > 0 {
		a.hbEvery = time.Duration(heartbeatMs) * time.Millisecond
	}
	if fenceMs > 0 {
		a.fenceAfter = time.Duration(fenceMs) * time.Millisecond
	}
}

// contact records that the coordinator answered, for self-fencing.
func (a *Agent) contact() {
	a.mu.Lock()
	a.lastContact = a.cfg.Clock.Now()
	wasFenced := a.fenced
	a.fenced = false
	a.mu.Unlock()
	if wasFenced {
		a.log.Info("coordinator reachable again")
	}
}

// heldLeases lists the attempts this worker still holds: not those it abandoned (fenced
// or refused), which may linger while their runs stop, lest a heartbeat renew them.
func (a *Agent) heldLeases() []*pb.HeldLease {
	a.mu.Lock()
	defer a.mu.Unlock()
	leases := make([]*pb.HeldLease, 0, len(a.trials))
	for _, t := range a.trials {
		if lost, _ := t.state(); !lost {
			leases = append(leases, t.heldLease())
		}
	}
	return leases
}

// releasedLeases lists the fenced attempts not yet reported to the coordinator.
func (a *Agent) releasedLeases() []*pb.HeldLease {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pb.HeldLease, 0, len(a.released))
	for _, l := range a.released {
		out = append(out, l)
	}
	return out
}

// fenceLoop stops every trial once the coordinator has been unreachable for longer than
// it allows: by then it may have requeued them elsewhere, and two attempts of one trial
// must never run at once.
func (a *Agent) fenceLoop(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.checkFence()
		}
	}
}

// fenceRemaining is how long this worker may still run its trials before it must fence
// itself; false while the coordinator has announced no limit.
func (a *Agent) fenceRemaining() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fenceAfter <= 0 {
		return 0, false
	}
	return a.fenceAfter - a.cfg.Clock.Now().Sub(a.lastContact), true
}

func (a *Agent) checkFence() {
	a.mu.Lock()
	silent := a.cfg.Clock.Now().Sub(a.lastContact)
	limit := a.fenceAfter
	if limit <= 0 || silent <= limit {
		a.mu.Unlock()
		return
	}
	var running []*trialRun
	for _, t := range a.trials {
		if lost, _ := t.state(); !lost {
			running = append(running, t)
		}
	}
	first := !a.fenced
	a.fenced = true
	a.mu.Unlock()
	// One line per outage: the fence is checked every 200 ms while it lasts.
	if first {
		a.log.Warn("coordinator unreachable past the fence limit; stopping trials",
			zap.Duration("silent", silent), zap.Duration("limit", limit), zap.Int("trials", len(running)))
	}
	for _, t := range running {
		t.fence()
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		every := a.hbEvery
		a.mu.Unlock()
		// Jitter spreads a fleet's heartbeats so they do not arrive in waves.
		wait := every - time.Duration(rand.Int64N(int64(every)/5+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		// The leases are read after the wait, so the heartbeat says what is held now.
		leases, released := a.heldLeases(), a.releasedLeases()
		callCtx, cancel := context.WithTimeout(ctx, every)
		resp, err := a.client.Heartbeat(callCtx, &pb.HeartbeatRequest{WorkerId: a.id(), Leases: leases, ReleasedLeases: released})
		cancel()
		if err != nil {
			if status.Code(err) == codes.NotFound {
				_ = a.register(ctx)
			}
			continue
		}
		a.contact()
		a.mu.Lock()
		a.setIntervalsLocked(0, resp.FenceAfterMs)
		for _, l := range released {
			delete(a.released, l.LeaseId)
		}
		a.mu.Unlock()
		for _, l := range stopsOf(resp, leases) {
			a.stopAttempt(l, "coordinator asked to stop")
		}
	}
}

// stopsOf is the attempts a heartbeat's answer stops, among the leases it carried: those
// of stop_leases, or, from a coordinator that predates it, the carried lease of each
// trial in stop_trials. Either way only an attempt the heartbeat named is stopped, never
// a newer attempt of the same trial started since.
func stopsOf(resp *pb.HeartbeatResponse, sent []*pb.HeldLease) []*pb.HeldLease {
	//lint:ignore SA1019 read from coordinators that predate stop_leases
	if len(resp.StopLeases) > 0 || len(resp.StopTrials) == 0 {
		return resp.StopLeases
	}
	var out []*pb.HeldLease
	for _, l := range sent {
		//lint:ignore SA1019 as above
		if slices.Contains(resp.StopTrials, l.TrialId) {
			out = append(out, l)
		}
	}
	return out
}

// stopAttempt abandons the attempt l names, if this worker still runs it.
func (a *Agent) stopAttempt(l *pb.HeldLease, why string) {
	a.mu.Lock()
	t := a.trials[l.LeaseId]
	a.mu.Unlock()
	if t != nil && t.a.Trial.Id == l.TrialId && t.a.Attempt == l.Attempt {
		t.log.Info("stopping trial", zap.String("why", why))
		t.abandon()
	}
}

func (a *Agent) start(ctx context.Context, wg *sync.WaitGroup, as *pb.Assignment) {
	t := newTrialRun(ctx, a, as)
	a.mu.Lock()
	// An earlier attempt of the same trial may still be stopping here (requeued back to
	// this worker after it was abandoned): the new one waits for it, so two attempts of
	// one trial never train at once or share its checkpoint folder.
	var earlier []*trialRun
	for _, o := range a.trials {
		if o.a.Trial.Id == as.Trial.Id {
			earlier = append(earlier, o)
		}
	}
	a.trials[as.LeaseId] = t
	a.mu.Unlock()
	a.log.Info("trial started", zap.Uint64("trial", as.Trial.Id), zap.Int32("attempt", as.Attempt),
		zap.String("scale", as.Scale.GetName()), zap.Int64("steps", as.Trial.Steps))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, o := range earlier {
			select {
			case <-o.done:
			case <-ctx.Done():
			}
		}
		t.run(ctx)
		a.mu.Lock()
		if a.trials[as.LeaseId] == t {
			delete(a.trials, as.LeaseId)
		}
		if t.wasFenced() {
			// Stopped now: the coordinator may requeue it without two attempts running.
			a.released[as.LeaseId] = t.heldLease()
		}
		a.mu.Unlock()
		close(t.done)
		select {
		case a.slotFree <- struct{}{}:
		default:
		}
	}()
}
