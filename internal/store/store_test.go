package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// openTest opens a fresh store in t.TempDir and, when the test ends, checks it
// (bbolt pages and this package's invariants) and closes it.
func openTest(tb testing.TB) *DB {
	tb.Helper()
	return openAtTest(tb, filepath.Join(tb.TempDir(), "mixopt.db"))
}

func openAtTest(tb testing.TB, path string) *DB {
	tb.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Check(); err != nil {
			tb.Errorf("Check on close: %v", err)
		}
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

func update(tb testing.TB, db *DB, fn func(tx *Tx) error) {
	tb.Helper()
	if err := db.Update(fn); err != nil {
		tb.Fatalf("Update: %v", err)
	}
}

func view(tb testing.TB, db *DB, fn func(tx *Tx) error) {
	tb.Helper()
	if err := db.View(fn); err != nil {
		tb.Fatalf("View: %v", err)
	}
}

func must[T any](tb testing.TB) func(T, error) T {
	return func(v T, err error) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

func ok(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func study(id uint64, name string) *pb.Study {
	return &pb.Study{
		Id: id,
		Spec: &pb.StudySpec{
			Name:    name,
			Domains: []*pb.Domain{{Name: "wiki"}, {Name: "github", MaxWeight: 0.5}},
			Scales:  []*pb.Scale{{Name: "s", Params: 20e6, FlopsPerStep: 1e12, Gpus: 1}},
			Steps:   []int64{500, 1000},
			Target:  &pb.Fidelity{Scale: "s", Steps: 1000},
		},
		State:            pb.StudyState_STUDY_STATE_RUNNING,
		CreateTimeUnixMs: 1_700_000_000_000,
	}
}

func trial(id, studyID uint64, state pb.TrialState) *pb.Trial {
	return &pb.Trial{
		Id: id, StudyId: studyID, Mixture: []float64{0.25, 0.75}, Scale: "s", Steps: 1000,
		State: state, Attempt: 1, LeaseId: fmt.Sprintf("lease-%d", id),
	}
}

func point(seq uint64) *pb.CurvePoint {
	return &pb.CurvePoint{
		Seq: seq, Step: int64(seq) * 100, Tokens: int64(seq) * 100 * 4096, TrainLoss: 4 - float64(seq)/100,
		Eval: map[string]float64{"wiki_ce": 3.1, "github_ce": 2.2, "mean_ce": 2.65}, WallTimeS: float64(seq),
	}
}

// seqs lists the seq numbers of points.
func seqs(pts []*pb.CurvePoint) []uint64 {
	out := []uint64{}
	for _, p := range pts {
		out = append(out, p.GetSeq())
	}
	return out
}

type idMsg interface {
	proto.Message
	GetId() uint64
}

func ids[M idMsg](ms []M) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.GetId())
	}
	return out
}

func protoEqual[M proto.Message](tb testing.TB, got, want M) {
	tb.Helper()
	if !proto.Equal(got, want) {
		tb.Errorf("got  %v\nwant %v", got, want)
	}
}

// seedStudies creates studies 1 and 2; trials 1, 2, 4 in study 1 and 3 in study 2.
func seedStudies(t *testing.T, db *DB) {
	t.Helper()
	update(t, db, func(tx *Tx) error {
		for _, name := range []string{"one", "two"} {
			id := must[uint64](t)(tx.NextStudyID())
			if err := tx.PutStudy(study(id, name)); err != nil {
				return err
			}
		}
		for _, s := range []uint64{1, 1, 2, 1} {
			id := must[uint64](t)(tx.NextTrialID())
			if err := tx.PutTrial(trial(id, s, pb.TrialState_TRIAL_STATE_PENDING)); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestStudies(t *testing.T) {
	db := openTest(t)
	update(t, db, func(tx *Tx) error {
		for i, want := range []uint64{1, 2, 3} {
			if got := must[uint64](t)(tx.NextStudyID()); got != want {
				t.Errorf("NextStudyID #%d = %d, want %d", i, got, want)
			}
		}
		for _, id := range []uint64{3, 1} { // out of order: listing must still ascend
			if err := tx.PutStudy(study(id, fmt.Sprint("s", id))); err != nil {
				return err
			}
		}
		return nil
	})
	replaced := study(1, "renamed")
	replaced.State = pb.StudyState_STUDY_STATE_COMPLETED
	replaced.EndReason = "budget exhausted"
	update(t, db, func(tx *Tx) error { return tx.PutStudy(replaced) })

	view(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			name    string
			id      uint64
			want    *pb.Study
			wantErr error
		}{
			{"replaced", 1, replaced, nil},
			{"second", 3, study(3, "s3"), nil},
			{"allocated never put", 2, nil, ErrNotFound},
			{"never allocated", 99, nil, ErrNotFound},
			{"zero", 0, nil, ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := tx.Study(tc.id)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Study(%d) error = %v, want %v", tc.id, err, tc.wantErr)
				}
				if err != nil {
					if !strings.Contains(err.Error(), fmt.Sprintf("study %d", tc.id)) {
						t.Errorf("error %q does not name study %d", err, tc.id)
					}
					return
				}
				protoEqual(t, got, tc.want)
			})
		}
		all := must[[]*pb.Study](t)(tx.Studies())
		if got := ids(all); !slices.Equal(got, []uint64{1, 3}) {
			t.Errorf("Studies ids = %v, want [1 3]", got)
		}
		return nil
	})
}

