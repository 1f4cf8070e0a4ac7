package coordinator

//lint:file-ignore SA1019 the tests check the deprecated stop_trials that old workers read

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

type fixture struct {
	worker  pb.WorkerServiceClient
	control pb.ControlServiceClient
}

// newFixture serves the real services over an in-process connection, backed by a real
// scheduler and store.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	sched, err := scheduler.New(testutil.TempStore(t), scheduler.Config{LeaseTTL: time.Minute, MaxWait: time.Second})
	if err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	conn := testutil.Serve(t, func(srv *grpc.Server) {
		pb.RegisterWorkerServiceServer(srv, &WorkerService{Sched: sched})
		pb.RegisterControlServiceServer(srv, &ControlService{Sched: sched})
	}, nil).Conn
	return &fixture{worker: pb.NewWorkerServiceClient(conn), control: pb.NewControlServiceClient(conn)}
}

// workerWithStudy registers worker "w1" with capacity slots and creates a study from spec.
func (f *fixture) workerWithStudy(t *testing.T, capacity int32, spec *pb.StudySpec) uint64 {
	t.Helper()
	ctx := context.Background()
	reg, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "w1", SimulatedCapacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	return reg.WorkerId
}

// mustAcquire leases the next trial to worker w, failing the test when there is none.
func (f *fixture) mustAcquire(t *testing.T, w uint64) *pb.Assignment {
	t.Helper()
	acq, err := f.worker.AcquireTrial(context.Background(), &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial = %v, %v", acq, err)
	}
	return acq.Assignment
}

func testSpec() *pb.StudySpec {
	return &pb.StudySpec{
		Name:        "grpc",
		Domains:     []*pb.Domain{{Name: "wiki"}, {Name: "code"}},
		Scales:      []*pb.Scale{{Name: "small", Params: 1e6, FlopsPerStep: 1e9}},
		Steps:       []int64{100},
		Objective:   &pb.Objective{Metric: "train_loss"},
		Target:      &pb.Fidelity{Scale: "small", Steps: 100},
		BudgetFlops: 1e13,
		Seed:        3,
	}
}

func TestHappyPath(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reg, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "w1", SimulatedCapacity: 1})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if reg.WorkerId == 0 || reg.LeaseTtlMs != time.Minute.Milliseconds() || reg.HeartbeatIntervalMs <= 0 {
		t.Fatalf("Register = %v", reg)
	}
	created, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: testSpec()})
	if err != nil {
		t.Fatalf("CreateStudy: %v", err)
	}
	studyID := created.Study.Id

	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: reg.WorkerId})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial = %v, %v", acq, err)
	}
	a := acq.Assignment
	if a.Trial.StudyId != studyID || a.Attempt != 1 || a.LeaseId == "" {
		t.Fatalf("assignment: %v", a)
	}
	points := []*pb.CurvePoint{
		{Seq: 1, Step: 50, TrainLoss: 3, Eval: map[string]float64{"wiki_ce": 3.1}},
		{Seq: 2, Step: 100, TrainLoss: 2.5, Eval: map[string]float64{"wiki_ce": 2.6}},
	}
	rep, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{
		WorkerId: reg.WorkerId, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, Points: points,
	})
	if err != nil || rep.AckedSeq != 2 {
		t.Fatalf("ReportPoints = %v, %v", rep, err)
	}
	hb, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: reg.WorkerId,
		Leases: []*pb.HeldLease{{TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt}}})
	if err != nil || len(hb.StopTrials) != 0 {
		t.Fatalf("Heartbeat = %v, %v", hb, err)
	}
	if _, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{
		WorkerId: reg.WorkerId, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, FinalSeq: 2,
	}); err != nil {
		t.Fatalf("FinishTrial: %v", err)
	}

	got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: a.Trial.Id})
	if err != nil {
		t.Fatalf("GetTrial: %v", err)
	}
	if got.Trial.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || len(got.Points) != 2 ||
		got.Points[1].Step != 100 || got.Points[1].Eval["wiki_ce"] != 2.6 {
		t.Errorf("GetTrial = %v", got)
	}
	st, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: studyID})
	if err != nil {
		t.Fatalf("GetStudy: %v", err)
	}
	if st.Status.TrialsByState["succeeded"] != 1 || st.Status.Study.SpentFlops != 100*1e9 {
		t.Errorf("GetStudy = %v", st.Status)
	}
	if st.Status.Recommendation == nil || st.Status.Recommendation.Value != 2.5 {
		t.Errorf("recommendation = %v", st.Status.Recommendation)
	}
	trials, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: studyID})
	if err != nil || len(trials.Trials) != 1 {
		t.Errorf("ListTrials = %v, %v", trials, err)
	}
	workers, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(workers.Workers) != 1 || len(workers.Workers[0].RunningTrials) != 0 {
		t.Errorf("ListWorkers = %v, %v", workers, err)
	}
	studies, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{})
	if err != nil || len(studies.Studies) != 1 {
		t.Errorf("ListStudies = %v, %v", studies, err)
	}
}

