// Package scheduler owns the trial lifecycle: it asks a study's policy for the next trial,
// leases trials to workers, commits their curve points idempotently, renews and expires
// leases, and keeps each study's budget. Every state transition is one store transaction;
// leases' deadlines live in memory and are rebuilt, with a grace period, after a restart.
package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/clock"
	"github.com/mixopt/mixopt/internal/metrics"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Clock tells the time; tests inject a fake one to drive lease expiry. It is the one
// interface the worker reads the time through too.
type Clock = clock.Clock

// Config tunes the scheduler. Zero fields take the defaults below.
type Config struct {
	// LeaseTTL is how long a trial attempt stays leased without a heartbeat or report.
	LeaseTTL time.Duration
	// HeartbeatInterval is what workers are told to heartbeat at.
	HeartbeatInterval time.Duration
	// RestartGrace extends every lease found running at start-up, so that workers can
	// reattach before anything expires.
	RestartGrace time.Duration
	// FenceAfter is how long a worker may go without reaching the coordinator before it
	// stops its trials. It must be shorter than LeaseTTL, so that a worker has stopped
	// before its trial is requeued elsewhere.
	FenceAfter time.Duration
	// MaxAttempts is the delivery limit: a trial whose lease expired this many times is lost.
	MaxAttempts int32
	// MaxWait caps how long AcquireTrial may hold a call open.
	MaxWait time.Duration
	Clock   Clock
	Logger  *zap.Logger
	// NewPolicy builds a study's policy by name (default bo.New).
	NewPolicy func(name string) (bo.Policy, error)
	// Metrics receives measurements (default: none recorded).
	Metrics metrics.Recorder
}

func (c *Config) setDefaults() {
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.LeaseTTL / 6
	}
	if c.FenceAfter <= 0 || c.FenceAfter >= c.LeaseTTL {
		c.FenceAfter = c.LeaseTTL * 2 / 3
	}
	if c.RestartGrace <= 0 {
		c.RestartGrace = 30 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.NewPolicy == nil {
		c.NewPolicy = bo.New
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Nop{}
	}
}

// lease is the in-memory side of a trial attempt's lease; the store holds its id, attempt
// and worker, the deadline is rebuilt at start-up.
type lease struct {
	id       string
	attempt  int32
	workerID uint64
	studyID  uint64
	gpus     []int32
	deadline time.Time
	// granted is when the attempt was leased (zero for leases recovered at start-up, which
	// predate it).
	granted time.Time
}

// outage is a span in which the coordinator itself did not run: a restart, or a freeze
// seen as a gap in its lease sweep. Workers cannot reach it then, so they fence and their
// leases lapse through no fault of theirs.
type outage struct {
	start, end time.Time
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	cfg Config
	db  *store.DB
	log *zap.Logger

	// decideMu serialises decisions so two workers never get trials decided from the
	// same snapshot; it is never held by code that holds mu.
	decideMu sync.Mutex
	// assignQueue holds requests waiting for the next group decision (guarded by mu).
	assignQueue []*assignReq

	mu         sync.Mutex
	leases     map[uint64]*lease    // by trial id
	heartbeats map[uint64]time.Time // last contact by worker id
	wake       chan struct{}        // closed and replaced when work may have appeared
	recs       map[uint64]recCache  // recommendation cache by study id
	versions   map[uint64]uint64    // bumped when a study's data changes
	curves     *curveCache          // objective curves, so decisions need not re-read points
	// lastSweep is when Run last swept leases (zero until it first does); a sweep overdue
	// by far more than its interval means the coordinator was frozen.
	lastSweep time.Time
	// lastOutage is the most recent outage of the coordinator's own (zero: none seen).
	lastOutage outage
}

type recCache struct {
	version uint64
	rec     *pb.Recommendation
}

