package scheduler

import (
	"math"
	"slices"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Placement: which worker may run a study's trials (its selector) and on which of the
// worker's free GPUs a trial fits.

// virtualGPUMemoryMiB is the memory of a simulated worker's virtual GPUs: large enough for
// any scale, since a replay needs none.
const virtualGPUMemoryMiB = math.MaxInt64

// virtualGPU names a simulated worker's slots.
const virtualGPU = "virtual"

// gpuSlots returns the GPUs trials can be placed on: the worker's registered GPUs, or one
// virtual GPU per slot of a simulated worker.
func gpuSlots(w *pb.Worker) []*pb.Gpu {
	if w.SimulatedCapacity > 0 {
		slots := make([]*pb.Gpu, w.SimulatedCapacity)
		for i := range slots {
			slots[i] = &pb.Gpu{Index: int32(i), Name: virtualGPU, MemoryMib: virtualGPUMemoryMiB}
		}
		return slots
	}
	if len(w.Gpus) == 0 {
		// A worker that declares nothing runs one trial at a time (a CPU worker).
		return []*pb.Gpu{{Index: 0, Name: "cpu", MemoryMib: virtualGPUMemoryMiB}}
	}
	return w.Gpus
}

// freeGPUsLocked lists the worker's GPUs no lease holds. Callers hold s.mu.
func (s *Scheduler) freeGPUsLocked(w *pb.Worker) []*pb.Gpu {
	used := map[int32]bool{}
	for _, l := range s.leases {
		if l.workerID == w.Id {
			for _, g := range l.gpus {
				used[g] = true
			}
		}
	}
	var free []*pb.Gpu
	for _, g := range gpuSlots(w) {
		if !used[g.Index] {
			free = append(free, g)
		}
	}
	return free
}

// place picks GPUs for one trial at the scale from the free ones: as many as the scale
// needs (at least one), each with the memory it needs. Nil when the trial does not fit.
func place(free []*pb.Gpu, sc *pb.Scale) []int32 {
	need := max(int(sc.Gpus), 1)
	var picked []int32
	for _, g := range free {
		if g.MemoryMib >= sc.MinGpuMemoryMib {
			picked = append(picked, g.Index)
			if len(picked) == need {
				return picked
			}
		}
	}
	return nil
}

// placeOn places a trial at the scale on the worker's free GPUs. A simulated worker's
// virtual GPU is one trial slot: a replay runs simulated_capacity trials at once, whatever
// GPUs the scale needs.
func placeOn(w *pb.Worker, free []*pb.Gpu, sc *pb.Scale) []int32 {
	if w.SimulatedCapacity > 0 {
		return place(free, &pb.Scale{Name: sc.Name})
	}
	return place(free, sc)
}

func withoutGPUs(free []*pb.Gpu, taken []int32) []*pb.Gpu {
	var out []*pb.Gpu
	for _, g := range free {
		if !slices.Contains(taken, g.Index) {
			out = append(out, g)
		}
	}
	return out
}

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
