// Package store is the only code that touches bbolt. It keeps every study, trial,
// curve point, worker and policy state of the coordinator in one bbolt file, so a
// restarted coordinator can continue from exactly what it had committed.
//
// # Schema (version 4)
//
// Every key that is an id is a big-endian uint64, so byte order is numeric order and
// cursors iterate in ascending id. Ids come from the owning bucket's NextSequence,
// never from the caller. Message values are protobuf (deterministic encoding, so
// equal messages are equal bytes). Since version 4 every value but meta/version ends
// with a 4-byte CRC-32C of its bucket, key and payload (checksum.go); the tree below
// shows the payloads.
//
//	root
//	├── meta
//	│   └── "version"                  → uint64 BE: schema version of this file
//	├── studies        (sequence: last study id)
//	│   └── study id                   → pb.Study
//	├── trials         (sequence: last trial id)
//	│   └── trial id                   → pb.Trial
//	├── study_trials                                        (since version 2)
//	│   └── study id ‖ trial id (16 B) → empty (only the checksum): index of the
//	│                                    trials of a study
//	├── points
//	│   └── trial id                   → bucket, one per trial with points
//	│       └── attempt ‖ first seq (16 B)
//	│                                  → storepb.CurvePointBatch (since version 3;
//	│                                    attempt widened to uint64)
//	├── workers        (sequence: last worker id)
//	│   └── worker id                  → pb.Worker
//	└── policy_state
//	    └── study id                   → opaque bytes owned by the policy
//
// Points live in a bucket per trial so that one trial's curve is a contiguous,
// separately sized B-tree (small ones stay inline in the parent page) and every
// attempt's points are one prefix scan of the 16-byte keys.
//
// A points record is one batch: the points of one AppendPoints call (or a chunk
// of up to migratedBatchPoints written by the version-3 migration), so a report
// costs one Put and one marshal instead of one per point. Its points ascend by one
// from the key's seq, and an attempt's records follow each other without gap or
// overlap from seq 1, so the key of the record after (attempt, s) with n points is
// (attempt, s+n). AppendPoints refuses a batch that would break this; Check and
// the readers verify it (points.go).
//
// The study_trials index has an empty value on purpose: the trial itself lives
// only in trials, so there is one copy to keep current.
//
// Version history (each step is a migration in migrations.go):
//
//	1  meta, studies, trials, points, workers, policy_state
//	2  study_trials, built from the trials already stored
//	3  points records hold a batch (storepb.CurvePointBatch) instead of one point
//	   (pb.CurvePoint under attempt ‖ seq); migrated in chunks per attempt
//	4  every value but meta/version ends with its checksum (checksum.go)
package store

import (
	"encoding/binary"
	"fmt"
)

// Bucket names. Changing one is a schema change and needs a migration.
var (
	bucketMeta        = []byte("meta")
	bucketStudies     = []byte("studies")
	bucketTrials      = []byte("trials")
	bucketStudyTrials = []byte("study_trials")
	bucketPoints      = []byte("points")
	bucketWorkers     = []byte("workers")
	bucketPolicyState = []byte("policy_state")

	keyVersion = []byte("version")
)

// appendFillPercent is the fill percent for buckets whose keys only grow (ids from
// NextSequence, seq numbers): bbolt's default of 0.5 would leave every split page
// half empty forever, since nothing is ever inserted before the last key.
const appendFillPercent = 0.9

// u64 encodes an id as a key.
func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// pair encodes two ids as one 16-byte key that sorts by a, then b.
func pair(a, b uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k[:8], a)
	binary.BigEndian.PutUint64(k[8:], b)
	return k
}

// decodeU64 decodes an 8-byte key or value; any other length means the file was
// not written by this package.
func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("want an 8-byte integer, got %d bytes: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

// decodePair decodes a 16-byte key made by pair.
func decodePair(k []byte) (uint64, uint64, error) {
	if len(k) != 16 {
		return 0, 0, fmt.Errorf("want a 16-byte key, got %d bytes: %w", len(k), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:]), nil
}
