// Package scheduler owns the trial lifecycle: it asks a study's policy for the next trial,
// leases trials to workers, commits their curve points idempotently, renews and expires
// leases, and keeps each study's budget. Every state transition is one store transaction;
// leases' deadlines live in memory and are rebuilt, with a grace period, after a restart.
//
// The files follow a trial attempt's lease, the way a broker's follow a delivery:
// assign.go decides trials for the workers that ask and grants their leases (placement.go
// fits trials to workers' GPUs and selectors, earlystop.go asks the policy which live
// curves to stop); leases.go renews, fences, expires and requeues attempts, and outage.go
// keeps the coordinator's own outages from counting against them; reports.go takes a held
// attempt's points and its end. studies.go creates, changes and ends studies, completion
// included, and failures.go keeps their failure budgets; status.go and final.go answer
// what a study recommends. trials.go and workers.go serve what an operator does with
// single trials and workers.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/clock"
	"github.com/mixopt/mixopt/internal/metrics"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The Scheduler itself: its configuration, construction, background loop and locking.

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

// Config returns the effective configuration.
func (s *Scheduler) Config() Config { return s.cfg }

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

// Backup writes a consistent copy of the database to w while the coordinator serves.
func (s *Scheduler) Backup(w io.Writer) (int64, error) { return s.db.Backup(w) }

func unixMs(t time.Time) int64 { return t.UnixMilli() }

// wrapStore turns store sentinel errors into the scheduler's classes.
func wrapStore(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}
