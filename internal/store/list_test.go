package store

import (
	"errors"
	"math"
	"slices"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// TestStudiesAfterPages walks five studies two at a time: every study once, in id order,
// and "more" exactly while some are left.
func TestStudiesAfterPages(t *testing.T) {
	db := openTest(t)
	update(t, db, func(tx *Tx) error {
		for range 5 {
			id := must[uint64](t)(tx.NextStudyID())
			if err := tx.PutStudy(study(id, "s")); err != nil {
				return err
			}
		}
		return nil
	})
	var got []uint64
	var pages [][]uint64
	view(t, db, func(tx *Tx) error {
		after := uint64(0)
		for {
			page, more, err := tx.StudiesAfter(after, 2)
			if err != nil {
				return err
			}
			pages = append(pages, ids(page))
			got = append(got, ids(page)...)
			if !more {
				return nil
			}
			after = page[len(page)-1].Id
		}
	})
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("studies = %v, want %v", got, want)
	}
	if len(pages) != 3 || len(pages[2]) != 1 {
		t.Errorf("pages = %v, want [1 2] [3 4] [5]", pages)
	}
	view(t, db, func(tx *Tx) error {
		if page, more, err := tx.StudiesAfter(5, 2); err != nil || len(page) != 0 || more {
			t.Errorf("after the last: %v, %v, %v", ids(page), more, err)
		}
		if page, more, err := tx.StudiesAfter(4, 1); err != nil || !slices.Equal(ids(page), []uint64{5}) || more {
			t.Errorf("the last page filled exactly: %v, more %v, %v", ids(page), more, err)
		}
		if page, _, err := tx.StudiesAfter(math.MaxUint64, 2); err != nil || len(page) != 0 {
			t.Errorf("after the largest id: %v, %v", ids(page), err)
		}
		if _, _, err := tx.StudiesAfter(0, 0); err == nil {
			t.Errorf("limit 0 accepted")
		}
		return nil
	})
}

// TestTrialsOfStudyAfterPages pages one study's trials with and without a filter: no
// other study's trial shows up, and a filtered page skips what the filter refuses.
func TestTrialsOfStudyAfterPages(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db) // trials 1, 2, 4 in study 1, 3 in study 2
	update(t, db, func(tx *Tx) error {
		for range 3 { // trials 5, 6, 7 in study 1, 6 running
			id := must[uint64](t)(tx.NextTrialID())
			state := pb.TrialState_TRIAL_STATE_PENDING
			if id == 6 {
				state = pb.TrialState_TRIAL_STATE_RUNNING
			}
			if err := tx.PutTrial(trial(id, 1, state)); err != nil {
				return err
			}
		}
		return nil
	})
	walk := func(keep func(*pb.Trial) bool, limit int) []uint64 {
		var got []uint64
		view(t, db, func(tx *Tx) error {
			after := uint64(0)
			for {
				page, more, err := tx.TrialsOfStudyAfter(1, after, limit, keep)
				if err != nil {
					return err
				}
				got = append(got, ids(page)...)
				if !more {
					return nil
				}
				if len(page) == 0 {
					t.Fatalf("an empty page says more follow")
				}
				after = page[len(page)-1].Id
			}
		})
		return got
	}
	if got, want := walk(nil, 2), []uint64{1, 2, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("trials of study 1 = %v, want %v", got, want)
	}
	pending := func(tr *pb.Trial) bool { return tr.State == pb.TrialState_TRIAL_STATE_PENDING }
	if got, want := walk(pending, 2), []uint64{1, 2, 4, 5, 7}; !slices.Equal(got, want) {
		t.Errorf("pending trials of study 1 = %v, want %v", got, want)
	}
	view(t, db, func(tx *Tx) error {
		// The filter matches nothing after 6: the page is empty and says so.
		page, more, err := tx.TrialsOfStudyAfter(1, 5, 2, func(tr *pb.Trial) bool { return tr.Id == 6 })
		if err != nil || !slices.Equal(ids(page), []uint64{6}) || more {
			t.Errorf("filtered page = %v, more %v, %v; want [6], false", ids(page), more, err)
		}
		if _, _, err := tx.TrialsOfStudyAfter(99, 0, 2, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown study: %v, want ErrNotFound", err)
		}
		return nil
	})
}
