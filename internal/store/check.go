package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// checkSchema verifies what bbolt cannot know: the version, that every record
// decodes and sits under its own id below its bucket's sequence, that the study
// index and the trials agree both ways, and that every points bucket belongs to a
// trial and holds well-formed records: each decodes, starts at its key's seq, and
// continues its attempt's points without gap or overlap from seq 1. Every problem
// found is reported, each wrapping ErrCorrupt.
func checkSchema(btx *bolt.Tx) error {
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
		return err
	} else if v != currentVersion {
		fail("schema version %d, want %d", v, currentVersion)
	}
	if err := checkBuckets(btx); err != nil {
		return err
	}

	records := func(name []byte, what string, newM func() proto.Message, idOf func(proto.Message) uint64, each func(id uint64, m proto.Message)) {
		b := btx.Bucket(name)
		seq := b.Sequence()
		_ = b.ForEach(func(k, v []byte) error {
			id, err := decodeU64(k)
			if err != nil || v == nil {
				fail("%s key %x: not an id with a value", what, k)
				return nil
			}
			if id == 0 || id > seq {
				fail("%s %d: id outside 1..%d allocated by the sequence", what, id, seq)
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
	records(bucketTrials, "trial", func() proto.Message { return new(pb.Trial) },
		func(m proto.Message) uint64 { return m.(*pb.Trial).GetId() },
		func(id uint64, m proto.Message) {
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
		s, t, err := decodePair(k)
		switch {
		case err != nil || v == nil || len(v) != 0:
			fail("study index entry %x: want a 16-byte key and an empty value", k)
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
		if _, ok := trialStudy[t]; !ok {
			fail("points of trial %d: the trial does not exist", t)
		}
		// Records ascend by attempt, then seq: each continues the one before it
		// when both are of the same attempt (decodeRecord checks the rest).
		var attempt, next uint64
		return btx.Bucket(bucketPoints).Bucket(k).ForEach(func(pk, pv []byte) error {
			if a, _, _ := decodePair(pk); a != attempt {
				attempt, next = a, 1
			}
			_, pts, err := decodeRecord(pk, pv, next)
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
		s, err := decodeU64(k)
		if err != nil || v == nil {
			fail("policy state key %x: not a study id with a value", k)
		} else if !studies[s] {
			fail("policy state of study %d: the study does not exist", s)
		}
		return nil
	})
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more problems: %w", more, ErrCorrupt))
	}
	return errors.Join(errs...)
}

const maxCheckErrors = 20
