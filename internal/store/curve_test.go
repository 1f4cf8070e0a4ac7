package store

import (
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// metricOf is the reference: the metric read from a decoded point.
func metricOf(p *pb.CurvePoint, evalKey string) (float64, bool) {
	if evalKey == "" {
		return p.TrainLoss, true
	}
	v, ok := p.Eval[evalKey]
	return v, ok
}

// TestMetricCurveMatchesPoints: MetricCurve reads from the wire format what Points
// decodes, for every metric, including points without it, zero values (absent from
// the wire) and NaN.
func TestMetricCurveMatchesPoints(t *testing.T) {
	db := openTest(t)
	seedStudies(t, db)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"web_ce", "code_ce", "mean_ce", "x"}
	var seq uint64
	update(t, db, func(tx *Tx) error {
		for range 30 {
			batch := make([]*pb.CurvePoint, 1+rng.IntN(9))
			for i := range batch {
				seq++
				p := &pb.CurvePoint{Seq: seq, Step: int64(seq) * 10 * int64(rng.IntN(2)), TrainLoss: rng.Float64() * float64(rng.IntN(2)),
					Tokens: rng.Int64N(1e9), WallTimeS: rng.Float64(), Eval: map[string]float64{}}
				for _, k := range keys[:rng.IntN(len(keys)+1)] {
					p.Eval[k] = []float64{0, rng.Float64(), math.NaN()}[rng.IntN(3)]
				}
				batch[i] = p
			}
			if err := tx.AppendPoints(1, 2, batch); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, db, func(tx *Tx) error {
		pts := must[[]*pb.CurvePoint](t)(tx.Points(1, 2))
		for _, key := range append(keys, "", "missing") {
			curve := must[[]MetricPoint](t)(tx.MetricCurve(1, 2, key))
			if len(curve) != len(pts) {
				t.Fatalf("%q: %d points, want %d", key, len(curve), len(pts))
			}
			for i, p := range pts {
				v, has := metricOf(p, key)
				got := curve[i]
				if got.Seq != p.Seq || got.Step != p.Step || got.Has != has ||
					(has && math.Float64bits(got.Value) != math.Float64bits(v)) {
					t.Fatalf("%q point %d: %+v, want seq %d step %d value %v has %v", key, i, got, p.Seq, p.Step, v, has)
				}
			}
		}
		if c, err := tx.MetricCurve(1, 1, "web_ce"); err != nil || c != nil {
			t.Errorf("attempt without points: %v, %v", c, err)
		}
		return nil
	})
}

// A map entry repeated with the same key: the last one wins, as in proto decoding.
func TestMetricPointLastEntryWins(t *testing.T) {
	entry := func(k string, v float64) []byte {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.Fixed64Type)
		e = protowire.AppendFixed64(e, math.Float64bits(v))
		return e
	}
	var m []byte
	m = protowire.AppendTag(m, pointSeqField, protowire.VarintType)
	m = protowire.AppendVarint(m, 7)
	for _, v := range []float64{1, 2} {
		m = protowire.AppendTag(m, pointEvalField, protowire.BytesType)
		m = protowire.AppendBytes(m, entry("k", v))
	}
	p, err := metricPoint(m, []byte("k"), false)
	if err != nil || p.Seq != 7 || !p.Has || p.Value != 2 {
		t.Fatalf("metricPoint = %+v, %v; want seq 7, value 2", p, err)
	}
	if _, err := metricPoint(m[:len(m)-3], []byte("k"), false); err == nil {
		t.Error("truncated point: no error")
	}
}

// BenchmarkReadCurve: reading a 10,000-point attempt whole (Points) or reduced to
// its objective (MetricCurve), what the scheduler reads of every trial once after a
// start.
func BenchmarkReadCurve(b *testing.B) {
	db, trialID, batch := benchTrial(b)
	for i := range batch {
		batch[i].Eval = map[string]float64{"web_ce": 3.1, "code_ce": 2.9, "books_ce": 3, "mean_ce": 3}
	}
	update(b, db, func(tx *Tx) error {
		for first := uint64(1); first <= 10000; first += benchBatch {
			for i, p := range batch {
				p.Seq, p.Step = first+uint64(i), int64(first+uint64(i))*10
			}
			if err := tx.AppendPoints(trialID, 1, batch); err != nil {
				return err
			}
		}
		return nil
	})
	for _, bc := range []struct {
		name string
		read func(tx *Tx) (int, error)
	}{
		{"Points", func(tx *Tx) (int, error) { p, err := tx.Points(trialID, 1); return len(p), err }},
		{"MetricCurve", func(tx *Tx) (int, error) { p, err := tx.MetricCurve(trialID, 1, "mean_ce"); return len(p), err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				view(b, db, func(tx *Tx) error {
					n, err := bc.read(tx)
					if err == nil && n != 10000 {
						b.Fatalf("%d points", n)
					}
					return err
				})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/point")
		})
	}
}

// FuzzMetricPoint: wherever proto decodes a stored point, the wire reader agrees
// with it on seq, step and the metric, and it never panics on any bytes.
func FuzzMetricPoint(f *testing.F) {
	for _, p := range []*pb.CurvePoint{
		point(3),
		{Seq: 1, Step: 10, TrainLoss: 2.5, Eval: map[string]float64{"k": 1, "mean_ce": math.Inf(1)}},
		{},
	} {
		v, err := marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v, "k")
		f.Add(v, "")
	}
	f.Fuzz(func(t *testing.T, v []byte, key string) {
		got, err := metricPoint(v, []byte(key), key == "")
		want := new(pb.CurvePoint)
		if proto.Unmarshal(v, want) != nil {
			return // not a point proto accepts: the reader may refuse or read it
		}
		if err != nil {
			t.Fatalf("proto decodes %x but metricPoint fails: %v", v, err)
		}
		value, has := metricOf(want, key)
		if got.Seq != want.Seq || got.Step != want.Step || got.Has != has ||
			(has && math.Float64bits(got.Value) != math.Float64bits(value)) {
			t.Fatalf("%x key %q: metricPoint %+v, proto seq %d step %d value %v has %v", v, key, got, want.Seq, want.Step, value, has)
		}
	})
}
