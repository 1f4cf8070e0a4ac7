package worker

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A recording that answers from far away is reported; an exact answer is not.
func TestSimRunnerReportsFarReplays(t *testing.T) {
	rec, err := sim.ReadRecording(strings.NewReader(`{"format":"mixopt.recording.v1","run_id":"only","domains":["a","b"],"mixture":[0.9,0.1],"scale":"20M","params":2e7,"steps":100,"tokens_per_step":1000,"points":[{"step":100,"tokens":100000,"train_loss":3,"wall_time_s":1}]}`), "one")
	if err != nil {
		t.Fatal(err)
	}
	var far []float64
	r := SimRunner{Source: rec, Speedup: 1e9, FarDistance: 0.05,
		OnFar: func(_ uint64, run string, d float64) { far = append(far, d) }}
	for _, mix := range [][]float64{{0.9, 0.1}, {0.5, 0.5}} {
		a := &pb.Assignment{Trial: &pb.Trial{Id: 1, Mixture: mix, Steps: 100}, Domains: []string{"a", "b"},
			Scale: &pb.Scale{Name: "20M", Params: 2e7, TokensPerStep: 1000}, Attempt: 1}
		if _, err := r.Run(context.Background(), a, func(*pb.CurvePoint) {}); err != nil {
			t.Fatal(err)
		}
	}
	if len(far) != 1 || far[0] < 0.79 || far[0] > 0.81 {
		t.Fatalf("far replays = %v, want one at L1 distance 0.8", far)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := CheckWritable(dir); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	if err := CheckWritable(notDir); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("CheckWritable(a file) = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the check left files behind: %v", entries)
	}
}

// A worker that cannot reach its coordinator says so once, not at every retry.
func TestRegisterSaysOnceWhenCoordinatorUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	core, logs := observer.New(zapcore.WarnLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err = Run(ctx, Config{Addr: addr, Hostname: "h", Capacity: 1, Runner: SimRunner{}, Logger: zap.New(core),
		MaxBackoff: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) && err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := logs.FilterMessage("cannot reach the coordinator; retrying").Len(); n != 1 {
		t.Fatalf("%d warnings about the unreachable coordinator, want 1 (all warnings: %v)", n, logs.All())
	}
}
