package scheduler

import (
	"context"
	"slices"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const (
	bigGPUMiB   = 80_000
	smallGPUMiB = 16_000
	pairMinMiB  = 40_000
)

func gpu(index int32, mib int64) *pb.Gpu {
	return &pb.Gpu{Index: index, Name: "test-gpu", MemoryMib: mib}
}

// registerGPUs registers a real worker with the given GPUs.
func (e *env) registerGPUs(host string, gpus ...*pb.Gpu) uint64 {
	e.t.Helper()
	id, err := e.s.Register(context.Background(), Registration{Hostname: host, GPUs: gpus})
	if err != nil {
		e.t.Fatalf("Register(%s): %v", host, err)
	}
	return id
}

// pairSpec makes the target a scale whose trials need two GPUs of at least pairMinMiB.
func pairSpec(maxParallel int32) func(*pb.StudySpec) {
	return func(s *pb.StudySpec) {
		s.Scales = append(s.Scales, &pb.Scale{
			Name: "pair", Params: 1e7, FlopsPerStep: smallFlops, Gpus: 2, MinGpuMemoryMib: pairMinMiB,
		})
		s.Target = &pb.Fidelity{Scale: "pair", Steps: targetSteps}
		s.MaxParallel = maxParallel
	}
}

func (e *env) trialsIn(studyID uint64, state pb.TrialState) []*pb.Trial {
	e.t.Helper()
	ts, err := e.s.Trials(context.Background(), studyID, state, "")
	if err != nil {
		e.t.Fatalf("Trials: %v", err)
	}
	return ts
}

func (e *env) runningByWorker() map[uint64][]uint64 {
	e.t.Helper()
	ws, err := e.s.Workers(context.Background())
	if err != nil {
		e.t.Fatalf("Workers: %v", err)
	}
	out := map[uint64][]uint64{}
	for _, w := range ws {
		out[w.Id] = w.RunningTrials
	}
	return out
}

func TestPlace(t *testing.T) {
	free := []*pb.Gpu{gpu(0, smallGPUMiB), gpu(3, bigGPUMiB), gpu(5, smallGPUMiB), gpu(7, bigGPUMiB)}
	for _, tc := range []struct {
		name  string
		free  []*pb.Gpu
		scale *pb.Scale
		want  []int32
	}{
		{"no needs takes the first GPU", free, &pb.Scale{}, []int32{0}},
		{"one GPU with memory", free, &pb.Scale{Gpus: 1, MinGpuMemoryMib: pairMinMiB}, []int32{3}},
		{"two GPUs with memory", free, &pb.Scale{Gpus: 2, MinGpuMemoryMib: pairMinMiB}, []int32{3, 7}},
		{"three GPUs of any memory", free, &pb.Scale{Gpus: 3}, []int32{0, 3, 5}},
		{"too few GPUs with the memory", free, &pb.Scale{Gpus: 3, MinGpuMemoryMib: pairMinMiB}, nil},
		{"more GPUs than there are", free, &pb.Scale{Gpus: 5}, nil},
		{"memory exactly the minimum", []*pb.Gpu{gpu(1, pairMinMiB)}, &pb.Scale{Gpus: 1, MinGpuMemoryMib: pairMinMiB}, []int32{1}},
		{"nothing free", nil, &pb.Scale{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := place(tc.free, tc.scale); !slices.Equal(got, tc.want) {
				t.Errorf("place = %v, want %v", got, tc.want)
			}
		})
	}
}

// A trial needing two GPUs with memory goes only to a worker with two such GPUs free; the
// GPUs it holds are not handed out again until it ends; a decided trial that fits no free
// GPUs of the asking worker waits pending for one it fits, and while it waits no more
// are decided for workers it does not fit.
func TestPlacementOnGPUNeeds(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	oneGPU := e.registerGPUs("one-gpu", gpu(0, bigGPUMiB))
	lowMem := e.registerGPUs("low-mem", gpu(0, smallGPUMiB), gpu(1, smallGPUMiB), gpu(2, bigGPUMiB))
	good := e.registerGPUs("good", gpu(0, bigGPUMiB), gpu(1, smallGPUMiB), gpu(2, bigGPUMiB), gpu(3, bigGPUMiB))
	st := e.createStudy(pairSpec(2))

	for _, w := range []uint64{oneGPU, lowMem} {
		if a := e.acquire(w); a != nil {
			t.Fatalf("worker %d without two free GPUs of %d MiB leased trial %d on GPUs %v",
				w, pairMinMiB, a.Trial.Id, a.GpuIndices)
		}
	}
	pending := e.trialsIn(st.Id, pb.TrialState_TRIAL_STATE_PENDING)
	if len(pending) != 1 {
		t.Fatalf("%d pending trials after the misfits asked, want 1: one waits, no pile-up", len(pending))
	}
	for _, p := range pending {
		if p.WorkerId != 0 || p.LeaseId != "" || p.Attempt != 0 || len(p.GpuIndices) != 0 || p.Scale != "pair" {
			t.Errorf("pending trial: %v", p)
		}
	}
	if got := e.study(st.Id).Study.TrialsCreated; got != 1 {
		t.Errorf("trials_created %d, want 1", got)
	}

	a := e.mustAcquire(good)
	if !slices.Equal(a.GpuIndices, []int32{0, 2}) || !slices.Equal(a.Trial.GpuIndices, []int32{0, 2}) {
		t.Fatalf("assignment on GPUs %v (trial says %v), want [0 2]: the first two with the memory",
			a.GpuIndices, a.Trial.GpuIndices)
	}
	if a.Trial.Id != pending[0].Id {
		t.Fatalf("leased trial %d, not the pending one %d", a.Trial.Id, pending[0].Id)
	}
	if a.Attempt != 1 || a.Scale.GetName() != "pair" {
		t.Errorf("assignment attempt %d scale %v", a.Attempt, a.Scale)
	}
	if tr, _ := e.trial(a.Trial.Id); !slices.Equal(tr.GpuIndices, []int32{0, 2}) || tr.WorkerId != good ||
		tr.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Fatalf("stored trial: %v", tr)
	}

	// GPUs 1 (too small) and 3 are free: the next decided trial does not fit and waits,
	// and nobody else fits it either.
	for _, w := range []uint64{good, oneGPU, lowMem} {
		if b := e.acquire(w); b != nil {
			t.Fatalf("worker %d leased trial %d on GPUs %v while GPUs 0 and 2 of worker %d are held",
				w, b.Trial.Id, b.GpuIndices, good)
		}
	}
	if got := e.runningByWorker(); !slices.Equal(got[good], []uint64{a.Trial.Id}) || len(got[oneGPU])+len(got[lowMem]) != 0 {
		t.Errorf("running trials by worker: %v", got)
	}

	// Ending the trial frees its GPUs for the trial that waited.
	waiting := e.trialsIn(st.Id, pb.TrialState_TRIAL_STATE_PENDING)
	if len(waiting) != 1 {
		t.Fatalf("%d trials waiting, want 1", len(waiting))
	}
	e.runToEnd(heldOf(good, a), targetSteps)
	b := e.mustAcquire(good)
	other := waiting[0].Id
	if b.Trial.Id != other || !slices.Equal(b.GpuIndices, []int32{0, 2}) || b.Attempt != 1 {
		t.Errorf("after the first ended: trial %d attempt %d on GPUs %v, want trial %d attempt 1 on [0 2]",
			b.Trial.Id, b.Attempt, b.GpuIndices, other)
	}
}

