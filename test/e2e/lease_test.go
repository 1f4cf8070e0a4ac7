package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Freeze the coordinator past the lease TTL while two workers run trials: the workers
// fence themselves (one warning each), and after the thaw every attempt lost to the
// freeze is requeued without counting against the delivery limit; the study completes
// with every trial succeeded and every point once.
func TestFrozenCoordinatorCostsNoAttempts(t *testing.T) {
	c := newCluster(t, "3s")
	coord := c.coordinator()
	w1 := c.worker("w1", "200")
	w2 := c.worker("w2", "200")
	c.createStudy(faultSpec(2, 2))
	eventually(t, time.Minute, "two trials running with points", func() bool {
		n := 0
		for _, tr := range c.trials() {
			if tr.State == pb.TrialState_TRIAL_STATE_RUNNING && tr.LastSeq > 0 {
				n++
			}
		}
		return n == 2
	})
	coord.signal(syscall.SIGSTOP)
	time.Sleep(5 * time.Second) // past the 3 s TTL and the 2 s fence limit
	coord.signal(syscall.SIGCONT)
	c.wait("2m")
	for _, tr := range c.trials() {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt < 2 || tr.UncountedAttempts != tr.Attempt-1 {
			t.Errorf("trial %d: %s at attempt %d, %d uncounted, history %q; want succeeded after uncounted lapses",
				tr.Id, tr.State, tr.Attempt, tr.UncountedAttempts, tr.ReasonHistory)
		}
		c.checkCurve(tr, 25)
	}
	for _, w := range []*proc{w1, w2} {
		b, err := os.ReadFile(w.log)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "coordinator unreachable past the fence limit"); n != 1 {
			t.Errorf("%s: %d fence warnings in one outage, want 1", w.log, n)
		}
	}
}