func TestPutErrors(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	update(t, db, func(tx *Tx) error { _, err := tx.NextWorkerID(); return err })
	for _, tc := range []struct {
		name     string
		put      func(tx *Tx) error
		wantIs   error
		wantText string
	}{
		{"study id zero", func(tx *Tx) error { return tx.PutStudy(study(0, "x")) }, nil, "id is 0"},
		{"study id not allocated", func(tx *Tx) error { return tx.PutStudy(study(7, "x")) }, nil, "never allocated"},
		{"trial id zero", func(tx *Tx) error { return tx.PutTrial(trial(0, 1, 0)) }, nil, "id is 0"},
		{"trial id not allocated", func(tx *Tx) error { return tx.PutTrial(trial(9, 1, 0)) }, nil, "never allocated"},
		{"trial study zero", func(tx *Tx) error { return tx.PutTrial(trial(1, 0, 0)) }, nil, "study id is 0"},
		{"trial study missing", func(tx *Tx) error { return tx.PutTrial(trial(1, 42, 0)) }, ErrNotFound, "study 42"},
		{"worker id zero", func(tx *Tx) error { return tx.PutWorker(&pb.Worker{}) }, nil, "id is 0"},
		{"worker id not allocated", func(tx *Tx) error { return tx.PutWorker(&pb.Worker{Id: 2}) }, nil, "never allocated"},
		{"points trial missing", func(tx *Tx) error { return tx.AppendPoints(77, 1, []*pb.CurvePoint{point(1)}) }, ErrNotFound, "trial 77"},
		{"points attempt zero", func(tx *Tx) error { return tx.AppendPoints(1, 0, []*pb.CurvePoint{point(1)}) }, nil, "attempt 0"},
		{"points seq zero", func(tx *Tx) error { return tx.AppendPoints(1, 1, []*pb.CurvePoint{point(1), point(0)}) }, nil, "seq 0"},
		{"points nil point", func(tx *Tx) error { return tx.AppendPoints(1, 1, []*pb.CurvePoint{nil}) }, nil, "nil"},
		{"policy state study missing", func(tx *Tx) error { return tx.PutPolicyState(5, []byte("x")) }, ErrNotFound, "study 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.Update(tc.put)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error = %v, want errors.Is %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
		})
	}
	// A read transaction refuses writes with an error, not a panic.
	err := db.View(func(tx *Tx) error { return tx.PutStudy(study(1, "x")) })
	if !errors.Is(err, berrors.ErrTxNotWritable) {
		t.Errorf("PutStudy in View: error = %v, want ErrTxNotWritable", err)
	}
	err = db.View(func(tx *Tx) error { _, err := tx.NextTrialID(); return err })
	if err == nil {
		t.Error("NextTrialID in View: no error")
	}
}

