package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// served is the real services behind the coordinator's own server options (codec,
// keepalive, limits), over an in-process connection.
type served struct {
	fixture
	conn *grpc.ClientConn
	db   *store.DB
}

func newServed(t *testing.T, cfg Config) *served {
	t.Helper()
	cfg.setDefaults()
	db := testutil.TempStore(t)
	sched, err := scheduler.New(db, scheduler.Config{LeaseTTL: time.Minute, MaxWait: time.Second})
	if err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	conn := testutil.Serve(t, func(srv *grpc.Server) {
		pb.RegisterWorkerServiceServer(srv, &WorkerService{Sched: sched})
		pb.RegisterControlServiceServer(srv, &ControlService{Sched: sched})
	}, serverOptions(cfg), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))).Conn
	return &served{
		fixture: fixture{worker: pb.NewWorkerServiceClient(conn), control: pb.NewControlServiceClient(conn)},
		conn:    conn, db: db,
	}
}

// running registers a worker, creates a study and leases its first trial.
func (f *served) running(t *testing.T) (uint64, *pb.Assignment) {
	t.Helper()
	ctx := context.Background()
	reg, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "w1", SimulatedCapacity: 4})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: testSpec()}); err != nil {
		t.Fatalf("CreateStudy: %v", err)
	}
	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: reg.WorkerId})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial = %v, %v", acq, err)
	}
	return reg.WorkerId, acq.Assignment
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	if !strings.HasPrefix(st.Message(), field+": ") && !strings.HasPrefix(st.Message(), field+" ") {
		t.Errorf("message %.200q does not name %q first", st.Message(), field)
	}
	if len(st.Message()) > 2000 {
		t.Errorf("message of %d bytes echoes the oversized input", len(st.Message()))
	}
}

