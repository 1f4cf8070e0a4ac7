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
	// seqs counts the points seen (sequence numbers are contiguous from 1); obs holds
	// their finite objective values, and finiteUpTo[i] how many of obs come from the
	// first i+1 points. obs only grows, so a slice of it handed out stays valid.
	seqs       uint64
	obs        []bo.CurvePoint
	finiteUpTo []int
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
		if p.Seq != e.seqs+1 {
			continue // already known, or a gap the store will fill
		}
		e.seqs++
		if v, ok := MetricValue(p, metric); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			e.obs = append(e.obs, bo.CurvePoint{Step: p.Step, Value: v})
		}
		e.finiteUpTo = append(e.finiteUpTo, len(e.obs))
	}
}

// forget drops the cached curves of deleted trials.
func (c *curveCache) forget(trialIDs []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range trialIDs {
		delete(c.trials, id)
	}
}

// curve returns the trial's finite objective values up to its last committed point,
// reading the store for what the cache lacks. The slice is shared: callers must not
// modify it.
func (c *curveCache) curve(tx *store.Tx, t *pb.Trial, metric string) ([]bo.CurvePoint, error) {
	if t.LastSeq == 0 || t.Attempt == 0 {
		return nil, nil
	}
	c.mu.Lock()
	e := c.trials[t.Id]
	fresh := e != nil && e.attempt == t.Attempt && e.seqs >= t.LastSeq
	c.mu.Unlock()
	if !fresh {
		// Only the objective is read (store.MetricCurve), not whole points: after a
		// restart every trial's curve is read once, and decoding every point's eval
		// map would make the first status grow with the whole history.
		evalKey := metric
		if metric == "train_loss" {
			evalKey = "" // MetricValue's rule: the training loss, not an eval entry
		}
		pts, err := tx.MetricCurve(t.Id, t.Attempt, evalKey)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		delete(c.trials, t.Id)
		if len(pts) > 0 {
			c.trials[t.Id] = curveFromStore(t.Attempt, pts)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e = c.trials[t.Id]
	if e == nil {
		return nil, nil
	}
	n := min(e.seqs, t.LastSeq)
	if n == 0 {
		return nil, nil
	}
	k := e.finiteUpTo[n-1]
	return e.obs[:k:k], nil
}

// curveFromStore builds a cache entry from an attempt's stored curve, whose seqs the
// store has checked are contiguous from 1.
func curveFromStore(attempt int32, pts []store.MetricPoint) *cachedCurve {
	e := &cachedCurve{attempt: attempt, seqs: uint64(len(pts)), finiteUpTo: make([]int, len(pts))}
	for i, p := range pts {
		if p.Has && !math.IsNaN(p.Value) && !math.IsInf(p.Value, 0) {
			e.obs = append(e.obs, bo.CurvePoint{Step: p.Step, Value: p.Value})
		}
		e.finiteUpTo[i] = len(e.obs)
	}
	return e
}
