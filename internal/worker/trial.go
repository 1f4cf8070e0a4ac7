package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// trialRun is one attempt on this worker: the runner pushes points into a queue and the
// sender drains it to the coordinator, so training never waits for the network.
type trialRun struct {
	agent *Agent
	a     *pb.Assignment
	log   *zap.Logger

	runCtx    context.Context
	cancelRun context.CancelFunc

	mu       sync.Mutex
	queue    *pointQueue // emitted, not yet acknowledged
	nextSeq  uint64
	queueErr error // the queue could not spill: the attempt cannot keep its points
	wake     chan struct{}
	done     chan struct{} // closed once the attempt has ended and left the agent
	finished bool
	// lost: the coordinator refused our lease (or we fenced ourselves): stop and report
	// nothing more. stopping: the coordinator asked to stop at the current step: stop
	// the run, then finish with the points sent.
	lost, stopping bool
	// fenced: lost because this worker fenced itself, so the coordinator has not been
	// told; the agent releases the lease once the run has stopped.
	fenced bool
}

func newTrialRun(ctx context.Context, agent *Agent, a *pb.Assignment) *trialRun {
	t := &trialRun{
		agent: agent, a: a, nextSeq: 1, wake: make(chan struct{}, 1), done: make(chan struct{}),
		queue: newPointQueue(agent.cfg.MaxBufferedPoints, agent.cfg.SpillDir),
		log:   agent.log.With(zap.Uint64("trial", a.Trial.Id), zap.Int32("attempt", a.Attempt)),
	}
	t.runCtx, t.cancelRun = context.WithCancel(ctx)
	return t
}

func (t *trialRun) emit(p *pb.CurvePoint) {
	t.mu.Lock()
	p.Seq = t.nextSeq
	t.nextSeq++
	if err := t.queue.Push(p); err != nil && t.queueErr == nil {
		t.queueErr = err
	}
	full := t.queue.Len() >= t.agent.cfg.MaxBatch
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

// fence abandons the run because this worker could not reach the coordinator in time.
func (t *trialRun) fence() {
	t.mu.Lock()
	if !t.lost {
		t.fenced = true
	}
	t.mu.Unlock()
	t.abandon()
}

func (t *trialRun) wasFenced() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fenced
}

func (t *trialRun) heldLease() *pb.HeldLease {
	return &pb.HeldLease{TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt}
}

// stopAtCurrentStep ends the run early; the points already emitted are still sent and the
// trial is finished with them.
func (t *trialRun) stopAtCurrentStep() {
	t.mu.Lock()
	t.stopping = true
	t.mu.Unlock()
	t.cancelRun()
}

func (t *trialRun) state() (lost, stopping bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lost, t.stopping
}

func (t *trialRun) run(ctx context.Context) {
	defer t.cancelRun()
	defer func() {
		t.mu.Lock()
		t.queue.Close()
		t.mu.Unlock()
	}()
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
	if errors.Is(out.err, errWatchdogFenced) {
		t.fence() // as if the fence loop had stopped it: released, not failed
	}
	lost, stopping := t.state()
	if lost || ctx.Err() != nil {
		return
	}
	if out.err != nil && !(stopping && errors.Is(out.err, context.Canceled)) {
		t.fail(ctx, out.err)
		return
	}
	// A run stopped at the coordinator's request may have emitted more after the last
	// send; send those too so the final sequence number is complete.
	t.sendUntilDrained(ctx)
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
		t.log.Info("trial finished", zap.Uint64("points", final), zap.Bool("stopped_early", stopping))
	}
}

func (t *trialRun) fail(ctx context.Context, runErr error) {
	var re *RunError
	class := pb.FailureClass_FAILURE_CLASS_OTHER
	if errors.As(runErr, &re) {
		class = re.Class
	}
	t.log.Warn("trial failed", zap.Stringer("class", class), zap.Error(runErr))
	// Points emitted before the failure are part of the attempt's record.
	t.sendUntilDrained(ctx)
	t.call(ctx, func(c context.Context) error {
		_, err := t.agent.client.FailTrial(c, &pb.FailTrialRequest{
			WorkerId: t.agent.id(), TrialId: t.a.Trial.Id, LeaseId: t.a.LeaseId, Attempt: t.a.Attempt,
			Reason: boundReason(runErr.Error()), FailureClass: class,
		})
		return err
	})
}

// maxReasonBytes is the coordinator's bound on a failure reason (scheduler.MaxReasonBytes):
// a longer one would be refused, and the failure lost until the lease lapsed.
const maxReasonBytes = 16 << 10

// boundReason cuts a failure reason to maxReasonBytes at a character boundary.
func boundReason(s string) string {
	return gpuexec.TruncateUTF8(s, maxReasonBytes-len("…"))
}

// sendUntilDrained reports queued points until the runner has finished and everything it
// emitted is acknowledged, or the lease is lost.
func (t *trialRun) sendUntilDrained(ctx context.Context) {
	tick := time.NewTicker(t.agent.cfg.FlushInterval)
	defer tick.Stop()
	for {
		t.mu.Lock()
		batch, err := t.queue.Peek(t.agent.cfg.MaxBatch)
		if err == nil {
			err = t.queueErr
		}
		done := t.finished && t.queue.Len() == 0
		lost := t.lost
		t.mu.Unlock()
		if err != nil {
			t.log.Error("point queue failed; abandoning trial", zap.Error(err))
			t.abandon()
			return
		}
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
	t.queue.Ack(resp.AckedSeq)
	t.mu.Unlock()
	if resp.Stop {
		if _, stopping := t.state(); !stopping {
			t.log.Info("coordinator asked to stop at the current step")
			t.stopAtCurrentStep()
		}
	}
	return nil
}

// call runs an RPC until it succeeds (true), the lease is refused or the request is bad
// (false: the trial is abandoned), or ctx ends. Unreachable coordinators are retried with
// backoff: the worker keeps training meanwhile.
func (t *trialRun) call(ctx context.Context, rpc func(context.Context) error) bool {
	b := backoff{max: t.agent.cfg.MaxBackoff}
	for {
		if lost, _ := t.state(); lost {
			return false
		}
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := rpc(c)
		cancel()
		if err == nil {
			t.agent.contact()
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
