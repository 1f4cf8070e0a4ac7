"""The real coordinator binary (bin/coordinator, built by `make build`) on loopback, on a
temporary database, for the client's tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON_DIR = os.path.join(REPO, "python")
COORDINATOR = os.path.join(REPO, "bin", "coordinator")

if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _help_text() -> str:
    out = subprocess.run([COORDINATOR, "-h"], capture_output=True, text=True)
    return out.stdout + out.stderr


class Coordinator:
    """One coordinator process on a fixed loopback port, so that a restart (after SIGKILL)
    serves the same address over the same database."""

    def __init__(self, workdir: str, extra_args: Optional[List[str]] = None, lease_ttl: str = "30s"):
        if not os.access(COORDINATOR, os.X_OK):
            raise RuntimeError(f"{COORDINATOR} is missing: run `make build` (go build -o bin/ ./cmd/...) first")
        self.workdir = workdir
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.db = os.path.join(workdir, "mixopt.db")
        self.args = [COORDINATOR, "-listen", self.addr, "-http-listen", "", "-db", self.db,
                     "-lease-ttl", lease_ttl, "-log-level", "warn"] + list(extra_args or [])
        # A coordinator that refuses to create a missing database without -init gets it on
        # its first start only.
        self._init_flag = "-init" in _help_text()
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.log_path = os.path.join(workdir, "coordinator.log")

    def start(self) -> None:
        addr_file = os.path.join(self.workdir, "addr")
        if os.path.exists(addr_file):
            os.remove(addr_file)
        args = self.args + ["-addr-file", addr_file]
        if self._init_flag and not os.path.exists(self.db):
            args.append("-init")
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(addr_file) and os.path.getsize(addr_file) > 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"coordinator did not start:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no graceful stop, as a crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class CoordinatorTest(unittest.TestCase):
    """A test case with a fresh coordinator in a temporary directory."""

    coordinator_args: List[str] = []

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="mixopt-pyclient-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.coord = Coordinator(self.tmp, self.coordinator_args_for_test())
        self.addCleanup(self.coord.stop)
        self.coord.start()

    def coordinator_args_for_test(self) -> List[str]:
        return list(self.coordinator_args)


def small_spec(**overrides):
    """A study of three domains at two scales that finishes in seconds."""
    spec = {
        "name": "pyclient-test",
        "domains": [{"name": "web"}, {"name": "code"}, {"name": "books", "max_weight": 0.8}],
        "scales": [{"name": "small", "params": 1e6, "flops_per_step": 1e9},
                   {"name": "big", "params": 1e7, "flops_per_step": 1e10}],
        "steps": [10, 20],
        "eval_every": 1,
        "objective": {"metric": "mean_ce"},
        "target": {"scale": "big", "steps": 20},
        "budget_flops": 1e14,
        "max_parallel": 2,
        "max_trials": 4,
        "policy": "random",
        "seed": 3,
    }
    spec.update(overrides)
    return spec


def losses(mixture, scale, step):
    """A made-up but deterministic loss: lower with more code, bigger scales and more steps."""
    base = 4.0 - 1.5 * mixture.get("code", 0.0) - (0.3 if scale == "big" else 0.0)
    train = base + 2.0 / step
    per = {f"{d}_ce": base + 0.1 * i + 2.5 / step for i, d in enumerate(sorted(mixture))}
    per["mean_ce"] = sum(per.values()) / len(per)
    per["train_loss"] = train
    return per