// Leases hold GPUs per worker: the same indices on another worker are free.
func TestPlacementIsPerWorker(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w1 := e.registerGPUs("w1", gpu(0, bigGPUMiB), gpu(1, bigGPUMiB))
	w2 := e.registerGPUs("w2", gpu(0, bigGPUMiB), gpu(1, bigGPUMiB))
	e.createStudy(pairSpec(4))
	a := e.mustAcquire(w1)
	b := e.mustAcquire(w2)
	if a.Trial.Id == b.Trial.Id {
		t.Fatalf("trial %d leased to two workers", a.Trial.Id)
	}
	for _, as := range []*pb.Assignment{a, b} {
		if !slices.Equal(as.GpuIndices, []int32{0, 1}) {
			t.Errorf("trial %d on GPUs %v, want [0 1]", as.Trial.Id, as.GpuIndices)
		}
	}
	for _, w := range []uint64{w1, w2} {
		if c := e.acquire(w); c != nil {
			t.Errorf("worker %d with both GPUs held leased trial %d on %v", w, c.Trial.Id, c.GpuIndices)
		}
	}
}

// A simulated worker has one virtual GPU per slot, with any memory: it runs
// simulated_capacity trials at once whatever the scale needs. A worker that declares
// neither GPUs nor a capacity runs one trial at a time.
func TestVirtualGPUs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int32
		spec     func(*pb.StudySpec)
		want     int
	}{
		{"simulated, one-GPU scale", 3, func(s *pb.StudySpec) { s.MaxParallel = 10 }, 3},
		{"simulated, two-GPU scale with memory", 3, pairSpec(10), 3},
		{"simulated capacity one, two-GPU scale", 1, pairSpec(10), 1},
		{"no GPUs and no capacity", 0, func(s *pb.StudySpec) { s.MaxParallel = 10 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withFakePolicy())
			w := e.register("w", tc.capacity)
			e.createStudy(tc.spec)
			var held []*pb.Assignment
			seen := map[int32]bool{}
			for range tc.want {
				a := e.mustAcquire(w)
				if len(a.GpuIndices) != 1 || seen[a.GpuIndices[0]] {
					t.Fatalf("trial %d on slots %v; want one slot not held already (held %v)", a.Trial.Id, a.GpuIndices, seen)
				}
				seen[a.GpuIndices[0]] = true
				held = append(held, a)
			}
			if a := e.acquire(w); a != nil {
				t.Fatalf("trial %d beyond %d at once, on slots %v", a.Trial.Id, tc.want, a.GpuIndices)
			}
			// Ending one frees its slot for the next.
			first := held[0]
			e.runToEnd(heldOf(w, first), first.Trial.Steps)
			next := e.mustAcquire(w)
			if !slices.Equal(next.GpuIndices, first.GpuIndices) {
				t.Errorf("next trial on slots %v, want the freed %v", next.GpuIndices, first.GpuIndices)
			}
		})
	}
}