// Every string and list of the wire has a bound; a request over one is refused with
// InvalidArgument naming the field, and nothing of it is stored.
func TestOversizedFieldsRefused(t *testing.T) {
	ctx := context.Background()
	f := newServed(t, Config{})
	w, a := f.running(t)
	huge := strings.Repeat("x", 4<<20)
	manyGPUs := make([]*pb.Gpu, scheduler.MaxGPUsPerWorker+1)
	for i := range manyGPUs {
		manyGPUs[i] = &pb.Gpu{Index: int32(i)}
	}
	labels := map[string]string{}
	for i := range scheduler.MaxLabels + 1 {
		labels[fmt.Sprintf("k%d", i)] = "v"
	}
	manyLeases := make([]*pb.HeldLease, scheduler.MaxHeldLeases+1)
	for i := range manyLeases {
		manyLeases[i] = &pb.HeldLease{TrialId: 1, LeaseId: "l", Attempt: 1}
	}
	manyEval := map[string]float64{}
	for i := range 100_000 {
		manyEval[fmt.Sprintf("m%d", i)] = 1
	}
	manyPoints := make([]*pb.CurvePoint, scheduler.MaxPointsPerReport+1)
	for i := range manyPoints {
		manyPoints[i] = &pb.CurvePoint{Seq: uint64(i + 1), Step: 1, TrainLoss: 1}
	}
	register := func(r *pb.RegisterRequest) func() error {
		return func() error {
			if r.Hostname == "" {
				r.Hostname = "w2"
			}
			_, err := f.worker.Register(ctx, r)
			return err
		}
	}
	report := func(points ...*pb.CurvePoint) func() error {
		return func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{
				WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, Points: points})
			return err
		}
	}
	spec := func(mut func(*pb.StudySpec)) func() error {
		return func() error {
			s := testSpec()
			mut(s)
			_, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: s})
			return err
		}
	}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"4 MiB hostname", "hostname", register(&pb.RegisterRequest{Hostname: huge})},
		{"4 MiB GPU name", "gpus[0].name", register(&pb.RegisterRequest{Gpus: []*pb.Gpu{{Name: huge}}})},
		{"too many GPUs", "gpus", register(&pb.RegisterRequest{Gpus: manyGPUs})},
		{"GPU index out of range", "gpus[0].index", register(&pb.RegisterRequest{Gpus: []*pb.Gpu{{Index: 1 << 30}}})},
		{"absurd GPU memory", "gpus[0].memory_mib", register(&pb.RegisterRequest{Gpus: []*pb.Gpu{{MemoryMib: math.MaxInt64}}})},
		{"huge simulated capacity", "simulated_capacity", register(&pb.RegisterRequest{SimulatedCapacity: math.MaxInt32})},
		{"too many held leases", "leases", register(&pb.RegisterRequest{Leases: manyLeases})},
		{"huge held lease id", "leases[0].lease_id", register(&pb.RegisterRequest{Leases: []*pb.HeldLease{{TrialId: 1, LeaseId: huge}}})},
		{"unknown worker kind", "identity.kind", register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{Kind: 42}})},
		{"huge sim source", "identity.sim_source", register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{SimSource: huge}})},
		{"too many labels", "identity.labels", register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{Labels: labels}})},
		{"huge label value", `identity.labels["a"]`, register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{Labels: map[string]string{"a": huge}}})},
		{"huge interpreter path", "identity.interpreter.path", register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{Interpreter: &pb.Interpreter{Path: huge}}})},
		{"huge torch version", "identity.interpreter.torch_version", register(&pb.RegisterRequest{Identity: &pb.WorkerIdentity{Interpreter: &pb.Interpreter{TorchVersion: huge}}})},
		{"heartbeat with too many leases", "leases", func() error {
			_, err := f.worker.Heartbeat(ctx, &pb.HeartbeatRequest{WorkerId: w, Leases: manyLeases})
			return err
		}},
		{"too many points", "points", report(manyPoints...)},
		{"100,000 eval metrics", "points[0].eval", report(&pb.CurvePoint{Seq: 1, Step: 1, TrainLoss: 1, Eval: manyEval})},
		{"1 MiB metric name", "points[0].eval", report(&pb.CurvePoint{Seq: 1, Step: 1, TrainLoss: 1, Eval: map[string]float64{huge[:1<<20]: 1}})},
		{"huge lease id in a report", "lease_id", func() error {
			_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: huge, Attempt: 1,
				Points: []*pb.CurvePoint{{Seq: 1, Step: 1, TrainLoss: 1}}})
			return err
		}},
		{"huge source_run", "source_run", func() error {
			_, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: 1, SourceRun: huge})
			return err
		}},
		{"NaN source_distance", "source_distance", func() error {
			_, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: 1, SourceDistance: math.NaN()})
			return err
		}},
		{"huge reason", "reason", func() error {
			_, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: 1, Reason: huge, FailureClass: pb.FailureClass_FAILURE_CLASS_OOM})
			return err
		}},
		{"unknown failure class", "failure_class", func() error {
			_, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: 1, Reason: "x", FailureClass: 42})
			return err
		}},
		{"unknown error class", "error_class", func() error {
			//lint:ignore SA1019 an older worker's request, with the deprecated string
			_, err := f.worker.FailTrial(ctx, &pb.FailTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: 1, Reason: "x", ErrorClass: "cosmic_ray"})
			return err
		}},
		{"list trials in state 99", "state", func() error {
			_, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: a.Trial.StudyId, State: 99})
			return err
		}},
		{"list trials of a huge scale", "scale", func() error {
			_, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: a.Trial.StudyId, Scale: huge})
			return err
		}},
		{"page size too large", "page_size", func() error {
			_, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{PageSize: scheduler.MaxPageSize + 1})
			return err
		}},
		{"negative page size", "page_size", func() error {
			_, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{PageSize: -1})
			return err
		}},
		{"forged page token", "page_token", func() error {
			_, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{PageToken: "after:x"})
			return err
		}},
		{"huge page token", "page_token", func() error {
			_, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: a.Trial.StudyId, PageToken: huge})
			return err
		}},
		{"huge study name", "name", spec(func(s *pb.StudySpec) { s.Name = huge })},
		{"100,000 extra metrics", "extra_metrics", spec(func(s *pb.StudySpec) {
			for i := range 100_000 {
				s.ExtraMetrics = append(s.ExtraMetrics, fmt.Sprintf("m%d", i))
			}
		})},
		{"1 MiB extra metric", "extra_metrics[0]", spec(func(s *pb.StudySpec) { s.ExtraMetrics = []string{huge[:1<<20]} })},
		{"huge selector label", "workers.labels", spec(func(s *pb.StudySpec) {
			s.Workers = &pb.WorkerSelector{Labels: map[string]string{huge: "v"}}
		})},
		{"scale needing 2^31-1 GPUs", "scales[0].gpus", spec(func(s *pb.StudySpec) { s.Scales[0].Gpus = math.MaxInt32 })},
	} {
		t.Run(tc.name, func(t *testing.T) { wantInvalid(t, tc.call(), tc.field) })
	}

	// Nothing of the refused requests was stored: one worker, one study, no points.
	workers, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(workers.Workers) != 1 || workers.Workers[0].Hostname != "w1" {
		t.Errorf("workers after refusals = %v, %v", workers, err)
	}
	studies, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{})
	if err != nil || len(studies.Studies) != 1 {
		t.Errorf("studies after refusals = %d, %v", len(studies.GetStudies()), err)
	}
	tr, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: a.Trial.Id})
	if err != nil || len(tr.Points) != 0 || tr.Trial.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Errorf("trial after refusals = %v, %v", tr, err)
	}
}

