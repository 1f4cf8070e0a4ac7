package scheduler

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A pool of mixtures at each scale (within code's bounds [0.1, 0.9]).
var (
	smallPool = [][]float64{{0.7, 0.3}, {0.5, 0.5}, {0.2, 0.8}}
	bigPool   = [][]float64{{0.6, 0.4}, {0.3, 0.7}}
)

func mixtures(ws [][]float64) []*pb.Mixture {
	var out []*pb.Mixture
	for _, w := range ws {
		out = append(out, &pb.Mixture{Weights: append([]float64(nil), w...)})
	}
	return out
}

func withPoolsAndPrior(spec *pb.StudySpec) {
	spec.Scales[0].Pool = mixtures(smallPool)
	spec.Scales[1].Pool = mixtures(bigPool)
	spec.PriorRuns = []*pb.PriorRun{
		{Scale: "big", Mixture: []float64{0.6, 0.4}, Steps: 100, SourceRun: "sweep-1",
			Curve: []*pb.CurvePoint{{Step: 50, TrainLoss: 3}, {Step: 100, TrainLoss: 2.5}}},
		{Scale: "small", Mixture: []float64{0.5, 0.5}, Steps: 200, SourceRun: "sweep-2",
			Curve: []*pb.CurvePoint{{Step: 200, TrainLoss: math.NaN()}, {Step: 210, TrainLoss: 2.1}}},
	}
}

// Pools and prior runs reach the policy from the first decision, cost nothing, and
// survive a restart (they are part of the stored spec).
func TestPoolsAndPriorReachThePolicy(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { withPoolsAndPrior(s); s.MaxParallel = 2 })
	check := func(when string) {
		t.Helper()
		w := e.register("w-"+when, 1)
		if a := e.acquire(w); a == nil {
			t.Fatalf("%s: no assignment", when)
		}
		req := e.policy.lastRequest(t)
		if got := req.Problem.Scales; len(got[0].Pool) != 3 || len(got[1].Pool) != 2 || got[1].Pool[1][1] != 0.7 {
			t.Errorf("%s: pools %v / %v", when, got[0].Pool, got[1].Pool)
		}
		if len(req.Prior) != 2 || req.Prior[0].Scale != 1 || !req.Prior[0].Done || len(req.Prior[0].Curve) != 2 ||
			req.Prior[0].Curve[1] != (bo.CurvePoint{Step: 100, Value: 2.5}) {
			t.Fatalf("%s: prior %+v", when, req.Prior)
		}
		if c := req.Prior[1].Curve; len(c) != 1 || c[0].Value != 2.1 {
			t.Errorf("%s: the NaN point of a prior run must be left out like a trial's: %v", when, c)
		}
		if spent := e.study(st.Id).Study.SpentFlops; spent != 0 {
			t.Errorf("%s: prior runs were charged: spent %v", when, spent)
		}
	}
	check("before")
	e.restart()
	check("after-restart")
}

// Every policy proposes only pool mixtures, and recommends one of the target's pool.
func TestEveryPolicyHonoursPools(t *testing.T) {
	for _, name := range bo.Names() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			st := e.createStudy(func(s *pb.StudySpec) {
				withPoolsAndPrior(s)
				s.Policy = name
				s.MaxTrials = 4
				s.BudgetFlops = 100 * targetCost
			})
			w := e.register("w", 1)
			for i := 0; i < 4; i++ {
				a := e.acquire(w)
				if a == nil {
					break
				}
				pool := smallPool
				if a.Trial.Scale == "big" {
					pool = bigPool
				}
				if !inPoolTest(pool, a.Trial.Mixture) {
					t.Fatalf("trial %d at %s: mixture %v is not in its pool %v", a.Trial.Id, a.Trial.Scale, a.Trial.Mixture, pool)
				}
				h := heldOf(w, a)
				e.report(h, []*pb.CurvePoint{{Seq: 1, Step: a.Trial.Steps, TrainLoss: 2 + a.Trial.Mixture[0]}})
				e.finish(h, 1)
			}
			rec, err := e.s.Recommendation(context.Background(), st.Id)
			if err != nil {
				t.Fatalf("recommendation: %v", err)
			}
			if !inPoolTest(smallPool, rec.Mixture) {
				t.Errorf("recommended %v, not in the target's pool %v", rec.Mixture, smallPool)
			}
		})
	}
}

func inPoolTest(pool [][]float64, w []float64) bool {
	for _, m := range pool {
		if math.Abs(m[0]-w[0]) < 1e-9 && math.Abs(m[1]-w[1]) < 1e-9 {
			return true
		}
	}
	return false
}

// A bad pool mixture or prior run is refused naming its field, and nothing is stored.
func TestPoolAndPriorRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		field string
		mut   func(*pb.StudySpec)
	}{
		{"scales[0].pool[1]", func(s *pb.StudySpec) { s.Scales[0].Pool[1].Weights = []float64{0.5, 0.6} }},
		{"scales[1].pool[0]", func(s *pb.StudySpec) { s.Scales[1].Pool[0].Weights = []float64{1} }},
		{"scales[0].pool[0][1]", func(s *pb.StudySpec) { s.Scales[0].Pool[0].Weights = []float64{0.95, 0.05} }}, // code below its 0.1 bound
		{"prior_runs[0].scale", func(s *pb.StudySpec) { s.PriorRuns[0].Scale = "huge" }},
		{"prior_runs[1].mixture", func(s *pb.StudySpec) { s.PriorRuns[1].Mixture = []float64{0.2, 0.3, 0.5} }},
		{"prior_runs[0].curve", func(s *pb.StudySpec) {
			s.PriorRuns[0].Curve = []*pb.CurvePoint{{Step: 100, Eval: map[string]float64{"other_ce": 1}}}
			s.Objective.Metric = "web_ce"
			s.ExtraMetrics = []string{"web_ce"}
		}},
		{"prior_runs[0].curve[1].step", func(s *pb.StudySpec) { s.PriorRuns[0].Curve[1].Step = 50 }},
		{"prior_runs[0].steps", func(s *pb.StudySpec) { s.PriorRuns[0].Steps = 0 }},
	} {
		spec := baseSpec()
		withPoolsAndPrior(spec)
		tc.mut(spec)
		_, err := e.s.CreateStudy(context.Background(), spec)
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want an error naming it", tc.field, err)
			continue
		}
		wantErr(t, err, ErrInvalid, tc.field)
	}
	if studies, err := e.s.ListStudies(context.Background()); err != nil || len(studies) != 0 {
		t.Fatalf("refused specs stored %d studies (%v)", len(studies), err)
	}
}
