package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
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

func TestFailTrial(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	h := heldOf(w, a)

	err := e.s.FailTrial(ctx, h, "", pb.FailureClass_FAILURE_CLASS_OOM)
	wantErr(t, err, ErrInvalid, "fail without a reason")
	err = e.s.FailTrial(ctx, h, strings.Repeat("x", MaxReasonBytes+1), pb.FailureClass_FAILURE_CLASS_OOM)
	wantErr(t, err, ErrInvalid, "fail with a reason over the limit")
	err = e.s.FailTrial(ctx, AttemptClaim{w, a.Trial.Id, "other", 1}, "boom", pb.FailureClass_FAILURE_CLASS_OOM)
	wantErr(t, err, ErrStaleLease, "fail with a wrong lease")
	if err := e.s.FailTrial(ctx, h, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Fatalf("FailTrial: %v", err)
	}
	tr, _ := e.trial(a.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_FAILED || tr.FailureReason != "oom: CUDA out of memory" {
		t.Errorf("failed trial: state %v reason %q", tr.State, tr.FailureReason)
	}

	b := e.mustAcquire(w)
	if err := e.s.FailTrial(ctx, heldOf(w, b), "exit status 1", pb.FailureClass_FAILURE_CLASS_UNSPECIFIED); err != nil {
		t.Fatalf("FailTrial: %v", err)
	}
	// A failure without a class is "other": not deterministic, so it is retried.
	tr, _ = e.trial(b.Trial.Id)
	if tr.State != pb.TrialState_TRIAL_STATE_PENDING || len(tr.ReasonHistory) != 1 ||
		tr.ReasonHistory[0] != "attempt 1: other: exit status 1" {
		t.Errorf("unclassified failure: state %v history %q, want pending with the reason", tr.State, tr.ReasonHistory)
	}
}

// FailTrial fails deterministic classes at once and retries the rest as new attempts up to
// the delivery limit; the study completes when its only trial ends.
func TestRetryPolicyByErrorClass(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		class     pb.FailureClass
		wantClass string // as recorded
		retried   bool
	}{
		{pb.FailureClass_FAILURE_CLASS_OOM, "oom", false},
		{pb.FailureClass_FAILURE_CLASS_DIVERGED, "diverged", false},
		{pb.FailureClass_FAILURE_CLASS_BAD_DATA, "bad_data", false},
		{pb.FailureClass_FAILURE_CLASS_BAD_INPUT, "bad_input", false},
		{pb.FailureClass_FAILURE_CLASS_OTHER, "other", true},
		{pb.FailureClass_FAILURE_CLASS_UNSPECIFIED, "other", true},
		{pb.FailureClass(99), "other", true}, // an unknown value (a newer worker) is retried
	} {
		t.Run("class="+tc.class.String(), func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w := e.register("w1", 1)
			w2 := e.register("w2", 1)
			st := e.createStudy(func(s *pb.StudySpec) { s.MaxTrials = 1 })
			var history []string
			var tr *pb.Trial
			for attempt := int32(1); ; attempt++ {
				holder := []uint64{w, w2}[attempt%2] // any worker may take the retry
				a := e.mustAcquire(holder)
				if a.Attempt != attempt {
					t.Fatalf("attempt %d leased as attempt %d", attempt, a.Attempt)
				}
				e.report(heldOf(holder, a), pts(1, 2))
				reason := fmt.Sprintf("boom %d", attempt)
				if err := e.s.FailTrial(ctx, heldOf(holder, a), reason, tc.class); err != nil {
					t.Fatalf("FailTrial: %v", err)
				}
				history = append(history, fmt.Sprintf("attempt %d: %s: %s", attempt, tc.wantClass, reason))
				tr, _ = e.trial(a.Trial.Id)
				if !slices.Equal(tr.ReasonHistory, history) {
					t.Fatalf("attempt %d: reason history %q, want %q", attempt, tr.ReasonHistory, history)
				}
				if !tc.retried || attempt == testMaxAttempt {
					break
				}
				if tr.State != pb.TrialState_TRIAL_STATE_PENDING || tr.LeaseId != "" || tr.WorkerId != 0 || len(tr.GpuIndices) != 0 {
					t.Fatalf("attempt %d failed with class %v: trial %v lease %q worker %d gpus %v, want pending and unleased",
						attempt, tc.class, tr.State, tr.LeaseId, tr.WorkerId, tr.GpuIndices)
				}
				if s := e.study(st.Id).Study; s.State != pb.StudyState_STUDY_STATE_RUNNING {
					t.Fatalf("study %v while its trial waits for a retry", s.State)
				}
			}
			switch {
			case !tc.retried:
				if tr.State != pb.TrialState_TRIAL_STATE_FAILED || tr.Attempt != 1 ||
					tr.FailureReason != tc.wantClass+": boom 1" {
					t.Errorf("class %q: trial %v attempt %d reason %q, want failed at attempt 1", tc.class, tr.State, tr.Attempt, tr.FailureReason)
				}
			default:
				if tr.State != pb.TrialState_TRIAL_STATE_LOST || tr.Attempt != testMaxAttempt ||
					!strings.Contains(tr.FailureReason, fmt.Sprintf("%d attempts", testMaxAttempt)) {
					t.Errorf("class %q: trial %v attempt %d reason %q, want lost after %d attempts",
						tc.class, tr.State, tr.Attempt, tr.FailureReason, testMaxAttempt)
				}
			}
			if tr.EndTimeUnixMs == 0 {
				t.Errorf("ended trial has no end time")
			}
			// The last trial ended and no more may be created: the study is over without
			// anyone asking for work.
			s := e.study(st.Id)
			// Its only trial gave no result, so it ended failed, not completed.
			if s.Study.State != pb.StudyState_STUDY_STATE_FAILED || !strings.HasPrefix(s.Study.EndReason, "max trials reached, but no trial produced a result") {
				t.Errorf("study %v (%q) after its only trial ended %v", s.Study.State, s.Study.EndReason, tr.State)
			}
			if a := e.acquire(w); a != nil {
				t.Errorf("trial %d leased after the study completed", a.Trial.Id)
			}
		})
	}
}

