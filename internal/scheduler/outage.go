package scheduler

import (
	"time"

	"go.uber.org/zap"
)

// Outages of the coordinator's own (a restart, a freeze): workers cannot reach it then,
// so the attempts whose leases lapse from one are requeued without counting against the
// delivery limit.

// outage is a span in which the coordinator itself did not run: a restart, or a freeze
// seen as a gap in its lease sweep. Workers cannot reach it then, so they fence and their
// leases lapse through no fault of theirs.
type outage struct {
	start, end time.Time
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
