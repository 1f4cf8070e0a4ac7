package dashboard

import (
	"net/http/httptest"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The recommendation's basis reaches the page's JSON, and each worker says what it is: a
// worker without an identity counts as real, as the scheduler's selector counts it.
func TestBasisAndWorkerKindInJSON(t *testing.T) {
	src := newFakeSource()
	src.workers[1].Identity = &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_SIMULATED, SimSource: "synthetic"}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	var studies []studyJSON
	getJSON(t, srv, "/api/studies", &studies)
	r := studies[0].Recommendation
	if r == nil || !r.HasInterval || r.TargetObserved || r.Label != simRec.Label {
		t.Errorf("recommendation = %+v, want the basis of %v", r, simRec)
	}
	var workers []workerJSON
	getJSON(t, srv, "/api/workers", &workers)
	if len(workers) != 3 || workers[0].Kind != "real" || workers[1].Kind != "simulated" || workers[1].SimSource != "synthetic" {
		t.Errorf("workers = %+v", workers)
	}
}
