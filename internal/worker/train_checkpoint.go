package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// trialCheckpoint is a trial's folder under the checkpoint root: train.py's ckpt.pt, the
// identity of the run it belongs to (run.json), and the curve sent so far (curve.jsonl).
type trialCheckpoint struct {
	dir   string
	curve *os.File
}

// runIdentity is what must match for a checkpoint to be resumed; a folder left by another
// run (a fresh coordinator database reuses trial ids) is cleared instead.
type runIdentity struct {
	StudyID uint64    `json:"study_id"`
	TrialID uint64    `json:"trial_id"`
	Domains []string  `json:"domains"`
	Mixture []float64 `json:"mixture"`
	Preset  string    `json:"preset"`
	Steps   int64     `json:"steps"`
	Seed    uint64    `json:"seed"`
}

// storedPoint is one line of curve.jsonl.
type storedPoint struct {
	Step      int64              `json:"step"`
	Tokens    int64              `json:"tokens"`
	TrainLoss float64            `json:"train_loss"`
	Eval      map[string]float64 `json:"eval,omitempty"`
}

func openTrialCheckpoint(root string, a *pb.Assignment, spec gpuexec.TrainSpec) (*trialCheckpoint, error) {
	t := a.Trial
	// The folder is named from numbers only: nothing from the wire becomes a path.
	dir := filepath.Join(root, "study-"+strconv.FormatUint(t.StudyId, 10), "trial-"+strconv.FormatUint(t.Id, 10))
	id, err := json.Marshal(runIdentity{StudyID: t.StudyId, TrialID: t.Id, Domains: spec.Domains,
		Mixture: spec.Mixture, Preset: spec.Preset, Steps: spec.Steps, Seed: spec.Seed})
	if err != nil {
		return nil, fmt.Errorf("checkpoint identity: %w", err)
	}
	idPath := filepath.Join(dir, "run.json")
	if old, err := os.ReadFile(idPath); err == nil && string(old) != string(id) {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clear checkpoint folder of another run: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint folder: %w", err)
	}
	if err := os.WriteFile(idPath, id, 0o644); err != nil {
		return nil, fmt.Errorf("checkpoint identity: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "curve.jsonl"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint curve: %w", err)
	}
	return &trialCheckpoint{dir: dir, curve: f}, nil
}

// resume returns the stored points up to step (those the checkpoint covers) and keeps only
// them in the file; train.py writes the later ones again.
func (k *trialCheckpoint) resume(step int64, log *zap.Logger) []*pb.CurvePoint {
	var keep []*pb.CurvePoint
	if step > 0 {
		if _, err := k.curve.Seek(0, io.SeekStart); err == nil {
			sc := bufio.NewScanner(k.curve)
			sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
			for sc.Scan() {
				var sp storedPoint
				if json.Unmarshal(sc.Bytes(), &sp) != nil || sp.Step > step {
					break
				}
				if len(keep) > 0 && sp.Step <= keep[len(keep)-1].Step {
					break
				}
				keep = append(keep, &pb.CurvePoint{Step: sp.Step, Tokens: sp.Tokens, TrainLoss: sp.TrainLoss, Eval: sp.Eval})
			}
		}
		log.Info("resuming from checkpoint", zap.Int64("step", step), zap.Int("points_resent", len(keep)))
	}
	// store rewrites the kept points as they are sent.
	if err := k.curve.Truncate(0); err != nil {
		log.Warn("truncate stored curve", zap.Error(err))
	}
	if _, err := k.curve.Seek(0, io.SeekStart); err != nil {
		log.Warn("rewind stored curve", zap.Error(err))
	}
	return keep
}

// store appends a sent point. A failure only costs a resumed attempt its early points, so
// it is logged, not fatal.
func (k *trialCheckpoint) store(p *pb.CurvePoint, log *zap.Logger) {
	b, err := json.Marshal(storedPoint{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: p.Eval})
	if err == nil {
		_, err = k.curve.Write(append(b, '\n'))
	}
	if err != nil {
		log.Warn("store curve point for resuming", zap.Error(err))
	}
}

func (k *trialCheckpoint) close() { _ = k.curve.Close() }

// remove deletes the folder of a trial that will not be resumed. Safe on nil.
func (k *trialCheckpoint) remove(log *zap.Logger) {
	if k == nil {
		return
	}
	if err := os.RemoveAll(k.dir); err != nil {
		log.Warn("remove checkpoint folder", zap.Error(err))
	}
}
