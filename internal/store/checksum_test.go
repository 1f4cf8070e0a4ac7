package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/store/storepb"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// writeV3 writes a store in the version-3 layout (batch points records, values
// without checksums) with bbolt directly, as a binary of that version would have.
func writeV3(path string) error {
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.Update(func(tx *bolt.Tx) error {
		if err := migrate(tx, 3); err != nil {
			return err
		}
		put := func(bucket []byte, id uint64, m proto.Message) error {
			b := tx.Bucket(bucket)
			if got, err := b.NextSequence(); err != nil || got != id {
				return fmt.Errorf("fixture ids out of step: %d, %v", got, err)
			}
			v, err := marshal(m)
			if err != nil {
				return err
			}
			return b.Put(u64(id), v)
		}
		for _, id := range []uint64{1, 2} {
			s := study(id, "v3 study")
			if err := put(bucketStudies, id, s); err != nil {
				return err
			}
		}
		for id := uint64(1); id <= 3; id++ {
			t := trial(id, 1+id/3, pb.TrialState_TRIAL_STATE_SUCCEEDED)
			if err := put(bucketTrials, id, t); err != nil {
				return err
			}
			if err := tx.Bucket(bucketStudyTrials).Put(pair(t.StudyId, id), []byte{}); err != nil {
				return err
			}
		}
		// Trial 1: attempt 1 in two records (1..3, 4..5), attempt 2 in one (1..2).
		b, err := tx.Bucket(bucketPoints).CreateBucket(u64(1))
		if err != nil {
			return err
		}
		for _, r := range [][3]uint64{{1, 1, 3}, {1, 4, 5}, {2, 1, 2}} {
			v, err := marshal(&storepb.CurvePointBatch{Points: pointsRange(r[1], r[2])})
			if err != nil {
				return err
			}
			if err := b.Put(pair(r[0], r[1]), v); err != nil {
				return err
			}
		}
		w := &pb.Worker{Id: 1, Hostname: "v3-host"}
		if err := put(bucketWorkers, 1, w); err != nil {
			return err
		}
		return tx.Bucket(bucketPolicyState).Put(u64(2), []byte("v3 policy state"))
	})
}

// rawValues reads every value of a file with bbolt directly: bucket label ‖ key → value.
func rawValues(t *testing.T, path string) map[string][]byte {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	out := map[string][]byte{}
	err = bdb.View(func(tx *bolt.Tx) error {
		var walk func(b *bolt.Bucket, path []byte) error
		walk = func(b *bolt.Bucket, path []byte) error {
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					return walk(b.Bucket(k), append(append([]byte(nil), path...), k...))
				}
				out[string(path)+"\x00"+string(k)] = append([]byte{}, v...)
				return nil
			})
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(b, append([]byte(nil), name...)) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateV3Fixture: version 4 seals every value of a version-3 file with its
// checksum and changes nothing else; everything reads back as it was.
func TestMigrateV3Fixture(t *testing.T) {
	const fixture = "testdata/v3.db.gz"
	regenFixture(t, fixture, writeV3)
	path := filepath.Join(t.TempDir(), "v3.db")
	gunzipFile(t, fixture, path)
	before := rawValues(t, path)
	if v := before["meta\x00version"]; !bytes.Equal(v, u64(3)) {
		t.Fatalf("fixture version record = %x, want 3", v)
	}

	for _, round := range []string{"migrating open", "second open"} {
		t.Run(round, func(t *testing.T) {
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Check(); err != nil {
				t.Fatalf("Check after migration: %v", err)
			}
			if v := version(t, db); v != 4 {
				t.Errorf("version = %d, want 4", v)
			}
			view(t, db, func(tx *Tx) error {
				protoEqual(t, must[*pb.Study](t)(tx.Study(2)), study(2, "v3 study"))
				protoEqual(t, must[*pb.Trial](t)(tx.Trial(3)), trial(3, 2, pb.TrialState_TRIAL_STATE_SUCCEEDED))
				protoEqual(t, must[*pb.Worker](t)(tx.Worker(1)), &pb.Worker{Id: 1, Hostname: "v3-host"})
				if got := ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(1))); len(got) != 2 || got[0] != 1 || got[1] != 2 {
					t.Errorf("TrialsOfStudy(1) = %v, want [1 2]", got)
				}
				if got := string(must[[]byte](t)(tx.PolicyState(2))); got != "v3 policy state" {
					t.Errorf("PolicyState(2) = %q", got)
				}
				all := must[map[int32][]*pb.CurvePoint](t)(tx.AllPoints(1))
				for attempt, want := range map[int32][]*pb.CurvePoint{1: pointsRange(1, 5), 2: pointsRange(1, 2)} {
					if len(all[attempt]) != len(want) {
						t.Fatalf("attempt %d: %d points, want %d", attempt, len(all[attempt]), len(want))
					}
					for i := range want {
						protoEqual(t, all[attempt][i], want[i])
					}
				}
				return nil
			})
			_ = db.Update(func(tx *Tx) error {
				ok(t, tx.AppendPoints(1, 1, pointsRange(6, 7)))
				if got := len(must[[]*pb.CurvePoint](t)(tx.Points(1, 1))); got != 7 {
					t.Errorf("attempt 1 has %d points after appending, want 7", got)
				}
				return errors.New("roll back") // keep the file as migrated for the next round
			})
		})
	}
	after := rawValues(t, path)
	if len(after) != len(before) {
		t.Errorf("%d values after, %d before", len(after), len(before))
	}
	for k, v := range before {
		if k == "meta\x00version" {
			continue
		}
		path, key, _ := strings.Cut(k, "\x00")
		if want := seal([]byte(path), []byte(key), v); !bytes.Equal(after[k], want) {
			t.Errorf("%q: after migration %x, want the version-3 value sealed %x", k, after[k], want)
		}
	}
}