// Points that no training run can produce are refused, naming the field; the curve, the
// study's FLOPs and GPU-hours stay as the good points left them.
func TestBadPointsRefused(t *testing.T) {
	ctx := context.Background()
	f := newServed(t, Config{})
	w, a := f.running(t)
	report := func(points ...*pb.CurvePoint) error {
		_, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{
			WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, Points: points})
		return err
	}
	good := func(seq uint64, step int64, wall float64) *pb.CurvePoint {
		return &pb.CurvePoint{Seq: seq, Step: step, Tokens: step * 10, TrainLoss: 3, WallTimeS: wall, Eval: map[string]float64{"wiki_ce": 3}}
	}
	if err := report(good(1, 50, 10)); err != nil {
		t.Fatalf("good point: %v", err)
	}
	with := func(mut func(p *pb.CurvePoint)) *pb.CurvePoint {
		p := good(2, 60, 20)
		mut(p)
		return p
	}
	for _, tc := range []struct {
		name, field string
		points      []*pb.CurvePoint
	}{
		{"NaN loss", "points[0].train_loss", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.TrainLoss = math.NaN() })}},
		{"infinite loss", "points[0].train_loss", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.TrainLoss = math.Inf(1) })}},
		{"NaN eval", `points[0].eval["wiki_ce"]`, []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Eval["wiki_ce"] = math.NaN() })}},
		{"infinite eval", `points[0].eval["code_ce"]`, []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Eval["code_ce"] = math.Inf(-1) })}},
		{"infinite wall time", "points[0].wall_time_s", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.WallTimeS = math.Inf(1) })}},
		{"1e300 wall time", "points[0].wall_time_s", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.WallTimeS = 1e300 })}},
		{"NaN wall time", "points[0].wall_time_s", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.WallTimeS = math.NaN() })}},
		{"negative wall time", "points[0].wall_time_s", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.WallTimeS = -1 })}},
		{"negative tokens", "points[0].tokens", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Tokens = -1 })}},
		{"negative step", "points[0].step", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Step = -1 })}},
		{"empty eval key", "points[0].eval", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Eval[""] = 1 })}},
		{"eval key with a space", "points[0].eval", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Eval["wiki ce"] = 1 })}},
		{"huge eval key", "points[0].eval", []*pb.CurvePoint{with(func(p *pb.CurvePoint) { p.Eval[strings.Repeat("k", 129)] = 1 })}},
		{"empty point", "points[0].seq", []*pb.CurvePoint{{}}},
		{"steps backwards in a batch", "points[1].step", []*pb.CurvePoint{good(2, 70, 20), good(3, 65, 30)}},
		{"wall time backwards in a batch", "points[1].wall_time_s", []*pb.CurvePoint{good(2, 70, 20), good(3, 80, 15)}},
		{"steps backwards behind the committed", "points[0].step", []*pb.CurvePoint{good(2, 40, 20)}},
		{"wall time backwards behind the committed", "points[0].wall_time_s", []*pb.CurvePoint{good(2, 60, 5)}},
		{"beyond the trial's steps", "points[0].step", []*pb.CurvePoint{good(2, a.Trial.Steps+1, 20)}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantInvalid(t, report(tc.points...), tc.field) })
	}
	got, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: a.Trial.Id})
	if err != nil || len(got.Points) != 1 || got.Trial.LastSeq != 1 || got.Trial.StepsDone != 50 || got.Trial.AttemptWallTimeS != 10 {
		t.Fatalf("trial after bad points = %v, %v", got, err)
	}
	st, err := f.control.GetStudy(ctx, &pb.GetStudyRequest{StudyId: a.Trial.StudyId})
	if err != nil || st.Status.Study.SpentFlops != 50*1e9 || st.Status.Study.SpentGpuHours != 10.0/3600 {
		t.Errorf("study after bad points: spent %v FLOPs, %v GPU-hours (%v)", st.GetStatus().GetStudy().GetSpentFlops(),
			st.GetStatus().GetStudy().GetSpentGpuHours(), err)
	}
	// The same step again is not backwards (a final evaluation at the last step).
	if err := report(good(2, 50, 11)); err != nil {
		t.Errorf("a second point at the same step: %v", err)
	}
}

