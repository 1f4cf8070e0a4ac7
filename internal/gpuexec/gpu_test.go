package gpuexec

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseNvidiaSMI(t *testing.T) {
	out := "0, GPU-1c2a, NVIDIA H100 80GB HBM3, 81559, 3, 0\n" +
		"1, GPU-77ef, NVIDIA H100 80GB HBM3, 81559, 40000, 97\r\n" +
		"\n2, MIG-9f, NVIDIA A100-SXM4-40GB MIG 1g.5gb, [N/A], [N/A], [Not Supported]\n"
	gpus, err := ParseNvidiaSMI([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{
		{Index: 0, UUID: "GPU-1c2a", Name: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, MemoryUsedMiB: 3},
		{Index: 1, UUID: "GPU-77ef", Name: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, MemoryUsedMiB: 40000, UtilizationPct: 97},
		{Index: 2, UUID: "MIG-9f", Name: "NVIDIA A100-SXM4-40GB MIG 1g.5gb"},
	}
	if !reflect.DeepEqual(gpus, want) {
		t.Fatalf("got %+v", gpus)
	}
	for _, bad := range []string{"0, GPU-a, H100, 81559, 3", "x, GPU-a, H100, 1, 1, 1", "0, GPU-a, H100, -5, 1, 1",
		"0, a, b, 1, 1, 1\n0, c, d, 1, 1, 1"} {
		if _, err := ParseNvidiaSMI([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if gpus, err := ParseNvidiaSMI(nil); err != nil || len(gpus) != 0 {
		t.Fatalf("empty output: %v %v", gpus, err)
	}
}

func TestParseVisibleDevices(t *testing.T) {
	for _, tc := range []struct {
		v      string
		set    bool
		want   []string
		wantOK bool
	}{
		{"", false, nil, false},
		{"", true, []string{}, true},
		{"-1", true, []string{}, true},
		{"0,2", true, []string{"0", "2"}, true},
		{" GPU-1c2a , 3 ", true, []string{"GPU-1c2a", "3"}, true},
	} {
		got, ok := ParseVisibleDevices(tc.v, tc.set)
		if ok != tc.wantOK || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q/%v: %v %v", tc.v, tc.set, got, ok)
		}
	}
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// fakeSMI makes this test binary answer like nvidia-smi (see fakeMain).
func fakeSMI(t *testing.T) string {
	t.Setenv("GPUEXEC_FAKE", "nvidia-smi")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestDiscover(t *testing.T) {
	smi := fakeSMI(t)
	ctx := context.Background()
	indices := func(gs []GPU) (out []int) {
		for _, g := range gs {
			out = append(out, g.Index)
		}
		return out
	}
	all, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, LookupEnv: env(nil)})
	if err != nil || !reflect.DeepEqual(indices(all), []int{0, 1}) || all[1].MemoryUsedMiB != 40000 {
		t.Fatalf("all: %+v %v", all, err)
	}
	vis, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, LookupEnv: env(map[string]string{"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})})
	if err != nil || !reflect.DeepEqual(indices(vis), []int{1}) {
		t.Fatalf("visible: %+v %v", vis, err)
	}
	none, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, LookupEnv: env(map[string]string{"CUDA_VISIBLE_DEVICES": ""})})
	if err != nil || len(none) != 0 {
		t.Fatalf("hidden: %+v %v", none, err)
	}
	over, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, Override: "1", LookupEnv: env(map[string]string{"CUDA_VISIBLE_DEVICES": "0"})})
	if err != nil || !reflect.DeepEqual(indices(over), []int{1}) || over[0].UUID != "GPU-bbbb" {
		t.Fatalf("override: %+v %v", over, err)
	}
	if _, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, Override: "5"}); err == nil || !strings.Contains(err.Error(), "gpu 5") {
		t.Fatalf("override of a missing gpu: %v", err)
	}
	if _, err := Discover(ctx, DiscoverOptions{NvidiaSMI: smi, LookupEnv: env(map[string]string{"CUDA_VISIBLE_DEVICES": "7"})}); err == nil {
		t.Fatal("CUDA_VISIBLE_DEVICES naming a missing gpu accepted")
	}
}

