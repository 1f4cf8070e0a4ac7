package store

import (
	"bytes"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// MetricPoint is one curve point reduced to one metric: what a policy reads of a
// curve.
type MetricPoint struct {
	Seq  uint64
	Step int64
	// Value is the metric at Step; Has is false when the point does not carry it.
	Value float64
	Has   bool
}

// Field numbers MetricCurve reads, from the generated descriptors (see points.go).
var (
	pointFields    = new(pb.CurvePoint).ProtoReflect().Descriptor().Fields()
	pointStepField = pointFields.ByName("step").Number()
	pointLossField = pointFields.ByName("train_loss").Number()
	pointEvalField = pointFields.ByName("eval").Number()
)

// MetricCurve returns one attempt's points, ascending seq, reduced to one metric:
// the eval entry named evalKey, or the training loss when evalKey is "". It reads
// the records' wire format without decoding whole points (their eval maps are most
// of the cost of Points), so reading every trial's curve stays cheap when the
// history is long. Records are checked as Points checks them (checksum, seqs).
func (tx *Tx) MetricCurve(trialID uint64, attempt int32, evalKey string) ([]MetricPoint, error) {
	if attempt < 1 {
		return nil, fmt.Errorf("metric curve of trial %d: attempt %d, want >= 1", trialID, attempt)
	}
	b, err := tx.trialPoints(trialID)
	if err != nil || b == nil {
		if err != nil {
			err = fmt.Errorf("metric curve: %w", err)
		}
		return nil, err
	}
	path := pointsPath(u64(trialID))
	prefix := u64(uint64(attempt))
	key := []byte(evalKey)
	var out []MetricPoint
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		_, first, err := decodePair(k)
		if err != nil || v == nil {
			return nil, fmt.Errorf("metric curve of trial %d: bad record key %x: %w", trialID, k, ErrCorrupt)
		}
		payload, err := unseal(fmt.Sprintf("points record attempt %d seq %d", attempt, first), path, k, v)
		if err != nil {
			return nil, fmt.Errorf("metric curve of trial %d: %w", trialID, err)
		}
		want := uint64(1)
		if len(out) > 0 {
			want = out[len(out)-1].Seq + 1
		}
		if first != want {
			return nil, fmt.Errorf("metric curve of trial %d: record attempt %d seq %d should start at seq %d: %w", trialID, attempt, first, want, ErrCorrupt)
		}
		n := len(out)
		if out, err = appendMetricPoints(out, payload, key, evalKey == ""); err != nil {
			return nil, fmt.Errorf("metric curve of trial %d: record attempt %d seq %d: %v: %w", trialID, attempt, first, err, ErrCorrupt)
		}
		if len(out) == n {
			return nil, fmt.Errorf("metric curve of trial %d: record attempt %d seq %d holds no points: %w", trialID, attempt, first, ErrCorrupt)
		}
		for i := n; i < len(out); i++ {
			if out[i].Seq != first+uint64(i-n) {
				return nil, fmt.Errorf("metric curve of trial %d: record attempt %d seq %d: point %d has seq %d: %w",
					trialID, attempt, first, i-n, out[i].Seq, ErrCorrupt)
			}
		}
	}
	return out, nil
}

// appendMetricPoints appends the points of an encoded CurvePointBatch, reduced to
// one metric. Scalars follow proto's rule that the last occurrence wins, and so do
// map entries with the same key.
func appendMetricPoints(out []MetricPoint, batch, key []byte, trainLoss bool) ([]MetricPoint, error) {
	for len(batch) > 0 {
		num, typ, n := protowire.ConsumeTag(batch)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		batch = batch[n:]
		if num != batchPointsField || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, batch)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			batch = batch[n:]
			continue
		}
		point, n := protowire.ConsumeBytes(batch)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		batch = batch[n:]
		p, err := metricPoint(point, key, trainLoss)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func metricPoint(m, key []byte, trainLoss bool) (MetricPoint, error) {
	var p MetricPoint
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return p, protowire.ParseError(n)
		}
		m = m[n:]
		switch {
		case num == pointSeqField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(m)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			p.Seq, m = v, m[n:]
		case num == pointStepField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(m)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			p.Step, m = int64(v), m[n:]
		case trainLoss && num == pointLossField && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(m)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			p.Value, p.Has, m = math.Float64frombits(v), true, m[n:]
		case !trainLoss && num == pointEvalField && typ == protowire.BytesType:
			entry, n := protowire.ConsumeBytes(m)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			m = m[n:]
			v, ok, err := mapEntry(entry, key)
			if err != nil {
				return p, err
			}
			if ok {
				p.Value, p.Has = v, true
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, m)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			m = m[n:]
		}
	}
	if !trainLoss || p.Has {
		return p, nil
	}
	// train_loss 0 is not on the wire (proto3): the point still carries it.
	p.Has = true
	return p, nil
}

// mapEntry decodes one map<string, double> entry and says whether its key is key.
func mapEntry(e, key []byte) (float64, bool, error) {
	var k []byte
	var v float64
	for len(e) > 0 {
		num, typ, n := protowire.ConsumeTag(e)
		if n < 0 {
			return 0, false, protowire.ParseError(n)
		}
		e = e[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			b, n := protowire.ConsumeBytes(e)
			if n < 0 {
				return 0, false, protowire.ParseError(n)
			}
			k, e = b, e[n:]
		case num == 2 && typ == protowire.Fixed64Type:
			b, n := protowire.ConsumeFixed64(e)
			if n < 0 {
				return 0, false, protowire.ParseError(n)
			}
			v, e = math.Float64frombits(b), e[n:]
		default:
			n = protowire.ConsumeFieldValue(num, typ, e)
			if n < 0 {
				return 0, false, protowire.ParseError(n)
			}
			e = e[n:]
		}
	}
	return v, bytes.Equal(k, key), nil
}
