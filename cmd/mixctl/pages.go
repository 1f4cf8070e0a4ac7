package main

import (
	"context"
	"fmt"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The coordinator pages its listings (a page stays under the message limit); these read
// every page. A token that comes back unchanged would loop forever, so it is an error.

func nextToken(rpc, prev, next string) (string, error) {
	if next != "" && next == prev {
		return "", fmt.Errorf("%s: the coordinator returned the same page token twice", rpc)
	}
	return next, nil
}

func listAllStudies(ctx context.Context, client pb.ControlServiceClient) ([]*pb.StudyStatus, error) {
	var all []*pb.StudyStatus
	token := ""
	for {
		resp, err := client.ListStudies(ctx, &pb.ListStudiesRequest{PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Studies...)
		if token, err = nextToken("ListStudies", token, resp.NextPageToken); err != nil || token == "" {
			return all, err
		}
	}
}

// listAllTrials reads every page of req's listing (its filters kept).
func listAllTrials(ctx context.Context, client pb.ControlServiceClient, req *pb.ListTrialsRequest) ([]*pb.Trial, error) {
	var all []*pb.Trial
	token := ""
	for {
		page := &pb.ListTrialsRequest{StudyId: req.StudyId, State: req.State, Scale: req.Scale, PageSize: req.PageSize, PageToken: token}
		resp, err := client.ListTrials(ctx, page)
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Trials...)
		if token, err = nextToken("ListTrials", token, resp.NextPageToken); err != nil || token == "" {
			return all, err
		}
	}
}

func listAllWorkers(ctx context.Context, client pb.ControlServiceClient) ([]*pb.Worker, error) {
	var all []*pb.Worker
	token := ""
	for {
		resp, err := client.ListWorkers(ctx, &pb.ListWorkersRequest{PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Workers...)
		if token, err = nextToken("ListWorkers", token, resp.NextPageToken); err != nil || token == "" {
			return all, err
		}
	}
}
