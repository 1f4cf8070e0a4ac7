package coordinator

import (
	"context"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// ControlService serves operators.
type ControlService struct {
	pb.UnimplementedControlServiceServer
	Sched *scheduler.Scheduler
	// DB is the scheduler's store, for its health and verification (store_service.go);
	// nil answers those RPCs with Unavailable.
	DB *store.DB
}

var _ pb.ControlServiceServer = (*ControlService)(nil)

func (s *ControlService) CreateStudy(ctx context.Context, req *pb.CreateStudyRequest) (*pb.CreateStudyResponse, error) {
	if req.Spec == nil {
		return nil, missing("spec")
	}
	st, err := s.Sched.CreateStudy(ctx, req.Spec)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CreateStudyResponse{Study: st}, nil
}

func (s *ControlService) GetStudy(ctx context.Context, req *pb.GetStudyRequest) (*pb.GetStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	st, err := s.Sched.StudyStatus(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetStudyResponse{Status: st}, nil
}

// ListStudies returns one page of studies: only its studies are read and summarised.
func (s *ControlService) ListStudies(ctx context.Context, req *pb.ListStudiesRequest) (*pb.ListStudiesResponse, error) {
	page, err := pageOf(req.PageSize, req.PageToken)
	if err != nil {
		return nil, err
	}
	studies, more, err := s.Sched.StudiesPage(ctx, page)
	if err != nil {
		return nil, toStatus(err)
	}
	studies, next := trimPage(studies, more, func(st *pb.StudyStatus) uint64 { return st.GetStudy().GetId() })
	return &pb.ListStudiesResponse{Studies: studies, NextPageToken: next}, nil
}

func (s *ControlService) ListTrials(ctx context.Context, req *pb.ListTrialsRequest) (*pb.ListTrialsResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	if err := validateListTrials(req); err != nil {
		return nil, err
	}
	page, err := pageOf(req.PageSize, req.PageToken)
	if err != nil {
		return nil, err
	}
	trials, more, err := s.Sched.TrialsPage(ctx, req.StudyId, req.State, req.Scale, page)
	if err != nil {
		return nil, toStatus(err)
	}
	trials, next := trimPage(trials, more, (*pb.Trial).GetId)
	return &pb.ListTrialsResponse{Trials: trials, NextPageToken: next}, nil
}

func (s *ControlService) GetTrial(ctx context.Context, req *pb.GetTrialRequest) (*pb.GetTrialResponse, error) {
	if req.TrialId == 0 {
		return nil, missing("trial_id")
	}
	t, pts, err := s.Sched.Trial(ctx, req.TrialId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetTrialResponse{Trial: t, Points: pts}, nil
}

func (s *ControlService) ListWorkers(ctx context.Context, req *pb.ListWorkersRequest) (*pb.ListWorkersResponse, error) {
	page, err := pageOf(req.PageSize, req.PageToken)
	if err != nil {
		return nil, err
	}
	ws, more, err := s.Sched.WorkersPage(ctx, page)
	if err != nil {
		return nil, toStatus(err)
	}
	ws, next := trimPage(ws, more, (*pb.Worker).GetId)
	return &pb.ListWorkersResponse{Workers: ws, NextPageToken: next}, nil
}

func (s *ControlService) PauseStudy(ctx context.Context, req *pb.PauseStudyRequest) (*pb.PauseStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	st, err := s.Sched.PauseStudy(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PauseStudyResponse{Study: st}, nil
}

func (s *ControlService) ResumeStudy(ctx context.Context, req *pb.ResumeStudyRequest) (*pb.ResumeStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	st, err := s.Sched.ResumeStudy(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ResumeStudyResponse{Study: st}, nil
}

func (s *ControlService) CancelStudy(ctx context.Context, req *pb.CancelStudyRequest) (*pb.CancelStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	st, err := s.Sched.CancelStudy(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CancelStudyResponse{Study: st}, nil
}

func (s *ControlService) GetRecommendation(ctx context.Context, req *pb.GetRecommendationRequest) (*pb.GetRecommendationResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	rec, err := s.Sched.Recommendation(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetRecommendationResponse{Recommendation: rec}, nil
}

func (s *ControlService) CancelTrial(ctx context.Context, req *pb.CancelTrialRequest) (*pb.CancelTrialResponse, error) {
	if req.TrialId == 0 {
		return nil, missing("trial_id")
	}
	t, err := s.Sched.CancelTrial(ctx, req.TrialId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CancelTrialResponse{Trial: t}, nil
}

func (s *ControlService) DrainWorker(ctx context.Context, req *pb.DrainWorkerRequest) (*pb.DrainWorkerResponse, error) {
	if req.WorkerId == 0 {
		return nil, missing("worker_id")
	}
	w, err := s.Sched.DrainWorker(ctx, req.WorkerId, req.Undrain)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DrainWorkerResponse{Worker: w}, nil
}

func (s *ControlService) UpdateStudy(ctx context.Context, req *pb.UpdateStudyRequest) (*pb.UpdateStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	st, err := s.Sched.UpdateStudy(ctx, req.StudyId, scheduler.StudyUpdate{
		BudgetFlops: req.BudgetFlops, MaxTrials: req.MaxTrials, MaxParallel: req.MaxParallel,
		MaxConsecutiveFailures: req.MaxConsecutiveFailures,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.UpdateStudyResponse{Study: st}, nil
}

func (s *ControlService) DeleteStudy(ctx context.Context, req *pb.DeleteStudyRequest) (*pb.DeleteStudyResponse, error) {
	if req.StudyId == 0 {
		return nil, missing("study_id")
	}
	n, err := s.Sched.DeleteStudy(ctx, req.StudyId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteStudyResponse{TrialsDeleted: int32(n)}, nil
}

func (s *ControlService) AddTrial(ctx context.Context, req *pb.AddTrialRequest) (*pb.AddTrialResponse, error) {
	switch {
	case req.StudyId == 0:
		return nil, missing("study_id")
	case len(req.Mixture) == 0:
		return nil, missing("mixture")
	case req.Scale == "":
		return nil, missing("scale")
	case req.Steps <= 0:
		return nil, missing("steps")
	}
	t, err := s.Sched.AddTrial(ctx, req.StudyId, req.Mixture, req.Scale, req.Steps)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.AddTrialResponse{Trial: t}, nil
}

func (s *ControlService) ForgetWorker(ctx context.Context, req *pb.ForgetWorkerRequest) (*pb.ForgetWorkerResponse, error) {
	if req.WorkerId == 0 {
		return nil, missing("worker_id")
	}
	if err := s.Sched.ForgetWorker(ctx, req.WorkerId); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ForgetWorkerResponse{}, nil
}

// backupChunk is the size of one Backup message: well under the default message limit.
const backupChunk = 1 << 20

func (s *ControlService) Backup(_ *pb.BackupRequest, stream pb.ControlService_BackupServer) error {
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&pb.BackupResponse{Chunk: b}) }}
	if _, err := s.Sched.Backup(w); err != nil {
		return toStatus(err)
	}
	return toStatus(w.flush())
}

// chunkWriter turns a byte stream into messages of backupChunk bytes.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(backupChunk-len(w.buf), len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == backupChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = nil
	return err
}
