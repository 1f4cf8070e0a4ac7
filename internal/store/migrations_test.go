package store

import (
	"compress/gzip"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Regenerate the old-database fixtures with
//
//	go test ./internal/store -run TestMigrate -regen-fixtures
//
// Only needed if a generator below changes; a fixture must keep describing the
// layout its version had, so usually it is written once and never again.
var regenFixtures = flag.Bool("regen-fixtures", false, "rewrite testdata/*.db.gz from the generators in migrations_test.go")

func TestMigrationList(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d] is version %d, want %d: versions must be 1, 2, ... in order", i, m.version, i+1)
		}
		if m.name == "" || m.apply == nil {
			t.Errorf("migration %d has no name or no function", m.version)
		}
	}
	if currentVersion != len(migrations) {
		t.Errorf("currentVersion = %d, want %d", currentVersion, len(migrations))
	}
}

// v1FixtureTrials maps each trial of the version-1 fixture to its study. The
// fixture also holds studies 1 and 2, points of trial 1 in attempts 1 (seq 1-3)
// and 2 (seq 1), worker 1 and the policy state of study 1.
var v1FixtureTrials = map[uint64]uint64{1: 1, 2: 1, 3: 2, 4: 1, 5: 2}

// writeV1 writes a store in the version-1 layout (no study_trials index) with
// bbolt directly, as a binary of that version would have.
func writeV1(path string) error {
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.Update(func(tx *bolt.Tx) error {
		if err := migrate(tx, 1); err != nil {
			return err
		}
		put := func(bucket []byte, m interface {
			proto.Message
			GetId() uint64
		}) error {
			b := tx.Bucket(bucket)
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			if id != m.GetId() {
				return errors.New("fixture ids out of step")
			}
			v, err := marshal(m)
			if err != nil {
				return err
			}
			return b.Put(u64(id), v)
		}
		for _, id := range []uint64{1, 2} {
			if err := put(bucketStudies, study(id, "v1 study")); err != nil {
				return err
			}
		}
		for id := uint64(1); id <= 5; id++ {
			if err := put(bucketTrials, trial(id, v1FixtureTrials[id], pb.TrialState_TRIAL_STATE_SUCCEEDED)); err != nil {
				return err
			}
		}
		pts, err := tx.Bucket(bucketPoints).CreateBucket(u64(1))
		if err != nil {
			return err
		}
		for _, k := range [][2]uint64{{1, 1}, {1, 2}, {1, 3}, {2, 1}} {
			v, err := marshal(point(k[1]))
			if err != nil {
				return err
			}
			if err := pts.Put(pair(k[0], k[1]), v); err != nil {
				return err
			}
		}
		if err := put(bucketWorkers, &pb.Worker{Id: 1, Hostname: "v1-host"}); err != nil {
			return err
		}
		return tx.Bucket(bucketPolicyState).Put(u64(1), []byte("v1 policy state"))
	})
}

func gzipFile(src, dst string) error {
	in, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out) // no name or time in the header: reproducible bytes
	if _, err := zw.Write(in); err != nil {
		out.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func gunzipFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatalf("open fixture (regenerate with -regen-fixtures): %v", err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateV1Fixture(t *testing.T) {
	const fixture = "testdata/v1.db.gz"
	if *regenFixtures {
		raw := filepath.Join(t.TempDir(), "v1.db")
		if err := writeV1(raw); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := gzipFile(raw, fixture); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", fixture)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	gunzipFile(t, fixture, path)

	// The fixture really is the old layout.
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.View(func(tx *bolt.Tx) error {
		if v, err := schemaVersion(tx); err != nil || v != 1 {
			t.Errorf("fixture version = %d, %v; want 1", v, err)
		}
		if tx.Bucket(bucketStudyTrials) != nil {
			t.Error("fixture already has the study index")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()

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
			if v := version(t, db); v != currentVersion {
				t.Errorf("version = %d, want %d", v, currentVersion)
			}
			view(t, db, func(tx *Tx) error {
				for s, want := range map[uint64][]uint64{1: {1, 2, 4}, 2: {3, 5}} {
					if got := ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(s))); !slices.Equal(got, want) {
						t.Errorf("TrialsOfStudy(%d) = %v, want %v", s, got, want)
					}
				}
				protoEqual(t, must[*pb.Study](t)(tx.Study(2)), study(2, "v1 study"))
				protoEqual(t, must[*pb.Trial](t)(tx.Trial(5)), trial(5, 2, pb.TrialState_TRIAL_STATE_SUCCEEDED))
				all := must[map[int32][]*pb.CurvePoint](t)(tx.AllPoints(1))
				if !slices.Equal(seqs(all[1]), []uint64{1, 2, 3}) || !slices.Equal(seqs(all[2]), []uint64{1}) || len(all) != 2 {
					t.Errorf("AllPoints(1) = %v", all)
				}
				protoEqual(t, all[1][2], point(3))
				protoEqual(t, must[*pb.Worker](t)(tx.Worker(1)), &pb.Worker{Id: 1, Hostname: "v1-host"})
				if got := must[[]byte](t)(tx.PolicyState(1)); string(got) != "v1 policy state" {
					t.Errorf("PolicyState(1) = %q", got)
				}
				return nil
			})
			// Ids continue after the migrated ones.
			_ = db.Update(func(tx *Tx) error {
				if got := must[uint64](t)(tx.NextTrialID()); got != 6 {
					t.Errorf("NextTrialID = %d, want 6", got)
				}
				return errors.New("roll back") // keep the file as migrated for the next round
			})
		})
	}
}

// TestMigrateFailureLeavesOldVersion: a migration that fails (here on a trial
// that does not decode) leaves the file exactly at its old version.
func TestMigrateFailureLeavesOldVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	if err := writeV1(path); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTrials).Put(u64(3), []byte{0xff, 0xff}) }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()

	_, err = Open(path, Options{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open error = %v, want ErrCorrupt", err)
	}
	t.Log(err)

	bdb, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.View(func(tx *bolt.Tx) error {
		if v, err := schemaVersion(tx); err != nil || v != 1 {
			t.Errorf("version after failed migration = %d, %v; want 1", v, err)
		}
		if tx.Bucket(bucketStudyTrials) != nil {
			t.Error("failed migration left the study index behind")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
