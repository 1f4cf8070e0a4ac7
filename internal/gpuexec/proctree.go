package gpuexec

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every process of a run carries RunTokenEnv=<random token> in its environment, inherited by
// everything it starts. torchrun starts each rank in a session of its own, so the run's
// process group misses the ranks, and once torchrun dies they are orphans whose parent is
// init: only the token (or, while their parent lives, the parent chain) still ties them to
// the run.
const RunTokenEnv = "MIXOPT_RUN_TOKEN"

// procInfo is one process as /proc shows it.
type procInfo struct {
	pid, ppid, pgid int
	// start is the start time in clock ticks since boot: with pid it names one process,
	// so a reused pid is never mistaken for a member.
	start uint64
	state byte
}

// gone is true for a zombie or dead process: it holds no memory and no GPU.
func (p procInfo) gone() bool { return p.state == 'Z' || p.state == 'X' || p.state == 'x' }

// procSource is the process table: /proc on Linux; tests inject fakes.
type procSource interface {
	list() ([]procInfo, error)
	// environHas says whether pid's environment holds the entry kv ("NAME=value").
	environHas(pid int, kv string) bool
	// lookup returns pid's entry, false when there is no such process.
	lookup(pid int) (procInfo, bool)
	// signal sends sig to p if it is still the process p describes.
	signal(p procInfo, sig syscall.Signal) error
}

// procFS reads a proc file system mounted at root.
type procFS struct{ root string }

func (f procFS) list() ([]procInfo, error) {
	ents, err := os.ReadDir(f.root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := make([]procInfo, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		p, err := f.stat(pid)
		if err != nil {
			continue // it ended while we looked
		}
		out = append(out, p)
	}
	return out, nil
}

func (f procFS) lookup(pid int) (procInfo, bool) {
	p, err := f.stat(pid)
	return p, err == nil
}

func (f procFS) stat(pid int) (procInfo, error) {
	b, err := os.ReadFile(filepath.Join(f.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, err
	}
	return parseStat(pid, b)
}

// parseStat reads /proc/PID/stat. The command name is parenthesised and may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(pid int, b []byte) (procInfo, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("stat of %d: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 of proc(5) (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procInfo{}, fmt.Errorf("stat of %d: %w", pid, err)
	}
	return procInfo{pid: pid, ppid: ppid, pgid: pgid, start: start, state: f[0][0]}, nil
}

