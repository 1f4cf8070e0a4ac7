package store

import (
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// BenchmarkAppendPoints appends batches of 20 curve points to one attempt, as the
// scheduler's ReportPoints does: contiguous seqs continuing the attempt's last
// stored one, so the curve grows to b.N×20 points. Since schema version 3 a batch
// is one record (one Put, one marshal), not one per point.
//
//   - fsync: each batch in its own write transaction with the store's settings
//     (fsync on commit), what a worker's report costs the coordinator before it
//     can acknowledge;
//   - nosync: the same with fsync turned off in this benchmark only, to show the
//     store's own CPU cost apart from the disk's;
//   - append-only: many batches per transaction with the timer stopped while it
//     commits, so ns/op is AppendPoints itself (encode, find the attempt's last
//     record, Put) without bbolt's per-transaction cost.
//
// The points are built once and only their seq and step change, so the op does
// not include building each point's eval map.
func BenchmarkAppendPoints(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchAppendPoints(b, false) })
	b.Run("nosync", func(b *testing.B) { benchAppendPoints(b, true) })
	b.Run("append-only", benchAppendOnly)
}

const benchBatch = 20

// benchTrial opens a store with one running trial and returns it with a batch
// of points to reuse.
func benchTrial(b *testing.B) (*DB, uint64, []*pb.CurvePoint) {
	db := openTest(b)
	var trialID uint64
	update(b, db, func(tx *Tx) error {
		sid, err := tx.NextStudyID()
		if err != nil {
			return err
		}
		if err := tx.PutStudy(study(sid, "bench")); err != nil {
			return err
		}
		if trialID, err = tx.NextTrialID(); err != nil {
			return err
		}
		return tx.PutTrial(trial(trialID, sid, pb.TrialState_TRIAL_STATE_RUNNING))
	})
	pts := make([]*pb.CurvePoint, benchBatch)
	for i := range pts {
		pts[i] = point(uint64(i + 1))
	}
	return db, trialID, pts
}

// nextBatch renumbers pts to follow seq and returns the new last seq.
func nextBatch(pts []*pb.CurvePoint, seq uint64) uint64 {
	for _, p := range pts {
		seq++
		p.Seq, p.Step = seq, int64(seq)*100
	}
	return seq
}

func benchAppendPoints(b *testing.B, noSync bool) {
	db, trialID, pts := benchTrial(b)
	db.bolt.NoSync = noSync
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		seq = nextBatch(pts, seq)
		if err := db.Update(func(tx *Tx) error { return tx.AppendPoints(trialID, 1, pts) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "points/s")
}

func benchAppendOnly(b *testing.B) {
	db, trialID, pts := benchTrial(b)
	db.bolt.NoSync = true
	// Commit every perTx batches: one transaction for all of b.N would hold the
	// whole growing tree dirty in memory.
	const perTx = 500
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		err := db.Update(func(tx *Tx) error {
			for i := 0; i < perTx && done < b.N; i++ {
				seq = nextBatch(pts, seq)
				if err := tx.AppendPoints(trialID, 1, pts); err != nil {
					return err
				}
				done++
			}
			b.StopTimer() // not the commit
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "points/s")
}
