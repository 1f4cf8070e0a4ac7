package scheduler

import (
	"math"
	"sync"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// curveCache keeps each trial's objective curve (current attempt) in memory, so that a
// decision reads its study's observations without reading every stored point again: with
// thousands of trials of thousands of points, that read would dominate decision time.
// The store stays the truth: an entry is filled from it when missing or behind, and
// appends are idempotent by sequence number.
type curveCache struct {
	mu     sync.Mutex
	trials map[uint64]*cachedCurve
}

type cachedCurve struct {
	attempt int32
	// values[i] is the objective at point seq i+1 (NaN where the point lacks it), and
	// steps[i] its step: sequence numbers are contiguous from 1.
	values []float64
	steps  []int64
}

func newCurveCache() *curveCache { return &curveCache{trials: map[uint64]*cachedCurve{}} }

// append records committed points of an attempt; points already known are skipped. An
// entry of another attempt is replaced when the new attempt's first point arrives.
func (c *curveCache) append(trialID uint64, attempt int32, metric string, pts []*pb.CurvePoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.trials[trialID]
	if e == nil || e.attempt != attempt {
		if len(pts) == 0 || pts[0].Seq != 1 {
			delete(c.trials, trialID) // filled from the store when next read
			return
		}
		e = &cachedCurve{attempt: attempt}
		c.trials[trialID] = e
	}
	for _, p := range pts {
		if p.Seq != uint64(len(e.values))+1 {
			continue // already known, or a gap the store will fill
		}
		v, ok := MetricValue(p, metric)
		if !ok {
			v = math.NaN()
		}
		e.values = append(e.values, v)
		e.steps = append(e.steps, p.Step)
	}
}

// curve returns the trial's finite objective values up to its last committed point,
// reading the store for what the cache lacks.
func (c *curveCache) curve(tx *store.Tx, t *pb.Trial, metric string) ([]bo.CurvePoint, error) {
	if t.LastSeq == 0 || t.Attempt == 0 {
		return nil, nil
	}
	c.mu.Lock()
	e := c.trials[t.Id]
	fresh := e != nil && e.attempt == t.Attempt && uint64(len(e.values)) >= t.LastSeq
	c.mu.Unlock()
	if !fresh {
		pts, err := tx.Points(t.Id, t.Attempt)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		delete(c.trials, t.Id)
		c.mu.Unlock()
		c.append(t.Id, t.Attempt, metric, pts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e = c.trials[t.Id]
	if e == nil {
		return nil, nil
	}
	n := min(uint64(len(e.values)), t.LastSeq)
	out := make([]bo.CurvePoint, 0, n)
	for i := range n {
		if v := e.values[i]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, bo.CurvePoint{Step: e.steps[i], Value: v})
		}
	}
	return out, nil
}
