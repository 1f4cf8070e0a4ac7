#!/usr/bin/env python3
"""Pre-train a decoder-only LM on a mixture of token-shard domains and report over JSON lines.

stdout carries only the versioned protocol (docs/train-protocol.md); everything else goes to
stderr. Arguments and data are checked before torch is imported, so bad input fails in well
under a second with an `error` event and a distinct exit code.

Runs on torch 1.13 (CPU) and torch 2.x (CUDA); optional features (SDPA, torch.compile, fused
AdamW, bf16) are feature-detected. Under torchrun it trains with DDP; only rank 0 writes the
protocol. The model is in model.py; this file is the loop and its inputs.
"""

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback

import numpy as np

PROTOCOL_VERSION = 1

# Exit codes; docs/train-protocol.md and internal/gpuexec mirror this table.
EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_BAD_DATA = 3
EXIT_OOM = 4
EXIT_DIVERGED = 5
EXIT_STOPPED = 143  # 128+SIGTERM: stopped on request after a checkpoint

# GPT-2's 50257 tokens padded to a multiple of 64, the vocabulary the nominal sizes assume.
GPT2_PADDED_VOCAB = 50304

# Presets. The block is OLMo-style: RoPE, SwiGLU, RMSNorm, no biases, tied input/output
# embeddings. d_model/layers/heads follow the paper's table; the SwiGLU hidden width is chosen
# per preset (3x-4.2x d_model, multiples of 128) so the total parameter count, embeddings
# included at the GPT-2 vocabulary, lands on the nominal size: a single ratio cannot hit all
# seven (see docs/training.md). batch is the global number of sequences per optimizer step;
# micro is the per-device micro-batch, so grad_accum = batch / (micro * world_size).
PRESETS = {
    "20M": dict(d_model=256, n_layers=8, n_heads=8, mlp_hidden=768, nominal=20e6,
                seq_len=1024, batch=128, micro=64, lr=3e-3),
    "60M": dict(d_model=512, n_layers=8, n_heads=8, mlp_hidden=2048, nominal=60e6,
                seq_len=1024, batch=128, micro=32, lr=2e-3),
    "150M": dict(d_model=768, n_layers=12, n_heads=12, mlp_hidden=3072, nominal=150e6,
                 seq_len=1024, batch=128, micro=32, lr=1.5e-3),
    "300M": dict(d_model=1024, n_layers=16, n_heads=16, mlp_hidden=3584, nominal=300e6,
                 seq_len=1024, batch=128, micro=16, lr=1e-3),
    "500M": dict(d_model=1280, n_layers=16, n_heads=16, mlp_hidden=5376, nominal=500e6,
                 seq_len=1024, batch=128, micro=16, lr=8e-4),
    "700M": dict(d_model=1536, n_layers=16, n_heads=16, mlp_hidden=6400, nominal=700e6,
                 seq_len=1024, batch=128, micro=8, lr=6e-4),
    "1B": dict(d_model=2048, n_layers=16, n_heads=16, mlp_hidden=6400, nominal=1e9,
               seq_len=1024, batch=128, micro=8, lr=5e-4),
    # CPU presets for tests and recordings; no nominal size.
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden=192, nominal=None,
                 seq_len=64, batch=16, micro=16, lr=3e-3),
    "tiny-m": dict(d_model=96, n_layers=3, n_heads=4, mlp_hidden=256, nominal=None,
                   seq_len=64, batch=16, micro=16, lr=3e-3),
    "tiny-l": dict(d_model=128, n_layers=4, n_heads=4, mlp_hidden=384, nominal=None,
                   seq_len=64, batch=16, micro=16, lr=2e-3),
}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIXTURE_TOLERANCE = 1e-6
CHECKPOINT_NAME = "ckpt.pt"
# Checkpoint layout version: {"format", "tensors": {name: tensor}, "state": JSON text}. Plain
# types only, so torch.load(weights_only=True) reads it on torch 1.13 (whose weights-only
# unpickler cannot even read a float) and 2.x alike.
CHECKPOINT_FORMAT = 2
DEFAULT_CHECKPOINT_MINUTES = 10.0
# 128 windows of the GPU presets' 1024 tokens per domain: every scale is scored on these tokens.
DEFAULT_EVAL_TOKENS = 128 * 1024
# Shard dtypes prepare_data.py writes, by the width the vocabulary needs.
SHARD_DTYPES = {"uint16": 1 << 16, "uint32": 1 << 32}
MAX_VOCAB = 1 << 31
# Elements per slice of the vectorised token-id scan: bounded memory on any shard size.
ID_SCAN_CHUNK = 1 << 24


class TrainError(Exception):
    """An error with a protocol class and exit code."""

    cls = "other"
    code = EXIT_OTHER


class BadInput(TrainError):
    cls = "bad_input"
    code = EXIT_BAD_INPUT


