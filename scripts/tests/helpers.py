"""Shared helpers for the scripts/ tests: paths, a cached toy corpus and protocol checks."""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(SCRIPTS, "train.py")
PREPARE = os.path.join(SCRIPTS, "prepare_data.py")
PYTHON = sys.executable

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

# Fields every event of a type must carry, with their JSON types (docs/train-protocol.md).
NUM = (int, float)
REQUIRED = {
    "start": {"step": int, "resumed_from_step": int, "config": dict},
    "point": {"step": int, "tokens": int, "train_loss": NUM, "lr": NUM, "tokens_per_s": NUM, "wall_time_s": NUM},
    "eval": {"step": int, "tokens": int, "metrics": dict, "wall_time_s": NUM},
    "checkpoint": {"step": int, "tokens": int, "path": str},
    "done": {"status": str, "step": int, "tokens": int, "domain_sequences": dict},
    "error": {"class": str, "message": str, "exit_code": int},
    "warning": {"code": str, "message": str},
}


def parse_protocol(stdout):
    """Parses every stdout line as a protocol event, failing on anything else."""
    events = []
    for line in stdout.splitlines():
        ev = json.loads(line)
        if ev.get("v") != 1:
            raise AssertionError("line without protocol version 1: %r" % line)
        kind = ev.get("event")
        if kind not in REQUIRED:
            raise AssertionError("unknown event type in %r" % line)
        for k, t in REQUIRED[kind].items():
            if not isinstance(ev.get(k), t):
                raise AssertionError("%s event field %s is %r" % (kind, k, ev.get(k)))
        events.append(ev)
    return events


def run_train(*args, timeout=120, env=None):
    p = subprocess.run([PYTHON, TRAIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


_corpus = {}


def toy_corpus():
    """A byte-level synthetic corpus shared by the tests of one process."""
    if "dir" not in _corpus:
        d = tempfile.mkdtemp(prefix="mixopt-corpus-")
        atexit.register(shutil.rmtree, d, True)
        subprocess.run([PYTHON, PREPARE, "--out-dir", d, "--synthetic", "--tokenizer", "byte",
                        "--synthetic-chars", "60000"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        _corpus["dir"] = d
    return _corpus["dir"]


def load_json(path):
    with open(path) as f:
        return json.load(f)


def tmpdir(test):
    """A temporary directory removed when the test ends."""
    d = tempfile.mkdtemp(prefix="mixopt-test-")
    test.addCleanup(shutil.rmtree, d, True)
    return d
