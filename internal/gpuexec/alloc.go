package gpuexec

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Need is what a scale asks of a GPU set.
type Need struct {
	// Count is the number of GPUs; 0 runs on the CPU.
	Count int
	// MinMemoryMiB is the least total memory per GPU; GPUs of unknown size are trusted.
	MinMemoryMiB int64
}

var (
	// ErrBusy means GPUs that would fit are held by another trial or used by another process.
	ErrBusy = errors.New("gpu set is busy")
	// ErrNoFit means this host can never satisfy the need.
	ErrNoFit = errors.New("no gpu set on this host fits")
)

// AllocatorOptions configure an [Allocator].
type AllocatorOptions struct {
	// ForeignBusyMiB: a GPU nobody here holds with more memory in use than this is busy with
	// another process (default 1024 MiB; negative disables the check).
	ForeignBusyMiB int64
}

// Allocator hands out disjoint GPU sets to owners (trials). It is safe for concurrent use.
type Allocator struct {
	mu     sync.Mutex
	gpus   []GPU
	holder map[string]string // GPU ID → owner
	opts   AllocatorOptions
}

// NewAllocator manages gpus.
func NewAllocator(gpus []GPU, opts AllocatorOptions) *Allocator {
	if opts.ForeignBusyMiB == 0 {
		opts.ForeignBusyMiB = 1024
	}
	return &Allocator{gpus: slices.Clone(gpus), holder: map[string]string{}, opts: opts}
}

// Update refreshes memory use (from a new [Discover]) without touching who holds what.
func (a *Allocator) Update(gpus []GPU) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gpus = slices.Clone(gpus)
}

// GPUs returns the managed GPUs.
func (a *Allocator) GPUs() []GPU {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.gpus)
}

// busyReason says why g cannot be given to owner now, or "" when it is free.
func (a *Allocator) busyReason(g GPU, owner string) string {
	if h, ok := a.holder[g.ID()]; ok {
		if h == owner {
			return "already held by " + owner
		}
		return "held by " + h
	}
	if a.opts.ForeignBusyMiB >= 0 && g.MemoryUsedMiB > a.opts.ForeignBusyMiB {
		return fmt.Sprintf("%d MiB in use by another process", g.MemoryUsedMiB)
	}
	return ""
}

func fits(g GPU, need Need) bool {
	return g.MemoryMiB == 0 || g.MemoryMiB >= need.MinMemoryMiB
}

// Acquire gives owner need.Count free GPUs with enough memory, lowest indices first. It
// returns an error wrapping [ErrNoFit] when the host could never fit the need, and [ErrBusy]
// when it could but the GPUs are taken.
func (a *Allocator) Acquire(owner string, need Need) ([]GPU, error) {
	if owner == "" {
		return nil, fmt.Errorf("acquire gpus: empty owner")
	}
	if need.Count < 0 || need.MinMemoryMiB < 0 {
		return nil, fmt.Errorf("acquire gpus: negative need %+v", need)
	}
	if need.Count == 0 {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var candidates, free []GPU
	var reasons []string
	for _, g := range a.gpus {
		if !fits(g, need) {
			continue
		}
		candidates = append(candidates, g)
		if r := a.busyReason(g, owner); r != "" {
			reasons = append(reasons, fmt.Sprintf("gpu %d %s", g.Index, r))
			continue
		}
		free = append(free, g)
	}
	if len(candidates) < need.Count {
		return nil, fmt.Errorf("need %d gpus with at least %d MiB, this host has %d such of %d: %w",
			need.Count, need.MinMemoryMiB, len(candidates), len(a.gpus), ErrNoFit)
	}
	if len(free) < need.Count {
		return nil, fmt.Errorf("need %d gpus with at least %d MiB, %d free (%s): %w",
			need.Count, need.MinMemoryMiB, len(free), strings.Join(reasons, "; "), ErrBusy)
	}
	slices.SortFunc(free, func(x, y GPU) int { return x.Index - y.Index })
	got := free[:need.Count]
	for _, g := range got {
		a.holder[g.ID()] = owner
	}
	return slices.Clone(got), nil
}

// AcquireIDs gives owner exactly the GPUs named by index or ID, refusing a busy set.
func (a *Allocator) AcquireIDs(owner string, ids []string) ([]GPU, error) {
	if owner == "" {
		return nil, fmt.Errorf("acquire gpus: empty owner")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var got []GPU
	for _, id := range ids {
		i := slices.IndexFunc(a.gpus, func(g GPU) bool { return g.ID() == id || fmt.Sprint(g.Index) == id })
		if i < 0 {
			return nil, fmt.Errorf("gpu %q is not on this host: %w", id, ErrNoFit)
		}
		g := a.gpus[i]
		if slices.ContainsFunc(got, func(x GPU) bool { return x.ID() == g.ID() }) {
			return nil, fmt.Errorf("gpu %q named twice", id)
		}
		if r := a.busyReason(g, owner); r != "" {
			return nil, fmt.Errorf("gpu %d is %s: %w", g.Index, r, ErrBusy)
		}
		got = append(got, g)
	}
	for _, g := range got {
		a.holder[g.ID()] = owner
	}
	return got, nil
}

// Release frees every GPU owner holds.
func (a *Allocator) Release(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, h := range a.holder {
		if h == owner {
			delete(a.holder, id)
		}
	}
}