func TestTrials(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	running := trial(2, 1, pb.TrialState_TRIAL_STATE_RUNNING)
	running.WorkerId, running.LastSeq, running.ReasonHistory = 1, 12, []string{"worker lost"}
	update(t, db, func(tx *Tx) error { return tx.PutTrial(running) })

	view(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			name    string
			id      uint64
			want    *pb.Trial
			wantErr error
		}{
			{"as put", 1, trial(1, 1, pb.TrialState_TRIAL_STATE_PENDING), nil},
			{"replaced", 2, running, nil},
			{"other study", 3, trial(3, 2, pb.TrialState_TRIAL_STATE_PENDING), nil},
			{"missing", 5, nil, ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := tx.Trial(tc.id)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Trial(%d) error = %v, want %v", tc.id, err, tc.wantErr)
				}
				if err == nil {
					protoEqual(t, got, tc.want)
				} else if !strings.Contains(err.Error(), "trial 5") {
					t.Errorf("error %q does not name the trial", err)
				}
			})
		}
		for _, tc := range []struct {
			name    string
			study   uint64
			want    []uint64
			wantErr error
		}{
			{"study 1", 1, []uint64{1, 2, 4}, nil},
			{"study 2", 2, []uint64{3}, nil},
			{"missing study", 3, nil, ErrNotFound},
		} {
			t.Run("TrialsOfStudy/"+tc.name, func(t *testing.T) {
				got, err := tx.TrialsOfStudy(tc.study)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if err == nil && !slices.Equal(ids(got), tc.want) {
					t.Errorf("ids = %v, want %v", ids(got), tc.want)
				}
			})
		}
		for _, tc := range []struct {
			state pb.TrialState
			want  []uint64
		}{
			{pb.TrialState_TRIAL_STATE_UNSPECIFIED, []uint64{1, 2, 3, 4}},
			{pb.TrialState_TRIAL_STATE_PENDING, []uint64{1, 3, 4}},
			{pb.TrialState_TRIAL_STATE_RUNNING, []uint64{2}},
			{pb.TrialState_TRIAL_STATE_LOST, []uint64{}},
		} {
			t.Run("AllTrials/"+tc.state.String(), func(t *testing.T) {
				got := must[[]*pb.Trial](t)(tx.AllTrials(tc.state))
				if !slices.Equal(ids(got), tc.want) {
					t.Errorf("ids = %v, want %v", ids(got), tc.want)
				}
			})
		}
		return nil
	})
}

func TestStudyIndexOnRePut(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	trialsOf := func(s uint64) []uint64 {
		var out []uint64
		view(t, db, func(tx *Tx) error { out = ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(s))); return nil })
		return out
	}
	// Putting the same trial again, changed, must neither duplicate nor lose it.
	for i := range 3 {
		tr := trial(1, 1, pb.TrialState_TRIAL_STATE_RUNNING)
		tr.StepsDone = int64(i)
		update(t, db, func(tx *Tx) error { return tx.PutTrial(tr) })
	}
	if got := trialsOf(1); !slices.Equal(got, []uint64{1, 2, 4}) {
		t.Errorf("after re-puts, study 1 trials = %v, want [1 2 4]", got)
	}
	// Moving a trial to another study moves its index entry.
	update(t, db, func(tx *Tx) error { return tx.PutTrial(trial(4, 2, pb.TrialState_TRIAL_STATE_PENDING)) })
	if got, want := trialsOf(1), []uint64{1, 2}; !slices.Equal(got, want) {
		t.Errorf("after move, study 1 trials = %v, want %v", got, want)
	}
	if got, want := trialsOf(2), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Errorf("after move, study 2 trials = %v, want %v", got, want)
	}
	// openTest's Check verifies index and trials agree both ways.
}

// pointsRange returns points seq from..to.
func pointsRange(from, to uint64) []*pb.CurvePoint {
	var pts []*pb.CurvePoint
	for s := from; s <= to; s++ {
		pts = append(pts, point(s))
	}
	return pts
}

