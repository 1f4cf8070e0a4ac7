package coordinator

//lint:file-ignore SA1019 the tests check the deprecated stop_trials that old workers read

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Over the wire: a heartbeat names the attempts to stop in stop_leases, exactly as it
// carried them (stop_trials keeps their ids for older workers); a retried FinishTrial
// answers OK; a released lease is requeued at once; released_leases is bounded.
func TestHeartbeatLeasesOverTheWire(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	spec := testSpec()
	spec.MaxTrials = 2
	w := f.workerWithStudy(t, 1, spec)
	acquire := func() *pb.HeldLease {
		t.Helper()
		a := f.mustAcquire(t, w)
		return &pb.HeldLease{TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt}
	}
	first := acquire()
	if _, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: first.TrialId, LeaseId: first.LeaseId,
		Attempt: first.Attempt, Reason: "exit status 1", FailureClass: pb.FailureClass_FAILURE_CLASS_OTHER}); err != nil {
		t.Fatal(err)
	}
	retry := acquire()
	hb, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: w, Leases: []*pb.HeldLease{first, retry}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hb.StopLeases) != 1 || !proto.Equal(hb.StopLeases[0], first) || len(hb.StopTrials) != 1 || hb.StopTrials[0] != first.TrialId {
		t.Fatalf("Heartbeat = %v; want only the first attempt stopped", hb)
	}

	if _, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: retry.TrialId, LeaseId: retry.LeaseId,
		Attempt: retry.Attempt, Points: []*pb.CurvePoint{{Seq: 1, Step: 100, TrainLoss: 2.5}}}); err != nil {
		t.Fatal(err)
	}
	finish := &pb.FinishTrialRequest{WorkerId: w, TrialId: retry.TrialId, LeaseId: retry.LeaseId, Attempt: retry.Attempt, FinalSeq: 1}
	for i := range 2 {
		if _, err := f.worker.FinishTrial(ctx, finish); err != nil {
			t.Fatalf("FinishTrial #%d: %v", i+1, err)
		}
	}

	second := acquire()
	if _, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: w, ReleasedLeases: []*pb.HeldLease{second}}); err != nil {
		t.Fatal(err)
	}
	got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: second.TrialId})
	if err != nil || got.Trial.State != pb.TrialState_TRIAL_STATE_PENDING {
		t.Fatalf("released trial = %v, %v; want pending", got.GetTrial(), err)
	}

	many := make([]*pb.HeldLease, maxReleasedLeases+1)
	for i := range many {
		many[i] = second
	}
	_, err = f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: w, ReleasedLeases: many})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Heartbeat with %d released leases: %v, want InvalidArgument", len(many), err)
	}
}