func TestAcceptsWorker(t *testing.T) {
	sim := &pb.Worker{Identity: &pb.WorkerIdentity{Kind: simulated, Labels: map[string]string{"pool": "a"}}}
	realW := &pb.Worker{Identity: &pb.WorkerIdentity{Kind: real}}
	old := &pb.Worker{} // registered without an identity
	for _, tc := range []struct {
		name string
		sel  *pb.WorkerSelector
		w    *pb.Worker
		want bool
	}{
		{"default takes real", nil, realW, true},
		{"default takes an old worker as real", nil, old, true},
		{"default refuses simulated", nil, sim, false},
		{"simulated asked", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}}, sim, true},
		{"simulated only refuses real", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}}, realW, false},
		{"both kinds", &pb.WorkerSelector{Kinds: []pb.WorkerKind{real, simulated}}, sim, true},
		{"label matches", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "a"}}, sim, true},
		{"label differs", &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "b"}}, sim, false},
		{"label missing", &pb.WorkerSelector{Labels: map[string]string{"pool": "a"}}, realW, false},
	} {
		if got := acceptsWorker(tc.sel, tc.w); got != tc.want {
			t.Errorf("%s: acceptsWorker = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Placement asks each study's selector: a simulated worker gets no trial of a study that
// takes real workers only, and a label the worker lacks keeps it away.
func TestPlacementHonoursSelector(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	realStudy := e.createStudy(nil)
	simA := e.registerAs("sim-a", &pb.WorkerIdentity{Kind: simulated, SimSource: "synthetic", Labels: map[string]string{"pool": "a"}})
	if a := e.acquire(simA); a != nil {
		t.Fatalf("simulated worker got trial %d of a real study", a.Trial.Id)
	}
	realW := e.registerAs("gpu-1", &pb.WorkerIdentity{Kind: real})
	if a := e.mustAcquire(realW); a.Trial.StudyId != realStudy.Id {
		t.Fatalf("real worker got study %d's trial", a.Trial.StudyId)
	}
	simStudy := e.createStudy(func(s *pb.StudySpec) {
		s.Workers = &pb.WorkerSelector{Kinds: []pb.WorkerKind{simulated}, Labels: map[string]string{"pool": "b"}}
	})
	if a := e.acquire(simA); a != nil {
		t.Fatalf("worker of pool a got trial %d of a study asking for pool b", a.Trial.Id)
	}
	simB := e.registerAs("sim-b", &pb.WorkerIdentity{Kind: simulated, Labels: map[string]string{"pool": "b"}})
	if a := e.mustAcquire(simB); a.Trial.StudyId != simStudy.Id {
		t.Fatalf("pool b worker got study %d's trial", a.Trial.StudyId)
	}
	ws, err := e.s.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := ws[0].GetIdentity(); got.GetKind() != simulated || got.GetSimSource() != "synthetic" || got.GetLabels()["pool"] != "a" {
		t.Errorf("stored identity of worker %d = %v, want what it registered with", ws[0].Id, got)
	}
}
