package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// fakePolicy decides the target fidelity with an even mixture, records every request and
// saves a state that counts its decisions. onNext, when set, runs inside Next.
type fakePolicy struct {
	mu         sync.Mutex
	requests   []bo.Request
	onNext     func()
	recommends int
}

// recommendCalls counts the Recommend calls so far.
func (p *fakePolicy) recommendCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recommends
}

func (p *fakePolicy) Name() string { return "fake" }

func (p *fakePolicy) Next(_ context.Context, req bo.Request) (bo.Decision, error) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	hook := p.onNext
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	pr := req.Problem
	t := bo.Trial{Scale: pr.TargetScale, Steps: pr.TargetSteps}
	if pr.Cost(t) > pr.BudgetLeft {
		return bo.Decision{}, bo.ErrNoTrialFits
	}
	t.Mixture = make([]float64, len(pr.Domains))
	for i := range t.Mixture {
		t.Mixture[i] = 1 / float64(len(pr.Domains))
	}
	return bo.Decision{Trial: t, State: []byte{byte(req.Decision + 1)}}, nil
}

func (p *fakePolicy) Recommend(_ context.Context, req bo.Request) (bo.Recommendation, error) {
	p.mu.Lock()
	p.recommends++
	p.mu.Unlock()
	if len(req.Observations) == 0 {
		return bo.Recommendation{}, bo.ErrNoObservations
	}
	o := req.Observations[len(req.Observations)-1]
	v := o.Curve[len(o.Curve)-1].Value
	return bo.Recommendation{Mixture: o.Mixture, Value: v, Lower: v, Upper: v, Basis: "fake"}, nil
}

func (p *fakePolicy) lastRequest(t *testing.T) bo.Request {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.requests) == 0 {
		t.Fatal("the policy was never asked")
	}
	return p.requests[len(p.requests)-1]
}

func (p *fakePolicy) setOnNext(f func()) {
	p.mu.Lock()
	p.onNext = f
	p.mu.Unlock()
}

const (
	testTTL        = 10 * time.Second
	testGrace      = 30 * time.Second
	smallFlops     = 1e9 // flops per step at scale "small"
	targetSteps    = 200
	targetCost     = smallFlops * targetSteps
	defaultBudget  = 10 * targetCost
	testMaxWait    = time.Minute
	noWait         = time.Duration(0)
	shortWait      = 5 * time.Millisecond
	testMaxAttempt = 3
)

// env is a scheduler over a real store in a temporary directory.
type env struct {
	t      *testing.T
	path   string
	db     *store.DB
	clock  *testutil.Clock
	cfg    Config
	s      *Scheduler
	policy *fakePolicy // nil when the real policies are used
}

type envOption func(*env)

// withFakePolicy makes every study, whatever its policy name, use one fakePolicy.
func withFakePolicy() envOption {
	return func(e *env) {
		e.policy = &fakePolicy{}
		e.cfg.NewPolicy = func(string) (bo.Policy, error) { return e.policy, nil }
	}
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, path: testutil.StorePath(t), clock: testutil.NewClock()}
	e.cfg = Config{
		LeaseTTL: testTTL, RestartGrace: testGrace, MaxAttempts: testMaxAttempt,
		MaxWait: testMaxWait, Clock: e.clock,
	}
	for _, o := range opts {
		o(e)
	}
	e.open()
	t.Cleanup(func() { testutil.CheckAndClose(t, e.db) }) // the last store restart opened
	return e
}

func (e *env) open() {
	e.t.Helper()
	e.db = testutil.OpenStore(e.t, e.path)
	var err error
	if e.s, err = New(e.db, e.cfg); err != nil {
		e.t.Fatalf("New: %v", err)
	}
}

// restart closes the store and builds a new scheduler over the same file, as a restarted
// coordinator would.
func (e *env) restart() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatalf("close store: %v", err)
	}
	e.open()
}

func baseSpec() *pb.StudySpec {
	return &pb.StudySpec{
		Name: "test",
		Domains: []*pb.Domain{
			{Name: "wiki"},
			{Name: "code", MinWeight: 0.1, MaxWeight: 0.9},
		},
		Scales: []*pb.Scale{
			{Name: "small", Params: 1e6, FlopsPerStep: smallFlops},
			{Name: "big", Params: 1e8, TokensPerStep: 1000},
		},
		Steps:       []int64{100, targetSteps},
		Objective:   &pb.Objective{Metric: "train_loss"},
		Target:      &pb.Fidelity{Scale: "small", Steps: targetSteps},
		BudgetFlops: defaultBudget,
		Seed:        7,
	}
}

