package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// trialRun is one attempt on this worker: the runner appends points to a buffer and the
// sender drains it to the coordinator, so training never waits for the network.
type trialRun struct {
	agent *Agent
	a     *pb.Assignment
	log   *zap.Logger

	runCtx    context.Context
	cancelRun context.CancelFunc

	mu       sync.Mutex
	buf      []*pb.CurvePoint // emitted, not yet acknowledged
	nextSeq  uint64
	acked    uint64
	wake     chan struct{}
	finished bool
	lost     bool // the coordinator refused our lease: stop and report nothing more
}

func newTrialRun(ctx context.Context, agent *Agent, a *pb.Assignment) *trialRun {
	t := &trialRun{
		agent: agent, a: a, nextSeq: 1, wake: make(chan struct{}, 1),
		log: agent.log.With(zap.Uint64("trial", a.Trial.Id), zap.Int32("attempt", a.Attempt)),
	}
	t.runCtx, t.cancelRun = context.WithCancel(ctx)
	return t
}

func (t *trialRun) emit(p *pb.CurvePoint) {
	t.mu.Lock()
	p.Seq = t.nextSeq
	t.nextSeq++
	t.buf = append(t.buf, p)
	full := len(t.buf) >= t.agent.cfg.MaxBatch
	t.mu.Unlock()
	if full {
		t.poke()
	}
}

func (t *trialRun) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// abandon stops the run without reporting anything more (the lease is gone).
func (t *trialRun) abandon() {
	t.mu.Lock()
	t.lost = true
	t.mu.Unlock()
	t.cancelRun()
	t.poke()
}

func (t *trialRun) isLost() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lost
}

func (t *trialRun) run(ctx context.Context) {
	defer t.cancelRun()
	type outcome struct {
		res RunResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := t.agent.cfg.Runner.Run(t.runCtx, t.a, t.emit)
		t.mu.Lock()
		t.finished = true
		t.mu.Unlock()
		t.poke()
		done <- outcome{res, err}
	}()
	t.sendUntilDrained(ctx)
	out := <-done
	if t.isLost() || ctx.Err() != nil {
		return
	}
	if out.err != nil {
		var re *RunError
		class := "other"
		if errors.As(out.err, &re) {
			class = re.Class
		}
		t.log.Warn("trial failed", zap.String("class", class), zap.Error(out.err))
		t.call(ctx, func(c context.Context) error {
			_, err := t.agent.client.FailTrial(c, &pb.FailTrialRequest{
				WorkerId: t.agent.id(), TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt,
				Reason: out.err.Error(), ErrorClass: class,
			})
			return err
		})
		return
	}
	t.mu.Lock()
	final := t.nextSeq - 1
	t.mu.Unlock()
	if t.call(ctx, func(c context.Context) error {
		_, err := t.agent.client.FinishTrial(c, &pb.FinishTrialRequest{
			WorkerId: t.agent.id(), TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt,
			FinalSeq: final, SourceRun: out.res.SourceRun, SourceDistance: out.res.SourceDistance,
		})
		return err
	}) {
		t.log.Info("trial finished", zap.Uint64("points", final))
	}
}

// sendUntilDrained reports buffered points until the runner has finished and everything it
// emitted is acknowledged, or the lease is lost.
func (t *trialRun) sendUntilDrained(ctx context.Context) {
	tick := time.NewTicker(t.agent.cfg.FlushInterval)
	defer tick.Stop()
	for {
		t.mu.Lock()
		batch := t.buf[:min(len(t.buf), t.agent.cfg.MaxBatch)]
		batch = append([]*pb.CurvePoint(nil), batch...)
		done := t.finished && len(t.buf) == 0
		lost := t.lost
		t.mu.Unlock()
		if done || lost || ctx.Err() != nil {
			return
		}
		if len(batch) > 0 {
			if !t.call(ctx, func(c context.Context) error { return t.report(c, batch) }) {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-tick.C:
		}
	}
}

func (t *trialRun) report(ctx context.Context, batch []*pb.CurvePoint) error {
	resp, err := t.agent.client.ReportPoints(ctx, &pb.ReportPointsRequest{
		WorkerId: t.agent.id(), TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt, Points: batch,
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if resp.AckedSeq > t.acked {
		t.acked = resp.AckedSeq
	}
	// Drop what is acknowledged; sequence numbers in buf are contiguous.
	n := 0
	for n < len(t.buf) && t.buf[n].Seq <= t.acked {
		n++
	}
	t.buf = t.buf[n:]
	if resp.Stop {
		t.lost = true
		t.cancelRun()
	}
	return nil
}

// call runs an RPC until it succeeds (true), the lease is refused or the request is bad
// (false: the trial is abandoned), or ctx ends. Unreachable coordinators are retried with
// backoff: the worker keeps training meanwhile.
func (t *trialRun) call(ctx context.Context, rpc func(context.Context) error) bool {
	b := backoff{max: t.agent.cfg.MaxBackoff}
	for {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := rpc(c)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if !retryable(err) {
			if status.Code(err) == codes.FailedPrecondition {
				t.log.Warn("lease refused; abandoning trial", zap.Error(err))
			} else {
				t.log.Error("trial report rejected; abandoning trial", zap.Error(err))
			}
			t.abandon()
			return false
		}
		if b.wait(ctx) != nil {
			return false
		}
	}
}
