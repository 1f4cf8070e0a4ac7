package store

import (
	"errors"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// DeleteStudy removes the study, its trials, their index entries, points and the policy
// state, and leaves other studies whole (Check on close verifies the index).
func TestDeleteStudy(t *testing.T) {
	db := openTest(t)
	var gone, kept uint64
	var goneTrials []uint64
	update(t, db, func(tx *Tx) error {
		for i := range 2 {
			id, err := tx.NextStudyID()
			if err != nil {
				return err
			}
			if err := tx.PutStudy(&pb.Study{Id: id}); err != nil {
				return err
			}
			if err := tx.PutPolicyState(id, []byte("state")); err != nil {
				return err
			}
			for range 3 {
				tid, err := tx.NextTrialID()
				if err != nil {
					return err
				}
				if err := tx.PutTrial(&pb.Trial{Id: tid, StudyId: id}); err != nil {
					return err
				}
				if err := tx.AppendPoints(tid, 1, []*pb.CurvePoint{{Seq: 1, Step: 10}}); err != nil {
					return err
				}
				if i == 0 {
					goneTrials = append(goneTrials, tid)
				}
			}
			if i == 0 {
				gone = id
			} else {
				kept = id
			}
		}
		return nil
	})
	update(t, db, func(tx *Tx) error {
		n, err := tx.DeleteStudy(gone)
		if err != nil || n != 3 {
			t.Errorf("DeleteStudy = %d, %v; want 3 trials", n, err)
		}
		return nil
	})
	if err := db.View(func(tx *Tx) error {
		if _, err := tx.Study(gone); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted study: %v", err)
		}
		for _, tid := range goneTrials {
			if _, err := tx.Trial(tid); !errors.Is(err, ErrNotFound) {
				t.Errorf("trial %d of the deleted study: %v", tid, err)
			}
		}
		if ts, err := tx.TrialsOfStudy(kept); err != nil || len(ts) != 3 {
			t.Errorf("the other study's trials: %d, %v", len(ts), err)
		}
		if st, err := tx.PolicyState(kept); err != nil || string(st) != "state" {
			t.Errorf("the other study's policy state: %q, %v", st, err)
		}
		_, err := tx.DeleteStudy(gone)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteWorker(t *testing.T) {
	db := openTest(t)
	var id uint64
	update(t, db, func(tx *Tx) error {
		var err error
		if id, err = tx.NextWorkerID(); err != nil {
			return err
		}
		return tx.PutWorker(&pb.Worker{Id: id, Hostname: "h"})
	})
	update(t, db, func(tx *Tx) error { return tx.DeleteWorker(id) })
	if err := db.View(func(tx *Tx) error {
		if _, err := tx.Worker(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted worker: %v", err)
		}
		if err := tx.DeleteWorker(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