// A finish must carry its result: one with no points, or short of the trial's steps with
// no stop asked, is refused (FailedPrecondition) and the trial keeps running; after a
// cancel, the short finish ends it stopped.
func TestFinishNeedsTheCurve(t *testing.T) {
	ctx := context.Background()
	f := newServed(t, Config{})
	w, a := f.running(t)
	finish := func(final uint64) error {
		_, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt, FinalSeq: final})
		return err
	}
	if err := finish(0); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no points") {
		t.Errorf("finish without points: %v, want FailedPrecondition", err)
	}
	if _, err := f.worker.ReportPoints(ctx, &pb.ReportPointsRequest{WorkerId: w, TrialId: a.Trial.Id, LeaseId: a.LeaseId, Attempt: a.Attempt,
		Points: []*pb.CurvePoint{{Seq: 1, Step: 10, TrainLoss: 3}}}); err != nil {
		t.Fatal(err)
	}
	if err := finish(1); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "step 10 of 100") {
		t.Errorf("finish at step 10 of 100: %v, want FailedPrecondition naming the steps", err)
	}
	if tr, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: a.Trial.Id}); err != nil || tr.Trial.State != pb.TrialState_TRIAL_STATE_RUNNING {
		t.Fatalf("trial after refused finishes = %v, %v; want running", tr.GetTrial(), err)
	}
	if _, err := f.control.CancelTrial(ctx, &pb.CancelTrialRequest{TrialId: a.Trial.Id}); err != nil {
		t.Fatal(err)
	}
	if err := finish(1); err != nil {
		t.Fatalf("short finish after a stop was asked: %v", err)
	}
	if tr, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: a.Trial.Id}); err != nil || tr.Trial.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("cancelled trial after finish = %v, %v; want stopped", tr.GetTrial(), err)
	}

	// A trial cancelled before its first point may finish with none: it ends stopped.
	acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: w})
	if err != nil || acq.Assignment == nil {
		t.Fatalf("AcquireTrial = %v, %v", acq, err)
	}
	b := acq.Assignment
	if _, err := f.control.CancelTrial(ctx, &pb.CancelTrialRequest{TrialId: b.Trial.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.worker.FinishTrial(ctx, &pb.FinishTrialRequest{WorkerId: w, TrialId: b.Trial.Id, LeaseId: b.LeaseId, Attempt: b.Attempt}); err != nil {
		t.Fatalf("finish without points after a cancel: %v", err)
	}
	if tr, err := f.control.GetTrial(ctx, &pb.GetTrialRequest{TrialId: b.Trial.Id}); err != nil || tr.Trial.State != pb.TrialState_TRIAL_STATE_STOPPED {
		t.Errorf("trial cancelled before its first point = %v, %v; want stopped", tr.GetTrial(), err)
	}
}

// Listings come in pages that chain by token, visit every record once in id order, and
// end early rather than outgrow a message.
func TestListsArePaged(t *testing.T) {
	ctx := context.Background()
	f := newServed(t, Config{})
	var workerIDs []uint64
	// 1024 GPUs with 256-byte names make a worker of about 280 KiB: 2 MiB holds 7.
	bigGPUs := make([]*pb.Gpu, scheduler.MaxGPUsPerWorker)
	for i := range bigGPUs {
		bigGPUs[i] = &pb.Gpu{Index: int32(i), Name: strings.Repeat("g", scheduler.MaxGPUNameBytes), MemoryMib: 80 << 10}
	}
	for i := range 12 {
		r, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: fmt.Sprintf("w%d", i), Gpus: bigGPUs})
		if err != nil {
			t.Fatalf("Register: %v", err)
		}
		workerIDs = append(workerIDs, r.WorkerId)
	}
	spec := testSpec()
	spec.MaxParallel = 5
	var studyIDs []uint64
	for range 5 {
		c, err := f.control.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		studyIDs = append(studyIDs, c.Study.Id)
	}
	for range 5 { // five trials of the first study
		acq, err := f.worker.AcquireTrial(ctx, &pb.AcquireTrialRequest{WorkerId: workerIDs[0]})
		if err != nil || acq.Assignment == nil {
			t.Fatalf("AcquireTrial = %v, %v", acq, err)
		}
	}

	type pageFn func(size int32, token string) (ids []uint64, next string, bytes int, err error)
	walk := func(t *testing.T, size int32, list pageFn) (all []uint64, pages int) {
		t.Helper()
		token := ""
		for {
			ids, next, n, err := list(size, token)
			if err != nil {
				t.Fatalf("page %d: %v", pages, err)
			}
			if n > 4<<20 {
				t.Errorf("page %d is %d bytes, over the client's default 4 MiB", pages, n)
			}
			pages++
			all = append(all, ids...)
			if next == "" {
				return all, pages
			}
			if pages > 100 {
				t.Fatalf("pages never end")
			}
			token = next
		}
	}
	studies := func(size int32, token string) ([]uint64, string, int, error) {
		r, err := f.control.ListStudies(ctx, &pb.ListStudiesRequest{PageSize: size, PageToken: token})
		var ids []uint64
		for _, s := range r.GetStudies() {
			ids = append(ids, s.Study.Id)
		}
		return ids, r.GetNextPageToken(), proto.Size(r), err
	}
	trials := func(state pb.TrialState) pageFn {
		return func(size int32, token string) ([]uint64, string, int, error) {
			r, err := f.control.ListTrials(ctx, &pb.ListTrialsRequest{StudyId: studyIDs[0], State: state, PageSize: size, PageToken: token})
			var ids []uint64
			for _, tr := range r.GetTrials() {
				ids = append(ids, tr.Id)
			}
			return ids, r.GetNextPageToken(), proto.Size(r), err
		}
	}
	workers := func(size int32, token string) ([]uint64, string, int, error) {
		r, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{PageSize: size, PageToken: token})
		var ids []uint64
		for _, w := range r.GetWorkers() {
			ids = append(ids, w.Id)
		}
		return ids, r.GetNextPageToken(), proto.Size(r), err
	}
	t.Run("studies by 2", func(t *testing.T) {
		all, pages := walk(t, 2, studies)
		if fmt.Sprint(all) != fmt.Sprint(studyIDs) || pages != 3 {
			t.Errorf("studies %v in %d pages, want %v in 3", all, pages, studyIDs)
		}
	})
	t.Run("trials by 2", func(t *testing.T) {
		all, pages := walk(t, 2, trials(pb.TrialState_TRIAL_STATE_UNSPECIFIED))
		if len(all) != 5 || pages != 3 {
			t.Errorf("trials %v in %d pages, want 5 in 3", all, pages)
		}
		running, _ := walk(t, 2, trials(pb.TrialState_TRIAL_STATE_RUNNING))
		pending, _ := walk(t, 2, trials(pb.TrialState_TRIAL_STATE_PENDING))
		if fmt.Sprint(running) != fmt.Sprint(all) || len(pending) != 0 {
			t.Errorf("running %v, pending %v; want all five running", running, pending)
		}
	})
	t.Run("workers by bytes", func(t *testing.T) {
		// A page asked for 1000 ends at 2 MiB: 12 workers of 280 KiB take two pages.
		all, pages := walk(t, scheduler.MaxPageSize, workers)
		if fmt.Sprint(all) != fmt.Sprint(workerIDs) || pages != 2 {
			t.Errorf("workers %v in %d pages, want %v in 2", all, pages, workerIDs)
		}
		all, pages = walk(t, 5, workers)
		if len(all) != 12 || pages != 3 {
			t.Errorf("workers by 5: %d in %d pages, want 12 in 3", len(all), pages)
		}
	})
	t.Run("default page size", func(t *testing.T) {
		ids, next, _, err := studies(0, "")
		if err != nil || len(ids) != 5 || next != "" {
			t.Errorf("default page = %v, next %q, %v; want all 5 and no next page", ids, next, err)
		}
	})
}