// TestDamagedRecordDetected damages the bytes of one record in a real database file,
// in a way that still decodes (one letter of a name changed), and expects every
// reader of that record, Check and Verify to refuse it by name.
func TestDamagedRecordDetected(t *testing.T) {
	clean := filepath.Join(t.TempDir(), "clean.db")
	db, err := Open(clean, Options{})
	ok(t, err)
	ok(t, db.Update(func(tx *Tx) error {
		sid := must[uint64](t)(tx.NextStudyID())
		if err := tx.PutStudy(study(sid, "study-marker-XYZZY")); err != nil {
			return err
		}
		tid := must[uint64](t)(tx.NextTrialID())
		tr := trial(tid, sid, pb.TrialState_TRIAL_STATE_RUNNING)
		tr.FailureReason = "trial-marker-XYZZY"
		if err := tx.PutTrial(tr); err != nil {
			return err
		}
		pts := pointsRange(1, 3)
		pts[1].Eval["points-marker-XYZZY"] = 1
		if err := tx.AppendPoints(tid, 1, pts); err != nil {
			return err
		}
		wid := must[uint64](t)(tx.NextWorkerID())
		if err := tx.PutWorker(&pb.Worker{Id: wid, Hostname: "worker-marker-XYZZY"}); err != nil {
			return err
		}
		return tx.PutPolicyState(sid, []byte("policy-marker-XYZZY"))
	}))
	ok(t, db.Close())
	image, err := os.ReadFile(clean)
	ok(t, err)

	for _, tc := range []struct {
		marker string
		read   func(tx *Tx) error
		want   string
	}{
		{"study-marker", func(tx *Tx) error { _, err := tx.Study(1); return err },
			"study 1 (bucket studies, key 0000000000000001): checksum mismatch"},
		{"trial-marker", func(tx *Tx) error { _, err := tx.TrialsOfStudy(1); return err },
			"trial 1 (bucket trials, key 0000000000000001): checksum mismatch"},
		{"points-marker", func(tx *Tx) error { _, err := tx.Points(1, 1); return err },
			"points record attempt 1 seq 1 (bucket points/1, key 00000000000000010000000000000001): checksum mismatch"},
		{"worker-marker", func(tx *Tx) error { _, err := tx.Workers(); return err },
			"worker 1 (bucket workers, key 0000000000000001): checksum mismatch"},
		{"policy-marker", func(tx *Tx) error { _, err := tx.PolicyState(1); return err },
			"policy state of study 1 (bucket policy_state, key 0000000000000001): checksum mismatch"},
	} {
		t.Run(tc.marker, func(t *testing.T) {
			if n := bytes.Count(image, []byte(tc.marker)); n != 1 {
				t.Fatalf("%q occurs %d times in the file, want once", tc.marker, n)
			}
			damaged := bytes.Clone(image)
			damaged[bytes.Index(damaged, []byte(tc.marker))] ^= 0x20 // "s" → "S": still a valid string
			path := filepath.Join(t.TempDir(), "damaged.db")
			ok(t, os.WriteFile(path, damaged, 0o600))

			db, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("Open of a file with a damaged record: %v (it opens: the damage is in a record, not the tree)", err)
			}
			defer db.Close()
			err = db.View(tc.read)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("reading the damaged record: %v, want ErrCorrupt saying %q", err, tc.want)
			}
			res, err := db.Verify()
			ok(t, err)
			if len(res.Problems) != 1 || !errors.Is(res.Problems[0], ErrCorrupt) || !strings.Contains(res.Problems[0].Error(), tc.want) {
				t.Errorf("Verify problems = %v, want one saying %q", res.Problems, tc.want)
			}
			if res.Records != 6 { // study, trial, its index entry, one points record, worker, policy state
				t.Errorf("Verify read %d records, want 6", res.Records)
			}
			if err := db.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want ErrCorrupt saying %q", err, tc.want)
			}
		})
	}
	// The undamaged file verifies clean.
	db, err = Open(clean, Options{})
	ok(t, err)
	defer db.Close()
	res, err := db.Verify()
	ok(t, err)
	if len(res.Problems) != 0 {
		t.Errorf("Verify of the clean file: %v", res.Problems)
	}
}

// TestMigrateV3Refused: a version-3 points record that breaks the format is not
// sealed as good: the migration fails with ErrCorrupt naming it and leaves the file
// at version 3 as it was.
func TestMigrateV3Refused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
	ok(t, writeV3(path))
	bdb, err := bolt.Open(path, 0o600, nil)
	ok(t, err)
	ok(t, bdb.Update(func(tx *bolt.Tx) error {
		v, err := marshal(&storepb.CurvePointBatch{Points: pointsRange(7, 8)}) // seqs 6 is missing
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPoints).Bucket(u64(1)).Put(pair(1, 7), v)
	}))
	ok(t, bdb.Close())
	damaged, err := os.ReadFile(path)
	ok(t, err)
	_, err = Open(path, Options{})
	const want = "migrate to version 4 (checksum every record): bucket points/1: record attempt 1 seq 7: the attempt's points before it end at seq 5"
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open = %v, want ErrCorrupt saying %q", err, want)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
		t.Error("the failed migration changed the file")
	}
}
