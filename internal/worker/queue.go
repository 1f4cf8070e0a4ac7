package worker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/proto"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// pointQueue holds a trial's emitted points until the coordinator acknowledges them. It
// keeps at most memLimit points in memory; beyond that it moves them to a spill file, so
// a long coordinator outage costs disk, not memory. Points leave in sequence order.
// It is not safe for concurrent use; trialRun guards it.
type pointQueue struct {
	memLimit int
	dir      string // where spill files go ("" keeps everything in memory)

	mem []*pb.CurvePoint

	// The spilled points precede mem: records of (uvarint length, protobuf) in order.
	spill      *os.File
	spillSizes []int // record sizes of the spilled points still unacknowledged
	spillSeqs  []uint64
	readOff    int64 // file offset of the first unacknowledged spilled record
}

func newPointQueue(memLimit int, dir string) *pointQueue {
	return &pointQueue{memLimit: memLimit, dir: dir}
}

// Len is the number of unacknowledged points.
func (q *pointQueue) Len() int { return len(q.spillSizes) + len(q.mem) }

// Push appends a point, spilling memory to disk when it is over the limit.
func (q *pointQueue) Push(p *pb.CurvePoint) error {
	q.mem = append(q.mem, p)
	if q.dir == "" || len(q.mem) <= q.memLimit {
		return nil
	}
	return q.spillMem()
}

func (q *pointQueue) spillMem() error {
	if q.spill == nil {
		f, err := os.CreateTemp(q.dir, "points-*.spill")
		if err != nil {
			return fmt.Errorf("spill points: %w", err)
		}
		q.spill = f
	}
	end, err := q.spill.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("spill points: %w", err)
	}
	w := bufio.NewWriter(q.spill)
	var lenBuf [binary.MaxVarintLen64]byte
	for _, p := range q.mem {
		b, err := proto.Marshal(p)
		if err != nil {
			return err
		}
		n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
		w.Write(lenBuf[:n])
		w.Write(b)
		q.spillSizes = append(q.spillSizes, n+len(b))
		q.spillSeqs = append(q.spillSeqs, p.Seq)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("spill points at offset %d: %w", end, err)
	}
	q.mem = q.mem[:0]
	return nil
}

// Peek returns up to n of the oldest unacknowledged points without removing them.
func (q *pointQueue) Peek(n int) ([]*pb.CurvePoint, error) {
	if len(q.spillSizes) == 0 {
		return append([]*pb.CurvePoint(nil), q.mem[:min(n, len(q.mem))]...), nil
	}
	r := bufio.NewReader(io.NewSectionReader(q.spill, q.readOff, 1<<62))
	out := make([]*pb.CurvePoint, 0, min(n, len(q.spillSizes)))
	for len(out) < n && len(out) < len(q.spillSizes) {
		size, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("read spilled points: %w", err)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read spilled points: %w", err)
		}
		p := &pb.CurvePoint{}
		if err := proto.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("decode spilled point: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Ack drops every point with a sequence number up to seq.
func (q *pointQueue) Ack(seq uint64) {
	i := 0
	for i < len(q.spillSeqs) && q.spillSeqs[i] <= seq {
		q.readOff += int64(q.spillSizes[i])
		i++
	}
	q.spillSizes, q.spillSeqs = q.spillSizes[i:], q.spillSeqs[i:]
	if len(q.spillSizes) == 0 && q.spill != nil {
		q.Close() // everything spilled is acknowledged: start afresh
	}
	j := 0
	for j < len(q.mem) && q.mem[j].Seq <= seq {
		j++
	}
	q.mem = q.mem[j:]
}

// Close removes the spill file.
func (q *pointQueue) Close() {
	if q.spill != nil {
		name := q.spill.Name()
		q.spill.Close()
		os.Remove(name)
		q.spill, q.readOff = nil, 0
	}
}