// rawCodec sends bytes as they are, to feed the server messages that do not decode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return errors.New("no reply expected") }

// A request that is not valid protobuf is the caller's fault: InvalidArgument, not
// Internal, on unary and streaming calls; the next good call is served.
func TestMalformedRequestIsInvalidArgument(t *testing.T) {
	ctx := context.Background()
	f := newServed(t, Config{})
	for _, tc := range []struct {
		name, method string
		body         []byte
	}{
		{"truncated field", pb.WorkerService_Register_FullMethodName, []byte{0x12, 0x05, 'a'}},
		{"string not UTF-8", pb.WorkerService_Register_FullMethodName, []byte{0x12, 0x02, 0xff, 0xfe}},
		{"bad varint", pb.ControlService_ListTrials_FullMethodName, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.conn.Invoke(ctx, tc.method, tc.body, new([]byte), grpc.ForceCodecV2(rawCodec{}))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request: not a valid") {
				t.Errorf("got %v, want InvalidArgument", err)
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		desc := &grpc.StreamDesc{ServerStreams: true}
		s, err := f.conn.NewStream(ctx, desc, pb.ControlService_Backup_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg([]byte{0x0a, 0x09, 'x'}); err != nil {
			t.Fatal(err)
		}
		s.CloseSend()
		err = s.RecvMsg(new([]byte))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Backup with a malformed request: %v, want InvalidArgument", err)
		}
	})
	if _, err := f.worker.Register(ctx, &pb.RegisterRequest{Hostname: "after"}); err != nil {
		t.Errorf("a good request after the bad ones: %v", err)
	}
}

