package scheduler

import (
	"math"
	"testing"

	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The cache gives what the store holds whatever order appends and reads come in:
// re-sent points, a cold cache, a new attempt.
func TestCurveCacheMatchesTheStore(t *testing.T) {
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 1)
	e.createStudy(nil)
	a := e.mustAcquire(w)
	h := heldOf(w, a)
	read := func() []bo.CurvePoint {
		t.Helper()
		var got []bo.CurvePoint
		err := e.db.View(func(tx *store.Tx) error {
			tr, err := tx.Trial(a.Trial.Id)
			if err != nil {
				return err
			}
			got, err = e.s.curves.curve(tx, tr, "train_loss")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := func(n int) []bo.CurvePoint {
		var out []bo.CurvePoint
		for s := 1; s <= n; s++ {
			if s == 3 {
				continue // NaN below: left out
			}
			out = append(out, bo.CurvePoint{Step: int64(10 * s), Value: 10 / float64(s)})
		}
		return out
	}
	check := func(n int, why string) {
		t.Helper()
		got := read()
		exp := want(n)
		if len(got) != len(exp) {
			t.Fatalf("%s: %d points %v, want %d", why, len(got), got, len(exp))
		}
		for i := range got {
			if got[i] != exp[i] {
				t.Fatalf("%s: point %d = %v, want %v", why, i, got[i], exp[i])
			}
		}
	}
	batch := pts(1, 4)
	batch[2].TrainLoss = math.NaN()
	e.report(h, batch)
	check(4, "after the first report")
	e.report(h, pts(3, 6)) // re-sent 3 and 4
	check(6, "after a re-sent batch")
	e.s.curves = newCurveCache() // a cold cache, as after a restart
	check(6, "from a cold cache")
	e.s.curves.append(a.Trial.Id, a.Attempt, "train_loss", pts(8, 9)) // a gap: ignored
	check(6, "after a gapped append")
	e.s.curves.append(a.Trial.Id, a.Attempt+1, "train_loss", []*pb.CurvePoint{{Seq: 1, Step: 5, TrainLoss: 1}})
	check(6, "with a cached entry of another attempt")
}