class BadData(TrainError):
    cls = "bad_data"
    code = EXIT_BAD_DATA


class Diverged(TrainError):
    cls = "diverged"
    code = EXIT_DIVERGED


class OutOfMemory(TrainError):
    cls = "oom"
    code = EXIT_OOM


# ---------------------------------------------------------------------------------------------
# Protocol


class Protocol:
    """Writes protocol events; silent on non-zero ranks so DDP runs print one stream."""

    def __init__(self, enabled=True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.t0 = time.time()
        self.wall_offset = 0.0  # wall time carried over from a resumed checkpoint
        self.step = None  # last completed step, for the error event

    def wall(self):
        return self.wall_offset + (time.time() - self.t0)

    def emit(self, event, **fields):
        if not self.enabled:
            return
        rec = {"v": PROTOCOL_VERSION, "event": event, "time": round(time.time(), 3)}
        rec.update(fields)
        # allow_nan=False would raise on a diverged loss; map non-finite floats to null instead.
        self.stream.write(json.dumps(_finite(rec), separators=(",", ":")) + "\n")
        self.stream.flush()


def _finite(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def log(msg):
    print("train.py: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print usage and exit 2 without an error event.
        raise BadInput(message)


def build_parser():
    p = _Parser(description="Pre-train a decoder-only LM on a data mixture (JSON lines on stdout).")
    p.add_argument("--preset", required=True, help="model preset: " + ", ".join(PRESETS))
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and parameter count as JSON, then exit")
    p.add_argument("--data-dir", help="directory written by prepare_data.py")
    p.add_argument("--domains", help="comma-separated domain names, in mixture order")
    p.add_argument("--mixture", help="comma-separated weights summing to 1, one per domain")
    p.add_argument("--steps", type=int, help="optimizer steps to reach (total, across resumes)")
    p.add_argument("--schedule-steps", type=int, default=0,
                   help="horizon of the cosine schedule (default: --steps); set it to the final "
                        "horizon to extend a run later without changing its curve")
    p.add_argument("--warmup-steps", type=int, default=-1, help="default: 5%% of the schedule, at most 1000")
    p.add_argument("--eval-every", type=int, default=100, help="validation interval in steps")
    p.add_argument("--eval-tokens", type=int, default=DEFAULT_EVAL_TOKENS,
                   help="validation tokens per domain (fewer when val.bin is smaller); the same "
                        "windows for every preset and micro-batch at a sequence length")
    p.add_argument("--log-every", type=int, default=10, help="point-event interval in steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", "--out-dir", dest="checkpoint_dir",
                   help="where checkpoints go; an existing checkpoint there is resumed")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="checkpoint interval in steps (0: none by step count)")
    p.add_argument("--checkpoint-minutes", type=float, default=DEFAULT_CHECKPOINT_MINUTES,
                   help="also checkpoint when this many minutes passed since the last one "
                        "(0: off); a crash then loses minutes, not the trial")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: preset's)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=0, help="global sequences per step (default: preset's)")
    p.add_argument("--micro-batch", type=int, default=0, help="per-device micro-batch (default: preset's)")
    p.add_argument("--seq-len", type=int, default=0, help="sequence length (default: preset's)")
    p.add_argument("--vocab-size", type=int, default=0,
                   help="tokenizer vocabulary (default: the data's, else GPT-2's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"],
                   help="autocast dtype (auto: bf16 where supported)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile (auto: on CUDA; on: on any device); when it fails the run "
                        "continues eager after a compile_fallback warning event")
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "math"],
                   help="SDPA/flash when available, else explicit softmax attention")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--max-memory-check", action="store_true",
                   help="report peak device memory in the done event (CUDA)")
    # Fault injection for tests of the supervisor's classification; never set in production.
    p.add_argument("--fault", default="", choices=["", "nan", "oom", "crash", "hang", "compile"],
                   help=argparse.SUPPRESS)
    p.add_argument("--fault-step", type=int, default=1, help=argparse.SUPPRESS)
    return p


def parse_list(s, what):
    if s is None or s.strip() == "":
        raise BadInput("--%s is required" % what)
    return [x.strip() for x in s.split(",")]


