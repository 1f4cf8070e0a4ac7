package coordinator

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/testutil"
	"github.com/mixopt/mixopt/internal/worker"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A store that cannot write (disk full) must answer workers with Unavailable, so they
// buffer and retry as when the coordinator is away: every trial survives the outage
// with its first attempt, no acknowledged point is lost, and the study ends once the
// disk has room again, with no restart.
func TestStoreWriteFailureKeepsTrialsAlive(t *testing.T) {
	db := testutil.TempStore(t)
	sched, err := scheduler.New(db, scheduler.Config{LeaseTTL: time.Minute, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	served := testutil.Serve(t, func(srv *grpc.Server) {
		pb.RegisterWorkerServiceServer(srv, &WorkerService{Sched: sched})
		pb.RegisterControlServiceServer(srv, &ControlService{Sched: sched, DB: db})
	}, nil)
	conn, dial := served.Conn, served.Dial
	control := pb.NewControlServiceClient(conn)

	// Count what the workers' RPCs got back while the disk is full.
	var unavailable, otherErrors atomic.Int64
	var mu sync.Mutex
	var otherErr error
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch status.Code(err) {
		case codes.OK, codes.Canceled, codes.DeadlineExceeded:
		case codes.Unavailable:
			unavailable.Add(1)
		default:
			otherErrors.Add(1)
			mu.Lock()
			otherErr = err
			mu.Unlock()
		}
		return err
	}
	const workers, trials = 3, 6
	spec := testSpec()
	spec.Steps, spec.EvalEvery = []int64{1000}, 10
	spec.Target.Steps = 1000
	spec.BudgetFlops, spec.MaxParallel, spec.MaxTrials, spec.Policy = 1e30, workers, trials, "random"
	// The synthetic source models wall time as FLOPs / 1e14 s: one trial replays in ~1.5 s.
	runner := worker.SimRunner{Source: sim.NewSynthetic(sim.SyntheticOptions{}), Speedup: 1000 * 1e9 / 1e14 / 1.5}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := worker.Run(ctx, worker.Config{Addr: testutil.Addr, Hostname: "w" + string(rune('a'+i)),
				Capacity: 1, Runner: runner, PollWait: time.Second, FlushInterval: 50 * time.Millisecond,
				MaxBackoff: 200 * time.Millisecond, DialOptions: []grpc.DialOption{dial, grpc.WithUnaryInterceptor(count)}})
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("worker: %v", err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	if _, err := control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	// Once the first trials run and have stored points, the disk fills for 2 s.
	waitFor(t, 20*time.Second, func() bool {
		r, err := control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: 1})
		if err != nil {
			return false
		}
		running := 0
		for _, tr := range r.Trials {
			if tr.State == pb.TrialState_TRIAL_STATE_RUNNING && tr.LastSeq > 0 {
				running++
			}
		}
		return running == workers
	})
	db.SetWriteFault(func() error { return syscall.ENOSPC })
	// The outage lasts at least 2 s and until the store has refused some writes: what it must
	// not do is measured below, not timed.
	outageEnd := time.Now().Add(2 * time.Second)
	var h *pb.GetStoreHealthResponse
	waitFor(t, 60*time.Second, func() bool {
		var err error
		h, err = control.GetStoreHealth(ctx, &pb.GetStoreHealthRequest{})
		return err == nil && h.WriteFailures > 0 && time.Now().After(outageEnd)
	})
	if h.LastWriteOkUnixMs > h.LastWriteErrorUnixMs {
		t.Fatalf("store health during the outage = %v; want no success since the failures", h)
	}
	db.SetWriteFault(nil)

	waitFor(t, 60*time.Second, func() bool {
		r, err := control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: 1})
		return err == nil && r.Status.Study.State == pb.StudyState_STUDY_STATE_COMPLETED
	})
	t.Logf("during the 2 s outage: %d store commits failed, %d worker RPCs answered Unavailable, %d with another error",
		h.WriteFailures, unavailable.Load(), otherErrors.Load())
	if unavailable.Load() == 0 {
		t.Error("no worker RPC was answered Unavailable during the outage: the fault did not reach them")
	}
	if n := otherErrors.Load(); n != 0 {
		t.Errorf("%d worker RPCs failed with a code they treat as final, e.g. %v", n, otherErr)
	}
	r, err := control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Trials) != trials {
		t.Errorf("%d trials, want %d", len(r.Trials), trials)
	}
	for _, tr := range r.Trials {
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || tr.Attempt != 1 || tr.LastSeq != 100 {
			t.Errorf("trial %d: %s attempt %d with %d points, want succeeded at its first attempt with 100",
				tr.Id, tr.State, tr.Attempt, tr.LastSeq)
		}
	}
	err = db.View(func(tx *store.Tx) error {
		for _, tr := range r.Trials {
			pts, err := tx.Points(tr.Id, 1)
			if err != nil {
				return err
			}
			if len(pts) != 100 {
				t.Errorf("trial %d: %d points stored, want 100", tr.Id, len(pts))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := control.GetStoreHealth(ctx, &pb.GetStoreHealthRequest{}); err != nil || h.LastWriteOkUnixMs <= h.LastWriteErrorUnixMs {
		t.Errorf("store health after recovery = %v, %v; want a success after the last failure", h, err)
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A record damaged on disk is refused by name (DataLoss), never served, and
// VerifyStore names it.
func TestDamagedRecordRefused(t *testing.T) {
	path := testutil.StorePath(t)
	db := testutil.OpenStore(t, path)
	sched, err := scheduler.New(db, scheduler.Config{LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec()
	spec.Name = "marker-XYZZY"
	if _, err := sched.CreateStudy(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	db.Close()
	image, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(image, []byte("marker-XYZZY"))
	if i < 0 || bytes.Count(image, []byte("marker-XYZZY")) != 1 {
		t.Fatal("the study's name is not in the file exactly once")
	}
	image[i] ^= 0x20 // "m" → "M": the record still decodes, as a different name
	if err := os.WriteFile(path, image, 0o600); err != nil {
		t.Fatal(err)
	}

	db = testutil.OpenStore(t, path)
	defer db.Close()
	sched, err = scheduler.New(db, scheduler.Config{LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	control := &ControlService{Sched: sched, DB: db}
	ctx := context.Background()
	const want = "study 1 (bucket studies, key 0000000000000001): checksum mismatch"
	_, err = control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: 1})
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), want) {
		t.Errorf("GetStudy of the damaged study = %v, want DataLoss saying %q", err, want)
	}
	resp, err := control.VerifyStore(ctx, &pb.VerifyStoreRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Problems) != 1 || !strings.Contains(resp.Problems[0], want) || resp.Records != 1 {
		t.Errorf("VerifyStore = %v, want the one record read and named %q", resp, want)
	}
}