func (e *env) createStudy(mut func(*pb.StudySpec)) *pb.Study {
	e.t.Helper()
	spec := baseSpec()
	if mut != nil {
		mut(spec)
	}
	st, err := e.s.CreateStudy(context.Background(), spec)
	if err != nil {
		e.t.Fatalf("CreateStudy: %v", err)
	}
	return st
}

func (e *env) register(host string, capacity int32) uint64 {
	e.t.Helper()
	id, err := e.s.Register(context.Background(), Registration{Hostname: host, SimulatedCapacity: capacity})
	if err != nil {
		e.t.Fatalf("Register: %v", err)
	}
	return id
}

// acquire asks once without waiting for work to appear.
func (e *env) acquire(worker uint64) *pb.Assignment {
	e.t.Helper()
	a, err := e.s.AcquireTrial(context.Background(), worker, noWait)
	if err != nil {
		e.t.Fatalf("AcquireTrial(worker %d): %v", worker, err)
	}
	return a
}

func (e *env) mustAcquire(worker uint64) *pb.Assignment {
	e.t.Helper()
	a := e.acquire(worker)
	if a == nil {
		e.t.Fatalf("AcquireTrial(worker %d): no assignment", worker)
	}
	return a
}

func heldOf(worker uint64, a *pb.Assignment) AttemptClaim {
	return AttemptClaim{WorkerID: worker, TrialID: a.Trial.Id, LeaseID: a.LeaseId, Attempt: a.Attempt}
}

// pts builds points seq from..to with step = 10*seq and train loss 10/seq.
func pts(from, to uint64) []*pb.CurvePoint {
	var out []*pb.CurvePoint
	for s := from; s <= to; s++ {
		out = append(out, &pb.CurvePoint{Seq: s, Step: int64(10 * s), TrainLoss: 10 / float64(s)})
	}
	return out
}

func (e *env) report(h AttemptClaim, points []*pb.CurvePoint) uint64 {
	e.t.Helper()
	acked, _, err := e.s.ReportPoints(context.Background(), h, points)
	if err != nil {
		e.t.Fatalf("ReportPoints: %v", err)
	}
	return acked
}

func (e *env) finish(h AttemptClaim, finalSeq uint64) {
	e.t.Helper()
	if err := e.s.FinishTrial(context.Background(), h, finalSeq, "", 0); err != nil {
		e.t.Fatalf("FinishTrial: %v", err)
	}
}

// runToEnd reports every step of an assignment and finishes it.
func (e *env) runToEnd(h AttemptClaim, steps int64) {
	e.t.Helper()
	e.report(h, []*pb.CurvePoint{{Seq: 1, Step: steps, TrainLoss: 1}})
	e.finish(h, 1)
}

func (e *env) trial(id uint64) (*pb.Trial, []*pb.CurvePoint) {
	e.t.Helper()
	t, points, err := e.s.Trial(context.Background(), id)
	if err != nil {
		e.t.Fatalf("Trial(%d): %v", id, err)
	}
	return t, points
}

func (e *env) study(id uint64) *pb.StudyStatus {
	e.t.Helper()
	st, err := e.s.StudyStatus(context.Background(), id)
	if err != nil {
		e.t.Fatalf("StudyStatus(%d): %v", id, err)
	}
	return st
}

func wantErr(t *testing.T, err, class error, what string) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("%s: got error %v, want %v", what, err, class)
	}
}

var (
	real      = pb.WorkerKind_WORKER_KIND_REAL
	simulated = pb.WorkerKind_WORKER_KIND_SIMULATED
)

func (e *env) registerAs(host string, id *pb.WorkerIdentity) uint64 {
	e.t.Helper()
	w, err := e.s.Register(context.Background(), Registration{Hostname: host, SimulatedCapacity: 2, Identity: id})
	if err != nil {
		e.t.Fatalf("Register: %v", err)
	}
	return w
}

// sweep runs the lease sweep as Run's ticker does.
func (e *env) sweep() {
	e.t.Helper()
	e.s.noteSweep()
	if err := e.s.ExpireLeases(); err != nil {
		e.t.Fatal(err)
	}
}

func i32(v int32) *int32 { return &v }

func f64(v float64) *float64 { return &v }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
