package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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
	Logger   *zap.Logger
	// PollWait is how long one AcquireTrial call may wait for work.
	PollWait time.Duration
	// FlushInterval is the longest a point waits in the buffer before it is sent.
	FlushInterval time.Duration
	// MaxBatch caps points per ReportPoints call.
	MaxBatch int
	// MaxBackoff caps the delay between retries while the coordinator is unreachable.
	MaxBackoff  time.Duration
	DialOptions []grpc.DialOption
}

func (c *Config) setDefaults() {
	if c.PollWait <= 0 {
		c.PollWait = 2 * time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
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
}

// Agent is a running worker.
type Agent struct {
	cfg    Config
	log    *zap.Logger
	client pb.WorkerServiceClient

	mu       sync.Mutex
	workerID uint64
	trials   map[uint64]*trialRun
	slotFree chan struct{} // signalled when a trial ends
	hbEvery  time.Duration
}

// Run registers and works until ctx ends; running trials are stopped on the way out.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if cfg.Runner == nil {
		return errors.New("worker: no runner configured")
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Addr, opts...)
	if err != nil {
		return fmt.Errorf("dial coordinator %s: %w", cfg.Addr, err)
	}
	defer conn.Close()
	a := &Agent{
		cfg: cfg, log: cfg.Logger, client: pb.NewWorkerServiceClient(conn),
		trials: map[uint64]*trialRun{}, slotFree: make(chan struct{}, 1), hbEvery: time.Second,
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.heartbeatLoop(ctx) }()
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

// register (re-)announces the worker, retrying while the coordinator is unreachable.
func (a *Agent) register(ctx context.Context) error {
	b := backoff{max: a.cfg.MaxBackoff}
	for {
		resp, err := a.client.Register(ctx, &pb.RegisterRequest{
			WorkerId: a.id(), Hostname: a.cfg.Hostname, Gpus: a.cfg.GPUs, SimulatedCapacity: a.cfg.Capacity,
		})
		if err == nil {
			a.mu.Lock()
			a.workerID = resp.WorkerId
			if resp.HeartbeatIntervalMs > 0 {
				a.hbEvery = time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
			}
			a.mu.Unlock()
			a.log.Info("registered", zap.Uint64("worker", resp.WorkerId))
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("register: %w", err)
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

func (a *Agent) heartbeatLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		every := a.hbEvery
		var leases []*pb.HeldLease
		for _, t := range a.trials {
			leases = append(leases, &pb.HeldLease{TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt})
		}
		a.mu.Unlock()
		// Jitter spreads a fleet's heartbeats so they do not arrive in waves.
		wait := every - time.Duration(rand.Int64N(int64(every)/5+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		callCtx, cancel := context.WithTimeout(ctx, every)
		resp, err := a.client.Heartbeat(callCtx, &pb.HeartbeatRequest{WorkerId: a.id(), Leases: leases})
		cancel()
		if err != nil {
			if status.Code(err) == codes.NotFound {
				_ = a.register(ctx)
			}
			continue
		}
		for _, id := range resp.StopTrials {
			a.stopTrial(id, "coordinator asked to stop")
		}
	}
}

func (a *Agent) stopTrial(id uint64, why string) {
	a.mu.Lock()
	t := a.trials[id]
	a.mu.Unlock()
	if t != nil {
		a.log.Info("stopping trial", zap.Uint64("trial", id), zap.String("why", why))
		t.abandon()
	}
}

func (a *Agent) start(ctx context.Context, wg *sync.WaitGroup, as *pb.Assignment) {
	t := newTrialRun(ctx, a, as)
	a.mu.Lock()
	a.trials[as.Trial.Id] = t
	a.mu.Unlock()
	a.log.Info("trial started", zap.Uint64("trial", as.Trial.Id), zap.Int32("attempt", as.Attempt),
		zap.String("scale", as.Scale.GetName()), zap.Int64("steps", as.Trial.Steps))
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.run(ctx)
		a.mu.Lock()
		delete(a.trials, as.Trial.Id)
		a.mu.Unlock()
		select {
		case a.slotFree <- struct{}{}:
		default:
		}
	}()
}
