package store

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrWrite: a write transaction could not be committed (disk full, an I/O error, any
// failure of bbolt to write or sync the file). bbolt rolled it back, so nothing of it
// is stored and the file holds what it held before; the same write may succeed later,
// once the cause is gone, without reopening the store.
var ErrWrite = errors.New("store write failed")

// WriteHealth is what the store has seen of its commits since it was opened, for
// operators: a failing disk shows here before anything else notices.
type WriteHealth struct {
	// Failures counts write transactions whose commit failed.
	Failures uint64
	// LastError is the last commit failure (empty when there was none) and
	// LastErrorAt when it happened.
	LastError   string
	LastErrorAt time.Time
	// LastOKAt is when a write transaction last committed (zero: none yet), so a
	// reader can tell whether writes have recovered since LastErrorAt.
	LastOKAt time.Time
}

// maxHealthError bounds the error text kept for WriteHealth: it goes on the wire to
// operators, and an error wrapping a path can be long.
const maxHealthError = 512

// writeHealth tracks commits; safe for concurrent use.
type writeHealth struct {
	mu     sync.Mutex
	health WriteHealth
	// fault, when set, fails commits on purpose (SetWriteFault).
	fault func() error
	// onError is Options.OnWriteError.
	onError func(error)
	now     func() time.Time
}

func (h *writeHealth) ok() {
	h.mu.Lock()
	h.health.LastOKAt = h.now()
	h.mu.Unlock()
}

func (h *writeHealth) failed(err error) {
	msg := err.Error()
	if len(msg) > maxHealthError {
		msg = msg[:maxHealthError]
	}
	h.mu.Lock()
	h.health.Failures++
	h.health.LastError = msg
	h.health.LastErrorAt = h.now()
	onError := h.onError
	h.mu.Unlock()
	if onError != nil {
		onError(err)
	}
}

// injected returns the error the fault hook asks for, nil when none is set.
func (h *writeHealth) injected() error {
	h.mu.Lock()
	fault := h.fault
	h.mu.Unlock()
	if fault == nil {
		return nil
	}
	if err := fault(); err != nil {
		return fmt.Errorf("injected fault: %w", err)
	}
	return nil
}

// WriteHealth returns what the store has seen of its commits since Open.
func (db *DB) WriteHealth() WriteHealth {
	db.health.mu.Lock()
	defer db.health.mu.Unlock()
	return db.health.health
}

// SetWriteFault makes every commit ask fault first: when it returns an error the
// transaction is rolled back and the caller gets that error as a failed commit
// (ErrWrite), exactly as when the disk is full. nil removes the hook. It is for
// fault-injection tests of the code above the store; production code never sets it.
func (db *DB) SetWriteFault(fault func() error) {
	db.health.mu.Lock()
	db.health.fault = fault
	db.health.mu.Unlock()
}