func TestPoints(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	// Several batches of one attempt in one transaction (each must see the ones
	// before it), across attempts and trials, with keys that differ only past the
	// low byte (a little-endian key would misorder (1, 256) before (1, 4)).
	update(t, db, func(tx *Tx) error {
		for _, b := range []struct {
			trial    uint64
			attempt  int32
			from, to uint64
		}{
			{1, 1, 1, 3},
			{1, 1, 4, 255},
			{1, 1, 256, 256},
			{1, 1, 257, 258},
			{1, 2, 1, 2},
			{1, 256, 1, 1},
			{2, 1, 1, 1},
			{3, 1, 1, 0}, // empty batch: allowed, writes nothing
		} {
			if err := tx.AppendPoints(b.trial, b.attempt, pointsRange(b.from, b.to)); err != nil {
				return err
			}
		}
		return nil
	})
	// A later transaction continues where the committed points end.
	update(t, db, func(tx *Tx) error { return tx.AppendPoints(1, 1, pointsRange(259, 260)) })

	// Batches that do not continue the attempt exactly are refused whole, with
	// the seqs in the error, and write nothing.
	for _, tc := range []struct {
		name    string
		trial   uint64
		attempt int32
		pts     []*pb.CurvePoint
		want    string
	}{
		{"re-sent batch", 1, 1, pointsRange(259, 260), "batch is seqs 259..260 but the attempt's last stored seq is 260, so it must start at seq 261"},
		{"partly re-sent", 1, 1, pointsRange(260, 262), "batch is seqs 260..262 but the attempt's last stored seq is 260"},
		{"gap", 1, 1, pointsRange(262, 263), "batch is seqs 262..263 but the attempt's last stored seq is 260, so it must start at seq 261"},
		{"new attempt not from 1", 1, 3, pointsRange(2, 3), "batch is seqs 2..3 but the attempt has no points stored, so it must start at seq 1"},
		{"trial without points not from 1", 4, 1, pointsRange(5, 5), "batch is seqs 5..5 but the attempt has no points stored"},
		{"gap inside the batch", 1, 1, []*pb.CurvePoint{point(261), point(263)}, "point 1 has seq 263, want 262"},
		{"descending", 1, 1, []*pb.CurvePoint{point(262), point(261)}, "point 1 has seq 261, want 263"},
		{"duplicate inside the batch", 1, 1, []*pb.CurvePoint{point(261), point(261)}, "point 1 has seq 261, want 262"},
		{"seq zero", 1, 1, []*pb.CurvePoint{point(261), {}}, "point 1 has seq 0"},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			err := db.Update(func(tx *Tx) error { return tx.AppendPoints(tc.trial, tc.attempt, tc.pts) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// A refused batch of a trial without points left no bucket behind either.
	_ = db.bolt.View(func(btx *bolt.Tx) error {
		if btx.Bucket(bucketPoints).Bucket(u64(4)) != nil {
			t.Error("a refused batch created a points bucket for trial 4")
		}
		return nil
	})

	view(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			name    string
			trial   uint64
			attempt int32
			want    []uint64
			wantErr error
		}{
			{"attempt 1 ascending", 1, 1, seqs(pointsRange(1, 260)), nil},
			{"attempt 2", 1, 2, []uint64{1, 2}, nil},
			{"attempt 256", 1, 256, []uint64{1}, nil},
			{"attempt without points", 1, 3, []uint64{}, nil},
			{"other trial", 2, 1, []uint64{1}, nil},
			{"trial without points", 3, 1, []uint64{}, nil},
			{"missing trial", 99, 1, nil, ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := tx.Points(tc.trial, tc.attempt)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if err == nil && !slices.Equal(seqs(got), tc.want) {
					t.Errorf("seqs = %v, want %v", seqs(got), tc.want)
				}
			})
		}
		got := must[[]*pb.CurvePoint](t)(tx.Points(1, 1))
		for i, p := range got {
			protoEqual(t, p, point(uint64(i+1)))
		}

		all := must[map[int32][]*pb.CurvePoint](t)(tx.AllPoints(1))
		if len(all) != 3 {
			t.Errorf("AllPoints(1) has %d attempts, want 3", len(all))
		}
		for attempt, want := range map[int32][]uint64{1: seqs(pointsRange(1, 260)), 2: {1, 2}, 256: {1}} {
			if !slices.Equal(seqs(all[attempt]), want) {
				t.Errorf("AllPoints(1)[%d] seqs = %v, want %v", attempt, seqs(all[attempt]), want)
			}
		}
		protoEqual(t, all[1][255], point(256))
		if all := must[map[int32][]*pb.CurvePoint](t)(tx.AllPoints(3)); all == nil || len(all) != 0 {
			t.Errorf("AllPoints of a trial without points = %v, want an empty map", all)
		}
		if _, err := tx.AllPoints(99); !errors.Is(err, ErrNotFound) {
			t.Errorf("AllPoints(99) error = %v, want ErrNotFound", err)
		}
		if _, err := tx.Points(1, 0); err == nil {
			t.Error("Points attempt 0: no error")
		}
		return nil
	})

	// One record per batch, under attempt ‖ first seq.
	if got, want := recordKeys(t, db, 1), [][2]uint64{{1, 1}, {1, 4}, {1, 256}, {1, 257}, {1, 259}, {2, 1}, {256, 1}}; !slices.Equal(got, want) {
		t.Errorf("records of trial 1 = %v, want %v", got, want)
	}
}

