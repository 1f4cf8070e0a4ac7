package store

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/store/storepb"
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
	{3, "store curve points as batch records", batchPointRecords},
	{4, "checksum every record", sealRecords},
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

// migratedBatchPoints is how many points one record written by batchPointRecords
// holds at most. An attempt's points could all go in one record, but a long curve
// would then be one value of megabytes, which bbolt must place on that many
// contiguous pages; a few hundred points (tens of KiB) keep each value small.
const migratedBatchPoints = 256

// batchPointRecords rewrites each trial's points bucket from version 2's one
// record per point (attempt ‖ seq → pb.CurvePoint) to version 3's batch records
// (attempt ‖ first seq → storepb.CurvePointBatch), in chunks of migratedBatchPoints.
// Version 3 requires an attempt's points to be contiguous from seq 1, as the
// scheduler has always reported them; a version-2 file with a gap, or a point
// stored under another seq than its own, cannot be represented and is refused as
// corrupt rather than migrated into a file Check would reject.
func batchPointRecords(tx *bolt.Tx) error {
	root := tx.Bucket(bucketPoints)
	if root == nil {
		return fmt.Errorf("bucket %s missing: %w", bucketPoints, ErrCorrupt)
	}
	// Collect the trial keys first: a bucket's buckets must not be deleted or
	// created while ForEachBucket walks it.
	var trialKeys [][]byte
	if err := root.ForEachBucket(func(k []byte) error {
		trialKeys = append(trialKeys, append([]byte(nil), k...)) // k points into the mmap
		return nil
	}); err != nil {
		return err
	}
	for _, k := range trialKeys {
		trialID, err := decodeU64(k)
		if err != nil {
			return fmt.Errorf("points bucket %x: %w", k, err)
		}
		attempts, err := readV2Points(root.Bucket(k))
		if err != nil {
			return fmt.Errorf("points of trial %d: %w", trialID, err)
		}
		// Replace the bucket rather than delete keys from it: the new one is
		// written in key order, and the old one's pages are freed whole.
		if err := root.DeleteBucket(k); err != nil {
			return fmt.Errorf("points of trial %d: %w", trialID, err)
		}
		if len(attempts) == 0 {
			continue
		}
		b, err := root.CreateBucket(k)
		if err != nil {
			return fmt.Errorf("points of trial %d: %w", trialID, err)
		}
		b.FillPercent = appendFillPercent
		for _, a := range attempts {
			for pts := range slices.Chunk(a.points, migratedBatchPoints) {
				v, err := marshal(&storepb.CurvePointBatch{Points: pts})
				if err != nil {
					return fmt.Errorf("points of trial %d attempt %d: encode seq %d: %w", trialID, a.attempt, pts[0].GetSeq(), err)
				}
				if err := b.Put(pair(a.attempt, pts[0].GetSeq()), v); err != nil {
					return fmt.Errorf("points of trial %d attempt %d seq %d: %w", trialID, a.attempt, pts[0].GetSeq(), err)
				}
			}
		}
	}
	return nil
}

// sealRecords appends its checksum (checksum.go) to every value of the file but
// meta/version: the records of studies, trials, workers, policy_state, each
// study_trials entry (whose empty value becomes its checksum) and each points
// record. Values are checked as far as version 3 could (the points records by
// decodeRecord's rules) before being sealed, so that damage already in the file is
// refused now rather than sealed as good.
func sealRecords(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketStudies, bucketTrials, bucketWorkers, bucketStudyTrials, bucketPolicyState} {
		b := tx.Bucket(name)
		if b == nil {
			return fmt.Errorf("bucket %s missing: %w", name, ErrCorrupt)
		}
		if err := sealBucket(b, name, nil); err != nil {
			return err
		}
	}
	root := tx.Bucket(bucketPoints)
	if root == nil {
		return fmt.Errorf("bucket %s missing: %w", bucketPoints, ErrCorrupt)
	}
	var trialKeys [][]byte
	if err := root.ForEachBucket(func(k []byte) error {
		trialKeys = append(trialKeys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range trialKeys {
		path := pointsPath(k)
		var attempt, next uint64
		check := func(rk, v []byte) error {
			// decodeRecord reads sealed records: seal this one to check its format.
			if a, _, _ := decodePair(rk); a != attempt {
				attempt, next = a, 1
			}
			_, pts, err := decodeRecord(path, rk, seal(path, rk, v), next)
			if err != nil {
				return fmt.Errorf("bucket %s: %w", bucketLabel(path), err)
			}
			next = nextSeq(pts)
			return nil
		}
		if err := sealBucket(root.Bucket(k), path, check); err != nil {
			return err
		}
	}
	return nil
}

// sealBucket seals every value of b (bucket path path), after check accepts it when
// check is set. It reads the whole bucket before writing: a bucket must not change
// under its cursor.
func sealBucket(b *bolt.Bucket, path []byte, check func(k, v []byte) error) error {
	var keys, vals [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil // a nested bucket; points' are sealed on their own
		}
		if check != nil {
			if err := check(k, v); err != nil {
				return err
			}
		}
		keys = append(keys, append([]byte(nil), k...))
		vals = append(vals, seal(path, k, v)) // seal copies v out of the mmap
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range keys {
		if err := b.Put(k, vals[i]); err != nil {
			return fmt.Errorf("bucket %s key %x: %w", bucketLabel(path), k, err)
		}
	}
	return nil
}

// v2Attempt is one attempt's points read from a version-2 points bucket.
type v2Attempt struct {
	attempt uint64
	points  []*pb.CurvePoint
}

// readV2Points decodes a version-2 points bucket, ascending attempt and seq, and
// checks each attempt's points are contiguous from seq 1. It decodes everything
// before the caller writes: the bucket must not change under its cursor.
func readV2Points(b *bolt.Bucket) ([]v2Attempt, error) {
	var out []v2Attempt
	err := b.ForEach(func(k, v []byte) error {
		attempt, seq, err := decodePair(k)
		if err != nil || v == nil || attempt < 1 || attempt > 1<<31-1 {
			return fmt.Errorf("bad entry %x: %w", k, ErrCorrupt)
		}
		p := new(pb.CurvePoint)
		if err := proto.Unmarshal(v, p); err != nil {
			return fmt.Errorf("decode point attempt %d seq %d: %v: %w", attempt, seq, err, ErrCorrupt)
		}
		if p.GetSeq() != seq {
			return fmt.Errorf("point attempt %d stored under seq %d has seq %d: %w", attempt, seq, p.GetSeq(), ErrCorrupt)
		}
		if len(out) == 0 || out[len(out)-1].attempt != attempt {
			out = append(out, v2Attempt{attempt: attempt})
		}
		a := &out[len(out)-1]
		if want := uint64(len(a.points)) + 1; seq != want {
			return fmt.Errorf("attempt %d has seq %d after %d points, not seq %d; version 3 needs an attempt's points contiguous from seq 1: %w",
				attempt, seq, len(a.points), want, ErrCorrupt)
		}
		a.points = append(a.points, p)
		return nil
	})
	return out, err
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
