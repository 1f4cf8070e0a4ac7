package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// migration brings a file from version-1 to version. Migrations run in order, all
// in the one write transaction of Open, so a file is never left between versions.
// A migration must only read and write the transaction it is given.
type migration struct {
	version int
	name    string
	apply   func(tx *bolt.Tx) error
}

// migrations is the schema history; append, never edit a released entry (files in
// the field were written by it). A test checks versions are 1, 2, ... in order.
var migrations = []migration{
	{1, "create the buckets", createBuckets},
	{2, "index trials by study", indexTrialsByStudy},
}

// currentVersion is the schema version this binary writes.
var currentVersion = migrations[len(migrations)-1].version

// createBuckets is the version-1 layout.
func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketStudies, bucketTrials, bucketPoints, bucketWorkers, bucketPolicyState} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// indexTrialsByStudy adds study_trials and fills it from the trials already stored.
func indexTrialsByStudy(tx *bolt.Tx) error {
	idx, err := tx.CreateBucketIfNotExists(bucketStudyTrials)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketStudyTrials, err)
	}
	trials := tx.Bucket(bucketTrials)
	if trials == nil {
		return fmt.Errorf("bucket %s missing: %w", bucketTrials, ErrCorrupt)
	}
	return trials.ForEach(func(k, v []byte) error {
		id, err := decodeU64(k)
		if err != nil {
			return fmt.Errorf("trial key %x: %w", k, err)
		}
		t := new(pb.Trial)
		if err := proto.Unmarshal(v, t); err != nil {
			return fmt.Errorf("trial %d: %v: %w", id, err, ErrCorrupt)
		}
		return idx.Put(pair(t.GetStudyId(), id), []byte{})
	})
}

// schemaVersion reads the file's version: 0 for a file with no buckets at all (new).
func schemaVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return 0, fmt.Errorf("has bucket %q but no %s bucket, so it is not a mixopt store: %w", k, bucketMeta, ErrCorrupt)
		}
		return 0, nil
	}
	v := meta.Get(keyVersion)
	if v == nil {
		return 0, fmt.Errorf("%s bucket has no %s: %w", bucketMeta, keyVersion, ErrCorrupt)
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	if n == 0 || n > 1<<31 {
		return 0, fmt.Errorf("schema version %d is out of range: %w", n, ErrCorrupt)
	}
	return int(n), nil
}

// migrate brings the file up to target, which must be a version in migrations
// (tests pass an older one to build fixtures).
func migrate(tx *bolt.Tx, target int) error {
	from, err := schemaVersion(tx)
	if err != nil {
		return err
	}
	if from > currentVersion {
		return tooNew(from)
	}
	for _, m := range migrations {
		if m.version <= from || m.version > target {
			continue
		}
		if err := m.apply(tx); err != nil {
			return fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, err)
		}
		// Bucket meta exists after version 1, which every file passes through.
		if err := tx.Bucket(bucketMeta).Put(keyVersion, u64(uint64(m.version))); err != nil {
			return fmt.Errorf("migrate to version %d: record version: %w", m.version, err)
		}
	}
	return nil
}

// needsMigration says whether migrate(tx, currentVersion) would write anything,
// so that opening an up-to-date file takes no write transaction.
func needsMigration(tx *bolt.Tx) (bool, error) {
	v, err := schemaVersion(tx)
	if err != nil {
		return false, err
	}
	if v > currentVersion {
		return false, tooNew(v)
	}
	return v < currentVersion, nil
}

func tooNew(v int) error {
	return fmt.Errorf("schema version %d is newer than version %d, the newest this binary knows; use a newer mixopt: %w",
		v, currentVersion, ErrSchemaTooNew)
}