// recordKeys lists the (attempt, first seq) keys of a trial's points records.
func recordKeys(t *testing.T, db *DB, trialID uint64) [][2]uint64 {
	t.Helper()
	var out [][2]uint64
	if err := db.bolt.View(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketPoints).Bucket(u64(trialID)).ForEach(func(k, _ []byte) error {
			a, s, err := decodePair(k)
			out = append(out, [2]uint64{a, s})
			return err
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWorkers(t *testing.T) {
	db := openTest(t)
	w1 := &pb.Worker{Hostname: "gpu-a", Gpus: []*pb.Gpu{{Index: 0, Name: "H200", MemoryMib: 141312}}, State: pb.WorkerState_WORKER_STATE_ALIVE}
	w2 := &pb.Worker{Hostname: "sim", SimulatedCapacity: 8, RunningTrials: []uint64{3, 4}}
	update(t, db, func(tx *Tx) error {
		for _, w := range []*pb.Worker{w1, w2} {
			w.Id = must[uint64](t)(tx.NextWorkerID())
			if err := tx.PutWorker(w); err != nil {
				return err
			}
		}
		return nil
	})
	w1.State = pb.WorkerState_WORKER_STATE_LOST
	update(t, db, func(tx *Tx) error { return tx.PutWorker(w1) })
	view(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			id      uint64
			want    *pb.Worker
			wantErr error
		}{{1, w1, nil}, {2, w2, nil}, {3, nil, ErrNotFound}} {
			t.Run(fmt.Sprint("worker ", tc.id), func(t *testing.T) {
				got, err := tx.Worker(tc.id)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if err == nil {
					protoEqual(t, got, tc.want)
				}
			})
		}
		if got := ids(must[[]*pb.Worker](t)(tx.Workers())); !slices.Equal(got, []uint64{1, 2}) {
			t.Errorf("Workers ids = %v, want [1 2]", got)
		}
		return nil
	})
}

func TestEmptyListings(t *testing.T) {
	db := openTest(t)
	view(t, db, func(tx *Tx) error {
		if s := must[[]*pb.Study](t)(tx.Studies()); len(s) != 0 {
			t.Errorf("Studies = %v", s)
		}
		if w := must[[]*pb.Worker](t)(tx.Workers()); len(w) != 0 {
			t.Errorf("Workers = %v", w)
		}
		if tr := must[[]*pb.Trial](t)(tx.AllTrials(0)); len(tr) != 0 {
			t.Errorf("AllTrials = %v", tr)
		}
		return nil
	})
}

func TestPolicyState(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	buf := []byte("state-v1")
	update(t, db, func(tx *Tx) error {
		if err := tx.PutPolicyState(1, buf); err != nil {
			return err
		}
		copy(buf, "XXXXX") // the caller may reuse its buffer before the commit
		return nil
	})
	update(t, db, func(tx *Tx) error { return tx.PutPolicyState(2, []byte("two")) })
	update(t, db, func(tx *Tx) error { return tx.PutPolicyState(2, nil) }) // deletes

	var kept []byte
	view(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			study   uint64
			want    []byte
			wantErr error
		}{{1, []byte("state-v1"), nil}, {2, nil, nil}, {9, nil, ErrNotFound}} {
			got, err := tx.PolicyState(tc.study)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("PolicyState(%d) error = %v, want %v", tc.study, err, tc.wantErr)
			}
			if string(got) != string(tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("PolicyState(%d) = %q, want %q", tc.study, got, tc.want)
			}
			if tc.study == 1 {
				kept = got
			}
		}
		return nil
	})
	// Returned bytes are the caller's: valid after the transaction, and writes to
	// them do not reach the store.
	update(t, db, func(tx *Tx) error { return tx.PutPolicyState(1, []byte("state-v2")) })
	if string(kept) != "state-v1" {
		t.Errorf("bytes kept from an earlier View = %q, want state-v1", kept)
	}
	kept[0] = 'Z'
	view(t, db, func(tx *Tx) error {
		if got := must[[]byte](t)(tx.PolicyState(1)); string(got) != "state-v2" {
			t.Errorf("PolicyState(1) = %q, want state-v2", got)
		}
		return nil
	})
}

