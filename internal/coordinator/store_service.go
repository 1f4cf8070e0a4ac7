package coordinator

import (
	"context"

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
