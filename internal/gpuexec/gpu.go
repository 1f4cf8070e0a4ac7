package gpuexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// GPU is one device as nvidia-smi (or an override) describes it.
type GPU struct {
	// Index is nvidia-smi's index (PCI bus order).
	Index int
	// UUID is the stable identifier ("GPU-…"); empty when only an override named the GPU.
	UUID string
	Name string
	// MemoryMiB is the total memory; 0 means unknown (an override without a size).
	MemoryMiB int64
	// MemoryUsedMiB is memory in use when last queried, by any process.
	MemoryUsedMiB int64
	// UtilizationPct is the GPU utilisation when last queried.
	UtilizationPct int
}

// ID is what CUDA_VISIBLE_DEVICES should name: the UUID when known, because CUDA's default
// device order (fastest first) can differ from nvidia-smi's indices.
func (g GPU) ID() string {
	if g.UUID != "" {
		return g.UUID
	}
	return strconv.Itoa(g.Index)
}

// IDs returns the CUDA_VISIBLE_DEVICES names of gpus, in order.
func IDs(gpus []GPU) []string {
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = g.ID()
	}
	return ids
}

// NvidiaSMIArgs is the query [ParseNvidiaSMI] understands.
var NvidiaSMIArgs = []string{
	"--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu",
	"--format=csv,noheader,nounits",
}

// ParseNvidiaSMI parses the output of nvidia-smi run with [NvidiaSMIArgs].
func ParseNvidiaSMI(out []byte) ([]GPU, error) {
	var gpus []GPU
	seen := map[int]bool{}
	for n, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 6 {
			return nil, fmt.Errorf("nvidia-smi line %d: want 6 comma-separated fields, got %d: %q", n+1, len(f), line)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 {
			return nil, fmt.Errorf("nvidia-smi line %d: bad index %q", n+1, f[0])
		}
		if seen[idx] {
			return nil, fmt.Errorf("nvidia-smi line %d: index %d listed twice", n+1, idx)
		}
		seen[idx] = true
		g := GPU{Index: idx, UUID: f[1], Name: f[2]}
		if g.MemoryMiB, err = parseSMIInt(f[3]); err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: memory.total: %w", n+1, err)
		}
		if g.MemoryUsedMiB, err = parseSMIInt(f[4]); err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: memory.used: %w", n+1, err)
		}
		util, err := parseSMIInt(f[5])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: utilization.gpu: %w", n+1, err)
		}
		g.UtilizationPct = int(util)
		gpus = append(gpus, g)
	}
	return gpus, nil
}

// parseSMIInt reads a number field; "[N/A]" and "[Not Supported]" (MIG, some drivers) read as 0.
func parseSMIInt(s string) (int64, error) {
	if strings.HasPrefix(s, "[") {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a non-negative integer: %q", s)
	}
	return v, nil
}

// ParseVisibleDevices reads CUDA_VISIBLE_DEVICES: ok is false when it is unset; an empty
// list means no GPU may be used ("" or "-1", as CUDA reads them).
func ParseVisibleDevices(v string, set bool) (ids []string, ok bool) {
	if !set {
		return nil, false
	}
	v = strings.TrimSpace(v)
	if v == "" || v == "-1" || strings.EqualFold(v, "NoDevFiles") {
		return []string{}, true
	}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		ids = append(ids, p)
	}
	return ids, true
}

// overrideEntry is one element of a --gpus override: an index and optional memory.
type overrideEntry struct {
	index     int
	memoryMiB int64
}

// parseOverride reads a --gpus value: "none", or comma-separated indices each with an
// optional memory size in MiB ("0,1" or "0:81920,1:81920"). An empty value means no override.
func parseOverride(s string) (entries []overrideEntry, none bool, err error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return nil, true, nil
	}
	seen := map[int]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		idxS, memS, hasMem := strings.Cut(p, ":")
		idx, err := strconv.Atoi(idxS)
		if err != nil || idx < 0 {
			return nil, false, fmt.Errorf("--gpus entry %q: want INDEX or INDEX:MEMORY_MIB", p)
		}
		if seen[idx] {
			return nil, false, fmt.Errorf("--gpus lists gpu %d twice", idx)
		}
		seen[idx] = true
		e := overrideEntry{index: idx}
		if hasMem {
			if e.memoryMiB, err = strconv.ParseInt(memS, 10, 64); err != nil || e.memoryMiB <= 0 {
				return nil, false, fmt.Errorf("--gpus entry %q: memory must be a positive number of MiB", p)
			}
		}
		entries = append(entries, e)
	}
	return entries, false, nil
}