def resolve_config(args, vocab_size):
    """Merges preset defaults and flags into one dict; raises BadInput on anything invalid."""
    if args.preset not in PRESETS:
        raise BadInput("unknown preset %r (known: %s)" % (args.preset, ", ".join(PRESETS)))
    pr = PRESETS[args.preset]
    cfg = dict(preset=args.preset, d_model=pr["d_model"], n_layers=pr["n_layers"],
               n_heads=pr["n_heads"], mlp_hidden=pr["mlp_hidden"], vocab_size=vocab_size,
               seq_len=args.seq_len or pr["seq_len"], batch_size=args.batch_size or pr["batch"],
               micro_batch=args.micro_batch or pr["micro"], lr=args.lr or pr["lr"])
    for k in ("seq_len", "batch_size", "micro_batch"):
        if cfg[k] <= 0:
            raise BadInput("--%s must be positive, got %d" % (k.replace("_", "-"), cfg[k]))
    if not (0 < cfg["lr"] < 1):
        raise BadInput("--lr must be in (0, 1), got %g" % cfg["lr"])
    if vocab_size <= 0 or vocab_size > MAX_VOCAB:
        raise BadInput("vocabulary size %d is outside 1..%d" % (vocab_size, MAX_VOCAB))
    # Pad the embedding table to a multiple of 64 for efficient matmuls.
    cfg["padded_vocab"] = (vocab_size + 63) // 64 * 64
    cfg["params"] = count_params(cfg)
    cfg["non_embedding_params"] = cfg["params"] - cfg["padded_vocab"] * cfg["d_model"]
    cfg["nominal_params"] = pr["nominal"]
    return cfg


def count_params(cfg):
    """Parameters of the model resolve_config describes (tied embeddings, RMSNorm weights)."""
    d, L, h = cfg["d_model"], cfg["n_layers"], cfg["mlp_hidden"]
    per_layer = 4 * d * d + 3 * d * h + 2 * d
    return cfg["padded_vocab"] * d + L * per_layer + d


def parse_mixture(args):
    domains = parse_list(args.domains, "domains")
    for d in domains:
        if not NAME_RE.match(d):
            raise BadInput("domain name %r is not a plain name ([A-Za-z0-9_.-], up to 64 chars)" % d)
    if len(set(domains)) != len(domains):
        raise BadInput("--domains lists a domain twice: %s" % args.domains)
    try:
        weights = [float(x) for x in parse_list(args.mixture, "mixture")]
    except ValueError as e:
        raise BadInput("--mixture must be comma-separated numbers: %s" % e)
    if len(weights) != len(domains):
        raise BadInput("--mixture has %d weights but --domains names %d domains" % (len(weights), len(domains)))
    for d, w in zip(domains, weights):
        if not math.isfinite(w) or w < 0:
            raise BadInput("mixture weight for %s is %r; weights must be finite and non-negative" % (d, w))
    if abs(sum(weights) - 1.0) > MIXTURE_TOLERANCE:
        raise BadInput("mixture weights sum to %.9g, not 1" % sum(weights))
    return domains, weights


def check_run_args(args):
    if args.steps is None or args.steps <= 0:
        raise BadInput("--steps must be a positive integer")
    if args.eval_every <= 0 or args.log_every <= 0 or args.eval_tokens <= 0:
        raise BadInput("--eval-every, --log-every and --eval-tokens must be positive")
    if args.schedule_steps < 0 or args.checkpoint_every < 0:
        raise BadInput("--schedule-steps and --checkpoint-every must not be negative")
    if not (math.isfinite(args.checkpoint_minutes) and args.checkpoint_minutes >= 0):
        raise BadInput("--checkpoint-minutes must be a non-negative number, got %r" % args.checkpoint_minutes)
    if not args.data_dir:
        raise BadInput("--data-dir is required")


# ---------------------------------------------------------------------------------------------
# Data


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise BadData("%s not found; prepare the data with scripts/prepare_data.py" % path)
    except (OSError, ValueError) as e:
        raise BadData("cannot read %s: %s" % (path, e))
    if not isinstance(meta, dict) or not isinstance(meta.get("vocab_size"), int):
        raise BadData("%s has no integer vocab_size" % path)
    dtype = meta.get("dtype", "uint16")  # files written before uint32 shards existed
    if dtype not in SHARD_DTYPES:
        raise BadData("%s: dtype %r is not one of %s" % (path, dtype, ", ".join(SHARD_DTYPES)))
    if not 0 < meta["vocab_size"] <= SHARD_DTYPES[dtype]:
        raise BadData("%s: vocab_size %d does not fit %s shards" % (path, meta["vocab_size"], dtype))
    meta["dtype"] = dtype
    return meta


def max_token_id(arr):
    """The largest id in a token array, scanned in slices so memory stays bounded."""
    top = 0
    for i in range(0, len(arr), ID_SCAN_CHUNK):
        top = max(top, int(arr[i:i + ID_SCAN_CHUNK].max()))
    return top


