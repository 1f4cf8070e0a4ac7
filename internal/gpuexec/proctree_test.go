package gpuexec

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func readNonEmpty(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil && len(b) == 0 {
		err = errors.New("empty")
	}
	return string(b), err
}

// readPids reads the comma-separated pids a fake launcher wrote.
func readPids(t *testing.T, file string) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := readNonEmpty(file)
		if err == nil {
			var out []int
			for _, f := range strings.Split(b, ",") {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file %q: %v", b, err)
				}
				out = append(out, pid)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal("launcher never wrote its ranks' pids")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionOf is the session id of pid (field 6 of /proc/PID/stat).
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := readNonEmpty("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(b[strings.LastIndexByte(b, ')')+1:])
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// A stop that outlasts the grace ends torchrun's ranks too, though each rank runs in a
// session of its own and one has dropped the run token: when Stop returns and Wait reports,
// none of them is alive, so the GPUs can be handed out again.
func TestStopEndsRanksInOtherSessions(t *testing.T) {
	run, pidFile := startWithPidFile(t, "torchrun")
	ranks := readPids(t, pidFile)
	for _, pid := range ranks {
		if !alive(pid) {
			t.Fatalf("rank %d not running before the stop", pid)
		}
		if sessionOf(t, pid) != pid {
			t.Fatalf("rank %d is not a session leader: the fake does not reproduce torchrun", pid)
		}
	}
	if err := run.Stop(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	res := run.Wait()
	for _, pid := range ranks {
		if alive(pid) {
			t.Errorf("rank %d outlived the stop", pid)
		}
	}
	select {
	case <-run.Gone():
	default:
		t.Error("Gone not closed though no process is left")
	}
	if res.Class != ClassStopped || len(res.Leftovers) != 0 {
		t.Fatalf("class %s, leftovers %v", res.Class, res.Leftovers)
	}
}

// StopProcesses, called by a process that did not start the run (the fence watchdog),
// ends the ranks in other sessions too, from the group's id and the run's token alone.
func TestStopProcessesEndsRanksInOtherSessions(t *testing.T) {
	run, pidFile := startWithPidFile(t, "torchrun")
	ranks := readPids(t, pidFile)
	if err := StopProcesses(run.Pid(), run.Token(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, pid := range ranks {
		if alive(pid) {
			t.Errorf("rank %d outlived StopProcesses", pid)
		}
	}
	run.Wait()
	// A run with nothing left is no error.
	if err := StopProcesses(run.Pid(), run.Token(), 100*time.Millisecond); err != nil {
		t.Errorf("stopping an ended run: %v", err)
	}
}

// torchrun crashing leaves its ranks as orphans of init; the run's token still finds them,
// and Wait reports only once they are gone.
func TestCrashedLauncherLeavesNoRanks(t *testing.T) {
	run, pidFile := startWithPidFile(t, "torchrun-crash")
	res := run.Wait()
	for _, pid := range readPids(t, pidFile) {
		if alive(pid) {
			t.Errorf("orphaned rank %d outlived its crashed launcher", pid)
		}
	}
	if res.Class != ClassCrashed || len(res.Leftovers) != 0 {
		t.Fatalf("class %s, leftovers %v", res.Class, res.Leftovers)
	}
}

// stubbornProcs is the real process table plus processes that ignore SIGKILL (as one stuck
// in the kernel on a device does) until the test lets them go.
type stubbornProcs struct {
	procFS
	mu      sync.Mutex
	stuck   map[int]procInfo
	signals map[int][]syscall.Signal
}

// fakePid is beyond any kernel's pid_max, so no real process is ever signalled for it.
const fakePid = 1 << 30

func newStubborn() *stubbornProcs {
	return &stubbornProcs{procFS: procFS{root: "/proc"},
		stuck:   map[int]procInfo{fakePid: {pid: fakePid, ppid: 1, pgid: fakePid, start: 7, state: 'D'}},
		signals: map[int][]syscall.Signal{}}
}

func (s *stubbornProcs) list() ([]procInfo, error) {
	ps, err := s.procFS.list()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.stuck {
		ps = append(ps, p)
	}
	return ps, err
}

func (s *stubbornProcs) environHas(pid int, kv string) bool {
	s.mu.Lock()
	_, stuck := s.stuck[pid]
	s.mu.Unlock()
	return stuck || s.procFS.environHas(pid, kv)
}

func (s *stubbornProcs) lookup(pid int) (procInfo, bool) {
	s.mu.Lock()
	p, stuck := s.stuck[pid]
	s.mu.Unlock()
	if stuck {
		return p, true
	}
	return s.procFS.lookup(pid)
}

func (s *stubbornProcs) signal(p procInfo, sig syscall.Signal) error {
	s.mu.Lock()
	_, stuck := s.stuck[p.pid]
	if stuck {
		s.signals[p.pid] = append(s.signals[p.pid], sig)
	}
	s.mu.Unlock()
	if stuck {
		return nil
	}
	return s.procFS.signal(p, sig)
}

func (s *stubbornProcs) release(pid int) {
	s.mu.Lock()
	delete(s.stuck, pid)
	s.mu.Unlock()
}

// A process of the run that outlives SIGKILL is reported, Stop says so, and Gone stays open
// (the GPUs stay held) until it is gone.
func TestGoneWaitsForProcessesThatOutliveSIGKILL(t *testing.T) {
	procs := newStubborn()
	run, err := Launch(context.Background(), fakeSpec(t, "group"),
		LaunchOptions{KillWait: 100 * time.Millisecond, procs: procs, leftoverPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range run.Events() {
		}
	}()
	err = run.Stop(10 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "outlived SIGKILL") {
		t.Fatalf("Stop: %v, want an error about the process that outlived SIGKILL", err)
	}
	res := run.Wait()
	if !slices.Equal(res.Leftovers, []int{fakePid}) || res.Class != ClassStopped {
		t.Fatalf("leftovers %v class %s", res.Leftovers, res.Class)
	}
	select {
	case <-run.Gone():
		t.Fatal("Gone closed while a process of the run is alive")
	default:
	}
	procs.mu.Lock()
	sigs := slices.Clone(procs.signals[fakePid])
	procs.mu.Unlock()
	if !slices.Contains(sigs, syscall.SIGSTOP) || !slices.Contains(sigs, syscall.SIGKILL) {
		t.Fatalf("the stuck process got %v, want SIGSTOP then SIGKILL", sigs)
	}
	procs.release(fakePid)
	select {
	case <-run.Gone():
	case <-time.After(pollLimit):
		t.Fatalf("Gone not closed %v after the last process ended", pollLimit)
	}
}

// pollLimit bounds waits for an asynchronous outcome that normally comes in milliseconds.
const pollLimit = 20 * time.Second

func TestParseStat(t *testing.T) {
	// A command name with spaces and a parenthesis, as Python's setproctitle makes.
	line := "4242 (pt_main (rank 0)) S 17 4242 4242 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 9 0 123456 1000 50 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 3 0 0 0 0 0\n"
	p, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p != (procInfo{pid: 4242, ppid: 17, pgid: 4242, start: 123456, state: 'S'}) {
		t.Fatalf("parsed %+v", p)
	}
	for _, bad := range []string{"", "4242 comm S 1 2", "4242 (x) S 1 2 3"} {
		if _, err := parseStat(4242, []byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

// The tree follows parent chains from what it has seen, the process group and the token,
// and never counts zombies or the supervisor itself.
func TestProcTreeMembers(t *testing.T) {
	self := 100
	src := &tableProcs{procs: []procInfo{
		{pid: 200, ppid: self, pgid: 200, start: 1, state: 'S'},  // the child
		{pid: 201, ppid: 200, pgid: 201, start: 2, state: 'S'},   // rank in its own session
		{pid: 202, ppid: 201, pgid: 201, start: 3, state: 'S'},   // its DataLoader worker
		{pid: 203, ppid: 1, pgid: 203, start: 4, state: 'S'},     // orphan with the token
		{pid: 204, ppid: 1, pgid: 200, start: 5, state: 'S'},     // orphan still in the group
		{pid: 205, ppid: 200, pgid: 200, start: 6, state: 'Z'},   // zombie: holds nothing
		{pid: 300, ppid: 1, pgid: 300, start: 7, state: 'S'},     // unrelated
		{pid: self, ppid: 1, pgid: self, start: 8, state: 'S'},   // the supervisor
		{pid: 301, ppid: self, pgid: self, start: 9, state: 'S'}, // another run's child
	}, tokens: map[int]bool{203: true}}
	tree := newProcTree(src, 200, "tok")
	tree.self = self
	ms, err := tree.members()
	if err != nil {
		t.Fatal(err)
	}
	got := pids(ms)
	slices.Sort(got)
	if want := []int{200, 201, 202, 203, 204}; !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	// The child dies and its pid is reused by an unrelated process: the rank it left is
	// still known, the newcomer is not a member.
	src.procs[0] = procInfo{pid: 200, ppid: 1, pgid: 200, start: 99, state: 'S'}
	src.procs[4].pgid = 204 // and nothing is in the group any more but the newcomer
	ms, _ = tree.members()
	got = pids(ms)
	slices.Sort(got)
	if want := []int{201, 202, 203, 204}; !slices.Equal(got, want) {
		t.Fatalf("after pid reuse: members %v, want %v", got, want)
	}
}

// tableProcs is a fixed process table.
type tableProcs struct {
	procs  []procInfo
	tokens map[int]bool
}

func (s *tableProcs) list() ([]procInfo, error)         { return slices.Clone(s.procs), nil }
func (s *tableProcs) environHas(pid int, _ string) bool { return s.tokens[pid] }
func (s *tableProcs) lookup(pid int) (procInfo, bool) {
	i := slices.IndexFunc(s.procs, func(p procInfo) bool { return p.pid == pid })
	if i < 0 {
		return procInfo{}, false
	}
	return s.procs[i], true
}
func (s *tableProcs) signal(procInfo, syscall.Signal) error { return nil }

// BenchmarkProcTreeSweep is one scan of the real process table for a run's members, what a
// stop does per round: it reads every process's stat and environment.
func BenchmarkProcTreeSweep(b *testing.B) {
	src := procFS{root: "/proc"}
	ps, err := src.list()
	if err != nil {
		b.Fatal(err)
	}
	tree := newProcTree(src, os.Getpid(), "bench")
	for b.Loop() {
		if _, err := tree.members(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ps)), "processes")
}
