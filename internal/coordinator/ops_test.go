package coordinator

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

var simSelector = &pb.WorkerSelector{Kinds: []pb.WorkerKind{pb.WorkerKind_WORKER_KIND_SIMULATED}}

func (f *fixture) registerSim(t *testing.T, ctx context.Context, slots int32) uint64 {
	t.Helper()
	reg, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "sim", SimulatedCapacity: slots,
		Identity: &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_SIMULATED, SimSource: "synthetic"}})
	if err != nil {
		t.Fatal(err)
	}
	return reg.WorkerId
}

func (f *fixture) create(t *testing.T, ctx context.Context, mut func(*pb.StudySpec)) *pb.Study {
	t.Helper()
	spec := testSpec()
	spec.Workers = simSelector
	if mut != nil {
		mut(spec)
	}
	resp, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec})
	if err != nil {
		t.Fatalf("CreateStudy: %v", err)
	}
	return resp.Study
}

func (f *fixture) acquire(t *testing.T, ctx context.Context, w uint64) *pb.Assignment {
	t.Helper()
	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil {
		t.Fatalf("AcquireTrial: %v", err)
	}
	return acq.Assignment
}

// Register keeps the worker's identity, and a study that takes real workers only (the
// default) gives a simulated worker nothing.
func TestWorkerIdentityAndSelectorOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.registerSim(t, ctx, 1)
	ws, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(ws.Workers) != 1 || ws.Workers[0].GetIdentity().GetSimSource() != "synthetic" {
		t.Fatalf("ListWorkers = %v, %v; want the identity registered", ws, err)
	}
	if _, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: testSpec()}); err != nil {
		t.Fatal(err)
	}
	if a := f.acquire(t, ctx, w); a != nil {
		t.Fatalf("a simulated worker got trial %d of a study for real workers", a.Trial.Id)
	}
	sim := f.create(t, ctx, nil)
	if a := f.acquire(t, ctx, w); a == nil || a.Trial.StudyId != sim.Id {
		t.Fatalf("AcquireTrial = %v, want a trial of study %d", a, sim.Id)
	}
}

func TestFailureBudgetOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: func() *pb.StudySpec {
		s := testSpec()
		s.BudgetFlops = 1e9 // one step of the only scale
		return s
	}()})
	wantCode(t, err, codes.InvalidArgument, "budget_flops")
	_, err = f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: func() *pb.StudySpec {
		s := testSpec()
		s.MaxConsecutiveFailures = -1
		return s
	}()})
	wantCode(t, err, codes.InvalidArgument, "max_consecutive_failures")

	st := f.create(t, ctx, func(s *pb.StudySpec) { s.MaxConsecutiveFailures = 2 })
	w := f.registerSim(t, ctx, 1)
	for range 2 {
		a := f.acquire(t, ctx, w)
		if a == nil {
			t.Fatal("no trial")
		}
		if _, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId,
			Attempt: a.Attempt, Reason: "domain nosuch has no data", FailureClass: pb.FailureClass_FAILURE_CLASS_BAD_DATA}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: st.Id})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Status.Study; s.State != pb.StudyState_STUDY_STATE_FAILED || !strings.Contains(s.EndReason, "domain nosuch has no data") {
		t.Fatalf("study = %v (%q), want failed with the last failure's reason", s.State, s.EndReason)
	}
}

