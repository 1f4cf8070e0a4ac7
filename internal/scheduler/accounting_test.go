package scheduler

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// wallPoint is point seq at step 10*seq after wall seconds of its attempt.
func wallPoint(seq uint64, wall float64) *pb.CurvePoint {
	return &pb.CurvePoint{Seq: seq, Step: int64(10 * seq), TrainLoss: 1, WallTimeS: wall}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// GPU time is the reported wall time times the GPUs the attempt holds, summed over
// attempts into the trial and the study.
func TestGPUHours(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		spec  func(*pb.StudySpec)
		gpus  []*pb.Gpu
		sim   int32
		perS  float64 // GPU seconds per wall second
		place int
	}{
		{"two-GPU scale", pairSpec(1), []*pb.Gpu{gpu(0, bigGPUMiB), gpu(1, bigGPUMiB)}, 0, 2, 2},
		{"one-GPU scale on a GPU worker", nil, []*pb.Gpu{gpu(0, bigGPUMiB), gpu(1, bigGPUMiB)}, 0, 1, 1},
		{"simulated worker", nil, nil, 2, 1, 1},
		{"CPU worker", nil, nil, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w, err := e.s.Register(ctx, Registration{Hostname: "w", GPUs: tc.gpus, SimulatedCapacity: tc.sim})
			if err != nil {
				t.Fatal(err)
			}
			st := e.createStudy(tc.spec)
			a := e.mustAcquire(w)
			if len(a.GpuIndices) != tc.place {
				t.Fatalf("placed on %v, want %d GPUs", a.GpuIndices, tc.place)
			}
			h := heldOf(w, a)
			check := func(what string, wantSeconds float64) {
				t.Helper()
				tr, _ := e.trial(a.Trial.Id)
				if !near(tr.GpuSeconds, wantSeconds) {
					t.Errorf("%s: trial gpu_seconds %v, want %v", what, tr.GpuSeconds, wantSeconds)
				}
				if got := e.study(st.Id).Study.SpentGpuHours; !near(got, wantSeconds/3600) {
					t.Errorf("%s: study spent_gpu_hours %v, want %v", what, got, wantSeconds/3600)
				}
			}
			check("before any point", 0)
			e.report(h, []*pb.CurvePoint{wallPoint(1, 100), wallPoint(2, 250)})
			check("first attempt", 250*tc.perS)
			// A re-sent batch is not charged twice; an overlapping one only for what is new.
			e.report(h, []*pb.CurvePoint{wallPoint(1, 100), wallPoint(2, 250)})
			e.report(h, []*pb.CurvePoint{wallPoint(2, 250), wallPoint(3, 400)})
			check("re-sent and overlapping batches", 400*tc.perS)
			if err := e.s.FailTrial(ctx, h, "node lost", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
				t.Fatal(err)
			}
			check("after the failure", 400*tc.perS)

			// The next attempt's wall time starts from zero and adds to the total.
			b := e.mustAcquire(w)
			if b.Trial.Id != a.Trial.Id || b.Attempt != 2 {
				t.Fatalf("leased trial %d attempt %d, want the retry", b.Trial.Id, b.Attempt)
			}
			h2 := heldOf(w, b)
			e.report(h2, []*pb.CurvePoint{wallPoint(1, 50)})
			check("second attempt", 450*tc.perS)
			// The last point reaches the trial's steps: a finish short of them is refused.
			e.report(h2, []*pb.CurvePoint{{Seq: 2, Step: b.Trial.Steps, TrainLoss: 1, WallTimeS: 80}})
			e.finish(h2, 2)
			check("finished", 480*tc.perS)
		})
	}
}

// Workers report their trials' points at the same time; the reports share transactions
// (store Batch) and each point, and its compute, is committed exactly once, also when a
// batch is sent twice at once.
func TestConcurrentReportsCommitOnce(t *testing.T) {
	ctx := context.Background()
	const (
		workers   = 8
		points    = 20 // step 10*seq: the trial's 200 steps
		batchSize = 2
	)
	e := newEnv(t, withFakePolicy())
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = workers })
	held := make([]AttemptClaim, workers)
	for i := range held {
		w := e.register(fmt.Sprintf("w%d", i), 1)
		held[i] = heldOf(w, e.mustAcquire(w))
	}

	errs := make(chan error, workers*points*2)
	var wg sync.WaitGroup
	for _, h := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := uint64(1); from <= points; from += batchSize {
				batch := make([]*pb.CurvePoint, 0, batchSize)
				for s := from; s < from+batchSize; s++ {
					batch = append(batch, wallPoint(s, float64(s)))
				}
				// The same batch twice at once, as a worker retrying a call whose
				// answer was lost.
				var twice sync.WaitGroup
				for range 2 {
					twice.Add(1)
					go func() {
						defer twice.Done()
						acked, _, err := e.s.ReportPoints(ctx, h, batch)
						if err == nil && acked != from+batchSize-1 {
							err = fmt.Errorf("trial %d: acked %d, want %d", h.TrialID, acked, from+batchSize-1)
						}
						if err != nil {
							errs <- err
						}
					}()
				}
				twice.Wait()
			}
			if err := e.s.FinishTrial(ctx, h, points, "", 0); err != nil {
				errs <- fmt.Errorf("trial %d: FinishTrial: %w", h.TrialID, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for _, h := range held {
		tr, pts := e.trial(h.TrialID)
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.LastSeq != points || tr.StepsDone != 10*points || len(pts) != points {
			t.Errorf("trial %d: %v last_seq %d steps_done %d, %d points", tr.Id, tr.State, tr.LastSeq, tr.StepsDone, len(pts))
			continue
		}
		for i, p := range pts {
			if p.Seq != uint64(i+1) || p.Step != int64(10*(i+1)) {
				t.Errorf("trial %d point %d: seq %d step %d", tr.Id, i, p.Seq, p.Step)
			}
		}
		if !near(tr.GpuSeconds, points) {
			t.Errorf("trial %d gpu_seconds %v, want %v", tr.Id, tr.GpuSeconds, float64(points))
		}
	}
	s := e.study(st.Id).Study
	if want := float64(workers * 10 * points * smallFlops); s.SpentFlops != want {
		t.Errorf("spent_flops %v, want %v", s.SpentFlops, want)
	}
	if want := float64(workers*points) / 3600; !near(s.SpentGpuHours, want) {
		t.Errorf("spent_gpu_hours %v, want %v", s.SpentGpuHours, want)
	}
}