def open_shards(data_dir, domains, split, min_tokens, vocab_size, dtype):
    """Memory-maps <data_dir>/<domain>/<split>.bin for each domain, checking size and every id."""
    shards = []
    width = np.dtype(dtype).itemsize
    for d in domains:
        path = os.path.join(data_dir, d, split + ".bin")
        if not os.path.isdir(os.path.join(data_dir, d)):
            known = sorted(x for x in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, x)))
            raise BadData("unknown domain %r: no %s in %s (domains there: %s)"
                          % (d, d + "/", data_dir, ", ".join(known) or "none"))
        try:
            size = os.path.getsize(path)
        except OSError:
            raise BadData("missing shard %s" % path)
        if size % width:
            raise BadData("shard %s has %d bytes, not a multiple of %d (%s)" % (path, size, width, dtype))
        n = size // width
        if n < min_tokens:
            raise BadData("shard %s has %d tokens; needs at least %d (seq_len+1)" % (path, n, min_tokens))
        arr = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
        top = max_token_id(arr)
        if top >= vocab_size:
            raise BadData("shard %s has token id %d >= vocabulary %d" % (path, top, vocab_size))
        shards.append(arr)
    return shards


def sample_domains(weights, seed, step, rank, micro, n):
    """Domains of n sequences; a pure function of (seed, step, rank, micro) so resumes replay."""
    rng = np.random.default_rng([seed, step, rank, micro])
    return rng.choice(len(weights), size=n, p=np.asarray(weights, dtype=np.float64)), rng


def sample_batch(shards, weights, seq_len, seed, step, rank, micro, n):
    doms, rng = sample_domains(weights, seed, step, rank, micro, n)
    u = rng.random(n)
    rows = np.empty((n, seq_len + 1), dtype=np.int64)
    offsets = np.arange(seq_len + 1)
    for d in np.unique(doms):
        pick = np.nonzero(doms == d)[0]
        span = len(shards[d]) - seq_len - 1
        starts = (u[pick] * (span + 1)).astype(np.int64)
        rows[pick] = shards[d][starts[:, None] + offsets]
    return rows, doms


