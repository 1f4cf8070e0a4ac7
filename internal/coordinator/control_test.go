package coordinator

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if field != "" && !strings.HasPrefix(st.Message(), field+": ") {
		t.Errorf("message %q does not name %q", st.Message(), field)
	}
}

func TestCancelTrialOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	spec := testSpec()
	spec.MaxParallel = 2
	w := f.workerWithStudy(t, 2, spec)
	acquire := func() *pb.Assignment { t.Helper(); return f.mustAcquire(t, w) }
	report := func(a *pb.Assignment, seq uint64) *pb.ReportPointsResponse {
		t.Helper()
		rep, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{
			WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt,
			Points: []*pb.CurvePoint{{Seq: seq, Step: int64(10 * seq), TrainLoss: 1}},
		})
		if err != nil {
			t.Fatalf("ReportPoints: %v", err)
		}
		return rep
	}
	finish := func(a *pb.Assignment, final uint64) {
		t.Helper()
		if _, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{
			WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, FinalSeq: final,
		}); err != nil {
			t.Fatalf("FinishTrial: %v", err)
		}
	}

	done := acquire()
	for seq := uint64(1); seq <= 10; seq++ { // to step 100, the trial's steps
		report(done, seq)
	}
	finish(done, 10)
	running := acquire()
	if rep := report(running, 1); rep.Stop {
		t.Fatalf("stop before any cancel")
	}
	cancelled, err := f.control.CancelTrial(ctx, &pb.CancelTrialRequest{TrialId: running.Trial.Id})
	if err != nil || !cancelled.Trial.StopRequested {
		t.Fatalf("CancelTrial = %v, %v", cancelled, err)
	}
	if rep := report(running, 2); !rep.Stop || rep.AckedSeq != 2 {
		t.Fatalf("ReportPoints after the cancel = %v, want stop", rep)
	}
	finish(running, 2)
	got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: running.Trial.Id})
	if err != nil || got.Trial.State != pb.TrialState_TRIAL_STATE_STOPPED || len(got.Points) != 2 {
		t.Fatalf("GetTrial = %v, %v; want stopped with 2 points", got, err)
	}

	for _, tc := range []struct {
		name  string
		req   *pb.CancelTrialRequest
		code  codes.Code
		field string
	}{
		{"without id", &pb.CancelTrialRequest{}, codes.InvalidArgument, "trial_id"},
		{"unknown trial", &pb.CancelTrialRequest{TrialId: 999}, codes.NotFound, ""},
		{"succeeded trial", &pb.CancelTrialRequest{TrialId: done.Trial.Id}, codes.FailedPrecondition, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.control.CancelTrial(ctx, tc.req)
			wantCode(t, err, tc.code, tc.field)
		})
	}
	if got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: done.Trial.Id}); err != nil ||
		got.Trial.State != pb.TrialState_TRIAL_STATE_SUCCEEDED {
		t.Errorf("refused cancel changed the succeeded trial: %v, %v", got, err)
	}
}

func TestDrainWorkerOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.workerWithStudy(t, 1, testSpec())
	drained, err := f.control.DrainWorker(ctx, &pb.DrainWorkerRequest{WorkerId: w})
	if err != nil || drained.Worker.State != pb.WorkerState_WORKER_STATE_DRAINING || !drained.Worker.Draining {
		t.Fatalf("DrainWorker = %v, %v", drained, err)
	}
	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil || acq.Assignment != nil {
		t.Fatalf("AcquireTrial of a drained worker = %v, %v; want none", acq, err)
	}
	workers, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(workers.Workers) != 1 || workers.Workers[0].State != pb.WorkerState_WORKER_STATE_DRAINING {
		t.Fatalf("ListWorkers = %v, %v", workers, err)
	}
	undrained, err := f.control.DrainWorker(ctx, &pb.DrainWorkerRequest{WorkerId: w, Undrain: true})
	if err != nil || undrained.Worker.State != pb.WorkerState_WORKER_STATE_ALIVE || undrained.Worker.Draining {
		t.Fatalf("undrain = %v, %v", undrained, err)
	}
	acq, err = f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial after undrain = %v, %v", acq, err)
	}

	for _, tc := range []struct {
		name  string
		req   *pb.DrainWorkerRequest
		code  codes.Code
		field string
	}{
		{"without id", &pb.DrainWorkerRequest{}, codes.InvalidArgument, "worker_id"},
		{"undrain without id", &pb.DrainWorkerRequest{Undrain: true}, codes.InvalidArgument, "worker_id"},
		{"unknown worker", &pb.DrainWorkerRequest{WorkerId: 999}, codes.NotFound, ""},
		{"undrain unknown worker", &pb.DrainWorkerRequest{WorkerId: 999, Undrain: true}, codes.NotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.control.DrainWorker(ctx, tc.req)
			wantCode(t, err, tc.code, tc.field)
		})
	}
}
