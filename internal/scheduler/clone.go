package scheduler

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func cloneSpec(s *pb.StudySpec) *pb.StudySpec { return proto.Clone(s).(*pb.StudySpec) }