func (f procFS) environHas(pid int, kv string) bool {
	b, err := os.ReadFile(filepath.Join(f.root, strconv.Itoa(pid), "environ"))
	if err != nil {
		return false // another user's process, or gone: not ours either way
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// signal opens the process (a pidfd where the kernel has them), checks that its start time
// is still p's, and only then signals it, so a pid reused since the scan is left alone.
func (f procFS) signal(p procInfo, sig syscall.Signal) error {
	proc, err := os.FindProcess(p.pid)
	if err != nil {
		return nil
	}
	defer proc.Release()
	now, err := f.stat(p.pid)
	if err != nil || now.start != p.start {
		return nil // ended, maybe reused
	}
	if err := proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process %d with %v: %w", p.pid, sig, err)
	}
	return nil
}

// newRunToken returns a fresh random token for [RunTokenEnv].
func newRunToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// procTree finds every live process of one run: its process group, the descendants of the
// processes it has seen (the parent chain), and any process carrying the run's token.
// It is used by one goroutine at a time.
type procTree struct {
	src   procSource
	self  int    // the supervising process, never a member
	pgid  int    // the child's process group (its pid)
	token string // RunTokenEnv=token
	// known are the members seen so far, by pid; their descendants are members too, even
	// when a descendant has dropped the token from its environment.
	known map[int]procInfo
}

func newProcTree(src procSource, root int, token string) *procTree {
	t := &procTree{src: src, self: os.Getpid(), pgid: root, token: RunTokenEnv + "=" + token, known: map[int]procInfo{}}
	if p, ok := src.lookup(root); ok {
		t.known[root] = p
	}
	return t
}

// members lists the run's live processes and remembers them.
func (t *procTree) members() ([]procInfo, error) {
	ps, err := t.src.list()
	if err != nil {
		return nil, err
	}
	byPid := make(map[int]procInfo, len(ps))
	children := make(map[int][]int, len(ps))
	for _, p := range ps {
		byPid[p.pid] = p
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	in := map[int]bool{}
	var queue []int
	add := func(pid int) {
		if !in[pid] && pid != t.self {
			in[pid] = true
			queue = append(queue, pid)
		}
	}
	// The kernel never hands out a pid that is still a group's id, so the group is the
	// run's while any member lives, unless its leader is a newcomer that got the pid after
	// the group had emptied.
	groupOurs := true
	if leader, ok := byPid[t.pgid]; ok {
		root, known := t.known[t.pgid]
		groupOurs = known && root.start == leader.start
	}
	for _, p := range ps {
		k, seen := t.known[p.pid]
		switch {
		case seen && k.start == p.start:
			add(p.pid)
		case groupOurs && p.pgid == t.pgid:
			add(p.pid)
		case !p.gone() && t.src.environHas(p.pid, t.token):
			add(p.pid)
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			add(c)
		}
	}
	var live []procInfo
	for pid := range in {
		p := byPid[pid]
		t.known[pid] = p
		if !p.gone() {
			live = append(live, p)
		}
	}
	return live, nil
}

// StopProcesses stops a run from outside the process that started it (the worker's fence
// watchdog, when the worker is frozen or dead): SIGTERM to the process group pgid (train.py
// checkpoints; torchrun forwards it to its ranks), and after grace SIGKILL to every process
// of the run — the group, its descendants and the processes carrying the run's token
// (torchrun's ranks in sessions of their own), as [Run.Stop] does.
func StopProcesses(pgid int, token string, grace time.Duration) error {
	tree := newProcTree(procFS{root: "/proc"}, pgid, token)
	if ms, err := tree.members(); err != nil || len(ms) == 0 {
		return err
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM) // the group may be gone and its ranks not
	for end := time.Now().Add(grace); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if ms, err := tree.members(); err == nil && len(ms) == 0 {
			return nil
		}
	}
	killed, err := tree.kill()
	// SIGKILL is delivered, not awaited: the run's memory (and GPUs) are free only once
	// its processes have gone.
	for end := time.Now().Add(stopProcessesKillWait); len(tree.left(killed)) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			return errors.Join(err, fmt.Errorf("processes %v outlived SIGKILL by %v", pids(tree.left(killed)), stopProcessesKillWait))
		}
	}
	return err
}

// stopProcessesKillWait bounds StopProcesses' wait for SIGKILLed processes to go.
const stopProcessesKillWait = 5 * time.Second

// maxFreezeRounds bounds the rescans while stopping: each round stops what the last found,
// and stopped processes cannot start new ones.
const maxFreezeRounds = 10

// kill freezes every member with SIGSTOP (so none forks or reparents a child out of sight
// while its parent dies) and then SIGKILLs them all. It returns the members it signalled.
func (t *procTree) kill() ([]procInfo, error) {
	stopped := map[int]procInfo{}
	var errs []error
	for range maxFreezeRounds {
		ms, err := t.members()
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, p := range ms {
			if q, ok := stopped[p.pid]; ok && q.start == p.start {
				continue
			}
			fresh++
			stopped[p.pid] = p
			if err := t.src.signal(p, syscall.SIGSTOP); err != nil {
				errs = append(errs, err)
			}
		}
		if fresh == 0 {
			break
		}
	}
	out := make([]procInfo, 0, len(stopped))
	for _, p := range stopped {
		if err := t.src.signal(p, syscall.SIGKILL); err != nil {
			errs = append(errs, err)
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// left returns those of ps that still live (same pid and start time, not a zombie).
func (t *procTree) left(ps []procInfo) []procInfo {
	var out []procInfo
	for _, p := range ps {
		if q, ok := t.src.lookup(p.pid); ok && q.start == p.start && !q.gone() {
			out = append(out, q)
		}
	}
	return out
}

func pids(ps []procInfo) []int {
	if len(ps) == 0 {
		return nil
	}
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.pid
	}
	return out
}