def eval_windows(shard, seq_len, eval_tokens):
    """The validation windows of one domain: evenly spaced over val.bin, their number set by
    --eval-tokens and the shard, never by the micro-batch or preset, so every scale at a
    sequence length is scored on the same tokens."""
    span = len(shard) - seq_len - 1
    count = max(1, min(eval_tokens // seq_len, (len(shard) - 1) // seq_len))
    starts = np.linspace(0, span, num=count).round().astype(np.int64)
    return np.asarray(shard[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)


def windows_digest(windows):
    """A short fingerprint of validation windows, reported so runs can prove they match."""
    h = hashlib.sha256()
    for w in windows:
        h.update(np.ascontiguousarray(w, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def lr_at(step, peak, min_ratio, warmup, horizon):
    """Linear warmup then cosine to min_ratio*peak at horizon; flat after it (extensions)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= horizon:
        return peak * min_ratio
    frac = (step - warmup) / max(1, horizon - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


# ---------------------------------------------------------------------------------------------
# Torch (imported lazily so input errors are reported fast)

torch = None
model_lib = None


def import_torch():
    global torch, model_lib
    if torch is None:
        import torch as _torch
        import model as _model
        torch, model_lib = _torch, _model
    return torch


def build_model(cfg, attention="auto"):
    import_torch()
    use_sdpa = model_lib.has_sdpa() if attention == "auto" else attention == "sdpa"
    if use_sdpa and not model_lib.has_sdpa():
        raise BadInput("--attention sdpa needs torch>=2.0 (this is %s)" % torch.__version__)
    mc = model_lib.ModelConfig(vocab_size=cfg["padded_vocab"], d_model=cfg["d_model"],
                               n_layers=cfg["n_layers"], n_heads=cfg["n_heads"],
                               mlp_hidden=cfg["mlp_hidden"], seq_len=cfg["seq_len"],
                               attention="sdpa" if use_sdpa else "math")
    return model_lib.LM(mc), mc.attention


def is_oom(e):
    import_torch()
    cuda_oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if cuda_oom is not None and isinstance(e, cuda_oom):
        return True
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


class Dist:
    """torchrun environment; a single process when WORLD_SIZE is absent."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    def setup(self, device_type):
        if self.enabled:
            torch.distributed.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")

    def any(self, flags, device):
        """Each flag true on every rank when it is set on any rank (stop, checkpoint due,
        non-finite loss); one collective for all of them."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
        torch.distributed.all_reduce(t)
        return [bool(x > 0) for x in t.tolist()]

    def sum_counts(self, counts, device):
        """Per-domain sequence counts summed over ranks (each rank counts what it drew)."""
        if not self.enabled:
            return [int(x) for x in counts]
        t = torch.tensor([int(x) for x in counts], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return [int(x) for x in t.tolist()]

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def close(self):
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def pick_device(arg, dist):
    if arg == "auto":
        return "cuda:%d" % dist.local_rank if torch.cuda.is_available() else "cpu"
    if arg.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("--device %s but CUDA is not available" % arg)
    if arg == "cuda":
        # torch.cuda.set_device needs an index; under torchrun each rank takes its local one.
        return "cuda:%d" % dist.local_rank
    if arg != "cpu" and not arg.startswith("cuda"):
        raise BadInput("unknown --device %r (cpu, cuda, cuda:N or auto)" % arg)
    return arg


def pick_dtype(arg, device_type):
    if arg == "fp32":
        return None
    if device_type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if not ok and arg == "bf16":
            raise BadInput("--dtype bf16 but this GPU does not support bf16")
        return torch.bfloat16 if ok else None
    return torch.bfloat16  # CPU autocast supports bf16 since torch 1.10 and is much faster


def autocast(device_type, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def make_optimizer(model, cfg, args, device_type):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-8)
    # The fused CUDA kernel (torch >= 2.0) updates every parameter in one launch.
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kw["fused"] = True
    return torch.optim.AdamW(groups, **kw)


# ---------------------------------------------------------------------------------------------
# Checkpoints: tensors in a flat dict, everything else as JSON text


def pack_state(obj, tensors):
    """obj with each tensor replaced by {"__tensor__": key} (the tensor goes into tensors) and
    every other value made a JSON type; dicts with non-string keys become key/value lists."""
    if torch.is_tensor(obj):
        key = "t%d" % len(tensors)
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj):
            return {k: pack_state(v, tensors) for k, v in obj.items()}
        return {"__items__": [[pack_state(k, tensors), pack_state(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack_state(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [pack_state(v, tensors) for v in obj]
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, str):  # str subclasses such as torch's TorchVersion
        return str(obj)
    raise TypeError("checkpoint state holds a %s, which is not a plain type" % type(obj).__name__)


def unpack_state(obj, tensors):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {unpack_state(k, tensors): unpack_state(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unpack_state(v, tensors) for v in obj["__tuple__"])
        return {k: unpack_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack_state(v, tensors) for v in obj]
    return obj


def save_checkpoint(path, state):
    tensors = {}
    text = json.dumps(pack_state(state, tensors), separators=(",", ":"))
    tmp = path + ".tmp"
    torch.save({"format": CHECKPOINT_FORMAT, "tensors": tensors, "state": text}, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint


def load_checkpoint(path):
    """The state save_checkpoint wrote; raises BadInput (a deterministic failure, so the worker
    does not retry it) when the file cannot be read as one."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError("checkpoint format %r, this train.py reads format %d" % (got, CHECKPOINT_FORMAT))
        state = unpack_state(json.loads(raw["state"]), raw["tensors"])
        for k in ("model", "optim", "step", "tokens", "domain_sequences", "config"):
            if k not in state:
                raise ValueError("checkpoint has no %r" % k)
        return state
    except Exception as e:  # anything unreadable: a retry would fail the same way
        raise BadInput("cannot resume from %s: %s: %s; use another --checkpoint-dir or --no-resume"
                       % (path, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))


def compatible(ckpt, cfg, domains, weights, seed):
    """Refuses to resume a checkpoint of a different run; extension only changes --steps."""
    want = dict(preset=cfg["preset"], padded_vocab=cfg["padded_vocab"], seq_len=cfg["seq_len"],
                batch_size=cfg["batch_size"], domains=domains, seed=seed)
    for k, v in want.items():
        if ckpt["config"].get(k) != v:
            raise BadInput("checkpoint was written with %s=%r, this run has %r; use another "
                           "--checkpoint-dir or --no-resume" % (k, ckpt["config"].get(k), v))
    old = ckpt["config"].get("mixture")
    if not isinstance(old, list) or len(old) != len(weights) or \
            max(abs(a - b) for a, b in zip(old, weights)) > 1e-9:
        raise BadInput("checkpoint was written with mixture %r, this run has %r" % (old, weights))


# ---------------------------------------------------------------------------------------------
# Input pipeline


class Prefetcher:
    """Samples the coming micro-batches on a thread, in order, into (pinned) CPU tensors, so the
    loop only issues asynchronous host-to-device copies."""

    def __init__(self, sample, first_step, grad_accum, pin, depth):
        self.sample, self.grad_accum, self.pin = sample, grad_accum, pin
        self.q = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(first_step,), daemon=True)
        self.thread.start()

    def _run(self, step):
        try:
            while not self.stopped.is_set():
                for micro in range(self.grad_accum):
                    rows, doms = self.sample(step, micro)
                    t = torch.from_numpy(rows)
                    if self.pin:
                        t = t.pin_memory()
                    if not self._put((step, micro, t, doms)):
                        return
                step += 1
        except BaseException as e:  # surfaced by get() in the training thread
            self._put(e)

    def _put(self, item):
        while not self.stopped.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self, step, micro):
        item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        if item[:2] != (step, micro):
            raise RuntimeError("prefetcher out of order: want %s, got %s" % ((step, micro), item[:2]))
        return item[2], item[3]

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Test hooks: --fault, outside the loop (the loop calls them only when a fault is set)


class Faults:
    def __init__(self, kind, step):
        self.kind, self.step = kind, step

    @staticmethod
    def from_args(args):
        return Faults(args.fault, args.fault_step) if args.fault else None

    def before_step(self, step, raw_model):
        """Runs before optimizer step number `step` (1-based)."""
        if step != self.step:
            return
        if self.kind == "crash":
            raise RuntimeError("injected crash")
        if self.kind == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")
        if self.kind == "hang":
            time.sleep(3600)
        if self.kind == "nan":
            # Poisoned weights, as in a real divergence: every later loss is non-finite.
            with torch.no_grad():
                raw_model.embed.weight.fill_(float("nan"))

    def compiler(self):
        """A torch.compile stand-in that fails at the first call, as dynamo and inductor do."""
        if self.kind != "compile":
            return None

        def failing_compile(module):
            def run(*args, **kwargs):
                raise RuntimeError("injected torch.compile failure (BackendCompilerFailed)")
            return run
        return failing_compile


def try_compile(module, mode, device_type, faults):
    """(callable, compiled?, why not) for --compile: eager when off, when auto on a CPU, or when
    torch.compile is missing or fails to wrap the module (then why says so, for a warning)."""
    want = mode == "on" or (mode == "auto" and device_type == "cuda")
    if not want:
        return module, False, None
    compiler = (faults.compiler() if faults else None) or getattr(torch, "compile", None)
    if compiler is None:
        return module, False, "torch.compile is not available in torch %s; training eager" % torch.__version__
    try:
        return compiler(module), True, None
    except Exception as e:
        return module, False, "torch.compile failed (%s: %s); training eager" % (type(e).__name__, e)


# ---------------------------------------------------------------------------------------------
# Training


def train(args, proto, dist):
    domains, weights = parse_mixture(args)
    check_run_args(args)
    meta = read_meta(args.data_dir)
    vocab = args.vocab_size or meta["vocab_size"]
    if vocab < meta["vocab_size"]:
        raise BadInput("--vocab-size %d is below the data's %d" % (vocab, meta["vocab_size"]))
    cfg = resolve_config(args, vocab)
    train_shards = open_shards(args.data_dir, domains, "train", cfg["seq_len"] + 1, vocab, meta["dtype"])
    val_shards = open_shards(args.data_dir, domains, "val", cfg["seq_len"] + 1, vocab, meta["dtype"])
    if cfg["batch_size"] % (cfg["micro_batch"] * dist.world):
        raise BadInput("--batch-size %d is not a multiple of micro-batch %d x world size %d"
                       % (cfg["batch_size"], cfg["micro_batch"], dist.world))
    grad_accum = cfg["batch_size"] // (cfg["micro_batch"] * dist.world)
    horizon = args.schedule_steps or args.steps
    warmup = args.warmup_steps if args.warmup_steps >= 0 else min(1000, max(1, horizon // 20))
    ckpt_path = os.path.join(args.checkpoint_dir, CHECKPOINT_NAME) if args.checkpoint_dir else None
    val_windows = [eval_windows(s, cfg["seq_len"], args.eval_tokens) for s in val_shards]
    faults = Faults.from_args(args)

    # Everything above needs no torch: input errors are reported before the slow import.
    import_torch()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device, dist)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if device_type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dist.setup(device_type)
    dtype = pick_dtype(args.dtype, device_type)
    torch.manual_seed(args.seed)

    raw, attn = build_model(cfg, args.attention)
    raw.to(device)
    actual = sum(p.numel() for p in raw.parameters())
    if actual != cfg["params"]:
        log("warning: parameter count %d differs from the formula's %d" % (actual, cfg["params"]))
    opt = make_optimizer(raw, cfg, args, device_type)

    step, tokens, counts = 0, 0, np.zeros(len(domains), dtype=np.int64)
    if ckpt_path and os.path.exists(ckpt_path) and not args.no_resume:
        ckpt = load_checkpoint(ckpt_path)
        compatible(ckpt, cfg, domains, weights, args.seed)
        try:
            raw.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optim"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise BadInput("cannot resume from %s: %s; use another --checkpoint-dir or --no-resume"
                           % (ckpt_path, str(e).splitlines()[0]))
        step, tokens = int(ckpt["step"]), int(ckpt["tokens"])
        # The checkpoint holds counts summed over ranks: rank 0 carries them on.
        if dist.rank == 0:
            counts = np.asarray(ckpt["domain_sequences"], dtype=np.int64)
        proto.wall_offset = float(ckpt.get("wall_time_s", 0.0))
        if ckpt["config"].get("schedule_steps") != horizon:
            log("warning: schedule horizon changes from %s to %d on resume; the curve bends here"
                % (ckpt["config"].get("schedule_steps"), horizon))
        log("resumed from %s at step %d" % (ckpt_path, step))
        if step > args.steps:
            raise BadInput("checkpoint is at step %d, beyond --steps %d" % (step, args.steps))
        del ckpt
    resumed_from = step
    proto.step = step

    def warn_compile(message):
        log("warning: " + message)
        proto.emit("warning", code="compile_fallback", message=message)

    ddp = raw
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # The only buffers are the constant RoPE tables: nothing to broadcast each step.
        ddp = DDP(raw, device_ids=[dist.local_rank] if device_type == "cuda" else None,
                  broadcast_buffers=False)
    # torch.compile wraps the DDP module, as torch's docs advise, so DDP's buckets split the graph.
    model, compiled, no_compile = try_compile(ddp, args.compile, device_type, faults)

    tokens_per_step = cfg["batch_size"] * cfg["seq_len"]
    run_cfg = dict(cfg, steps=args.steps, schedule_steps=horizon, warmup_steps=warmup,
                   grad_accum=grad_accum, world_size=dist.world, tokens_per_step=tokens_per_step,
                   flops_per_step=6 * cfg["params"] * tokens_per_step, domains=domains,
                   mixture=weights, seed=args.seed, device=device,
                   dtype="bf16" if dtype is not None else "fp32", compile=compiled,
                   attention=attn, torch=str(torch.__version__), eval_every=args.eval_every,
                   eval_tokens=args.eval_tokens, eval_windows=[int(w.shape[0]) for w in val_windows],
                   eval_digest=windows_digest(val_windows))
    proto.emit("start", step=step, resumed_from_step=resumed_from, config=run_cfg)
    log("preset %s: %d parameters, %d tokens/step, device %s, %s, attention %s, compile %s"
        % (cfg["preset"], cfg["params"], tokens_per_step, device, run_cfg["dtype"], attn, compiled))
    if no_compile:
        warn_compile(no_compile)  # after start: start stays the first event

    stop = {"requested": False}

    def on_term(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)

    val_batches = [torch.from_numpy(w) for w in val_windows]

    def evaluate():
        raw.eval()
        out = {}
        with torch.no_grad():
            for name, rows in zip(domains, val_batches):
                total = torch.zeros((), dtype=torch.float64, device=device)
                for i in range(0, rows.shape[0], cfg["micro_batch"]):
                    b = rows[i:i + cfg["micro_batch"]].to(device)
                    with autocast(device_type, dtype):
                        total += raw(b[:, :-1], b[:, 1:]).double() * b.shape[0]
                out[name + "_ce"] = total.item() / rows.shape[0]
        out["mean_ce"] = sum(out[d + "_ce"] for d in domains) / len(domains)
        raw.train()
        return out

    last_ckpt = [time.monotonic()]

    def checkpoint():
        last_ckpt[0] = time.monotonic()
        if not ckpt_path:
            return
        total = dist.sum_counts(counts, device)
        if dist.rank == 0:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
            save_checkpoint(ckpt_path, dict(
                model=raw.state_dict(), optim=opt.state_dict(), step=step, tokens=tokens,
                domain_sequences=total, wall_time_s=proto.wall(), config=run_cfg))
            proto.emit("checkpoint", step=step, tokens=tokens, path=ckpt_path, wall_time_s=proto.wall())
        dist.barrier()

    def do_eval(train_loss):
        if dist.rank == 0:
            m = evaluate()
            proto.emit("eval", step=step, tokens=tokens, train_loss=train_loss, metrics=m,
                       wall_time_s=proto.wall())
        dist.barrier()

    def run_step(fn, batches):
        """Forward and backward over a step's micro-batches; returns the mean loss as a device
        tensor (no host sync here)."""
        loss_sum = torch.zeros((), device=device)
        for micro, rows in enumerate(batches):
            b = rows.to(device, non_blocking=True)
            last = micro == len(batches) - 1
            # DDP all-reduces gradients on the last micro-batch only.
            with (ddp.no_sync() if dist.enabled and not last else contextlib.nullcontext()):
                with autocast(device_type, dtype):
                    loss = fn(b[:, :-1], b[:, 1:])
                (loss / len(batches)).backward()
            loss_sum += loss.detach()
        return loss_sum / len(batches)

    def sample(s, micro):
        return sample_batch(train_shards, weights, cfg["seq_len"], args.seed, s, dist.rank, micro,
                            cfg["micro_batch"])

    prefetch = Prefetcher(sample, step, grad_accum, pin=device_type == "cuda", depth=2 * grad_accum + 2)
    checkpoint_s = args.checkpoint_minutes * 60
    try:
        if step == 0:
            do_eval(None)
        interval_loss = torch.zeros((), device=device)
        interval_steps = 0
        last_eval = step
        t_log, tok_log = time.time(), tokens
        while step < args.steps:
            if faults is not None:
                faults.before_step(step + 1, raw)
            lr = lr_at(step, cfg["lr"], args.min_lr_ratio, warmup, horizon)
            for g in opt.param_groups:
                g["lr"] = lr
            batches, step_doms = [], []
            for micro in range(grad_accum):
                rows, doms = prefetch.get(step, micro)
                batches.append(rows)
                step_doms.append(doms)
            try:
                step_loss = run_step(model, batches)
            except Exception as e:
                # Compilation happens at the first call (or a recompile): a failure falls back to
                # eager; an error eager also hits is raised by the retry.
                if not compiled or is_oom(e):
                    raise
                traceback.print_exc(file=sys.stderr)
                warn_compile("torch.compile failed at step %d (%s: %s); training eager"
                             % (step + 1, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
                model, compiled = ddp, False
                opt.zero_grad(set_to_none=True)
                step_loss = run_step(model, batches)
            for doms in step_doms:
                counts += np.bincount(doms, minlength=len(domains))
            gnorm = torch.nn.utils.clip_grad_norm_(raw.parameters(), args.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += tokens_per_step
            proto.step = step
            interval_loss += step_loss
            interval_steps += 1

            log_now = step % args.log_every == 0 or step == args.steps
            eval_now = step % args.eval_every == 0 or step == args.steps
            ckpt_now = args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps
            due = bool(ckpt_path) and checkpoint_s > 0 and step < args.steps and \
                time.monotonic() - last_ckpt[0] >= checkpoint_s
            stopping, due = dist.any([stop["requested"], due], device)
            train_loss = None
            if log_now or eval_now or ckpt_now or due or stopping:
                # The only host syncs: the loss is read where it is reported or saved.
                train_loss = step_loss.item()
                if dist.any([not math.isfinite(train_loss)], device)[0]:
                    raise Diverged("training loss is %s at step %d" % (train_loss, step))
            if log_now:
                now = time.time()
                tps = (tokens - tok_log) / max(now - t_log, 1e-9)
                t_log, tok_log = now, tokens
                proto.emit("point", step=step, tokens=tokens, train_loss=train_loss, lr=lr,
                           grad_norm=float(gnorm), tokens_per_s=round(tps, 1), wall_time_s=proto.wall())
            if eval_now or stopping:
                do_eval(interval_loss.item() / interval_steps)
                interval_loss.zero_()
                interval_steps, last_eval = 0, step
            if ckpt_now or due or stopping:
                checkpoint()
            if stopping:
                log("stopped on SIGTERM at step %d" % step)
                proto.emit("done", status="stopped", step=step, tokens=tokens,
                           domain_sequences=dict(zip(domains, dist.sum_counts(counts, device))),
                           wall_time_s=proto.wall())
                return EXIT_STOPPED
    finally:
        prefetch.close()
    if last_eval != step or step == resumed_from and step > 0:
        do_eval(None)
    checkpoint()
    extra = {}
    if args.max_memory_check and device_type == "cuda":
        extra["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    proto.emit("done", status="completed", step=step, tokens=tokens,
               domain_sequences=dict(zip(domains, dist.sum_counts(counts, device))),
               wall_time_s=proto.wall(), **extra)
    return EXIT_OK


def print_config(args):
    vocab = args.vocab_size
    if not vocab and args.data_dir:
        vocab = read_meta(args.data_dir)["vocab_size"]
    cfg = resolve_config(args, vocab or 50257)
    cfg["tokens_per_step"] = cfg["batch_size"] * cfg["seq_len"]
    cfg["flops_per_step"] = 6 * cfg["params"] * cfg["tokens_per_step"]
    print(json.dumps(cfg, sort_keys=True))
    return EXIT_OK


def main(argv=None):
    dist = Dist()
    proto = Protocol(enabled=dist.rank == 0)
    try:
        args = build_parser().parse_args(argv)
        if args.print_config:
            return print_config(args)
        code = train(args, proto, dist)
        dist.close()
        return code
    except TrainError as e:
        err = e
    except KeyboardInterrupt:
        err = TrainError("interrupted")
    except Exception as e:  # classified below; the traceback goes to stderr
        traceback.print_exc(file=sys.stderr)
        if torch is not None and is_oom(e):
            err = OutOfMemory(str(e).splitlines()[0] if str(e) else "out of memory")
        else:
            err = TrainError("%s: %s" % (type(e).__name__, e))
    log("%s: %s" % (err.cls, err))
    proto.emit("error", **{"class": err.cls}, message=str(err), exit_code=err.code, step=proto.step)
    return err.code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # os._exit skips torch's slow atexit handlers and any stuck non-daemon threads.
    os._exit(code)
