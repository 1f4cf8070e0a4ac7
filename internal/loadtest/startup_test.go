package loadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mixopt/mixopt/internal/coordinator"
	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Start-up benchmark: how long a coordinator takes, over a database with a long
// history, to serve (its gRPC address is written) and to answer the first
// ListStudies, the call `mixctl studies` and `mixctl status` make. The database is
// built once per run, directly through the store; its size is
// MIXOPT_STARTUP_POINTS curve points (default 200,000, so the default run is
// short), spread over studies of startupTrialsPerStudy trials of
// startupPointsPerTrial points, written in reports of 20 points as workers send
// them. Reproduce the documented figures (docs/benchmarks.md) with
//
//	MIXOPT_STARTUP_POINTS=10000000 go test -run '^$' -bench BenchmarkStartup -benchtime 5x -timeout 60m ./internal/loadtest/
const (
	startupPointsPerTrial = 1000
	startupTrialsPerStudy = 1000
	startupReport         = 20
)

func startupPoints(b *testing.B) int {
	s := os.Getenv("MIXOPT_STARTUP_POINTS")
	if s == "" {
		return 200_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < startupPointsPerTrial {
		b.Fatalf("MIXOPT_STARTUP_POINTS=%q: want a count of at least %d", s, startupPointsPerTrial)
	}
	return n
}

// buildHistory writes a database of n points: finished random-policy studies whose
// trials all succeeded, as a long-running coordinator accumulates them.
func buildHistory(b *testing.B, path string, n int) {
	db := testutil.OpenStore(b, path)
	defer db.Close()
	sched, err := scheduler.New(db, scheduler.Config{})
	if err != nil {
		b.Fatal(err)
	}
	trials := n / startupPointsPerTrial
	const every = 10
	steps := int64(startupPointsPerTrial * every)
	domains := []string{"web", "code", "books"}
	var studyID uint64
	for i := 0; i < trials; i++ {
		if i%startupTrialsPerStudy == 0 {
			st, err := sched.CreateStudy(context.Background(), &pb.StudySpec{
				Name:        fmt.Sprintf("history-%d", i/startupTrialsPerStudy),
				Domains:     []*pb.Domain{{Name: domains[0]}, {Name: domains[1]}, {Name: domains[2]}},
				Scales:      []*pb.Scale{{Name: "s", Params: 2e7, FlopsPerStep: 1e12}},
				Steps:       []int64{steps},
				EvalEvery:   every,
				Objective:   &pb.Objective{Metric: "mean_ce"},
				Target:      &pb.Fidelity{Scale: "s", Steps: steps},
				BudgetFlops: 1e30,
				MaxTrials:   startupTrialsPerStudy,
				Policy:      "random",
				Seed:        1,
			})
			if err != nil {
				b.Fatal(err)
			}
			studyID = st.Id
		}
		err := db.Update(func(tx *store.Tx) error {
			id, err := tx.NextTrialID()
			if err != nil {
				return err
			}
			t := &pb.Trial{Id: id, StudyId: studyID, Mixture: []float64{0.5, 0.3, 0.2}, Scale: "s", Steps: steps,
				State: pb.TrialState_TRIAL_STATE_SUCCEEDED, Attempt: 1, LastSeq: startupPointsPerTrial, StepsDone: steps,
				HasValue: true, LastValue: 2.5}
			if err := tx.PutTrial(t); err != nil {
				return err
			}
			st, err := tx.Study(studyID)
			if err != nil {
				return err
			}
			st.TrialsCreated++ // as the scheduler counts them, so the cap ends the study
			if err := tx.PutStudy(st); err != nil {
				return err
			}
			batch := make([]*pb.CurvePoint, startupReport)
			for seq := uint64(1); seq <= startupPointsPerTrial; seq++ {
				v := 3 + 5/float64(seq)
				batch[(seq-1)%startupReport] = &pb.CurvePoint{Seq: seq, Step: int64(seq) * every, Tokens: int64(seq) * every * 4096,
					TrainLoss: v, WallTimeS: float64(seq), Eval: map[string]float64{"web_ce": v + 0.1, "code_ce": v - 0.1, "books_ce": v, "mean_ce": v}}
				if seq%startupReport == 0 {
					if err := tx.AppendPoints(id, 1, batch); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// A worker's request lets the scheduler see that every study has run its trials and
	// end it, as a long-running coordinator's history is ended studies.
	w, err := sched.Register(context.Background(), scheduler.Registration{Hostname: "history", SimulatedCapacity: 1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sched.AcquireTrial(context.Background(), w, 0); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d points (%d trials) in %s", trials*startupPointsPerTrial, trials, path)
}

// BenchmarkStartup: one op is a coordinator start on the database (page cache warm:
// the file was just written or read), up to its first ListStudies answer, and its
// stop. serve-ms is the time to serving and first-list-ms the first ListStudies after
// it.
func BenchmarkStartup(b *testing.B) {
	n := startupPoints(b)
	// The benchmark function runs more than once (b.N is found by trying); build the
	// database only the first time.
	if startupDir == "" {
		dir, err := os.MkdirTemp("", "startup-bench-")
		if err != nil {
			b.Fatal(err)
		}
		startupDir = dir
		buildHistory(b, filepath.Join(dir, "history.db"), n)
	}
	dir := startupDir
	dbPath := filepath.Join(dir, "history.db")
	if fi, err := os.Stat(dbPath); err == nil {
		b.Logf("database: %d MB", fi.Size()>>20)
	}
	var serve, list time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, l := startOnce(b, dir, dbPath)
		serve += s
		list += l
	}
	b.ReportMetric(float64(serve.Milliseconds())/float64(b.N), "serve-ms")
	b.ReportMetric(float64(list.Milliseconds())/float64(b.N), "first-list-ms")
	b.ReportMetric(float64(n), "points")
}

// startupDir holds the benchmark's database for the whole test binary run; TestMain
// removes it.
var startupDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if startupDir != "" {
		os.RemoveAll(startupDir)
	}
	os.Exit(code)
}

func startOnce(b *testing.B, dir, dbPath string) (serve, list time.Duration) {
	addrFile := filepath.Join(dir, "addr")
	os.Remove(addrFile)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- coordinator.Run(ctx, coordinator.Config{Listen: "127.0.0.1:0", AddrFile: addrFile, DBPath: dbPath,
			Scheduler: scheduler.Config{LeaseTTL: time.Minute}})
	}()
	addr := testutil.WaitAddrFile(b, addrFile, 10*time.Minute, done)
	serve = time.Since(start)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	listStart := time.Now()
	resp, err := pb.NewControlServiceClient(conn).ListStudies(context.Background(), &pb.ListStudiesRequest{})
	list = time.Since(listStart)
	conn.Close()
	if err != nil {
		b.Fatal(err)
	}
	if len(resp.Studies) == 0 {
		b.Fatal("ListStudies answered no studies")
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return serve, list
}
