package worker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/gpuexec"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels([]string{"cluster=a100-east", "team=pretrain", "zone/rack=r12", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cluster": "a100-east", "team": "pretrain", "zone/rack": "r12", "empty": ""}
	if len(got) != len(want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("labels %v, want %v", got, want)
		}
	}
	many := make([]string, MaxLabels+1)
	for i := range many {
		many[i] = "k" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=v"
	}
	for name, bad := range map[string][]string{
		"no equals":     {"cluster"},
		"empty key":     {"=x"},
		"space":         {"a b=c"},
		"value space":   {"a=b c"},
		"twice":         {"a=1", "a=2"},
		"long key":      {strings.Repeat("k", 64) + "=x"},
		"newline value": {"a=b\nc"},
		"too many":      many,
	} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("%s: %q accepted", name, bad)
		}
	}
}

func TestSimSourceName(t *testing.T) {
	for in, want := range map[string]string{
		"synthetic":                               "synthetic",
		"recording:/data/runs/tiny-cpu.jsonl":     "recording:tiny-cpu.jsonl",
		"recording:testdata/recordings/x.jsonl":   "recording:x.jsonl",
		"datamodel:/srv/mixopt/paper-params.json": "datamodel:paper-params.json",
	} {
		if got := SimSourceName(in); got != want {
			t.Errorf("SimSourceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// registrar is a coordinator that records registrations and has no work.
type registrar struct {
	pb.UnimplementedWorkerServiceServer
	mu       sync.Mutex
	regs     []*pb.RegisterRequest
	acquires int
}

func (r *registrar) Register(_ context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.regs = append(r.regs, proto.Clone(req).(*pb.RegisterRequest))
	return &pb.RegisterResponse{WorkerId: 7, HeartbeatIntervalMs: 1000}, nil
}

func (r *registrar) AcquireTrial(ctx context.Context, req *pb.AcquireTrialRequest) (*pb.AcquireTrialResponse, error) {
	r.mu.Lock()
	r.acquires++
	r.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(req.WaitMs) * time.Millisecond):
	}
	return &pb.AcquireTrialResponse{}, nil
}

func (r *registrar) Heartbeat(context.Context, *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	return &pb.HeartbeatResponse{}, nil
}

// Register carries the identity the worker was configured with: kind, labels and the
// probed interpreter.
func TestRegisterSendsIdentity(t *testing.T) {
	reg := &registrar{}
	dial := testutil.Serve(t, func(srv *grpc.Server) { pb.RegisterWorkerServiceServer(srv, reg) }, nil).Dial

	in := &gpuexec.Interpreter{Path: "/opt/venv/bin/python3", PythonVersion: "3.11.2", TorchVersion: "2.4.0+cu121",
		CUDAVersion: "12.1", CUDAAvailable: true, Devices: []string{"NVIDIA H200"}, CompileAvailable: true}
	identity := RealIdentity(in, map[string]string{"cluster": "h200-a"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Addr: testutil.Addr, Hostname: "gpu-1", Runner: SimRunner{},
			Identity: identity, PollWait: 50 * time.Millisecond,
			DialOptions: []grpc.DialOption{dial, grpc.WithTransportCredentials(insecure.NewCredentials())}})
	}()
	// An acquire comes only after the registration's answer arrived, so stopping then
	// does not cut the registration short.
	waitFor(t, "a registration and an acquire", func() (bool, string) {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return len(reg.regs) > 0 && reg.acquires > 0, fmt.Sprintf("%d registrations, %d acquires", len(reg.regs), reg.acquires)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := reg.regs[0].GetIdentity()
	want := &pb.WorkerIdentity{Kind: pb.WorkerKind_WORKER_KIND_REAL, Labels: map[string]string{"cluster": "h200-a"},
		Interpreter: &pb.Interpreter{Path: "/opt/venv/bin/python3", PythonVersion: "3.11.2", TorchVersion: "2.4.0+cu121",
			CudaVersion: "12.1", CudaAvailable: true, Devices: []string{"NVIDIA H200"}, CompileAvailable: true}}
	if !proto.Equal(got, want) {
		t.Fatalf("registered identity %v, want %v", got, want)
	}
	sim := SimulatedIdentity("recording:/data/tiny-cpu.jsonl", nil)
	if sim.Kind != pb.WorkerKind_WORKER_KIND_SIMULATED || sim.SimSource != "recording:tiny-cpu.jsonl" || sim.Interpreter != nil {
		t.Fatalf("simulated identity %v", sim)
	}
}
