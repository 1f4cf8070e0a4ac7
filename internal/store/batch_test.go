package store

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Concurrent Batch calls all commit, and one that fails leaves the others' writes intact
// and writes nothing itself. Each writer appends seq 1 of its own attempt: the writers
// commit in no particular order, and an attempt's points must be appended in seq order.
func TestBatchConcurrentWriters(t *testing.T) {
	db := openTest(t)
	var trialID uint64
	update(t, db, func(tx *Tx) error {
		sid, err := tx.NextStudyID()
		if err != nil {
			return err
		}
		if err := tx.PutStudy(&pb.Study{Id: sid}); err != nil {
			return err
		}
		trialID, err = tx.NextTrialID()
		if err != nil {
			return err
		}
		return tx.PutTrial(&pb.Trial{Id: trialID, StudyId: sid, Attempt: 1})
	})
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Batch(func(tx *Tx) error {
				if err := tx.AppendPoints(trialID, int32(i+1), []*pb.CurvePoint{{Seq: 1, Step: int64(i + 1)}}); err != nil {
					return err
				}
				if i%10 == 9 {
					return errBoom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	var all map[int32][]*pb.CurvePoint
	view(t, db, func(tx *Tx) (err error) { all, err = tx.AllPoints(trialID); return err })
	for i, err := range errs {
		failing := i%10 == 9
		if failing != errors.Is(err, errBoom) {
			t.Errorf("batch %d: err %v, want boom %v", i, err, failing)
		}
		pts := all[int32(i+1)]
		if stored := len(pts) == 1 && pts[0].Step == int64(i+1); stored == failing {
			t.Errorf("batch %d: point stored %v (%v), want %v", i, stored, pts, !failing)
		}
	}
	if len(all) != 36 {
		t.Errorf("%d attempts have points, want 36", len(all))
	}
}

// A backup taken while the store is open opens as a store with the same data.
func TestBackupOpensWithTheSameData(t *testing.T) {
	db := openTest(t)
	var id uint64
	update(t, db, func(tx *Tx) error {
		var err error
		if id, err = tx.NextStudyID(); err != nil {
			return err
		}
		return tx.PutStudy(&pb.Study{Id: id, Spec: &pb.StudySpec{Name: "backed-up"}})
	})
	path := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.Backup(f)
	if err != nil || n == 0 {
		t.Fatalf("Backup = %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copyDB := openAtTest(t, path)
	var got *pb.Study
	view(t, copyDB, func(tx *Tx) (err error) { got, err = tx.Study(id); return err })
	if got.Spec.GetName() != "backed-up" {
		t.Fatalf("study in the backup: %v", got)
	}
}
