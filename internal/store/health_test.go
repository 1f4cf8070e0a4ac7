package store

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// A commit that fails (here: an injected ENOSPC) must keep nothing of its
// transaction, say ErrWrite with the cause, be counted and reported, and leave the
// store writable once the cause is gone, without reopening it.
func TestWriteFailure(t *testing.T) {
	var reported []error
	var mu sync.Mutex
	path := t.TempDir() + "/mixopt.db"
	db, err := Open(path, Options{OnWriteError: func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() }})
	ok(t, err)
	t.Cleanup(func() { ok(t, db.Check()); ok(t, db.Close()) })
	clock := time.Unix(1e9, 0)
	db.health.now = func() time.Time { clock = clock.Add(time.Second); return clock } // each event a second later
	seedStudies(t, db)
	before := db.WriteHealth()
	if before.Failures != 0 || before.LastOKAt.IsZero() {
		t.Fatalf("health after good writes = %+v, want no failures and a last success", before)
	}

	db.SetWriteFault(func() error { return syscall.ENOSPC })
	for name, write := range map[string]func(func(*Tx) error) error{"Update": db.Update, "Batch": db.Batch} {
		err := write(func(tx *Tx) error {
			id, err := tx.NextStudyID()
			if err != nil {
				return err
			}
			if err := tx.PutStudy(study(id, "lost")); err != nil {
				return err
			}
			return tx.AppendPoints(1, 1, pointsRange(1, 3))
		})
		if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s with a failing commit: %v, want ErrWrite wrapping ENOSPC", name, err)
		}
	}
	// A transaction whose own function fails is not a write failure.
	fnErr := errors.New("refused")
	if err := db.Update(func(*Tx) error { return fnErr }); !errors.Is(err, fnErr) || errors.Is(err, ErrWrite) {
		t.Fatalf("Update whose fn fails: %v, want fn's error and not ErrWrite", err)
	}
	h := db.WriteHealth()
	if h.Failures != 2 || h.LastErrorAt.IsZero() || h.LastError == "" {
		t.Fatalf("health after two failed commits = %+v", h)
	}
	mu.Lock()
	if len(reported) != 2 || !errors.Is(reported[0], ErrWrite) {
		t.Fatalf("OnWriteError got %v, want the two ErrWrite", reported)
	}
	mu.Unlock()
	view(t, db, func(tx *Tx) error {
		studies := must[[]*pb.Study](t)(tx.Studies())
		if len(studies) != 2 {
			t.Errorf("studies after failed commits: %d, want the 2 committed before", len(studies))
		}
		if pts := must[[]*pb.CurvePoint](t)(tx.Points(1, 1)); len(pts) != 0 {
			t.Errorf("points after failed commits: %v, want none", seqs(pts))
		}
		return nil
	})

	// The disk has room again: the same write succeeds, ids continue where the last
	// committed transaction left them.
	db.SetWriteFault(nil)
	update(t, db, func(tx *Tx) error {
		id, err := tx.NextStudyID()
		if err != nil {
			return err
		}
		if id != 3 {
			t.Errorf("study id after recovery = %d, want 3 (failed commits allocate nothing)", id)
		}
		if err := tx.PutStudy(study(id, "kept")); err != nil {
			return err
		}
		return tx.AppendPoints(1, 1, pointsRange(1, 3))
	})
	if h := db.WriteHealth(); h.Failures != 2 || !h.LastOKAt.After(h.LastErrorAt) {
		t.Fatalf("health after recovery = %+v, want the 2 failures and a later success", h)
	}
}
