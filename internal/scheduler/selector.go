package scheduler

import (
	"fmt"
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
const (
	maxSelectorLabels = 64
	maxLabelLength    = 256
)

// validateSelector checks a spec's worker selector.
func validateSelector(sel *pb.WorkerSelector) error {
	if sel == nil {
		return nil
	}
	if len(sel.Kinds) > 2 {
		return invalid("workers.kinds", "%d kinds, at most 2 (real, simulated)", len(sel.Kinds))
	}
	for i, k := range sel.Kinds {
		if k != pb.WorkerKind_WORKER_KIND_REAL && k != pb.WorkerKind_WORKER_KIND_SIMULATED {
			return invalid(fmt.Sprintf("workers.kinds[%d]", i), "%v is not WORKER_KIND_REAL or WORKER_KIND_SIMULATED", k)
		}
	}
	if len(sel.Labels) > maxSelectorLabels {
		return invalid("workers.labels", "%d labels, at most %d", len(sel.Labels), maxSelectorLabels)
	}
	for k, v := range sel.Labels {
		if k == "" || len(k) > maxLabelLength || len(v) > maxLabelLength {
			return invalid("workers.labels", "label %q: keys must be 1-%d characters and values at most %d", k, maxLabelLength, maxLabelLength)
		}
	}
	return nil
}

// validateIdentity bounds what a worker says about itself: it is stored and shown.
func validateIdentity(id *pb.WorkerIdentity) error {
	if id == nil {
		return nil
	}
	if _, ok := pb.WorkerKind_name[int32(id.Kind)]; !ok {
		return invalid("identity.kind", "unknown kind %d", id.Kind)
	}
	if len(id.SimSource) > 1024 {
		return invalid("identity.sim_source", "longer than 1024 characters")
	}
	if len(id.Labels) > maxSelectorLabels {
		return invalid("identity.labels", "%d labels, at most %d", len(id.Labels), maxSelectorLabels)
	}
	for k, v := range id.Labels {
		if k == "" || len(k) > maxLabelLength || len(v) > maxLabelLength {
			return invalid("identity.labels", "label %q: keys must be 1-%d characters and values at most %d", k, maxLabelLength, maxLabelLength)
		}
	}
	if in := id.Interpreter; in != nil {
		for field, v := range map[string]string{"path": in.Path, "python_version": in.PythonVersion, "torch_version": in.TorchVersion, "cuda_version": in.CudaVersion} {
			if len(v) > 1024 {
				return invalid("identity.interpreter."+field, "longer than 1024 characters")
			}
		}
	}
	return nil
}