// Stored reasons spell a class by its short name; the names must stay those written
// before the enum existed, so that FailTrial's idempotency check matches old records.
func TestFailureClassName(t *testing.T) {
	for c, want := range map[pb.FailureClass]string{
		pb.FailureClass_FAILURE_CLASS_OOM:         "oom",
		pb.FailureClass_FAILURE_CLASS_DIVERGED:    "diverged",
		pb.FailureClass_FAILURE_CLASS_BAD_DATA:    "bad_data",
		pb.FailureClass_FAILURE_CLASS_BAD_INPUT:   "bad_input",
		pb.FailureClass_FAILURE_CLASS_OTHER:       "other",
		pb.FailureClass_FAILURE_CLASS_UNSPECIFIED: "other",
		pb.FailureClass(99):                       "other",
	} {
		if got := FailureClassName(c); got != want {
			t.Errorf("FailureClassName(%v) = %q, want %q", c, got, want)
		}
	}
}

// Finish and Fail are idempotent per attempt: repeating the call that ended an attempt
// (its answer lost in a crash) answers OK and changes nothing; another attempt's or
// another lease's call is still refused.
func TestEndTrialIdempotentPerAttempt(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })

	// A retryable failure requeues; its repeat answers OK before and after the retry
	// is leased, and the retry is untouched.
	a := heldOf(w, e.mustAcquire(w))
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Errorf("repeated retryable fail while pending: %v", err)
	}
	retry := heldOf(w, e.mustAcquire(w))
	if retry.TrialID != a.TrialID {
		t.Fatalf("leased trial %d, want the retry of %d", retry.TrialID, a.TrialID)
	}
	if err := e.s.FailTrial(ctx, a, "exit status 1", pb.FailureClass_FAILURE_CLASS_OTHER); err != nil {
		t.Errorf("repeated retryable fail after the retry was leased: %v", err)
	}
	err := e.s.FailTrial(ctx, a, "another reason", pb.FailureClass_FAILURE_CLASS_OTHER)
	wantErr(t, err, ErrStaleLease, "a different fail of the ended attempt")
	if tr, _ := e.trial(a.TrialID); tr.State != pb.TrialState_TRIAL_STATE_RUNNING || tr.LeaseId != retry.LeaseID || len(tr.ReasonHistory) != 1 {
		t.Fatalf("retry after repeats: %v lease %q history %q", tr.State, tr.LeaseId, tr.ReasonHistory)
	}

	// A deterministic failure fails the trial; its repeat answers OK.
	if err := e.s.FailTrial(ctx, retry, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailTrial(ctx, retry, "CUDA out of memory", pb.FailureClass_FAILURE_CLASS_OOM); err != nil {
		t.Errorf("repeated deterministic fail: %v", err)
	}
	err = e.s.FinishTrial(ctx, retry, 0, "", 0)
	wantErr(t, err, ErrStaleLease, "finish of a failed attempt")

	// A finish repeated answers OK; the trial stays succeeded with its points.
	b := heldOf(w, e.mustAcquire(w))
	e.report(b, []*pb.CurvePoint{{Seq: 1, Step: targetSteps / 2, TrainLoss: 2}, {Seq: 2, Step: targetSteps, TrainLoss: 1}})
	e.finish(b, 2)
	e.finish(b, 2)
	err = e.s.FailTrial(ctx, b, "late", pb.FailureClass_FAILURE_CLASS_OTHER)
	wantErr(t, err, ErrStaleLease, "fail of a finished attempt")
	if tr, points := e.trial(b.TrialID); tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || len(points) != 2 {
		t.Errorf("finished trial after repeats: %v with %d points", tr.State, len(points))
	}
}
