package worker

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// RecordingRunner wraps a Runner and appends every run that succeeds to a recording
// (docs/recording-format.md), so that simulated workers can replay it later. Runs that fail
// or are stopped early are not recorded: a recording holds whole curves.
type RecordingRunner struct {
	Runner Runner
	// File is the recording, opened with O_APPEND: each run is one write of one line, so
	// several workers may share it.
	File     *os.File
	Hostname string
	Logger   *zap.Logger
	// Now tells the time for run ids and provenance (time.Now when nil).
	Now func() time.Time

	mu sync.Mutex // serialises write+fsync, so one run's fsync covers only whole lines
}

var _ Runner = (*RecordingRunner)(nil)

// OpenRecording opens (creating) path for appending recorded runs.
func OpenRecording(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	return f, nil
}

func (r *RecordingRunner) Run(ctx context.Context, a *pb.Assignment, emit func(*pb.CurvePoint)) (RunResult, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	began := now()
	var points []sim.Point
	res, err := r.Runner.Run(ctx, a, func(p *pb.CurvePoint) {
		// Copied before emit: the agent owns p once it has it.
		points = append(points, sim.Point{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss,
			Eval: maps.Clone(p.Eval), WallTime: p.WallTimeS})
		emit(p)
	})
	if err != nil || ctx.Err() != nil || len(points) == 0 {
		return res, err
	}
	if werr := r.record(a, res, points, began); werr != nil {
		// The trial itself succeeded; a lost record must not fail it.
		r.logger().Error("recording the run failed", zap.Uint64("trial", a.GetTrial().GetId()), zap.Error(werr))
	}
	return res, nil
}

func (r *RecordingRunner) logger() *zap.Logger {
	if r.Logger == nil {
		return zap.NewNop()
	}
	return r.Logger
}

func (r *RecordingRunner) record(a *pb.Assignment, res RunResult, points []sim.Point, began time.Time) error {
	t, sc := a.GetTrial(), a.GetScale()
	req := sim.Request{
		Domains: a.Domains, Mixture: t.GetMixture(), Scale: sc.GetName(), Params: sc.GetParams(),
		FlopsPerStep: sc.GetFlopsPerStep(), TokensPerStep: sc.GetTokensPerStep(),
		Steps: t.GetSteps(), EvalEvery: a.EvalEvery, Seed: a.Seed,
	}
	// A real run's own measurements beat the spec's nominal numbers.
	if res.Params > 0 {
		req.Params = res.Params
	}
	if res.TokensPerStep > 0 {
		req.TokensPerStep = res.TokensPerStep
	}
	if res.FlopsPerStep > 0 {
		req.FlopsPerStep = res.FlopsPerStep
	}
	source := map[string]any{
		"host": r.Hostname, "study_id": t.GetStudyId(), "trial_id": t.GetId(), "attempt": a.Attempt,
		"seed": a.Seed, "eval_every": a.EvalEvery, "recorded_at": began.UTC().Format(time.RFC3339),
	}
	if res.SourceRun != "" {
		source["replayed_run"] = res.SourceRun
	}
	for k, v := range res.Provenance {
		source[k] = v
	}
	// The start time keeps ids unique when a fresh coordinator database reuses trial ids.
	id := fmt.Sprintf("%s-study%d-trial%d-a%d-%s", r.Hostname, t.GetStudyId(), t.GetId(), a.Attempt,
		began.UTC().Format("20060102T150405Z"))
	run := sim.NewRecordedRun(id, req, points, source)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := sim.WriteRecordedRun(r.File, run); err != nil {
		return err
	}
	if err := r.File.Sync(); err != nil {
		return fmt.Errorf("sync recording: %w", err)
	}
	return nil
}