func TestDiscoverWithoutNvidiaSMI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	gpus, err := Discover(ctx, DiscoverOptions{LookupEnv: env(nil)})
	if err != nil || len(gpus) != 0 {
		t.Fatalf("cpu host: %+v %v", gpus, err)
	}
	gpus, err = Discover(ctx, DiscoverOptions{Override: "0:81920,3:40960"})
	if err != nil || len(gpus) != 2 || gpus[1].Index != 3 || gpus[1].MemoryMiB != 40960 || gpus[1].ID() != "3" {
		t.Fatalf("override: %+v %v", gpus, err)
	}
	if gpus, err := Discover(ctx, DiscoverOptions{Override: "none"}); err != nil || gpus != nil {
		t.Fatalf("none: %v %v", gpus, err)
	}
	for _, bad := range []string{"a", "0,0", "1:-5", "1:x", "-1"} {
		if _, err := Discover(ctx, DiscoverOptions{Override: bad}); err == nil {
			t.Errorf("override %q accepted", bad)
		}
	}
	if _, err := querySMI(ctx, DiscoverOptions{}); !errors.Is(err, ErrNoNvidiaSMI) {
		t.Fatalf("err %v", err)
	}
}

func TestAllocator(t *testing.T) {
	gpus := []GPU{
		{Index: 0, UUID: "GPU-a", MemoryMiB: 81559},
		{Index: 1, UUID: "GPU-b", MemoryMiB: 81559},
		{Index: 2, UUID: "GPU-c", MemoryMiB: 24000},
		{Index: 3, UUID: "GPU-d", MemoryMiB: 81559, MemoryUsedMiB: 30000}, // someone else's job
	}
	a := NewAllocator(gpus, AllocatorOptions{})
	got, err := a.Acquire("t1", Need{Count: 1, MinMemoryMiB: 40000})
	if err != nil || len(got) != 1 || got[0].Index != 0 {
		t.Fatalf("t1: %+v %v", got, err)
	}
	got, err = a.Acquire("t2", Need{Count: 1, MinMemoryMiB: 40000})
	if err != nil || got[0].Index != 1 {
		t.Fatalf("t2: %+v %v", got, err)
	}
	_, err = a.Acquire("t3", Need{Count: 1, MinMemoryMiB: 40000})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "held by t1") || !strings.Contains(err.Error(), "30000 MiB in use by another process") {
		t.Fatalf("busy: %v", err)
	}
	if _, err := a.Acquire("t3", Need{Count: 4, MinMemoryMiB: 40000}); !errors.Is(err, ErrNoFit) {
		t.Fatalf("no fit: %v", err)
	}
	if _, err := a.AcquireIDs("t3", []string{"GPU-a"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("explicit busy: %v", err)
	}
	if _, err := a.AcquireIDs("t3", []string{"9"}); !errors.Is(err, ErrNoFit) {
		t.Fatalf("explicit missing: %v", err)
	}
	got, err = a.AcquireIDs("t3", []string{"2"})
	if err != nil || got[0].UUID != "GPU-c" {
		t.Fatalf("explicit: %+v %v", got, err)
	}
	a.Release("t1")
	got, err = a.Acquire("t4", Need{Count: 1, MinMemoryMiB: 40000})
	if err != nil || got[0].Index != 0 {
		t.Fatalf("after release: %+v %v", got, err)
	}
	if got, err := a.Acquire("cpu", Need{}); err != nil || got != nil {
		t.Fatalf("cpu trial: %v %v", got, err)
	}
	// The foreign job ends: the GPU frees up after a refresh.
	gpus[3].MemoryUsedMiB = 0
	a.Update(gpus)
	if got, err := a.Acquire("t5", Need{Count: 1, MinMemoryMiB: 40000}); err != nil || got[0].Index != 3 {
		t.Fatalf("after update: %+v %v", got, err)
	}
	if ids := IDs(a.GPUs()[:2]); !reflect.DeepEqual(ids, []string{"GPU-a", "GPU-b"}) {
		t.Fatalf("ids %v", ids)
	}
}