// TestRollback: a failed or panicking fn leaves nothing behind, ids included.
func TestRollback(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	update(t, db, func(tx *Tx) error { return tx.AppendPoints(1, 1, []*pb.CurvePoint{point(1)}) })
	errBoom := errors.New("boom")
	writeAll := func(t *testing.T, tx *Tx) {
		sid := must[uint64](t)(tx.NextStudyID())
		ok(t, tx.PutStudy(study(sid, "doomed")))
		tid := must[uint64](t)(tx.NextTrialID())
		ok(t, tx.PutTrial(trial(tid, sid, 0)))
		ok(t, tx.PutTrial(trial(1, 2, pb.TrialState_TRIAL_STATE_FAILED))) // moves trial 1
		ok(t, tx.AppendPoints(1, 1, []*pb.CurvePoint{point(2), point(3)}))
		ok(t, tx.AppendPoints(tid, 1, []*pb.CurvePoint{point(1)}))
		wid := must[uint64](t)(tx.NextWorkerID())
		ok(t, tx.PutWorker(&pb.Worker{Id: wid}))
		ok(t, tx.PutPolicyState(1, []byte("half")))
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) error
	}{
		{"error", func(t *testing.T) error {
			return db.Update(func(tx *Tx) error { writeAll(t, tx); return errBoom })
		}},
		{"panic", func(t *testing.T) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panicked: %v", r)
				}
			}()
			return db.Update(func(tx *Tx) error { writeAll(t, tx); panic("boom") })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("Update error = %v, want fn's error", err)
			}
			if tc.name == "error" && err != errBoom { // fn's error comes back as it was, unwrapped
				t.Errorf("Update error = %#v, want errBoom itself", err)
			}
			view(t, db, func(tx *Tx) error {
				if got := ids(must[[]*pb.Study](t)(tx.Studies())); !slices.Equal(got, []uint64{1, 2}) {
					t.Errorf("studies = %v, want [1 2]", got)
				}
				if got := ids(must[[]*pb.Trial](t)(tx.AllTrials(0))); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
					t.Errorf("trials = %v, want [1 2 3 4]", got)
				}
				if got := ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(1))); !slices.Equal(got, []uint64{1, 2, 4}) {
					t.Errorf("study 1 trials = %v, want [1 2 4]", got)
				}
				protoEqual(t, must[*pb.Trial](t)(tx.Trial(1)), trial(1, 1, pb.TrialState_TRIAL_STATE_PENDING))
				if got := seqs(must[[]*pb.CurvePoint](t)(tx.Points(1, 1))); !slices.Equal(got, []uint64{1}) {
					t.Errorf("points = %v, want [1]", got)
				}
				if w := must[[]*pb.Worker](t)(tx.Workers()); len(w) != 0 {
					t.Errorf("workers = %v, want none", w)
				}
				if s := must[[]byte](t)(tx.PolicyState(1)); s != nil {
					t.Errorf("policy state = %q, want none", s)
				}
				return nil
			})
			// Sequences rolled back too: the next ids are the ones the failed fn got.
			_ = db.Update(func(tx *Tx) error {
				if got := must[uint64](t)(tx.NextStudyID()); got != 3 {
					t.Errorf("NextStudyID = %d, want 3", got)
				}
				if got := must[uint64](t)(tx.NextTrialID()); got != 5 {
					t.Errorf("NextTrialID = %d, want 5", got)
				}
				return errBoom // and roll this back too, for the next case
			})
		})
	}
}

func TestTxAfterReturn(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	var kept *Tx
	view(t, db, func(tx *Tx) error { kept = tx; return nil })
	if _, err := kept.Study(1); !errors.Is(err, errTxDone) {
		t.Errorf("Study on a finished Tx: error = %v, want errTxDone", err)
	}
	update(t, db, func(tx *Tx) error { kept = tx; return nil })
	if err := kept.PutStudy(study(1, "late")); !errors.Is(err, errTxDone) {
		t.Errorf("PutStudy on a finished Tx: error = %v, want errTxDone", err)
	}
}

// TestReopen: everything committed is there after Close and Open, ids continue.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixopt.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedStudies(t, db)
	update(t, db, func(tx *Tx) error { return tx.AppendPoints(2, 1, []*pb.CurvePoint{point(1), point(2)}) })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAtTest(t, path)
	if db.Path() != path {
		t.Errorf("Path = %q, want %q", db.Path(), path)
	}
	update(t, db, func(tx *Tx) error {
		if got := ids(must[[]*pb.Trial](t)(tx.TrialsOfStudy(1))); !slices.Equal(got, []uint64{1, 2, 4}) {
			t.Errorf("study 1 trials = %v", got)
		}
		if got := seqs(must[[]*pb.CurvePoint](t)(tx.Points(2, 1))); !slices.Equal(got, []uint64{1, 2}) {
			t.Errorf("points = %v", got)
		}
		if got := must[uint64](t)(tx.NextTrialID()); got != 5 {
			t.Errorf("NextTrialID after reopen = %d, want 5", got)
		}
		return nil
	})
}
