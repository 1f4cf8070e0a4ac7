package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/mixopt/mixopt/internal/store/storepb"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// sealedPut stores v with a valid checksum under k in trial 1's points bucket b: a
// record that breaks the format though its bytes are as written.
func sealedPut(b *bolt.Bucket, k, v []byte) error { return b.Put(k, seal(pointsPath(u64(1)), k, v)) }

// TestCheckPointRecords: Check and the readers refuse points records that break
// the format (schema.go) or fail their checksum, each with ErrCorrupt and a message
// naming the record.
// Trial 1 starts with records (1, 1) = seqs 1..3 and (1, 4) = seqs 4..5.
func TestCheckPointRecords(t *testing.T) {
	batch := func(from, to uint64) []byte {
		v, err := marshal(&storepb.CurvePointBatch{Points: pointsRange(from, to)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		damage func(b *bolt.Bucket) error // trial 1's points bucket
		want   string
	}{
		{"checksum mismatch", func(b *bolt.Bucket) error {
			v := seal(pointsPath(u64(1)), pair(1, 4), batch(4, 5))
			v[3] ^= 0x01 // one flipped bit that still decodes
			return b.Put(pair(1, 4), v)
		}, "points record attempt 1 seq 4 (bucket points/1, key 00000000000000010000000000000004): checksum mismatch"},
		{"does not decode", func(b *bolt.Bucket) error { return sealedPut(b, pair(1, 4), []byte{0xff, 0xff}) },
			"decode record attempt 1 seq 4"},
		{"no points", func(b *bolt.Bucket) error { return sealedPut(b, pair(1, 4), []byte{}) },
			"record attempt 1 seq 4 holds no points"},
		{"key seq is not the first point's", func(b *bolt.Bucket) error { return sealedPut(b, pair(1, 4), batch(5, 6)) },
			"record attempt 1 seq 4: point 0 has seq 5, want 4"},
		{"gap inside a record", func(b *bolt.Bucket) error {
			v, err := marshal(&storepb.CurvePointBatch{Points: []*pb.CurvePoint{point(4), point(6)}})
			if err != nil {
				return err
			}
			return sealedPut(b, pair(1, 4), v)
		}, "record attempt 1 seq 4: point 1 has seq 6, want 5"},
		{"gap between records", func(b *bolt.Bucket) error { return sealedPut(b, pair(1, 7), batch(7, 8)) },
			"record attempt 1 seq 7: the attempt's points before it end at seq 5, so it should start at 6"},
		{"overlap between records", func(b *bolt.Bucket) error { return sealedPut(b, pair(1, 2), batch(2, 2)) },
			"record attempt 1 seq 2: the attempt's points before it end at seq 3, so it should start at 4"},
		{"attempt not from seq 1", func(b *bolt.Bucket) error { return sealedPut(b, pair(2, 2), batch(2, 2)) },
			"record attempt 2 seq 2: it is the attempt's first, so it should start at seq 1"},
		{"attempt 0", func(b *bolt.Bucket) error { return sealedPut(b, pair(0, 1), batch(1, 1)) },
			"bad record key 00000000000000000000000000000001"},
		{"key of 8 bytes", func(b *bolt.Bucket) error { return sealedPut(b, u64(1), batch(1, 1)) },
			"bad record key 0000000000000001"},
		{"bucket instead of a record", func(b *bolt.Bucket) error { _, err := b.CreateBucket(pair(1, 6)); return err },
			"bad record key 00000000000000010000000000000006"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openAtTestNoCheck(t)
			seedStudies(t, db)
			update(t, db, func(tx *Tx) error {
				if err := tx.AppendPoints(1, 1, pointsRange(1, 3)); err != nil {
					return err
				}
				return tx.AppendPoints(1, 1, pointsRange(4, 5))
			})
			if err := db.bolt.Update(func(btx *bolt.Tx) error { return tc.damage(btx.Bucket(bucketPoints).Bucket(u64(1))) }); err != nil {
				t.Fatal(err)
			}
			err := db.Check()
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "points of trial 1: "+tc.want) {
				t.Fatalf("Check error = %v, want ErrCorrupt saying %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "points of trial"); n != 1 {
				t.Errorf("Check reported %d problems with points, want 1:\n%v", n, err)
			}
			if n := strings.Count(err.Error(), ErrCorrupt.Error()); n != 1 {
				t.Errorf("Check error says %q %d times, want once:\n%v", ErrCorrupt, n, err)
			}
			t.Log(err)
			// AllPoints reads every record, so it meets the damage too.
			err = db.View(func(tx *Tx) error { _, err := tx.AllPoints(1); return err })
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("AllPoints error = %v, want ErrCorrupt saying %q", err, tc.want)
			}
		})
	}
}

// openAtTestNoCheck opens a fresh store that the test will damage, so it is closed
// but not checked at the end.
func openAtTestNoCheck(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "damaged.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestLastSeqOfRecord: AppendPoints reads the last stored seq from the wire
// format; it must agree with decoding the record, also for points with unknown
// fields and field orders other than the generated code's.
func TestLastSeqOfRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		pts  []*pb.CurvePoint
		want uint64
	}{
		{"one point", pointsRange(7, 7), 7},
		{"many points", pointsRange(1, 300), 300},
		{"large seq", []*pb.CurvePoint{{Seq: 1 << 62}}, 1 << 62},
		{"seq 0 is not on the wire", []*pb.CurvePoint{point(3), {}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := marshal(&storepb.CurvePointBatch{Points: tc.pts})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := lastSeqOfRecord(v); err != nil || got != tc.want {
				t.Errorf("lastSeqOfRecord = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	// An unknown field (99, varint) after the seq, then the seq again: proto
	// keeps the last seq, and so must lastSeqOfRecord.
	pt := []byte{0x08, 0x05, 0x98, 0x06, 0x01, 0x08, 0x09} // seq 5, field 99 = 1, seq 9
	rec := append([]byte{0x0a, byte(len(pt))}, pt...)
	if got, err := lastSeqOfRecord(rec); err != nil || got != 9 {
		t.Errorf("lastSeqOfRecord with an unknown field = %d, %v; want 9", got, err)
	}
	for _, bad := range [][]byte{{}, {0x0a}, {0x0a, 0x05, 0x08}, {0x0a, 0x02, 0x08, 0x80}} {
		if got, err := lastSeqOfRecord(bad); err == nil {
			t.Errorf("lastSeqOfRecord(%x) = %d, want an error", bad, got)
		}
	}
	if batchPointsField != 1 || pointSeqField != 1 {
		t.Errorf("field numbers: points %d, seq %d; the descriptors were not read", batchPointsField, pointSeqField)
	}
}
