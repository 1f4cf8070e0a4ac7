package worker

import (
	"context"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// fencedAgent is an agent, not connected to anything, that last reached the coordinator
// now and holds one running trial.
func fencedAgent(t *testing.T, clock *testutil.Clock, fenceAfter time.Duration) (*Agent, *trialRun) {
	t.Helper()
	cfg := Config{Clock: clock}
	cfg.setDefaults()
	a := &Agent{cfg: cfg, log: cfg.Logger, trials: map[string]*trialRun{}, released: map[string]*pb.HeldLease{}, slotFree: make(chan struct{}, 1), hbEvery: time.Second}
	a.mu.Lock()
	a.setIntervalsLocked(0, fenceAfter.Milliseconds())
	a.mu.Unlock()
	a.contact()
	tr := newTrialRun(context.Background(), a, &pb.Assignment{Trial: &pb.Trial{Id: 7, Steps: 100}, LeaseId: "lease", Attempt: 1})
	t.Cleanup(func() {
		tr.cancelRun()
		tr.queue.Close()
	})
	a.trials["lease"] = tr
	return a, tr
}

func abandoned(tr *trialRun) bool {
	lost, _ := tr.state()
	return lost && tr.runCtx.Err() != nil
}

// A worker that has not reached the coordinator for longer than the fence interval it
// was given stops its trials: by then they may be requeued elsewhere.
func TestCheckFence(t *testing.T) {
	const fence = 20 * time.Second
	for _, tc := range []struct {
		name    string
		fence   time.Duration // announced by the coordinator; 0: none yet
		silent  time.Duration
		abandon bool
	}{
		{"recent contact", fence, fence / 2, false},
		{"exactly the fence interval", fence, fence, false},
		{"past the fence interval", fence, fence + time.Millisecond, true},
		{"long past it", fence, time.Hour, true},
		{"no interval announced", 0, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := testutil.NewClock()
			a, tr := fencedAgent(t, clock, tc.fence)
			clock.Advance(tc.silent)
			a.checkFence()
			if got := abandoned(tr); got != tc.abandon {
				t.Errorf("after %v silent with fence %v: abandoned %v, want %v", tc.silent, tc.fence, got, tc.abandon)
			}
		})
	}
}

// Any successful call moves the fence: contact just before it would trip keeps the
// trials running.
func TestCheckFenceContactRenews(t *testing.T) {
	const fence = 20 * time.Second
	clock := testutil.NewClock()
	a, tr := fencedAgent(t, clock, fence)
	for range 5 {
		clock.Advance(fence)
		a.checkFence()
		if abandoned(tr) {
			t.Fatalf("trial abandoned though the coordinator answered every %v", fence)
		}
		a.contact()
	}
	clock.Advance(fence + 1)
	a.checkFence()
	if !abandoned(tr) {
		t.Fatalf("trial still running %v after the last contact", fence+1)
	}
	// An abandoned trial reports nothing more.
	if tr.call(context.Background(), func(context.Context) error {
		t.Error("an abandoned trial called the coordinator")
		return nil
	}) {
		t.Error("call succeeded for an abandoned trial")
	}
}
