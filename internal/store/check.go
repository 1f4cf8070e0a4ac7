package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// checkSchema verifies what bbolt cannot know: the version, that every record's
// checksum matches, that it decodes and sits under its own id below its bucket's
// sequence, that the study index and the trials agree both ways, and that every
// points bucket belongs to a trial and holds well-formed records: each decodes,
// starts at its key's seq, and continues its attempt's points without gap or
// overlap from seq 1. Every problem found is reported, each wrapping ErrCorrupt.
func checkSchema(btx *bolt.Tx) error {
	_, err := verifySchema(btx)
	return err
}

// verifySchema is checkSchema that also counts the records it read.
func verifySchema(btx *bolt.Tx) (read uint64, _ error) {
	var errs []error
	more := 0
	add := func(err error) {
		if len(errs) == maxCheckErrors {
			more++ // a badly damaged file would otherwise give one line per record
			return
		}
		errs = append(errs, err)
	}
	fail := func(format string, args ...any) { add(fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)) }
	if v, err := schemaVersion(btx); err != nil {
		return 0, err
	} else if v != currentVersion {
		fail("schema version %d, want %d", v, currentVersion)
	}
	if err := checkBuckets(btx); err != nil {
		return 0, err
	}

	records := func(name []byte, what string, newM func() proto.Message, idOf func(proto.Message) uint64, each func(id uint64, m proto.Message)) {
		b := btx.Bucket(name)
		seq := b.Sequence()
		_ = b.ForEach(func(k, v []byte) error {
			read++
			id, err := decodeU64(k)
			if err != nil || v == nil {
				fail("%s key %x: not an id with a value", what, k)
				return nil
			}
			if id == 0 || id > seq {
				fail("%s %d: id outside 1..%d allocated by the sequence", what, id, seq)
			}
			if v, err = unseal(fmt.Sprintf("%s %d", what, id), name, k, v); err != nil {
				add(err)
				// The record exists though its content is unknown: each(id, nil) keeps
				// the records that refer to it from being reported as well.
				if each != nil {
					each(id, nil)
				}
				return nil
			}
			m := newM()
			if err := proto.Unmarshal(v, m); err != nil {
				fail("%s %d: does not decode: %v", what, id, err)
				return nil
			}
			if got := idOf(m); got != id {
				fail("%s %d: stored under key %d but its id is %d", what, id, id, got)
			}
			if each != nil {
				each(id, m)
			}
			return nil
		})
	}
	studies := map[uint64]bool{}
	records(bucketStudies, "study", func() proto.Message { return new(pb.Study) },
		func(m proto.Message) uint64 { return m.(*pb.Study).GetId() },
		func(id uint64, _ proto.Message) { studies[id] = true })
	trialStudy := map[uint64]uint64{}
	damagedTrials := map[uint64]bool{} // failed their checksum: their study is unknown
	records(bucketTrials, "trial", func() proto.Message { return new(pb.Trial) },
		func(m proto.Message) uint64 { return m.(*pb.Trial).GetId() },
		func(id uint64, m proto.Message) {
			if m == nil {
				damagedTrials[id] = true
				return
			}
			s := m.(*pb.Trial).GetStudyId()
			trialStudy[id] = s
			if !studies[s] {
				fail("trial %d: its study %d does not exist", id, s)
			}
		})
	records(bucketWorkers, "worker", func() proto.Message { return new(pb.Worker) },
		func(m proto.Message) uint64 { return m.(*pb.Worker).GetId() }, nil)

	indexed := map[uint64]bool{}
	_ = btx.Bucket(bucketStudyTrials).ForEach(func(k, v []byte) error {
		read++
		s, t, err := decodePair(k)
		if err == nil && v != nil {
			if v, err = unseal(fmt.Sprintf("study index entry (study %d, trial %d)", s, t), bucketStudyTrials, k, v); err != nil {
				add(err)
				return nil
			}
		}
		switch {
		case err != nil || v == nil || len(v) != 0:
			fail("study index entry %x: want a 16-byte key and a value of only its checksum", k)
		case damagedTrials[t]:
			indexed[t] = true
		case trialStudy[t] != s:
			fail("study index: entry (study %d, trial %d) but that trial is in study %d", s, t, trialStudy[t])
		case indexed[t]:
			fail("study index: trial %d is indexed twice", t)
		default:
			indexed[t] = true
		}
		return nil
	})
	for t, s := range trialStudy {
		if !indexed[t] {
			fail("study index: trial %d of study %d is not indexed", t, s)
		}
	}

	_ = btx.Bucket(bucketPoints).ForEachBucket(func(k []byte) error {
		t, err := decodeU64(k)
		if err != nil {
			fail("points bucket %x: not a trial id", k)
			return nil
		}
		if _, ok := trialStudy[t]; !ok && !damagedTrials[t] {
			fail("points of trial %d: the trial does not exist", t)
		}
		// Records ascend by attempt, then seq: each continues the one before it
		// when both are of the same attempt (decodeRecord checks the rest).
		var attempt, next uint64
		path := pointsPath(k)
		return btx.Bucket(bucketPoints).Bucket(k).ForEach(func(pk, pv []byte) error {
			read++
			if a, _, _ := decodePair(pk); a != attempt {
				attempt, next = a, 1
			}
			_, pts, err := decodeRecord(path, pk, pv, next)
			if err != nil {
				add(fmt.Errorf("points of trial %d: %w", t, err)) // err wraps ErrCorrupt
				next = 0                                          // unknown: do not report the next record for this one's damage
				return nil
			}
			next = nextSeq(pts)
			return nil
		})
	})
	// Values (not buckets) directly under points would be invisible to readers.
	_ = btx.Bucket(bucketPoints).ForEach(func(k, v []byte) error {
		if v != nil {
			fail("points: stray value under key %x", k)
		}
		return nil
	})
	_ = btx.Bucket(bucketPolicyState).ForEach(func(k, v []byte) error {
		read++
		s, err := decodeU64(k)
		switch {
		case err != nil || v == nil:
			fail("policy state key %x: not a study id with a value", k)
		case !studies[s]:
			fail("policy state of study %d: the study does not exist", s)
		default:
			if _, err := unseal(fmt.Sprintf("policy state of study %d", s), bucketPolicyState, k, v); err != nil {
				add(err)
			}
		}
		return nil
	})
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more problems: %w", more, ErrCorrupt))
	}
	return read, errors.Join(errs...)
}

const maxCheckErrors = 20
