package worker

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mixopt/mixopt/internal/gpuexec"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Label bounds: a worker's labels travel in every registration and studies select on
// them, so they are short plain names.
const (
	MaxLabels        = 32
	maxLabelValueLen = 128
)

var (
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@+-]*$`)
)

// ParseLabels reads the worker's repeated -label KEY=VALUE flags.
func ParseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) > MaxLabels {
		return nil, fmt.Errorf("%d labels, at most %d", len(kvs), MaxLabels)
	}
	labels := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !labelKeyRE.MatchString(k) {
			return nil, fmt.Errorf("label %q: want KEY=VALUE with a key of letters, digits and _ . / - (at most 63)", kv)
		}
		if len(v) > maxLabelValueLen || !labelValueRE.MatchString(v) {
			return nil, fmt.Errorf("label %s: value %q must be at most %d letters, digits or _ . : / @ + -", k, v, maxLabelValueLen)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("label %s given twice", k)
		}
		labels[k] = v
	}
	return labels, nil
}

// RealIdentity is what a training worker registers as: its interpreter as probed at start
// (nil when its trainer needs none) and its labels.
func RealIdentity(in *gpuexec.Interpreter, labels map[string]string) *pb.WorkerIdentity {
	id := &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_REAL, Labels: maps.Clone(labels)}
	if in != nil {
		id.Interpreter = &pb.Interpreter{
			Path: in.Path, PythonVersion: in.PythonVersion, TorchVersion: in.TorchVersion,
			CudaVersion: in.CUDAVersion, CompileAvailable: in.CompileAvailable,
			CudaAvailable: in.CUDAAvailable, Devices: append([]string(nil), in.Devices...),
		}
	}
	return id
}

// SimulatedIdentity is what a replaying worker registers as: the source it replays, named
// as SimSourceName does.
func SimulatedIdentity(source string, labels map[string]string) *pb.WorkerIdentity {
	return &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_SIMULATED, SimSource: SimSourceName(source),
		Labels: maps.Clone(labels)}
}

// SimSourceName is the -simulate value with a file reduced to its base name
// ("recording:tiny-cpu.jsonl"): enough to tell sources apart without publishing the
// worker's paths.
func SimSourceName(source string) string {
	kind, file, ok := strings.Cut(source, ":")
	if !ok || file == "" {
		return source
	}
	return kind + ":" + filepath.Base(file)
}
