package store

import (
	"fmt"
)

// DeleteStudy removes a study with everything stored under it: its trials, their index
// entries and curve points, and its policy state. It returns how many trials it removed,
// or ErrNotFound when the study does not exist.
func (tx *Tx) DeleteStudy(studyID uint64) (int, error) {
	trials, err := tx.TrialsOfStudy(studyID)
	if err != nil {
		return 0, fmt.Errorf("delete study: %w", err)
	}
	trialsB, err := tx.bucket(bucketTrials)
	if err != nil {
		return 0, err
	}
	idx, err := tx.bucket(bucketStudyTrials)
	if err != nil {
		return 0, err
	}
	points, err := tx.bucket(bucketPoints)
	if err != nil {
		return 0, err
	}
	for _, t := range trials {
		if points.Bucket(u64(t.Id)) != nil {
			if err := points.DeleteBucket(u64(t.Id)); err != nil {
				return 0, fmt.Errorf("delete points of trial %d: %w", t.Id, err)
			}
		}
		if err := idx.Delete(pair(studyID, t.Id)); err != nil {
			return 0, fmt.Errorf("unindex trial %d: %w", t.Id, err)
		}
		if err := trialsB.Delete(u64(t.Id)); err != nil {
			return 0, fmt.Errorf("delete trial %d: %w", t.Id, err)
		}
	}
	policy, err := tx.bucket(bucketPolicyState)
	if err != nil {
		return 0, err
	}
	if err := policy.Delete(u64(studyID)); err != nil {
		return 0, fmt.Errorf("delete policy state of study %d: %w", studyID, err)
	}
	studies, err := tx.bucket(bucketStudies)
	if err != nil {
		return 0, err
	}
	if err := studies.Delete(u64(studyID)); err != nil {
		return 0, fmt.Errorf("delete study %d: %w", studyID, err)
	}
	return len(trials), nil
}

// DeleteWorker removes a worker from the registry, or returns ErrNotFound. Trials keep
// the id of the worker that ran them; ids are never reused, so it names no other worker.
func (tx *Tx) DeleteWorker(id uint64) error {
	if err := tx.mustExist(bucketWorkers, "worker", id); err != nil {
		return fmt.Errorf("delete worker: %w", err)
	}
	b, err := tx.bucket(bucketWorkers)
	if err != nil {
		return err
	}
	if err := b.Delete(u64(id)); err != nil {
		return fmt.Errorf("delete worker %d: %w", id, err)
	}
	return nil
}