func TestLifecycleRPCs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st := f.create(t, ctx, nil)

	_, err := f.control.UpdateStudy(ctx, &pb.UpdateStudyRequest{})
	wantCode(t, err, codes.InvalidArgument, "study_id")
	_, err = f.control.UpdateStudy(ctx, &pb.UpdateStudyRequest{StudyId: st.Id, BudgetFlops: proto.Float64(-1)})
	wantCode(t, err, codes.InvalidArgument, "budget_flops")
	_, err = f.control.UpdateStudy(ctx, &pb.UpdateStudyRequest{StudyId: 99, MaxParallel: proto.Int32(2)})
	wantCode(t, err, codes.NotFound, "")
	up, err := f.control.UpdateStudy(ctx, &pb.UpdateStudyRequest{StudyId: st.Id, MaxParallel: proto.Int32(2), MaxTrials: proto.Int32(5)})
	if err != nil || up.Study.Spec.MaxParallel != 2 || up.Study.Spec.MaxTrials != 5 || up.Study.Spec.BudgetFlops != st.Spec.BudgetFlops {
		t.Fatalf("UpdateStudy = %v, %v", up, err)
	}

	_, err = f.control.AddTrial(ctx, &pb.AddTrialRequest{StudyId: st.Id, Scale: "small", Steps: 100})
	wantCode(t, err, codes.InvalidArgument, "mixture")
	_, err = f.control.AddTrial(ctx, &pb.AddTrialRequest{StudyId: st.Id, Mixture: []float64{0.5, 0.5}, Scale: "tiny", Steps: 100})
	wantCode(t, err, codes.InvalidArgument, "scale")
	_, err = f.control.AddTrial(ctx, &pb.AddTrialRequest{StudyId: 99, Mixture: []float64{0.5, 0.5}, Scale: "small", Steps: 100})
	wantCode(t, err, codes.NotFound, "")
	added, err := f.control.AddTrial(ctx, &pb.AddTrialRequest{StudyId: st.Id, Mixture: []float64{0.25, 0.75}, Scale: "small", Steps: 100})
	if err != nil {
		t.Fatal(err)
	}
	w := f.registerSim(t, ctx, 1)
	a := f.acquire(t, ctx, w)
	if a == nil || a.Trial.Id != added.Trial.Id || !a.Trial.Manual {
		t.Fatalf("first assignment %v, want the added trial %d", a, added.Trial.Id)
	}

	_, err = f.control.DeleteStudy(ctx, &pb.DeleteStudyRequest{StudyId: st.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := f.control.CancelStudy(ctx, &pb.CancelStudyRequest{StudyId: st.Id}); err != nil {
		t.Fatal(err)
	}
	del, err := f.control.DeleteStudy(ctx, &pb.DeleteStudyRequest{StudyId: st.Id})
	if err != nil || del.TrialsDeleted != 1 {
		t.Fatalf("DeleteStudy = %v, %v", del, err)
	}
	_, err = f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: st.Id})
	wantCode(t, err, codes.NotFound, "")

	_, err = f.control.ForgetWorker(ctx, &pb.ForgetWorkerRequest{})
	wantCode(t, err, codes.InvalidArgument, "worker_id")
	_, err = f.control.ForgetWorker(ctx, &pb.ForgetWorkerRequest{WorkerId: 99})
	wantCode(t, err, codes.NotFound, "")
	_, err = f.control.ForgetWorker(ctx, &pb.ForgetWorkerRequest{WorkerId: w})
	wantCode(t, err, codes.FailedPrecondition, "")
}

// A recommendation says what it rests on: a best observed value at a short run is labelled
// as observed there, without an interval.
func TestRecommendationBasisOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st := f.create(t, ctx, func(s *pb.StudySpec) {
		s.Policy = "random-mf"
		s.Steps = []int64{50, 100}
	})
	w := f.registerSim(t, ctx, 1)
	a := f.acquire(t, ctx, w)
	if _, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId,
		Attempt: a.Attempt, Points: []*pb.CurvePoint{{Seq: 1, Step: 10, TrainLoss: 3}}}); err != nil {
		t.Fatal(err)
	}
	r, err := f.control.GetRecommendation(ctx, &pb.GetRecommendationRequest{StudyId: st.Id})
	if err != nil {
		t.Fatal(err)
	}
	rec := r.Recommendation
	if !rec.ValueObserved || rec.HasInterval || rec.TargetObserved || rec.ObservedSteps != 10 ||
		!strings.HasPrefix(rec.Label, "observed at scale small after 10 steps, not at the target (small, 100 steps)") {
		t.Errorf("recommendation = %v", rec)
	}
}

func TestUnreportedObjectiveOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st := f.create(t, ctx, func(s *pb.StudySpec) {
		s.ExtraMetrics = []string{"arc_acc"}
		s.Objective = &pb.Objective{Metric: "arc_acc", Maximize: true}
	})
	w := f.registerSim(t, ctx, 1)
	a := f.acquire(t, ctx, w)
	if _, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId,
		Attempt: a.Attempt, Points: []*pb.CurvePoint{{Seq: 1, Step: 100, TrainLoss: 3, Eval: map[string]float64{"code_ce": 2}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId,
		Attempt: a.Attempt, FinalSeq: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: st.Id})
	if err != nil {
		t.Fatal(err)
	}
	want := `trial 1 finished without reporting the objective "arc_acc"; its curve reports: code_ce, train_loss`
	if s := got.Status.Study; s.State != pb.StudyState_STUDY_STATE_FAILED || s.EndReason != want {
		t.Errorf("study %v (%q), want failed: %s", s.State, s.EndReason, want)
	}
	if a := f.acquire(t, ctx, w); a != nil {
		t.Errorf("the failed study leased trial %d", a.Trial.Id)
	}
}
