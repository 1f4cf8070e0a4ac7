package coordinator

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/scheduler"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// WorkerService serves workers.
type WorkerService struct {
	pb.UnimplementedWorkerServiceServer
	Sched *scheduler.Scheduler
}

var _ pb.WorkerServiceServer = (*WorkerService)(nil)

func (s *WorkerService) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	if err := validateRegister(req); err != nil {
		return nil, err
	}
	reg := scheduler.Registration{
		WorkerID: req.WorkerId, Hostname: req.Hostname, GPUs: req.Gpus, SimulatedCapacity: req.SimulatedCapacity,
		Identity: req.Identity,
	}
	for _, l := range req.Leases {
		reg.Claims = append(reg.Claims, scheduler.AttemptClaim{WorkerID: req.WorkerId, TrialID: l.TrialId, LeaseID: l.LeaseId, Attempt: l.Attempt})
	}
	id, err := s.Sched.Register(ctx, reg)
	if err != nil {
		return nil, toStatus(err)
	}
	cfg := s.Sched.Config()
	return &pb.RegisterResponse{
		WorkerId:            id,
		HeartbeatIntervalMs: cfg.HeartbeatInterval.Milliseconds(),
		LeaseTtlMs:          cfg.LeaseTTL.Milliseconds(),
		FenceAfterMs:        cfg.FenceAfter.Milliseconds(),
	}, nil
}

func (s *WorkerService) AcquireTrial(ctx context.Context, req *pb.AcquireTrialRequest) (*pb.AcquireTrialResponse, error) {
	if req.WorkerId == 0 {
		return nil, missing("worker_id")
	}
	a, err := s.Sched.AcquireStudyTrial(ctx, req.WorkerId, req.StudyId, time.Duration(req.WaitMs)*time.Millisecond)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.AcquireTrialResponse{Assignment: a}, nil
}

func held(workerID, trialID uint64, leaseID string, attempt int32) (scheduler.AttemptClaim, error) {
	switch {
	case workerID == 0:
		return scheduler.AttemptClaim{}, missing("worker_id")
	case trialID == 0:
		return scheduler.AttemptClaim{}, missing("trial_id")
	case leaseID == "":
		return scheduler.AttemptClaim{}, missing("lease_id")
	case attempt <= 0:
		return scheduler.AttemptClaim{}, missing("attempt")
	}
	return scheduler.AttemptClaim{WorkerID: workerID, TrialID: trialID, LeaseID: leaseID, Attempt: attempt}, nil
}

func (s *WorkerService) ReportPoints(ctx context.Context, req *pb.ReportPointsRequest) (*pb.ReportPointsResponse, error) {
	if err := validateReportPoints(req); err != nil {
		return nil, err
	}
	h, err := held(req.WorkerId, req.TrialId, req.LeaseId, req.Attempt)
	if err != nil {
		return nil, err
	}
	acked, stop, err := s.Sched.ReportPoints(ctx, h, req.Points)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReportPointsResponse{AckedSeq: acked, Stop: stop}, nil
}

func (s *WorkerService) FinishTrial(ctx context.Context, req *pb.FinishTrialRequest) (*pb.FinishTrialResponse, error) {
	if err := validateFinish(req); err != nil {
		return nil, err
	}
	h, err := held(req.WorkerId, req.TrialId, req.LeaseId, req.Attempt)
	if err != nil {
		return nil, err
	}
	if err := s.Sched.FinishTrial(ctx, h, req.FinalSeq, req.SourceRun, req.SourceDistance); err != nil {
		return nil, toStatus(err)
	}
	return &pb.FinishTrialResponse{}, nil
}

func (s *WorkerService) FailTrial(ctx context.Context, req *pb.FailTrialRequest) (*pb.FailTrialResponse, error) {
	if err := validateFail(req); err != nil {
		return nil, err
	}
	class, err := failureClassOf(req)
	if err != nil {
		return nil, err
	}
	h, err := held(req.WorkerId, req.TrialId, req.LeaseId, req.Attempt)
	if err != nil {
		return nil, err
	}
	if err := s.Sched.FailTrial(ctx, h, req.Reason, class); err != nil {
		return nil, toStatus(err)
	}
	return &pb.FailTrialResponse{}, nil
}

// maxReleasedLeases bounds a heartbeat's released_leases: a worker releases at most the
// attempts it ran when it fenced itself.
const maxReleasedLeases = 10_000

func (s *WorkerService) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if err := validateHeartbeat(req); err != nil {
		return nil, err
	}
	if req.WorkerId == 0 {
		return nil, missing("worker_id")
	}
	if n := len(req.ReleasedLeases); n > maxReleasedLeases {
		return nil, status.Errorf(codes.InvalidArgument, "released_leases: %d leases, at most %d", n, maxReleasedLeases)
	}
	stop, err := s.Sched.Heartbeat(ctx, req.WorkerId, heldLeases(req.WorkerId, req.Leases))
	if err != nil {
		return nil, toStatus(err)
	}
	// Released after renewing: a lease both listed and released (a worker's race) ends.
	if err := s.Sched.ReleaseLeases(ctx, req.WorkerId, heldLeases(req.WorkerId, req.ReleasedLeases)); err != nil {
		return nil, toStatus(err)
	}
	cfg := s.Sched.Config()
	resp := &pb.HeartbeatResponse{LeaseTtlMs: cfg.LeaseTTL.Milliseconds(), FenceAfterMs: cfg.FenceAfter.Milliseconds()}
	for _, h := range stop {
		resp.StopLeases = append(resp.StopLeases, &pb.HeldLease{TrialId: h.TrialID, LeaseId: h.LeaseID, Attempt: h.Attempt})
		//lint:ignore SA1019 filled for workers that predate stop_leases, until they are gone
		resp.StopTrials = append(resp.StopTrials, h.TrialID)
	}
	return resp, nil
}

func heldLeases(workerID uint64, leases []*pb.HeldLease) []scheduler.AttemptClaim {
	hs := make([]scheduler.AttemptClaim, 0, len(leases))
	for _, l := range leases {
		hs = append(hs, scheduler.AttemptClaim{WorkerID: workerID, TrialID: l.TrialId, LeaseID: l.LeaseId, Attempt: l.Attempt})
	}
	return hs
}
