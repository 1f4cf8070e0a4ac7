package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/store/storepb"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The curve point record format (schema version 3, see schema.go): a trial's
// points bucket maps attempt ‖ first seq to a storepb.CurvePointBatch whose points
// ascend by one from that seq, and an attempt's records follow each other without
// gap or overlap from seq 1. One record per AppendPoints call is what makes a
// report cheap: one Put and one marshal per batch instead of per point.

// Field numbers AppendPoints reads without decoding the whole record, taken from
// the generated descriptors so a renumbering in types.proto cannot go unnoticed.
var (
	batchPointsField = new(storepb.CurvePointBatch).ProtoReflect().Descriptor().Fields().ByName("points").Number()
	pointSeqField    = new(pb.CurvePoint).ProtoReflect().Descriptor().Fields().ByName("seq").Number()
)

// decodeRecord decodes the points record stored under key k and checks it
// against the format: the key's attempt is an int32 >= 1, the record holds at
// least one point, the first has the key's seq, which must be next (the seq after
// the attempt's records before this one; 1 for its first; 0: unknown, not
// checked), and the others ascend by one. path is the trial's points bucket path,
// which the record's checksum covers. Errors wrap ErrCorrupt.
func decodeRecord(path, k, v []byte, next uint64) (int32, []*pb.CurvePoint, error) {
	attempt, first, err := decodePair(k)
	if err != nil || v == nil || attempt < 1 || attempt > 1<<31-1 {
		return 0, nil, fmt.Errorf("bad record key %x (want attempt ‖ seq with a value): %w", k, ErrCorrupt)
	}
	v, err = unseal(fmt.Sprintf("points record attempt %d seq %d", attempt, first), path, k, v)
	if err != nil {
		return 0, nil, err
	}
	batch := new(storepb.CurvePointBatch)
	if err := proto.Unmarshal(v, batch); err != nil {
		return 0, nil, fmt.Errorf("decode record attempt %d seq %d: %v: %w", attempt, first, err, ErrCorrupt)
	}
	pts := batch.GetPoints()
	if len(pts) == 0 {
		return 0, nil, fmt.Errorf("record attempt %d seq %d holds no points: %w", attempt, first, ErrCorrupt)
	}
	if next == 1 && first != 1 {
		return 0, nil, fmt.Errorf("record attempt %d seq %d: it is the attempt's first, so it should start at seq 1: %w", attempt, first, ErrCorrupt)
	}
	if next != 0 && first != next {
		return 0, nil, fmt.Errorf("record attempt %d seq %d: the attempt's points before it end at seq %d, so it should start at %d: %w",
			attempt, first, next-1, next, ErrCorrupt)
	}
	for i, p := range pts {
		if want := first + uint64(i); p.GetSeq() != want {
			return 0, nil, fmt.Errorf("record attempt %d seq %d: point %d has seq %d, want %d: %w",
				attempt, first, i, p.GetSeq(), want, ErrCorrupt)
		}
	}
	return int32(attempt), pts, nil
}

// nextSeq is the seq the record after pts must start at: 1 for an attempt's first.
func nextSeq(pts []*pb.CurvePoint) uint64 {
	if len(pts) == 0 {
		return 1
	}
	return pts[len(pts)-1].GetSeq() + 1
}

// lastStoredSeq returns the seq of the last point stored for attempt in a trial's
// points bucket b, 0 when it has none. It reads only the last record's last
// point's seq from the wire format: decoding the whole record on every append
// would cost as much as the per-point records this format replaced. Its checksum
// is checked (path is the bucket's, as for decodeRecord): a damaged last record
// must not decide where the next batch goes.
func lastStoredSeq(b *bolt.Bucket, path []byte, attempt uint64) (uint64, error) {
	c := b.Cursor()
	// The attempt's last record is the one before the next attempt's first key.
	k, _ := c.Seek(pair(attempt+1, 0))
	var v []byte
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil {
		return 0, nil
	}
	a, first, err := decodePair(k)
	if err != nil || v == nil {
		return 0, fmt.Errorf("bad record key %x (want attempt ‖ seq with a value): %w", k, ErrCorrupt)
	}
	if a != attempt {
		return 0, nil
	}
	if v, err = unseal(fmt.Sprintf("points record attempt %d seq %d", a, first), path, k, v); err != nil {
		return 0, err
	}
	last, err := lastSeqOfRecord(v)
	if err != nil || last < first {
		return 0, fmt.Errorf("record attempt %d seq %d: cannot read its last seq (%v, got %d): %w", a, first, err, last, ErrCorrupt)
	}
	return last, nil
}

// lastSeqOfRecord returns the seq of the last point of an encoded CurvePointBatch.
func lastSeqOfRecord(v []byte) (uint64, error) {
	last, err := lastField(v, batchPointsField, protowire.BytesType)
	if err != nil {
		return 0, err
	}
	if last == nil {
		return 0, fmt.Errorf("no points")
	}
	seq, err := lastField(last, pointSeqField, protowire.VarintType)
	if err != nil {
		return 0, err
	}
	if seq == nil {
		return 0, nil // seq 0 is not on the wire; the caller refuses it
	}
	n, l := protowire.ConsumeVarint(seq)
	if l < 0 {
		return 0, protowire.ParseError(l)
	}
	return n, nil
}

// lastField returns the value bytes of the last occurrence of field num with wire
// type typ in the encoded message m (nil when absent): for a bytes field its
// contents, for a varint its encoding. The last one is what proto decoding keeps
// of a scalar field and is the last element of a repeated one.
func lastField(m []byte, num protowire.Number, typ protowire.Type) ([]byte, error) {
	var last []byte
	for len(m) > 0 {
		n, t, l := protowire.ConsumeTag(m)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		m = m[l:]
		l = protowire.ConsumeFieldValue(n, t, m)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		if n == num && t == typ {
			last = m[:l]
			if typ == protowire.BytesType {
				b, _ := protowire.ConsumeBytes(last) // valid: ConsumeFieldValue read it
				last = b
			}
			if last == nil {
				last = []byte{} // present but empty: not the same as absent
			}
		}
		m = m[l:]
	}
	return last, nil
}