// A connection with no call for MaxConnectionIdle is closed by the server (GOAWAY): the
// client's connection leaves READY without the client doing anything.
func TestIdleConnectionIsClosed(t *testing.T) {
	ctx := context.Background()
	// A second, not less: the READY check right after the call must come well within the
	// idle time, also under the race detector on a loaded machine (200 ms was not).
	f := newServed(t, Config{MaxConnectionIdle: time.Second})
	if _, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{}); err != nil {
		t.Fatal(err)
	}
	if s := f.conn.GetState(); s != connectivity.Ready {
		t.Fatalf("state after a call = %v, want READY", s)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !f.conn.WaitForStateChange(wait, connectivity.Ready) {
		t.Fatalf("the idle connection was never closed")
	}
	// The client redials on its next call.
	if _, err := f.control.ListWorkers(ctx, &pb.ListWorkersRequest{}); err != nil {
		t.Errorf("call after the idle close: %v", err)
	}
}

// A database path that does not exist is an error unless CreateDB (-init) is set: a
// mistyped path no longer starts an empty coordinator.
func TestRunNeedsInitForANewDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.db")
	err := Run(context.Background(), Config{DBPath: path, Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "-init") {
		t.Fatalf("Run on a missing file = %v, want an error that says -init", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("the refused start created %s (%v)", path, statErr)
	}
	// With -init it creates the file and serves; cancelling stops it.
	ctx, cancel := context.WithCancel(context.Background())
	addrFile := filepath.Join(t.TempDir(), "addr")
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DBPath: path, CreateDB: true, Listen: "127.0.0.1:0", AddrFile: addrFile})
	}()
	testutil.WaitAddrFile(t, addrFile, time.Minute, done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The file exists now: no -init needed.
	if err := checkDBExists(path, false); err != nil {
		t.Errorf("existing database refused: %v", err)
	}
}

// BenchmarkValidateReportPoints measures the wire checks of one report of 100 points with
// six eval metrics each, the shape of a real worker's batch.
func BenchmarkValidateReportPoints(b *testing.B) {
	req := &pb.ReportPointsRequest{WorkerId: 1, TrialId: 1, LeaseId: "0123456789abcdef01234567", Attempt: 1}
	for i := range 100 {
		req.Points = append(req.Points, &pb.CurvePoint{
			Seq: uint64(i + 1), Step: int64(10 * (i + 1)), Tokens: int64(i) * 4096, TrainLoss: 3, WallTimeS: float64(i),
			Eval: map[string]float64{"wiki_ce": 3, "code_ce": 2, "arxiv_ce": 2.5, "book_ce": 3.1, "stackexchange_ce": 2.9, "mean_ce": 2.7},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := validateReportPoints(req); err != nil {
			b.Fatal(err)
		}
	}
}
