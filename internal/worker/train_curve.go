package worker

import (
	"encoding/json"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// drainEvents reads the run's events to the end (a full channel would block train.py): c
// turns them into curve points, and the start event and the trainer's warnings make the
// run's result.
func (r *TrainRunner) drainEvents(run *gpuexec.Run, c *curveBuilder, log *zap.Logger) RunResult {
	var res RunResult
	var warnings []string
	for ev := range run.Events() {
		switch {
		case ev.Kind == gpuexec.KindStart && ev.Start != nil:
			res = startResult(ev.Start)
			if r.cfg.Command != nil {
				res.Provenance["runner"] = r.cfg.Command.Name()
			}
		case ev.Kind == gpuexec.KindWarning && ev.Warning != nil:
			log.Warn("trainer warning", zap.String("code", ev.Warning.Code), zap.String("message", ev.Warning.Message))
			if len(warnings) < maxWarningCodes && !slices.Contains(warnings, ev.Warning.Code) {
				warnings = append(warnings, ev.Warning.Code)
			}
		}
		c.add(ev)
	}
	c.flush()
	if len(warnings) > 0 && res.Provenance != nil {
		// A recording then says that, e.g., the run fell back from torch.compile to eager.
		res.Provenance["warnings"] = warnings
	}
	return res
}

// maxWarningCodes bounds the distinct warning codes a run's provenance keeps.
const maxWarningCodes = 16

func startResult(s *gpuexec.StartInfo) RunResult {
	prov := map[string]any{"runner": "train.py", "preset": s.Preset}
	if s.Device != "" {
		prov["device"] = s.Device
	}
	if s.WorldSize > 0 {
		prov["world_size"] = s.WorldSize
	}
	if len(s.Config) > 0 {
		var cfg struct {
			Torch string `json:"torch"`
			Dtype string `json:"dtype"`
		}
		if json.Unmarshal(s.Config, &cfg) == nil {
			if cfg.Torch != "" {
				prov["torch"] = cfg.Torch
			}
			if cfg.Dtype != "" {
				prov["dtype"] = cfg.Dtype
			}
		}
	}
	return RunResult{Params: float64(s.Params), TokensPerStep: s.TokensPerStep, FlopsPerStep: s.FlopsPerStep, Provenance: prov}
}

// curveBuilder turns train.py's events into curve points: a step's point and eval become one
// curve point, sent when the eval arrives (train.py writes the point first). On a resumed
// run it first re-sends the points the checkpoint covers, because the new attempt's curve
// on the coordinator starts empty.
type curveBuilder struct {
	start   time.Time
	emit    func(*pb.CurvePoint)
	ck      *trialCheckpoint
	log     *zap.Logger
	pending *pb.CurvePoint
	last    int64 // highest step emitted
}

func (c *curveBuilder) add(ev gpuexec.Event) {
	switch ev.Kind {
	case gpuexec.KindStart:
		if ev.Start != nil {
			c.resend(ev.Start.ResumedFromStep)
		}
	case gpuexec.KindPoint:
		c.addPoint(ev)
	case gpuexec.KindEval:
		c.addEval(ev)
	case gpuexec.KindDone, gpuexec.KindError:
		c.flush()
	}
}

// resend sends again the stored points a resumed run's checkpoint at step covers.
func (c *curveBuilder) resend(step int64) {
	if c.ck == nil {
		return
	}
	for _, p := range c.ck.resume(step, c.log) {
		c.send(p)
	}
}

// addPoint holds a step's training loss until its eval arrives.
func (c *curveBuilder) addPoint(ev gpuexec.Event) {
	if ev.Step <= c.last {
		return
	}
	c.flushOtherStep(ev.Step)
	c.pending = &pb.CurvePoint{Step: ev.Step, Tokens: ev.Tokens, TrainLoss: ev.TrainLoss}
}

// addEval completes its step's point with the eval's metrics and sends it.
func (c *curveBuilder) addEval(ev gpuexec.Event) {
	// Step 0 is before training; points start at step 1.
	if ev.Step <= c.last || ev.Step == 0 {
		return
	}
	c.flushOtherStep(ev.Step)
	p := c.pending
	if p == nil {
		// No point at this step (a resumed run's final eval): the interval's mean
		// training loss stands in.
		p = &pb.CurvePoint{Step: ev.Step, Tokens: ev.Tokens, TrainLoss: math.NaN()}
		if ev.HasTrainLoss {
			p.TrainLoss = ev.TrainLoss
		}
	}
	p.Eval = finiteMetrics(ev.Metrics)
	c.pending = p
	c.flush()
}

// finiteMetrics leaves out non-finite metrics: JSON, the store and recordings cannot hold them.
func finiteMetrics(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	return out
}

// flushOtherStep sends the pending point if it is of another step than step.
func (c *curveBuilder) flushOtherStep(step int64) {
	if c.pending != nil && c.pending.Step != step {
		c.flush()
	}
}

// flush sends the pending point unless its training loss is not finite (train.py then fails
// as diverged; the curve keeps its finite prefix).
func (c *curveBuilder) flush() {
	p := c.pending
	c.pending = nil
	if p == nil || p.Step <= c.last || math.IsNaN(p.TrainLoss) || math.IsInf(p.TrainLoss, 0) {
		return
	}
	p.WallTimeS = time.Since(c.start).Seconds()
	c.send(p)
}

func (c *curveBuilder) send(p *pb.CurvePoint) {
	c.last = p.Step
	if c.ck != nil {
		c.ck.store(p, c.log)
	}
	c.emit(p)
}
