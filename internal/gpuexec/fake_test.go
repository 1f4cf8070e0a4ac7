package gpuexec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake train.py (and a fake nvidia-smi): Launch runs it with
// GPUEXEC_FAKE naming the behaviour, the classic helper-process pattern, so no shell or
// python is needed.
func TestMain(m *testing.M) {
	if mode := os.Getenv("GPUEXEC_FAKE"); mode != "" {
		os.Exit(fakeMain(mode))
	}
	os.Exit(m.Run())
}

func emit(kind string, fields map[string]any) {
	rec := map[string]any{"v": 1, "event": kind, "time": float64(time.Now().UnixMilli()) / 1000}
	for k, v := range fields {
		rec[k] = v
	}
	b, _ := json.Marshal(rec)
	fmt.Println(string(b))
}

// spawnChild starts a grandchild that sleeps; with holdStdout it keeps our stdout pipe open.
func spawnChild(holdStdout bool) {
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), "GPUEXEC_FAKE=sleep")
	if holdStdout {
		c.Stdout = os.Stdout
	}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		os.Exit(1)
	}
	if f := os.Getenv("GPUEXEC_PIDFILE"); f != "" {
		if err := os.WriteFile(f, []byte(fmt.Sprint(c.Process.Pid)), 0o644); err != nil {
			os.Exit(1)
		}
	}
}

func fakeMain(mode string) int {
	start := func() {
		emit("start", map[string]any{"step": 0, "config": map[string]any{"argv": os.Args[1:], "preset": "fake"}})
	}
	switch mode {
	case "nvidia-smi":
		fmt.Print("0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 3, 0\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 40000, 97\n")
		return 0
	case "ok":
		start()
		for s := 1; s <= 3; s++ {
			emit("point", map[string]any{"step": s, "tokens": s * 100, "train_loss": 5.0 - float64(s), "lr": 1e-3, "tokens_per_s": 10.0, "wall_time_s": 0.1})
		}
		emit("eval", map[string]any{"step": 3, "tokens": 300, "train_loss": 3.0, "metrics": map[string]any{"a_ce": 2.5, "mean_ce": 2.5}, "wall_time_s": 0.2})
		emit("done", map[string]any{"status": "completed", "step": 3, "tokens": 300, "domain_sequences": map[string]int{"a": 3}})
		return 0
	case "env":
		start()
		fmt.Fprintln(os.Stderr, "CUDA_VISIBLE_DEVICES="+os.Getenv("CUDA_VISIBLE_DEVICES")+" NCCL_DEBUG="+os.Getenv("NCCL_DEBUG"))
		emit("done", map[string]any{"status": "completed", "step": 0, "tokens": 0, "domain_sequences": map[string]int{}})
		return 0
	case "crash":
		start()
		fmt.Fprintln(os.Stderr, "Traceback (most recent call last):\nRuntimeError: boom")
		return 1
	case "oom-stderr":
		start()
		fmt.Fprintln(os.Stderr, "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
		return 1
	case "oom-event":
		start()
		emit("error", map[string]any{"class": "oom", "message": "CUDA out of memory", "exit_code": 4, "step": 7})
		return 4
	case "nan":
		start()
		emit("point", map[string]any{"step": 1, "tokens": 100, "train_loss": nil, "lr": 1e-3, "tokens_per_s": 1.0, "wall_time_s": 0.1})
		emit("error", map[string]any{"class": "diverged", "message": "training loss is nan at step 2", "exit_code": 5, "step": 1})
		return 5
	case "nan-code-only":
		return 5
	case "exit0-nodone":
		start()
		return 0
	case "sigkill-self":
		start()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
		return 0
	case "group":
		// Ignores SIGTERM, as a stuck collective would: only SIGKILL to the group ends it.
		signal.Ignore(syscall.SIGTERM)
		spawnChild(false)
		start()
		time.Sleep(time.Hour)
		return 0
	case "sleep":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
		return 0
	case "torchrun", "torchrun-crash":
		// As torchrun does, each rank gets a session of its own, out of our process group;
		// under "torchrun" rank 1 also drops the run token from its environment (found then by
		// its parent chain; an orphan without the token would be out of reach).
		signal.Ignore(syscall.SIGTERM)
		var ranks []string
		for rank := range 2 {
			c := exec.Command(os.Args[0])
			c.Env = append(os.Environ(), "GPUEXEC_FAKE=sleep")
			if rank == 1 && mode == "torchrun" {
				c.Env = slices.DeleteFunc(c.Env, func(kv string) bool { return strings.HasPrefix(kv, RunTokenEnv+"=") })
			}
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := c.Start(); err != nil {
				fmt.Fprintln(os.Stderr, "spawn rank:", err)
				return 1
			}
			ranks = append(ranks, fmt.Sprint(c.Process.Pid))
		}
		if err := os.WriteFile(os.Getenv("GPUEXEC_PIDFILE"), []byte(strings.Join(ranks, ",")), 0o644); err != nil {
			return 1
		}
		start()
		if mode == "torchrun-crash" {
			fmt.Fprintln(os.Stderr, "torch.distributed.elastic: agent crashed")
			return 1
		}
		time.Sleep(time.Hour)
		return 0
	case "graceful":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		start()
		<-ch
		emit("checkpoint", map[string]any{"step": 4, "tokens": 400, "path": "/ckpt/ckpt.pt"})
		emit("done", map[string]any{"status": "stopped", "step": 4, "tokens": 400, "domain_sequences": map[string]int{"a": 4}})
		return 143
	case "orphan-pipe":
		spawnChild(true)
		start()
		emit("done", map[string]any{"status": "completed", "step": 0, "tokens": 0, "domain_sequences": map[string]int{}})
		return 0
	case "lines":
		start()
		fmt.Println(strings.Repeat("x", 3<<20))
		emit("point", map[string]any{"step": 1, "tokens": 100, "train_loss": 4.0, "lr": 1e-3, "tokens_per_s": 1.0, "wall_time_s": 0.1})
		fmt.Println("a library printed this")
		fmt.Println(`{"v":1,"event":"bogus"}`)
		fmt.Println(`{"v":2,"event":"point"}`)
		// The last line has no newline and is still read.
		fmt.Print(`{"v":1,"event":"done","status":"completed","step":1,"tokens":100,"domain_sequences":{"a":1}}`)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown fake mode", mode)
	return 1
}
