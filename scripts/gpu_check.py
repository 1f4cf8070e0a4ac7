#!/usr/bin/env python3
"""The GPU check behind scripts/gpu_check.sh: stages in order, each in its own process with its own
timeout, all within one overall budget (6 minutes by default), and a JSON summary.

Stages: env (python, torch, CUDA, driver, compiler), gemm (bf16 GEMM peak), flash (flash
attention at each preset's head size), compile (a tiny torch.compile), resume (20 steps,
checkpoint, extend to 40), sigterm (exit 143 with a checkpoint), oom (a forced out-of-memory
classified oom), 1b_compiled (30 steps: median tokens/s over steps 15-30, MFU against the
datasheet peak and the measured GEMM peak, peak memory, graph breaks), 1b_eager (8 steps).

Without CUDA every stage but env reports "skipped: no CUDA", so the summary is valid anywhere.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "train.py")
PREPARE = os.path.join(HERE, "prepare_data.py")
SUMMARY_VERSION = 1
DOMAINS = "prose,code,math"
MIXTURE = "0.5,0.3,0.2"
# Dense bf16 tensor-core peak of an H100/H200 SXM (datasheet, without sparsity), the paper-style
# MFU denominator; the measured GEMM peak is the second one.
DATASHEET_TFLOPS = 989.0
MFU_GOAL = 0.5
# Head sizes of the GPU presets (d_model / n_heads): 20M 32, 60M-300M 64, 500M 80, 700M 96, 1B 128.
HEAD_DIMS = (32, 64, 80, 96, 128)

# (name, timeout in seconds, needs CUDA); the order is the issue's.
STAGES = (
    ("env", 30, False),
    ("gemm", 45, True),
    ("flash", 45, True),
    ("compile", 90, True),
    ("resume", 90, True),
    ("sigterm", 60, True),
    ("oom", 60, True),
    ("1b_compiled", 210, True),
    ("1b_eager", 90, True),
)


# ---------------------------------------------------------------------------------------------
# Stages that run in a child process: python gpu_check.py --stage NAME --out FILE


def stage_env():
    import platform
    out = {"python": platform.python_version(), "executable": sys.executable}
    try:
        import torch
    except ImportError as e:
        out["torch"] = None
        out["error"] = str(e)
        return out
    out["torch"] = torch.__version__
    out["cuda_available"] = torch.cuda.is_available()
    out["cuda"] = torch.version.cuda
    out["compile_available"] = hasattr(torch, "compile")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out["gpu"] = p.name
        out["gpu_memory_mib"] = p.total_memory // 2**20
        out["capability"] = "%d.%d" % (p.major, p.minor)
        out["bf16"] = torch.cuda.is_bf16_supported()
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=15)
        out["driver"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        out["driver"] = None
    try:
        q = subprocess.run(["cc", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           universal_newlines=True, timeout=10)
        out["compiler"] = q.stdout.splitlines()[0] if q.returncode == 0 and q.stdout else None
    except (OSError, subprocess.TimeoutExpired):
        out["compiler"] = None  # inductor needs a C compiler for its CPU-side code
    try:
        import triton
        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    return out


def _cuda_time(fn, iters):
    """Mean seconds per call of fn on the current CUDA stream, after two warm-up calls."""
    import torch
    for _ in range(2):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / iters


def stage_gemm():
    import torch
    best = {}
    for n in (4096, 8192):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        s = _cuda_time(lambda: a @ b, 20 if n == 8192 else 50)
        best[str(n)] = round(2 * n ** 3 / s / 1e12, 1)
    return {"tflops_by_size": best, "peak_tflops": max(best.values())}


def _flash_context():
    import torch
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except ImportError:
        return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)


def stage_flash():
    import torch
    import torch.nn.functional as F
    out, failed = {}, []
    for hd in HEAD_DIMS:
        heads = 2048 // hd if 2048 % hd == 0 else 16
        q, k, v = (torch.randn(8, heads, 1024, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        try:
            with _flash_context():
                def fwd_bwd():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
                s = _cuda_time(fwd_bwd, 10)
            # Causal attention: half of 4·B·H·T²·D forward FLOPs, backward 2.5x the forward.
            flops = 3.5 * 0.5 * 4 * 8 * heads * 1024 ** 2 * hd
            out[str(hd)] = {"ok": True, "ms": round(s * 1000, 3), "tflops": round(flops / s / 1e12, 1)}
        except RuntimeError as e:
            out[str(hd)] = {"ok": False, "error": str(e).splitlines()[0]}
            failed.append(hd)
    if failed:
        raise StageFailed("flash attention unavailable at head sizes %s" % failed, out)
    return out


def stage_compile():
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256)).cuda()
    x = torch.randn(64, 256, device="cuda")
    compiled = torch.compile(net)
    t0 = time.time()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = compiled(x)
    y.float().sum().backward()
    torch.cuda.synchronize()
    first = time.time() - t0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        diff = (compiled(x).float() - net(x).float()).abs().max().item()
    if not diff < 0.05:
        raise StageFailed("compiled output differs from eager by %g" % diff, {"max_abs_diff": diff})
    return {"first_call_s": round(first, 2), "max_abs_diff": diff}


class StageFailed(Exception):
    def __init__(self, reason, detail=None):
        super().__init__(reason)
        self.detail = detail or {}


CHILD_STAGES = {"env": stage_env, "gemm": stage_gemm, "flash": stage_flash, "compile": stage_compile}


def child_main(name, out_path):
    try:
        result = {"status": "ok", "detail": CHILD_STAGES[name]()}
    except StageFailed as e:
        result = {"status": "failed", "reason": str(e), "detail": e.detail}
    except Exception as e:
        result = {"status": "failed", "reason": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


# ---------------------------------------------------------------------------------------------
# The driver


class Check:
    def __init__(self, python, work, budget_s, cpu_smoke=False):
        self.python, self.work = python, work
        # The test mode: the training stages on the CPU with the tiny preset, so that the
        # driver's own logic is exercised where there is no GPU.
        self.cpu_smoke = cpu_smoke
        self.deadline = time.monotonic() + budget_s
        self.results = {}

    def remaining(self):
        return self.deadline - time.monotonic()

    def run(self, argv, timeout, log_name, env=None, on_line=None):
        """Runs argv in its own process group, stdout to <log_name>.jsonl and stderr to .log;
        returns (exit code or None on timeout, protocol events)."""
        out_path = os.path.join(self.work, log_name + ".jsonl")
        err_path = os.path.join(self.work, log_name + ".log")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            # Its own session, so the timeout kills every process it started (compile workers too).
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, universal_newlines=True,
                                 env=env, start_new_session=True)
            timed_out = threading.Event()

            def kill():
                timed_out.set()
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            watchdog = threading.Timer(max(1.0, timeout), kill)
            watchdog.start()
            events = []
            try:
                for line in p.stdout:  # ends when the process exits or the watchdog kills it
                    out.write(line)
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        pass
                    if on_line is not None:
                        on_line(p, line)
                p.wait()
            finally:
                watchdog.cancel()
                if p.poll() is None:
                    kill()
                    p.wait()
        return (None if timed_out.is_set() else p.returncode), events

    def child_stage(self, name, timeout):
        out = os.path.join(self.work, name + ".json")
        code, _ = self.run([self.python, os.path.abspath(__file__), "--stage", name, "--out", out], timeout, name)
        if code is None:
            return {"status": "timeout", "reason": "no result within %d s" % timeout}
        try:
            with open(out) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"status": "failed", "reason": "stage exited %s without a result; see %s.log" % (code, name)}

    def data(self):
        d = os.path.join(self.work, "data")
        if not os.path.exists(os.path.join(d, "meta.json")):
            subprocess.run([self.python, PREPARE, "--out-dir", d, "--synthetic", "--tokenizer", "byte",
                            "--synthetic-domains", DOMAINS, "--synthetic-chars", os.environ.get("GPU_CHECK_CHARS", "1500000"),
                            "--workers", "4"], check=True, stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(self.work, "prepare.log"), "w"), timeout=120)
        return d

    def train_argv(self, preset, steps, *extra):
        device = "cuda"
        vocab = ["--vocab-size", "50304"]
        if self.cpu_smoke:
            preset, device, vocab = "tiny", "cpu", []
            extra = list(extra) + ["--seq-len", "32", "--threads", "1"]
        return [self.python, TRAIN, "--preset", preset, "--data-dir", self.data(), "--domains", DOMAINS,
                "--mixture", MIXTURE, "--steps", str(steps), "--device", device] + vocab + list(extra)

    # Each returns a result dict: status ok/failed/timeout, reason, detail.

    def stage_resume(self, timeout):
        ck = os.path.join(self.work, "ckpt-resume")
        common = ["--batch-size", "16", "--micro-batch", "16", "--schedule-steps", "40", "--compile", "off",
                  "--log-every", "5", "--eval-every", "20", "--eval-tokens", "16384", "--checkpoint-dir", ck,
                  "--no-resume"]
        t0 = time.monotonic()
        code, ev1 = self.run(self.train_argv("20M", 20, *common), timeout, "resume-20")
        if code != 0:
            return fail_run("first run", code, ev1)
        common.remove("--no-resume")
        code, ev2 = self.run(self.train_argv("20M", 40, *common), timeout - (time.monotonic() - t0), "resume-40")
        if code != 0:
            return fail_run("extension", code, ev2)
        start = next((e for e in ev2 if e.get("event") == "start"), {})
        done = ev2[-1]
        ok = start.get("resumed_from_step") == 20 and done.get("status") == "completed" and done.get("step") == 40
        return {"status": "ok" if ok else "failed", "reason": None if ok else "did not resume at 20 and finish at 40",
                "detail": {"resumed_from_step": start.get("resumed_from_step"), "final_step": done.get("step")}}

    def stage_sigterm(self, timeout):
        ck = os.path.join(self.work, "ckpt-sigterm")
        sent = {"at": None}

        def on_line(p, line):
            if sent["at"] is None and '"event":"point"' in line:
                sent["at"] = time.monotonic()
                p.send_signal(signal.SIGTERM)
        code, ev = self.run(self.train_argv("20M", 100000, "--batch-size", "16", "--micro-batch", "16", "--compile", "off",
                                            "--log-every", "1", "--eval-tokens", "16384", "--checkpoint-dir", ck,
                                            "--no-resume"), timeout, "sigterm", on_line=on_line)
        kinds = [e.get("event") for e in ev]
        ok = code == 143 and "checkpoint" in kinds and ev and ev[-1].get("status") == "stopped" and \
            os.path.exists(os.path.join(ck, "ckpt.pt"))
        detail = {"exit_code": code, "checkpoint": "checkpoint" in kinds,
                  "stop_s": round(time.monotonic() - sent["at"], 1) if sent["at"] else None}
        if ok:
            # The checkpoint must load the way torch >= 2.6 loads by default.
            q = subprocess.run([self.python, "-c", "import sys, torch; torch.load(sys.argv[1], map_location='cpu', "
                                "weights_only=True)", os.path.join(ck, "ckpt.pt")], stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=60)
            detail["weights_only_load"] = q.returncode == 0
            ok = q.returncode == 0
        return {"status": "ok" if ok else "failed", "reason": None if ok else "want exit 143 with a checkpoint",
                "detail": detail}

    def stage_oom(self, timeout):
        code, ev = self.run(self.train_argv("1B", 1, "--batch-size", "1024", "--micro-batch", "1024",
                                            "--compile", "off", "--eval-tokens", "1024"), timeout, "oom")
        err = ev[-1] if ev and ev[-1].get("event") == "error" else {}
        ok = code == 4 and err.get("class") == "oom"
        return {"status": "ok" if ok else "failed", "reason": None if ok else "want exit 4 with class oom",
                "detail": {"exit_code": code, "class": err.get("class"), "message": err.get("message")}}

    def stage_1b(self, timeout, compiled, gemm_peak):
        steps, first = (30, 15) if compiled else (8, 2)
        env = dict(os.environ, TORCH_LOGS="graph_breaks") if compiled else None
        name = "1b_compiled" if compiled else "1b_eager"
        code, ev = self.run(self.train_argv("1B", steps, "--compile", "on" if compiled else "off", "--log-every", "1",
                                            "--eval-every", "100000", "--eval-tokens", "16384", "--max-memory-check"),
                            timeout, name, env=env)
        if code != 0:
            return fail_run("1B", code, ev)
        start = next(e["config"] for e in ev if e.get("event") == "start")
        pts = [e for e in ev if e.get("event") == "point" and e["step"] > first]
        tps = statistics.median(p["tokens_per_s"] for p in pts)
        fpt = 6 * start["params"] + 12 * start["n_layers"] * start["d_model"] * start["seq_len"]
        done = ev[-1]
        detail = {"steps": steps, "median_tokens_per_s": round(tps), "over_steps": [first, steps],
                  "mfu_datasheet": round(tps * fpt / (DATASHEET_TFLOPS * 1e12), 4),
                  "mfu_measured_gemm": round(tps * fpt / (gemm_peak * 1e12), 4) if gemm_peak else None,
                  "peak_memory_mib": done.get("peak_memory_mib"), "compiled": start.get("compile"),
                  "compile_fallback": [e["message"] for e in ev if e.get("event") == "warning"],
                  "micro_batch": start["micro_batch"], "grad_accum": start["grad_accum"]}
        if compiled:
            with open(os.path.join(self.work, name + ".log")) as f:
                log = f.read()
            # TORCH_LOGS=graph_breaks (torch >= 2.1) logs one "Graph break" record per break.
            version = tuple(int(x) for x in start.get("torch", "0.0").split("+")[0].split(".")[:2] if x.isdigit())
            detail["graph_breaks"] = log.count("Graph break") if version >= (2, 1) else None
        return {"status": "ok", "detail": detail}


def fail_run(what, code, events):
    err = events[-1] if events and events[-1].get("event") == "error" else {}
    if code is None:
        return {"status": "timeout", "reason": "%s did not finish in time" % what}
    return {"status": "failed", "reason": "%s exited %s: %s %s" % (what, code, err.get("class", ""), err.get("message", "")),
            "detail": {"exit_code": code}}


def main(argv=None):
    p = argparse.ArgumentParser(description="GPU check of scripts/train.py; writes a JSON summary.")
    p.add_argument("--work-dir", required=False)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--budget-s", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET_S", "360")))
    p.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stage:
        return child_main(args.stage, args.out)
    if not args.work_dir:
        p.error("--work-dir is required")
    os.makedirs(args.work_dir, exist_ok=True)
    check = Check(args.python, args.work_dir, args.budget_s, args.cpu_smoke)
    summary = {"version": SUMMARY_VERSION, "started": round(time.time(), 3), "budget_s": args.budget_s,
               "work_dir": args.work_dir, "stages": []}
    cuda, gemm_peak = False, None
    t_all = time.monotonic()
    for name, timeout, needs_cuda in STAGES:
        t0 = time.monotonic()
        limit = min(timeout, check.remaining())
        smoke = args.cpu_smoke and name in ("resume", "sigterm", "1b_compiled", "1b_eager")
        if needs_cuda and not cuda and not smoke:
            res = {"status": "skipped", "reason": "skipped: no CUDA"}
        elif limit < 5:
            res = {"status": "skipped", "reason": "skipped: the %d s budget is spent" % args.budget_s}
        else:
            try:
                if name in CHILD_STAGES:
                    res = check.child_stage(name, limit)
                elif name == "resume":
                    res = check.stage_resume(limit)
                elif name == "sigterm":
                    res = check.stage_sigterm(limit)
                elif name == "oom":
                    res = check.stage_oom(limit)
                else:
                    res = check.stage_1b(limit, name == "1b_compiled", gemm_peak)
            except Exception as e:  # a broken stage must not lose the summary of the others
                res = {"status": "failed", "reason": "%s: %s" % (type(e).__name__, e)}
        if name == "env":
            cuda = bool(res.get("detail", {}).get("cuda_available"))
            summary["cuda"] = cuda
        if name == "gemm" and res.get("status") == "ok":
            gemm_peak = res["detail"]["peak_tflops"]
        res = dict({"name": name, "timeout_s": timeout, "seconds": round(time.monotonic() - t0, 1)}, **res)
        summary["stages"].append(res)
        print("gpu_check: %-12s %-8s %5.1fs %s" % (name, res["status"], res["seconds"],
                                                  res.get("reason") or json.dumps(res.get("detail", {}))[:300]),
              file=sys.stderr, flush=True)
    summary["seconds"] = round(time.monotonic() - t_all, 1)
    c = next(s for s in summary["stages"] if s["name"] == "1b_compiled")
    mfu = c.get("detail", {}).get("mfu_datasheet") if c["status"] == "ok" else None
    summary["goal"] = {"metric": "1B compiled MFU against %g TFLOP/s" % DATASHEET_TFLOPS, "target": MFU_GOAL,
                       "value": mfu, "met": None if mfu is None else mfu >= MFU_GOAL}
    summary["failed"] = [s["name"] for s in summary["stages"] if s["status"] in ("failed", "timeout")]
    path = os.path.join(args.work_dir, "summary.json")
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(json.dumps(summary, indent=1))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
