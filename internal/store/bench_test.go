package store

import (
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// BenchmarkAppendPoints commits one batch of 20 curve points per op, each in its
// own write transaction: "fsync" with the store's settings (fsync on commit), what
// a worker's report costs the coordinator before it can acknowledge; "nosync"
// with fsync turned off in this benchmark only, to show the store's own CPU cost
// apart from the disk's.
func BenchmarkAppendPoints(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchAppendPoints(b, false) })
	b.Run("nosync", func(b *testing.B) { benchAppendPoints(b, true) })
}

func benchAppendPoints(b *testing.B, noSync bool) {
	db := openTest(b)
	db.bolt.NoSync = noSync
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
	const batch = 20
	pts := make([]*pb.CurvePoint, batch)
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range pts {
			seq++
			pts[i] = point(seq)
		}
		if err := db.Update(func(tx *Tx) error { return tx.AppendPoints(trialID, 1, pts) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "points/s")
}