// DiscoverOptions configure [Discover].
type DiscoverOptions struct {
	// Override is the worker's --gpus flag: "none", or comma-separated indices each with an
	// optional memory size in MiB ("0,1" or "0:81920,1:81920"). It wins over
	// CUDA_VISIBLE_DEVICES.
	Override string
	// NvidiaSMI is the nvidia-smi binary; empty looks it up in PATH.
	NvidiaSMI string
	// LookupEnv reads the environment (os.LookupEnv when nil); tests inject their own.
	LookupEnv func(string) (string, bool)
	// Timeout bounds the nvidia-smi call (10s when zero).
	Timeout time.Duration
}

// ErrNoNvidiaSMI means nvidia-smi is not installed; Discover then reports no GPUs.
var ErrNoNvidiaSMI = errors.New("nvidia-smi not found")

// Discover lists the GPUs this worker may use: those nvidia-smi reports, restricted to
// CUDA_VISIBLE_DEVICES or to the override. Without nvidia-smi it reports none (a CPU worker),
// unless an override with memory sizes describes them.
func Discover(ctx context.Context, opts DiscoverOptions) ([]GPU, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var entries []overrideEntry
	if opts.Override != "" {
		var none bool
		var err error
		entries, none, err = parseOverride(opts.Override)
		if err != nil {
			return nil, err
		}
		if none {
			return nil, nil
		}
	}
	all, err := querySMI(ctx, opts)
	if errors.Is(err, ErrNoNvidiaSMI) {
		all, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if entries != nil {
		return applyOverride(all, entries)
	}
	if ids, ok := ParseVisibleDevices(lookup("CUDA_VISIBLE_DEVICES")); ok {
		return filterVisible(all, ids)
	}
	return all, nil
}

func querySMI(ctx context.Context, opts DiscoverOptions) ([]GPU, error) {
	bin := opts.NvidiaSMI
	if bin == "" {
		p, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return nil, ErrNoNvidiaSMI
		}
		bin = p
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, NvidiaSMIArgs...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("run nvidia-smi: %s: %w", strings.TrimSpace(stderr.String()), err)
	}
	return ParseNvidiaSMI(out)
}

func applyOverride(all []GPU, entries []overrideEntry) ([]GPU, error) {
	byIndex := map[int]GPU{}
	for _, g := range all {
		byIndex[g.Index] = g
	}
	out := make([]GPU, 0, len(entries))
	for _, e := range entries {
		g, ok := byIndex[e.index]
		if !ok && all != nil {
			return nil, fmt.Errorf("--gpus names gpu %d but nvidia-smi lists %d gpus", e.index, len(all))
		}
		if !ok {
			g = GPU{Index: e.index}
		}
		if e.memoryMiB > 0 {
			g.MemoryMiB = e.memoryMiB
		}
		out = append(out, g)
	}
	return out, nil
}

func filterVisible(all []GPU, ids []string) ([]GPU, error) {
	out := make([]GPU, 0, len(ids))
	for _, id := range ids {
		found := false
		for _, g := range all {
			if id == strconv.Itoa(g.Index) || (g.UUID != "" && strings.HasPrefix(g.UUID, id)) {
				out = append(out, g)
				found = true
				break
			}
		}
		if !found {
			idx, err := strconv.Atoi(id)
			if all != nil || err != nil {
				return nil, fmt.Errorf("CUDA_VISIBLE_DEVICES names %q, which nvidia-smi does not list", id)
			}
			// No nvidia-smi: trust the environment, memory unknown.
			out = append(out, GPU{Index: idx})
		}
	}
	return out, nil
}
