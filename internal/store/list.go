package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Pages of listings: each reads only the records it returns (a cursor seeks past the
// previous page), so a listing's cost and size follow the page, not the history. Every
// record goes through the same reader as a single get (tx.Study, tx.Trial), so the
// checks on read apply to pages too.

// StudiesAfter returns up to limit studies with an id above after, ascending, and
// whether more follow.
func (tx *Tx) StudiesAfter(after uint64, limit int) ([]*pb.Study, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("studies after %d: limit %d must be positive", after, limit)
	}
	if after == math.MaxUint64 {
		return nil, false, nil
	}
	b, err := tx.bucket(bucketStudies)
	if err != nil {
		return nil, false, fmt.Errorf("studies after %d: %w", after, err)
	}
	var out []*pb.Study
	c := b.Cursor()
	for k, _ := c.Seek(u64(after + 1)); k != nil; k, _ = c.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		id, err := decodeU64(k)
		if err != nil {
			return nil, false, fmt.Errorf("studies after %d: key %x: %w", after, k, err)
		}
		st, err := tx.Study(id)
		if err != nil {
			return nil, false, fmt.Errorf("studies after %d: %w", after, err)
		}
		out = append(out, st)
	}
	return out, false, nil
}

// TrialsOfStudyAfter returns up to limit trials of a study with an id above after,
// ascending, that keep accepts (nil: all), and whether more accepted ones follow;
// ErrNotFound when the study does not exist. A filter that matches few trials scans on
// until it fills the page or the study's trials end.
func (tx *Tx) TrialsOfStudyAfter(studyID, after uint64, limit int, keep func(*pb.Trial) bool) ([]*pb.Trial, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("trials of study %d after %d: limit %d must be positive", studyID, after, limit)
	}
	if err := tx.mustExist(bucketStudies, "study", studyID); err != nil {
		return nil, false, fmt.Errorf("trials of study: %w", err)
	}
	if after == math.MaxUint64 {
		return nil, false, nil
	}
	idx, err := tx.bucket(bucketStudyTrials)
	if err != nil {
		return nil, false, fmt.Errorf("trials of study %d: %w", studyID, err)
	}
	var out []*pb.Trial
	prefix := u64(studyID)
	c := idx.Cursor()
	for k, _ := c.Seek(pair(studyID, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		_, trialID, err := decodePair(k)
		if err != nil {
			return nil, false, fmt.Errorf("trials of study %d: index key %x: %w", studyID, k, err)
		}
		t, err := tx.Trial(trialID)
		if errors.Is(err, ErrNotFound) {
			return nil, false, fmt.Errorf("trials of study %d: index names trial %d, which is missing: %w", studyID, trialID, ErrCorrupt)
		}
		if err != nil {
			return nil, false, fmt.Errorf("trials of study %d: %w", studyID, err)
		}
		if keep != nil && !keep(t) {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		out = append(out, t)
	}
	return out, false, nil
}
