package scheduler

import (
	"slices"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// workerKind is what a worker counts as for selection: a worker that registered without
// an identity (built before workers sent one) trains for real, so it counts as real.
func workerKind(w *pb.Worker) pb.WorkerKind {
	if k := w.GetIdentity().GetKind(); k != pb.WorkerKind_WORKER_KIND_UNSPECIFIED {
		return k
	}
	return pb.WorkerKind_WORKER_KIND_REAL
}

// acceptsWorker says whether a study's selector lets the worker run its trials: the
// worker's kind must be among the selector's kinds (none given: real workers only, so that
// a simulator never answers a real study) and the worker must carry every label given.
func acceptsWorker(sel *pb.WorkerSelector, w *pb.Worker) bool {
	kinds := sel.GetKinds()
	if len(kinds) == 0 {
		kinds = []pb.WorkerKind{pb.WorkerKind_WORKER_KIND_REAL}
	}
	if !slices.Contains(kinds, workerKind(w)) {
		return false
	}
	labels := w.GetIdentity().GetLabels()
	for k, v := range sel.GetLabels() {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Limits on a selector: it is part of the spec and crosses the wire.

// CheckIdentity bounds what a worker says about itself (it is stored and shown); the
// error names the field. Register checks it, and so does the gRPC adapter before it.
func CheckIdentity(id *pb.WorkerIdentity) error {
	if id == nil {
		return nil
	}
	if _, ok := pb.WorkerKind_name[int32(id.Kind)]; !ok {
		return invalid("identity.kind", "unknown kind %d", id.Kind)
	}
	if len(id.SimSource) > MaxSimSourceBytes {
		return invalid("identity.sim_source", "longer than %d bytes", MaxSimSourceBytes)
	}
	if err := CheckLabels("identity.labels", id.Labels); err != nil {
		return err
	}
	if in := id.Interpreter; in != nil {
		if len(in.Path) > MaxPathBytes {
			return invalid("identity.interpreter.path", "longer than %d bytes", MaxPathBytes)
		}
		for field, v := range map[string]string{"python_version": in.PythonVersion, "torch_version": in.TorchVersion, "cuda_version": in.CudaVersion} {
			if len(v) > MaxVersionBytes {
				return invalid("identity.interpreter."+field, "longer than %d bytes", MaxVersionBytes)
			}
		}
	}
	return nil
}
