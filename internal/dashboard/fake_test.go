package dashboard

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// fakeSource is a simulated study's data, shaped like what the scheduler returns: a running
// five-domain study across three scales with succeeded, running, failed, stopped and
// pending trials and a recommendation, and a small completed study without one.
type fakeSource struct {
	studies []*pb.StudyStatus
	trials  map[uint64][]*pb.Trial // by study
	points  map[uint64][]*pb.CurvePoint
	workers []*pb.Worker
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) ListStudies(context.Context) ([]*pb.StudyStatus, error) { return f.studies, nil }

func (f *fakeSource) Trials(_ context.Context, studyID uint64, state pb.TrialState, scale string) ([]*pb.Trial, error) {
	var out []*pb.Trial
	for _, t := range f.trials[studyID] {
		if (state == pb.TrialState_TRIAL_STATE_UNSPECIFIED || t.State == state) && (scale == "" || t.Scale == scale) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *fakeSource) Trial(_ context.Context, id uint64) (*pb.Trial, []*pb.CurvePoint, error) {
	for _, ts := range f.trials {
		for _, t := range ts {
			if t.Id == id {
				return t, f.points[id], nil
			}
		}
	}
	return nil, nil, fmt.Errorf("trial %d: not found", id)
}

func (f *fakeSource) Workers(context.Context) ([]*pb.Worker, error) { return f.workers, nil }

var (
	simDomains = []string{"wikipedia", "stackexchange", "github", "arxiv", "book"}
	simScales  = []*pb.Scale{
		{Name: "s20m", Params: 20e6, FlopsPerStep: 6 * 20e6 * 65536, TokensPerStep: 65536},
		{Name: "s60m", Params: 60e6, FlopsPerStep: 6 * 60e6 * 65536, TokensPerStep: 65536},
		{Name: "s150m", Params: 150e6, FlopsPerStep: 6 * 150e6 * 131072, TokensPerStep: 131072},
	}
	simRec = &pb.Recommendation{StudyId: 1, Mixture: []float64{0.31, 0.24, 0.19, 0.16, 0.10},
		Value: 3.1187, Lower: 3.0744, Upper: 3.1631, Basis: "posterior mean", Trials: 20,
		HasInterval: true, Label: "extrapolated from smaller scales and shorter runs: no trial at the target (s150m, 20000 steps) has finished"}
)

const (
	simTrials   = 24
	simWithPts  = 23 // the last trial is pending, without points
	simT0       = int64(1_760_000_000_000)
	simStepsPer = 250
)

// simLoss is a scaling-law-shaped curve whose floor depends on the mixture and the scale.
func simLoss(mix []float64, scale int, step int64) float64 {
	ideal := simRec.Mixture
	d := 0.0
	for i := range mix {
		d += (mix[i] - ideal[i]) * (mix[i] - ideal[i])
	}
	floor := 3.3 - 0.25*float64(scale) + 4*d
	return floor + 6.5*math.Pow(float64(step)/100+1, -0.55)
}

func newFakeSource() *fakeSource {
	rng := rand.New(rand.NewPCG(1, 2))
	spec := &pb.StudySpec{
		Name: "slimpajama-5dom", Policy: "mfbo", Seed: 7, MaxParallel: 3, BudgetFlops: 2e19,
		Steps: []int64{2000, 5000, 20000}, Scales: simScales,
		Objective: &pb.Objective{Metric: "mean_ce"}, Target: &pb.Fidelity{Scale: "s150m", Steps: 20000},
	}
	for _, d := range simDomains {
		spec.Domains = append(spec.Domains, &pb.Domain{Name: d})
	}
	f := &fakeSource{trials: map[uint64][]*pb.Trial{}, points: map[uint64][]*pb.CurvePoint{}}
	byState := map[string]int32{}
	spent := 0.0
	for i := 1; i <= simTrials; i++ {
		sc := []int{0, 0, 1, 0, 1, 2}[i%6]
		steps := []int64{2000, 5000, 20000}[sc]
		mix := make([]float64, len(simDomains))
		sum := 0.0
		for j := range mix {
			mix[j] = rng.ExpFloat64()
			sum += mix[j]
		}
		for j := range mix {
			mix[j] /= sum
		}
		t := &pb.Trial{
			Id: uint64(i), StudyId: 1, Mixture: mix, Scale: simScales[sc].Name, Steps: steps,
			State: pb.TrialState_TRIAL_STATE_SUCCEEDED, Attempt: 1, WorkerId: uint64(1 + i%3),
			CreateTimeUnixMs: simT0 + int64(i)*60_000, StartTimeUnixMs: simT0 + int64(i)*60_000 + 500,
		}
		done := steps
		switch i {
		case 7:
			t.State, t.FailureReason = pb.TrialState_TRIAL_STATE_FAILED, "oom: CUDA out of memory at step 1250"
			done = 1250
		case 11:
			t.State = pb.TrialState_TRIAL_STATE_STOPPED // stopped early by the policy
			done = steps / 2
		case 21, 22, 23:
			t.State = pb.TrialState_TRIAL_STATE_RUNNING
			done = steps / 3
		case simTrials:
			t.State, t.Attempt, t.WorkerId = pb.TrialState_TRIAL_STATE_PENDING, 0, 0
			done = 0
		}
		var pts []*pb.CurvePoint
		for s := int64(simStepsPer); s <= done; s += simStepsPer {
			v := simLoss(mix, sc, s) + 0.01*rng.NormFloat64()
			pts = append(pts, &pb.CurvePoint{
				Seq: uint64(len(pts) + 1), Step: s, Tokens: s * simScales[sc].TokensPerStep,
				TrainLoss: v + 0.05, Eval: map[string]float64{"mean_ce": v}, WallTimeS: float64(s) / 20,
			})
		}
		if len(pts) > 0 {
			last := pts[len(pts)-1]
			t.StepsDone, t.LastSeq, t.HasValue, t.LastValue = last.Step, last.Seq, true, last.Eval["mean_ce"]
			f.points[t.Id] = pts
		}
		if t.State != pb.TrialState_TRIAL_STATE_RUNNING && t.State != pb.TrialState_TRIAL_STATE_PENDING {
			t.EndTimeUnixMs = simT0 + int64(i)*60_000 + 30_000
		}
		spent += float64(t.StepsDone) * simScales[sc].FlopsPerStep
		byState[trialState(t.State)]++
		f.trials[1] = append(f.trials[1], t)
	}
	f.studies = append(f.studies, &pb.StudyStatus{
		Study: &pb.Study{Id: 1, Spec: spec, State: pb.StudyState_STUDY_STATE_RUNNING, SpentFlops: spent,
			TrialsCreated: simTrials, CreateTimeUnixMs: simT0},
		TrialsByState: byState, CommittedFlops: 3e18, Recommendation: simRec,
	})

	small := &pb.StudySpec{Name: "smoke <b>test</b>", Policy: "random", BudgetFlops: 1e17, Steps: []int64{2000},
		Scales: simScales[:1], Objective: &pb.Objective{Metric: "train_loss"}, Target: &pb.Fidelity{Scale: "s20m", Steps: 2000},
		Domains: []*pb.Domain{{Name: "a"}, {Name: "b"}}}
	f.studies = append(f.studies, &pb.StudyStatus{
		Study: &pb.Study{Id: 2, Spec: small, State: pb.StudyState_STUDY_STATE_COMPLETED, EndReason: "max trials reached",
			CreateTimeUnixMs: simT0, EndTimeUnixMs: simT0 + 1000},
		TrialsByState: map[string]int32{},
	})
	f.trials[2] = nil

	for i := 1; i <= 3; i++ {
		w := &pb.Worker{Id: uint64(i), Hostname: fmt.Sprintf("gpu-node-%02d", i), State: pb.WorkerState_WORKER_STATE_ALIVE,
			RegisterTimeUnixMs: simT0, LastHeartbeatUnixMs: time.Now().Add(-2 * time.Second).UnixMilli()}
		for g := range 4 {
			w.Gpus = append(w.Gpus, &pb.Gpu{Index: int32(g), Name: "NVIDIA H100 80GB HBM3", MemoryMib: 81559})
		}
		f.workers = append(f.workers, w)
	}
	f.workers[0].RunningTrials = []uint64{21, 22}
	f.workers[1].RunningTrials = []uint64{23}
	return f
}
