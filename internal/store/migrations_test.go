package store

import (
	"compress/gzip"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// v2FixturePoints lists the curve points of the version-2 fixture: trial →
// attempt → how many points, seq 1..n. Trial 2 has more points than one
// migrated record holds, so the migration must split it; trial 3 has none;
// trial 4's attempts 1 and 2 reported nothing before they were lost, and its
// attempt 256 differs from attempt 1 only past the low byte of the key.
var v2FixturePoints = map[uint64]map[int32]uint64{
	1: {1: 5, 2: 3},
	2: {1: 600},
	4: {3: 2, 256: 1},
}

// v2FixtureTrials maps each trial of the version-2 fixture to its study.
var v2FixtureTrials = map[uint64]uint64{1: 1, 2: 1, 3: 2, 4: 2}

// v2Point is the fixture's point seq of an attempt: every field set, values
// that differ by trial and attempt so a point moved to the wrong place shows.
func v2Point(trialID uint64, attempt int32, seq uint64) *pb.CurvePoint {
	p := point(seq)
	p.TrainLoss += float64(trialID) + float64(attempt)/1000
	p.Eval["trial"] = float64(trialID)
	return p
}

// writeV2 writes a store in the version-2 layout (one record per curve point,
// key attempt ‖ seq, value pb.CurvePoint) with bbolt directly, as a binary of
// that version would have.
func writeV2(path string) error {
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.Update(func(tx *bolt.Tx) error {
		if err := migrate(tx, 2); err != nil {
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
			if err := put(bucketStudies, study(id, "v2 study")); err != nil {
				return err
			}
		}
		for id := uint64(1); id <= 4; id++ {
			t := trial(id, v2FixtureTrials[id], pb.TrialState_TRIAL_STATE_SUCCEEDED)
			if err := put(bucketTrials, t); err != nil {
				return err
			}
			if err := tx.Bucket(bucketStudyTrials).Put(pair(t.StudyId, id), []byte{}); err != nil {
				return err
			}
		}
		// Sorted, not map order, so that regenerating writes the same file.
		for _, trialID := range slices.Sorted(maps.Keys(v2FixturePoints)) {
			b, err := tx.Bucket(bucketPoints).CreateBucket(u64(trialID))
			if err != nil {
				return err
			}
			for _, attempt := range slices.Sorted(maps.Keys(v2FixturePoints[trialID])) {
				n := v2FixturePoints[trialID][attempt]
				for seq := uint64(1); seq <= n; seq++ {
					v, err := marshal(v2Point(trialID, attempt, seq))
					if err != nil {
						return err
					}
					if err := b.Put(pair(uint64(attempt), seq), v); err != nil {
						return err
					}
				}
			}
		}
		if err := put(bucketWorkers, &pb.Worker{Id: 1, Hostname: "v2-host"}); err != nil {
			return err
		}
		return tx.Bucket(bucketPolicyState).Put(u64(2), []byte("v2 policy state"))
	})
}

// regenFixture rewrites fixture from write when -regen-fixtures is given.
func regenFixture(t *testing.T, fixture string, write func(path string) error) {
	t.Helper()
	if !*regenFixtures {
		return
	}
	raw := filepath.Join(t.TempDir(), "raw.db")
	if err := write(raw); err != nil {
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

// readV2Raw decodes every curve point of a version-2 file with bbolt directly,
// one record per point: trial → attempt → points in key order.
func readV2Raw(t *testing.T, path string) map[uint64]map[int32][]*pb.CurvePoint {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	out := map[uint64]map[int32][]*pb.CurvePoint{}
	if err := bdb.View(func(tx *bolt.Tx) error {
		if v, err := schemaVersion(tx); err != nil || v != 2 {
			t.Fatalf("fixture version = %d, %v; want 2", v, err)
		}
		root := tx.Bucket(bucketPoints)
		return root.ForEachBucket(func(tk []byte) error {
			trialID := must[uint64](t)(decodeU64(tk))
			out[trialID] = map[int32][]*pb.CurvePoint{}
			return root.Bucket(tk).ForEach(func(k, v []byte) error {
				attempt, seq, err := decodePair(k)
				if err != nil {
					t.Fatalf("fixture trial %d: %v", trialID, err)
				}
				p := new(pb.CurvePoint)
				if err := proto.Unmarshal(v, p); err != nil {
					t.Fatalf("fixture trial %d attempt %d seq %d is not a version-2 CurvePoint record: %v", trialID, attempt, seq, err)
				}
				out[trialID][int32(attempt)] = append(out[trialID][int32(attempt)], p)
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateV2Fixture(t *testing.T) {
	const fixture = "testdata/v2.db.gz"
	regenFixture(t, fixture, writeV2)
	path := filepath.Join(t.TempDir(), "v2.db")
	gunzipFile(t, fixture, path)

	// The fixture really is the old layout, one record per point, and holds
	// what its generator says.
	before := readV2Raw(t, path)
	for trialID, attempts := range v2FixturePoints {
		for attempt, n := range attempts {
			pts := before[trialID][attempt]
			if uint64(len(pts)) != n {
				t.Fatalf("fixture trial %d attempt %d has %d point records, want %d", trialID, attempt, len(pts), n)
			}
			for i, p := range pts {
				protoEqual(t, p, v2Point(trialID, attempt, uint64(i+1)))
			}
		}
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
			if v := version(t, db); v != currentVersion {
				t.Errorf("version = %d, want %d", v, currentVersion)
			}
			view(t, db, func(tx *Tx) error {
				// Every point reads back identically, per attempt in seq order.
				for trialID := uint64(1); trialID <= 4; trialID++ {
					all := must[map[int32][]*pb.CurvePoint](t)(tx.AllPoints(trialID))
					if len(all) != len(before[trialID]) {
						t.Errorf("trial %d: %d attempts with points, want %d", trialID, len(all), len(before[trialID]))
					}
					for attempt, want := range before[trialID] {
						got := must[[]*pb.CurvePoint](t)(tx.Points(trialID, attempt))
						if len(got) != len(want) || len(all[attempt]) != len(want) {
							t.Errorf("trial %d attempt %d: Points %d, AllPoints %d points, want %d", trialID, attempt, len(got), len(all[attempt]), len(want))
							continue
						}
						for i := range want {
							protoEqual(t, got[i], want[i])
							protoEqual(t, all[attempt][i], want[i])
						}
					}
				}
				for s, want := range map[uint64][]uint64{1: {1, 2}, 2: {3, 4}} {
					if got := ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(s))); !slices.Equal(got, want) {
						t.Errorf("TrialsOfStudy(%d) = %v, want %v", s, got, want)
					}
				}
				protoEqual(t, must[*pb.Study](t)(tx.Study(1)), study(1, "v2 study"))
				protoEqual(t, must[*pb.Trial](t)(tx.Trial(4)), trial(4, 2, pb.TrialState_TRIAL_STATE_SUCCEEDED))
				protoEqual(t, must[*pb.Worker](t)(tx.Worker(1)), &pb.Worker{Id: 1, Hostname: "v2-host"})
				if got := must[[]byte](t)(tx.PolicyState(2)); string(got) != "v2 policy state" {
					t.Errorf("PolicyState(2) = %q", got)
				}
				return nil
			})
			// Batch records: trial 2's 600 points in chunks of migratedBatchPoints.
			for trialID, want := range map[uint64][][2]uint64{
				1: {{1, 1}, {2, 1}},
				2: {{1, 1}, {1, 1 + migratedBatchPoints}, {1, 1 + 2*migratedBatchPoints}},
				4: {{3, 1}, {256, 1}},
			} {
				if got := recordKeys(t, db, trialID); !slices.Equal(got, want) {
					t.Errorf("records of trial %d = %v, want %v", trialID, got, want)
				}
			}
			// Appending continues after the migrated points, and only there.
			_ = db.Update(func(tx *Tx) error {
				if err := tx.AppendPoints(2, 1, []*pb.CurvePoint{point(600)}); err == nil {
					t.Error("AppendPoints of migrated seq 600 again: no error")
				}
				if err := tx.AppendPoints(2, 1, pointsRange(601, 602)); err != nil {
					t.Errorf("AppendPoints after the migrated points: %v", err)
				}
				if got := len(must[[]*pb.CurvePoint](t)(tx.Points(2, 1))); got != 602 {
					t.Errorf("trial 2 has %d points after appending, want 602", got)
				}
				if got := must[uint64](t)(tx.NextTrialID()); got != 5 {
					t.Errorf("NextTrialID = %d, want 5", got)
				}
				return errors.New("roll back") // keep the file as migrated for the next round
			})
		})
	}
}

// TestMigrateV2Refused: version-2 points that version 3 cannot represent (a gap
// in an attempt, a point stored under another seq) or that do not decode fail the
// migration with ErrCorrupt naming them, and leave the file at version 2 as it was.
func TestMigrateV2Refused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b *bolt.Bucket) error // trial 1's points bucket
		want   string
	}{
		{"gap", func(b *bolt.Bucket) error { return b.Delete(pair(1, 3)) },
			"points of trial 1: attempt 1 has seq 4 after 2 points, not seq 3"},
		{"not from seq 1", func(b *bolt.Bucket) error { return b.Delete(pair(2, 1)) },
			"points of trial 1: attempt 2 has seq 2 after 0 points, not seq 1"},
		{"seq of another key", func(b *bolt.Bucket) error {
			v, err := marshal(point(9))
			if err != nil {
				return err
			}
			return b.Put(pair(1, 2), v)
		}, "points of trial 1: point attempt 1 stored under seq 2 has seq 9"},
		{"does not decode", func(b *bolt.Bucket) error { return b.Put(pair(1, 2), []byte{0xff, 0xff}) },
			"points of trial 1: decode point attempt 1 seq 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "v2.db")
			if err := writeV2(path); err != nil {
				t.Fatal(err)
			}
			bdb, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := bdb.Update(func(tx *bolt.Tx) error { return tc.damage(tx.Bucket(bucketPoints).Bucket(u64(1))) }); err != nil {
				t.Fatal(err)
			}
			bdb.Close()
			damaged, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			_, err = Open(path, Options{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open error = %v, want ErrCorrupt saying %q", err, tc.want)
			}
			t.Log(err)
			if after, _ := os.ReadFile(path); string(after) != string(damaged) {
				t.Error("the failed migration changed the file")
			}
		})
	}
}
