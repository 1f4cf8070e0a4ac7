package coordinator

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// GetStoreHealth reports the store's commit failures since start.
func (s *ControlService) GetStoreHealth(context.Context, *pb.GetStoreHealthRequest) (*pb.GetStoreHealthResponse, error) {
	if s.DB == nil {
		return nil, status.Error(codes.Unavailable, "store health: no store attached")
	}
	h := s.DB.WriteHealth()
	resp := &pb.GetStoreHealthResponse{WriteFailures: h.Failures, LastWriteError: h.LastError}
	if !h.LastErrorAt.IsZero() {
		resp.LastWriteErrorUnixMs = h.LastErrorAt.UnixMilli()
	}
	if !h.LastOKAt.IsZero() {
		resp.LastWriteOkUnixMs = h.LastOKAt.UnixMilli()
	}
	return resp, nil
}

// maxVerifyProblem bounds each problem's text on the wire; the store already bounds
// their number.
const maxVerifyProblem = 1024

// VerifyStore reads and checks every record of the store (store.DB.Verify).
func (s *ControlService) VerifyStore(context.Context, *pb.VerifyStoreRequest) (*pb.VerifyStoreResponse, error) {
	if s.DB == nil {
		return nil, status.Error(codes.Unavailable, "verify store: no store attached")
	}
	start := time.Now()
	res, err := s.DB.Verify()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.VerifyStoreResponse{Records: res.Records, DurationMs: time.Since(start).Milliseconds()}
	for _, p := range res.Problems {
		msg := p.Error()
		if len(msg) > maxVerifyProblem {
			msg = msg[:maxVerifyProblem]
		}
		resp.Problems = append(resp.Problems, msg)
	}
	return resp, nil
}