// New builds a scheduler over an open store and recovers the leases of running trials.
func New(db *store.DB, cfg Config) (*Scheduler, error) {
	cfg.setDefaults()
	s := &Scheduler{
		cfg: cfg, db: db, log: cfg.Logger,
		leases:     map[uint64]*lease{},
		heartbeats: map[uint64]time.Time{},
		wake:       make(chan struct{}),
		recs:       map[uint64]recCache{},
		versions:   map[uint64]uint64{},
		curves:     newCurveCache(),
	}
	var running []*pb.Trial
	err := db.View(func(tx *store.Tx) error {
		var err error
		running, err = tx.AllTrials(pb.TrialState_TRIAL_STATE_RUNNING)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("recover running trials: %w", err)
	}
	now := cfg.Clock.Now()
	deadline := now.Add(cfg.RestartGrace + cfg.LeaseTTL)
	if len(running) > 0 {
		// Attempts that lapse because their workers gave up while the coordinator was
		// down are not the trials' fault.
		s.lastOutage = outage{end: now}
	}
	for _, t := range running {
		s.leases[t.Id] = &lease{id: t.LeaseId, attempt: t.Attempt, workerID: t.WorkerId, studyID: t.StudyId, gpus: t.GpuIndices, deadline: deadline}
	}
	if len(running) > 0 {
		s.log.Info("recovered running trials; workers may reattach",
			zap.Int("trials", len(running)), zap.Duration("grace", cfg.RestartGrace))
	}
	return s, nil
}

// Config returns the effective configuration.
func (s *Scheduler) Config() Config { return s.cfg }

// Run expires leases and refreshes the per-study gauges until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	tick := time.NewTicker(s.sweepEvery())
	defer tick.Stop()
	gauges := time.NewTicker(5 * time.Second)
	defer gauges.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.noteSweep()
			if err := s.ExpireLeases(); err != nil {
				s.log.Error("expire leases", zap.Error(err))
			}
		case <-gauges.C:
			if err := s.recordGauges(); err != nil {
				s.log.Warn("record metrics", zap.Error(err))
			}
		}
	}
}

// sweepEvery is the interval of Run's lease sweep.
func (s *Scheduler) sweepEvery() time.Duration { return s.cfg.LeaseTTL / 10 }

// outageGap is how long without a lease sweep counts as an outage of the coordinator's
// own: two heartbeat intervals without answering anyone, and three sweep intervals, far
// beyond the scheduling jitter of the sweep's ticker.
func (s *Scheduler) outageGap() time.Duration {
	return max(2*s.cfg.HeartbeatInterval, 3*s.sweepEvery())
}

// noteSweep records that the lease sweep runs now, and an outage when it is overdue.
func (s *Scheduler) noteSweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.noteOverdueLocked(now)
	s.lastSweep = now
}

// noteOverdueLocked records an outage when the sweep is overdue at now. Request handlers
// call it too: after a freeze they may run before the sweep does. Callers hold s.mu.
func (s *Scheduler) noteOverdueLocked(now time.Time) {
	if s.lastSweep.IsZero() || now.Sub(s.lastSweep) <= s.outageGap() {
		return
	}
	if s.lastOutage.start.Equal(s.lastSweep) {
		s.lastOutage.end = now // the same outage, seen again before the sweep ran
		return
	}
	s.lastOutage = outage{start: s.lastSweep, end: now}
	s.log.Warn("the coordinator did not run for a while (frozen or paused); leases that lapse from it are not counted against their trials",
		zap.Duration("gap", now.Sub(s.lastSweep)))
}

// lapseUncountedLocked says whether an attempt whose lease lapses now (it expired, or
// its worker fenced itself) lapsed through a coordinator outage: the lease was live
// during a recent one. A worker fences within FenceAfter of its last contact, and its
// lease expires at most a TTL after it was last renewed, so a lapse later than both
// after the outage ended has another cause. Callers hold s.mu.
func (s *Scheduler) lapseUncountedLocked(l *lease, now time.Time) bool {
	s.noteOverdueLocked(now)
	o := s.lastOutage
	if o.end.IsZero() || !l.granted.Before(o.end) {
		return false
	}
	return now.Sub(o.end) <= s.cfg.LeaseTTL+s.cfg.FenceAfter
}

// recordGauges sets each study's trial counts and budget from one read transaction.
func (s *Scheduler) recordGauges() error {
	return s.db.View(func(tx *store.Tx) error {
		studies, err := tx.Studies()
		if err != nil {
			return err
		}
		for _, st := range studies {
			trials, err := tx.TrialsOfStudy(st.Id)
			if err != nil {
				return err
			}
			byState := map[string]int{}
			for _, t := range trials {
				byState[StateName(t.State)]++
			}
			s.cfg.Metrics.SetTrials(st.Id, byState)
			s.cfg.Metrics.SetBudget(st.Id, st.SpentFlops, st.Spec.BudgetFlops)
		}
		return nil
	})
}

func (s *Scheduler) now() time.Time { return s.cfg.Clock.Now() }

// notifyLocked wakes every long-polling AcquireTrial call. Callers hold s.mu; notify
// takes it.
func (s *Scheduler) notifyLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

func (s *Scheduler) notify() {
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Scheduler) bumpLocked(studyID uint64) { s.versions[studyID]++ }

func newLeaseID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the runtime guarantees Read never fails
	}
	return hex.EncodeToString(b[:])
}

func unixMs(t time.Time) int64 { return t.UnixMilli() }

// wrapStore turns store sentinel errors into the scheduler's classes.
func wrapStore(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}
