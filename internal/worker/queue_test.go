package worker

import (
	"os"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestPointQueueSpillsAndDrainsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		memLimit int
		dir      bool
	}{
		{"memory only", 4, false},
		{"spills", 4, true},
		{"spills every point", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ""
			if tc.dir {
				dir = t.TempDir()
			}
			q := newPointQueue(tc.memLimit, dir)
			defer q.Close()
			next := uint64(1) // next seq expected out of the queue
			pushed := uint64(0)
			push := func(n int) {
				for range n {
					pushed++
					if err := q.Push(&pb.CurvePoint{Seq: pushed, Step: int64(10 * pushed), Eval: map[string]float64{"a_ce": float64(pushed)}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			drain := func(batch int, ackAll bool) {
				got, err := q.Peek(batch)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range got {
					if p.Seq != next+uint64(0) || p.Step != int64(10*p.Seq) || p.Eval["a_ce"] != float64(p.Seq) {
						t.Fatalf("got point seq %d step %d, want seq %d", p.Seq, p.Step, next)
					}
					next++
				}
				if len(got) > 0 {
					ack := got[len(got)-1].Seq
					if !ackAll {
						ack = got[0].Seq // acknowledge only the first: the rest come again
						next = ack + 1
					}
					q.Ack(ack)
				}
			}
			push(10)
			if tc.dir && tc.memLimit < 10 {
				if q.spill == nil {
					t.Fatal("nothing spilled past the memory limit")
				}
				if len(q.mem) > tc.memLimit {
					t.Fatalf("%d points in memory, limit %d", len(q.mem), tc.memLimit)
				}
			}
			drain(3, true)
			drain(3, false)
			push(7)
			for q.Len() > 0 {
				drain(4, true)
			}
			if next != pushed+1 {
				t.Fatalf("drained up to seq %d, pushed %d", next-1, pushed)
			}
			if q.spill != nil {
				t.Fatal("spill file kept after everything was acknowledged")
			}
			if tc.dir {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Fatalf("spill files left behind: %v", ents)
				}
			}
		})
	}
}

func TestParseFaultsAndDraw(t *testing.T) {
	for _, bad := range []string{"x", "2:crash", "0.5", "0.5:melt", "-1:oom"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
	f, err := ParseFaults("0.5:crash,oom")
	if err != nil {
		t.Fatal(err)
	}
	failed, classes := 0, map[pb.FailureClass]int{}
	for id := uint64(1); id <= 2000; id++ {
		e, ok := f.draw(id, 1)
		again, ok2 := f.draw(id, 1)
		if ok != ok2 || (ok && *e != *again) {
			t.Fatal("the draw is not a function of (trial, attempt)")
		}
		if ok {
			failed++
			classes[e.Class]++
		}
	}
	if failed < 850 || failed > 1150 || classes[pb.FailureClass_FAILURE_CLASS_OTHER] == 0 || classes[pb.FailureClass_FAILURE_CLASS_OOM] == 0 {
		t.Errorf("%d of 2000 attempts failed (%v), want about half in both classes", failed, classes)
	}
	if none, _ := ParseFaults(""); none != nil {
		t.Error("empty fault spec gave faults")
	}
}
