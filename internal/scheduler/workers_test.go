package scheduler

import (
	"context"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		r     Registration
		field string
	}{
		{"no hostname", Registration{}, "hostname"},
		{"long hostname", Registration{Hostname: strings.Repeat("h", 256)}, "hostname"},
		{"negative capacity", Registration{Hostname: "h", SimulatedCapacity: -1}, "simulated_capacity"},
		{"huge capacity", Registration{Hostname: "h", SimulatedCapacity: 10_001}, "simulated_capacity"},
		{"too many gpus", Registration{Hostname: "h", GPUs: make([]*pb.Gpu, 1025)}, "gpus"},
		{"negative gpu memory", Registration{Hostname: "h", GPUs: []*pb.Gpu{{Index: 0}, {Index: 1, MemoryMib: -1}}}, "gpus[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.Register(context.Background(), tc.r)
			checkInvalid(t, err, tc.field)
		})
	}
	ws, err := e.s.Workers(context.Background())
	if err != nil || len(ws) != 0 {
		t.Errorf("rejected registrations left workers %v, %v", ws, err)
	}
}

func TestRegisterIdentityAndLiveness(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	w1 := e.register("w1", 1)
	w2 := e.register("w2", 1)
	if w1 == 0 || w2 == w1 {
		t.Fatalf("ids %d, %d", w1, w2)
	}
	if id, err := e.s.Register(ctx, Registration{WorkerID: w1, Hostname: "w1-renamed", SimulatedCapacity: 4}); err != nil || id != w1 {
		t.Fatalf("re-register = %d, %v; want %d", id, err, w1)
	}
	fresh, err := e.s.Register(ctx, Registration{WorkerID: 999, Hostname: "stranger"})
	if err != nil || fresh == 999 || fresh == w1 || fresh == w2 {
		t.Fatalf("unknown id registered as %d, %v; want a fresh id", fresh, err)
	}

	states := func() map[uint64]pb.WorkerState {
		ws, err := e.s.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]pb.WorkerState{}
		for _, w := range ws {
			out[w.Id] = w.State
			if w.Id == w1 && (w.Hostname != "w1-renamed" || w.SimulatedCapacity != 4) {
				t.Errorf("re-registered worker: %v", w)
			}
		}
		return out
	}
	if s := states(); len(s) != 3 || s[w1] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Fatalf("workers: %v", s)
	}
	e.clock.Advance(3*e.s.Config().HeartbeatInterval + 1)
	if _, err := e.s.Heartbeat(ctx, w2, nil); err != nil {
		t.Fatal(err)
	}
	s := states()
	if s[w1] != pb.WorkerState_WORKER_STATE_LOST || s[w2] != pb.WorkerState_WORKER_STATE_ALIVE {
		t.Errorf("after three silent heartbeat intervals: %v; want w1 lost, w2 alive", s)
	}
	_, err = e.s.Heartbeat(ctx, 12345, nil)
	wantErr(t, err, ErrNotFound, "heartbeat of an unknown worker")
}

func TestTrialsAndLookups(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withFakePolicy())
	w := e.register("w1", 2)
	st := e.createStudy(func(s *pb.StudySpec) { s.MaxParallel = 2 })
	a := e.mustAcquire(w)
	e.mustAcquire(w)
	e.runToEnd(heldOf(w, a), targetSteps)

	for _, tc := range []struct {
		state pb.TrialState
		scale string
		want  int
	}{
		{pb.TrialState_TRIAL_STATE_UNSPECIFIED, "", 2},
		{pb.TrialState_TRIAL_STATE_SUCCEEDED, "", 1},
		{pb.TrialState_TRIAL_STATE_RUNNING, "small", 1},
		{pb.TrialState_TRIAL_STATE_UNSPECIFIED, "big", 0},
		{pb.TrialState_TRIAL_STATE_FAILED, "", 0},
	} {
		got, err := e.s.Trials(ctx, st.Id, tc.state, tc.scale)
		if err != nil || len(got) != tc.want {
			t.Errorf("Trials(%v, %q) = %d trials, %v; want %d", tc.state, tc.scale, len(got), err, tc.want)
		}
	}
	_, err := e.s.Trials(ctx, 999, pb.TrialState_TRIAL_STATE_UNSPECIFIED, "")
	wantErr(t, err, ErrNotFound, "trials of an unknown study")
	_, _, err = e.s.Trial(ctx, 999)
	wantErr(t, err, ErrNotFound, "unknown trial")
	_, err = e.s.StudyStatus(ctx, 999)
	wantErr(t, err, ErrNotFound, "status of an unknown study")

	e.createStudy(nil)
	all, err := e.s.ListStudies(ctx)
	if err != nil || len(all) != 2 || all[0].Study.Id != st.Id || all[0].TrialsByState["running"] != 1 {
		t.Errorf("ListStudies = %v, %v", all, err)
	}
}