func TestErrorCodes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reg, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "w1", SimulatedCapacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "w2", SimulatedCapacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, w2 := reg.WorkerId, other.WorkerId
	created, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: testSpec()})
	if err != nil {
		t.Fatal(err)
	}
	studyID := created.Study.Id
	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial = %v, %v", acq, err)
	}
	a := acq.Assignment
	tid, lease := a.Trial.Id, a.LeaseId
	pt := []*pb.CurvePoint{{Seq: 1, Step: 10, TrainLoss: 1}}
	badSpec := testSpec()
	badSpec.BudgetFlops = -1

	tests := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string // named at the start of the message
	}{
		{"create without a spec", func() error {
			_, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{})
			return err
		}, codes.InvalidArgument, "spec"},
		{"create with a bad spec", func() error {
			_, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: badSpec})
			return err
		}, codes.InvalidArgument, "budget_flops"},
		{"get study without id", func() error {
			_, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{})
			return err
		}, codes.InvalidArgument, "study_id"},
		{"get unknown study", func() error {
			_, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: 999})
			return err
		}, codes.NotFound, ""},
		{"list trials without id", func() error {
			_, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{})
			return err
		}, codes.InvalidArgument, "study_id"},
		{"list trials of unknown study", func() error {
			_, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: 999})
			return err
		}, codes.NotFound, ""},
		{"get trial without id", func() error {
			_, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{})
			return err
		}, codes.InvalidArgument, "trial_id"},
		{"get unknown trial", func() error {
			_, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: 999})
			return err
		}, codes.NotFound, ""},
		{"pause without id", func() error {
			_, err := f.control.PauseStudy(ctx, &pb.PauseStudyRequest{})
			return err
		}, codes.InvalidArgument, "study_id"},
		{"pause unknown study", func() error {
			_, err := f.control.PauseStudy(ctx, &pb.PauseStudyRequest{StudyId: 999})
			return err
		}, codes.NotFound, ""},
		{"resume without id", func() error {
			_, err := f.control.ResumeStudy(ctx, &pb.ResumeStudyRequest{})
			return err
		}, codes.InvalidArgument, "study_id"},
		{"cancel unknown study", func() error {
			_, err := f.control.CancelStudy(ctx, &pb.CancelStudyRequest{StudyId: 999})
			return err
		}, codes.NotFound, ""},
		{"recommendation without id", func() error {
			_, err := f.control.GetRecommendation(ctx, &pb.GetRecommendationRequest{})
			return err
		}, codes.InvalidArgument, "study_id"},
		{"recommendation without data", func() error {
			_, err := f.control.GetRecommendation(ctx, &pb.GetRecommendationRequest{StudyId: studyID})
			return err
		}, codes.FailedPrecondition, ""},
		{"register without hostname", func() error {
			_, err := f.worker.Register(ctx, &pb.RegisterRequest{})
			return err
		}, codes.InvalidArgument, "hostname"},
		{"acquire without worker id", func() error {
			_, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{})
			return err
		}, codes.InvalidArgument, "worker_id"},
		{"acquire by unknown worker", func() error {
			_, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: 999})
			return err
		}, codes.NotFound, ""},
		{"heartbeat without worker id", func() error {
			_, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{})
			return err
		}, codes.InvalidArgument, "worker_id"},
		{"heartbeat of unknown worker", func() error {
			_, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: 999})
			return err
		}, codes.NotFound, ""},
		{"report without worker id", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{TrialId: tid, LeaseId: lease, Attempt: 1, Points: pt})
			return err
		}, codes.InvalidArgument, "worker_id"},
		{"report without trial id", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, LeaseId: lease, Attempt: 1, Points: pt})
			return err
		}, codes.InvalidArgument, "trial_id"},
		{"report without lease", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: tid, Attempt: 1, Points: pt})
			return err
		}, codes.InvalidArgument, "lease_id"},
		{"report without attempt", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: tid, LeaseId: lease, Points: pt})
			return err
		}, codes.InvalidArgument, "attempt"},
		{"report without points", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: tid, LeaseId: lease, Attempt: 1})
			return err
		}, codes.InvalidArgument, "points"},
		{"report with a gap", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: tid, LeaseId: lease, Attempt: 1,
				Points: []*pb.CurvePoint{{Seq: 3, Step: 10}}})
			return err
		}, codes.InvalidArgument, "points[0].seq"},
		{"report on unknown trial", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: 999, LeaseId: lease, Attempt: 1, Points: pt})
			return err
		}, codes.NotFound, ""},
		{"report on a trial the worker does not hold", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w2, TrialId: tid, LeaseId: lease, Attempt: 1, Points: pt})
			return err
		}, codes.FailedPrecondition, ""},
		{"report under a stale lease", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: tid, LeaseId: "old", Attempt: 1, Points: pt})
			return err
		}, codes.FailedPrecondition, ""},
		{"finish with points missing", func() error {
			_, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: tid, LeaseId: lease, Attempt: 1, FinalSeq: 5})
			return err
		}, codes.FailedPrecondition, ""},
		{"finish without lease", func() error {
			_, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: tid, Attempt: 1})
			return err
		}, codes.InvalidArgument, "lease_id"},
		{"fail without reason", func() error {
			_, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: tid, LeaseId: lease, Attempt: 1})
			return err
		}, codes.InvalidArgument, "reason"},
		{"fail a trial the worker does not hold", func() error {
			_, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w2, TrialId: tid, LeaseId: lease, Attempt: 1, Reason: "x"})
			return err
		}, codes.FailedPrecondition, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st, ok := status.FromError(err)
			if !ok || st.Code() != tc.code {
				t.Fatalf("got %v, want code %v", err, tc.code)
			}
			if tc.field != "" && !strings.HasPrefix(st.Message(), tc.field+": ") {
				t.Errorf("message %q does not name %q", st.Message(), tc.field)
			}
		})
	}

	// None of the refused calls changed anything.
	got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: tid})
	if err != nil || got.Trial.State != pb.TrialState_TRIAL_STATE_RUNNING || len(got.Points) != 0 {
		t.Errorf("trial after refused calls: %v, %v", got, err)
	}
	studies, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{})
	if err != nil || len(studies.Studies) != 1 {
		t.Errorf("ListStudies = %v, %v", studies, err)
	}

	// Resuming a cancelled study is a failed precondition.
	if _, err := f.control.CancelStudy(ctx, &pb.CancelStudyRequest{StudyId: studyID}); err != nil {
		t.Fatal(err)
	}
	_, err = f.control.ResumeStudy(ctx, &pb.ResumeStudyRequest{StudyId: studyID})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resume a cancelled study: %v", err)
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{scheduler.ErrInvalid, codes.InvalidArgument},
		{scheduler.ErrNotFound, codes.NotFound},
		{scheduler.ErrStaleLease, codes.FailedPrecondition},
		{scheduler.ErrConflict, codes.FailedPrecondition},
		{scheduler.ErrNoRecommendation, codes.FailedPrecondition},
		{context.Canceled, codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{status.Error(codes.ResourceExhausted, "x"), codes.ResourceExhausted},
		{net.ErrClosed, codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.code {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, got, tc.code)
		}
	}
	if toStatus(nil) != nil {
		t.Errorf("toStatus(nil) != nil")
	}
}
