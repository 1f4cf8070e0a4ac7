#!/usr/bin/env python3
"""Pre-train a decoder-only LM on a mixture of token-shard domains and report over JSON lines.

stdout carries only the versioned protocol (docs/train-protocol.md); everything else goes to
stderr. Arguments and data are checked before torch is imported, so bad input fails in well
under a second with an `error` event and a distinct exit code.

Runs on torch 1.13 (CPU) and torch 2.x (CUDA); optional features (SDPA, torch.compile, fused
AdamW, bf16) are feature-detected. Under torchrun it trains with DDP; only rank 0 writes the
protocol.
"""

import argparse
import json
import math
import os
import re
import signal
import sys
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
    p.add_argument("--eval-batches", type=int, default=4, help="fixed validation micro-batches per domain")
    p.add_argument("--log-every", type=int, default=10, help="point-event interval in steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", "--out-dir", dest="checkpoint_dir",
                   help="where checkpoints go; an existing checkpoint there is resumed")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="checkpoint interval in steps (0: only at the end and on stop)")
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
                   help="torch.compile (auto: on CUDA when available)")
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "math"],
                   help="SDPA/flash when available, else explicit softmax attention")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--max-memory-check", action="store_true",
                   help="report peak device memory in the done event (CUDA)")
    # Fault injection for tests of the supervisor's classification; never set in production.
    p.add_argument("--fault", default="", choices=["", "nan", "oom", "crash", "hang"],
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
    if vocab_size <= 0 or vocab_size > 65536:
        raise BadInput("vocabulary size %d does not fit uint16 token shards" % vocab_size)
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
    if args.eval_every <= 0 or args.log_every <= 0 or args.eval_batches <= 0:
        raise BadInput("--eval-every, --log-every and --eval-batches must be positive")
    if args.schedule_steps < 0 or args.checkpoint_every < 0:
        raise BadInput("--schedule-steps and --checkpoint-every must not be negative")
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
    return meta


def open_shards(data_dir, domains, split, min_tokens, vocab_size):
    """Memory-maps <data_dir>/<domain>/<split>.bin for each domain, checking size and ids."""
    shards = []
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
        if size % 2:
            raise BadData("shard %s has an odd byte count; uint16 shards must be even" % path)
        n = size // 2
        if n < min_tokens:
            raise BadData("shard %s has %d tokens; needs at least %d (seq_len+1)" % (path, n, min_tokens))
        arr = np.memmap(path, dtype=np.uint16, mode="r")
        # A full scan of a multi-GB shard is slow; a prefix catches wrong-tokenizer shards.
        head = arr[: min(n, 1 << 20)]
        if head.size and int(head.max()) >= vocab_size:
            raise BadData("shard %s has token id %d >= vocabulary %d" % (path, int(head.max()), vocab_size))
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
    for i, d in enumerate(doms):
        span = len(shards[d]) - seq_len - 1
        start = int(u[i] * (span + 1))
        rows[i] = shards[d][start:start + seq_len + 1]
    return rows, doms


def eval_rows(shard, seq_len, count):
    """Fixed, evenly spaced validation windows: the same for every run on this data."""
    span = len(shard) - seq_len - 1
    starts = np.linspace(0, span, num=count).astype(np.int64)
    return np.stack([np.asarray(shard[s:s + seq_len + 1], dtype=np.int64) for s in starts])


def lr_at(step, peak, min_ratio, warmup, horizon):
    """Linear warmup then cosine to min_ratio*peak at horizon; flat after it (extensions)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= horizon:
        return peak * min_ratio
    frac = (step - warmup) / max(1, horizon - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


# ---------------------------------------------------------------------------------------------
# Model (torch is imported lazily so input errors are reported fast)

torch = None
nn = None
F = None


def import_torch():
    global torch, nn, F
    if torch is None:
        import torch as _torch
        import torch.nn as _nn
        import torch.nn.functional as _F
        torch, nn, F = _torch, _nn, _F
    return torch


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def build_model(cfg, attention="auto"):
    import_torch()
    use_sdpa = has_sdpa() if attention == "auto" else attention == "sdpa"
    if use_sdpa and not has_sdpa():
        raise BadInput("--attention sdpa needs torch>=2.0 (this is %s)" % torch.__version__)

    class RMSNorm(nn.Module):
        def __init__(self, d, eps=1e-5):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
            return (xf * self.weight.float()).type_as(x)

    def rope_tables(seq_len, head_dim, base=10000.0):
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        t = torch.arange(seq_len).float()
        freqs = torch.outer(t, inv)
        return freqs.cos(), freqs.sin()

    def apply_rope(x, cos, sin):
        # x: (B, H, T, D); rotate pairs (even, odd halves).
        x1, x2 = x[..., ::2], x[..., 1::2]
        cos = cos[: x.shape[2]].to(x.dtype)
        sin = sin[: x.shape[2]].to(x.dtype)
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, self.h = cfg["d_model"], cfg["n_heads"]
            self.norm1 = RMSNorm(d)
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.proj = nn.Linear(d, d, bias=False)
            self.norm2 = RMSNorm(d)
            self.gate_up = nn.Linear(d, 2 * cfg["mlp_hidden"], bias=False)
            self.down = nn.Linear(cfg["mlp_hidden"], d, bias=False)

        def forward(self, x, cos, sin, mask):
            B, T, D = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(D, dim=-1)
            q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if use_sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
                att = att.masked_fill(mask, float("-inf"))
                y = torch.softmax(att.float(), dim=-1).type_as(v) @ v
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
            g, u = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(g) * u)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg["d_model"]
            self.embed = nn.Embedding(cfg["padded_vocab"], d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg["n_layers"]))
            self.norm = RMSNorm(d)
            cos, sin = rope_tables(cfg["seq_len"], d // cfg["n_heads"])
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
            std = 0.02
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    # Residual output projections scaled down with depth (GPT-2 init).
                    s = std / math.sqrt(2 * cfg["n_layers"]) if name.endswith(("proj.weight", "down.weight")) else std
                    nn.init.normal_(p, mean=0.0, std=s)

        def forward(self, idx, targets):
            x = self.embed(idx)
            T = idx.shape[1]
            # Built per call, not a buffer: DDP syncs buffers and gloo cannot send bool tensors.
            mask = None if use_sdpa else torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(1)
            for b in self.blocks:
                x = b(x, self.cos, self.sin, mask)
            logits = F.linear(self.norm(x), self.embed.weight)  # tied output embedding
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    return LM(), ("sdpa" if use_sdpa else "math")


# ---------------------------------------------------------------------------------------------
# Training


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

    def any(self, flag, device):
        """True on every rank when any rank's flag is set (stop requests, non-finite loss)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)

    def sum_counts(self, counts, device):
        """Per-domain sequence counts summed over ranks (each rank counts what it drew)."""
        if not self.enabled:
            return list(counts)
        t = torch.tensor(counts, dtype=torch.float64, device=device)
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
    import contextlib
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def make_optimizer(model, cfg, args, device_type):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-8)
    import inspect
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kw["fused"] = True
    return torch.optim.AdamW(groups, **kw)


def save_checkpoint(path, raw_model, opt, state):
    tmp = path + ".tmp"
    torch.save({"model": raw_model.state_dict(), "optim": opt.state_dict(), **state}, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint


def compatible(ckpt, cfg, domains, weights, seed):
    """Refuses to resume a checkpoint of a different run; extension only changes --steps."""
    want = dict(preset=cfg["preset"], padded_vocab=cfg["padded_vocab"], seq_len=cfg["seq_len"],
                batch_size=cfg["batch_size"], domains=domains, seed=seed)
    for k, v in want.items():
        if ckpt["config"].get(k) != v:
            raise BadInput("checkpoint was written with %s=%r, this run has %r; use another "
                           "--checkpoint-dir or --no-resume" % (k, ckpt["config"].get(k), v))
    old = ckpt["config"].get("mixture")
    if old is None or max(abs(a - b) for a, b in zip(old, weights)) > 1e-9:
        raise BadInput("checkpoint was written with mixture %r, this run has %r" % (old, weights))


def train(args, proto, dist):
    domains, weights = parse_mixture(args)
    check_run_args(args)
    meta = read_meta(args.data_dir)
    vocab = args.vocab_size or meta["vocab_size"]
    if vocab < meta["vocab_size"]:
        raise BadInput("--vocab-size %d is below the data's %d" % (vocab, meta["vocab_size"]))
    cfg = resolve_config(args, vocab)
    train_shards = open_shards(args.data_dir, domains, "train", cfg["seq_len"] + 1, vocab)
    val_shards = open_shards(args.data_dir, domains, "val", cfg["seq_len"] + 1, vocab)
    if cfg["batch_size"] % (cfg["micro_batch"] * dist.world):
        raise BadInput("--batch-size %d is not a multiple of micro-batch %d x world size %d"
                       % (cfg["batch_size"], cfg["micro_batch"], dist.world))
    grad_accum = cfg["batch_size"] // (cfg["micro_batch"] * dist.world)
    horizon = args.schedule_steps or args.steps
    warmup = args.warmup_steps if args.warmup_steps >= 0 else min(1000, max(1, horizon // 20))
    ckpt_path = os.path.join(args.checkpoint_dir, CHECKPOINT_NAME) if args.checkpoint_dir else None

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

    step, tokens, counts = 0, 0, [0] * len(domains)
    if ckpt_path and os.path.exists(ckpt_path) and not args.no_resume:
        # A checkpoint is tensors and plain values, so torch 2.x loads it weights-only (no code
        # unpickled); torch 1.13's weights-only unpickler cannot read floats, so it gets a full
        # load of the file this script wrote into its own checkpoint directory.
        weights_only = int(torch.__version__.split(".")[0]) >= 2
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=weights_only)
        compatible(ckpt, cfg, domains, weights, args.seed)
        raw.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        step, tokens = ckpt["step"], ckpt["tokens"]
        # The checkpoint holds counts summed over ranks: rank 0 carries them on.
        if dist.rank == 0:
            counts = list(ckpt["domain_sequences"])
        proto.wall_offset = ckpt.get("wall_time_s", 0.0)
        if ckpt["config"].get("schedule_steps") != horizon:
            log("warning: schedule horizon changes from %s to %d on resume; the curve bends here"
                % (ckpt["config"].get("schedule_steps"), horizon))
        log("resumed from %s at step %d" % (ckpt_path, step))
        if step > args.steps:
            raise BadInput("checkpoint is at step %d, beyond --steps %d" % (step, args.steps))
    resumed_from = step
    proto.step = step

    compile_on = args.compile == "on" or (args.compile == "auto" and device_type == "cuda"
                                           and hasattr(torch, "compile"))
    if compile_on and not hasattr(torch, "compile"):
        raise BadInput("--compile on needs torch>=2.0 (this is %s)" % torch.__version__)
    model = torch.compile(raw) if compile_on else raw
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # The only buffers are the constant RoPE tables: nothing to broadcast each step.
        model = DDP(model, device_ids=[dist.local_rank] if device_type == "cuda" else None,
                    broadcast_buffers=False)

    tokens_per_step = cfg["batch_size"] * cfg["seq_len"]
    run_cfg = dict(cfg, steps=args.steps, schedule_steps=horizon, warmup_steps=warmup,
                   grad_accum=grad_accum, world_size=dist.world, tokens_per_step=tokens_per_step,
                   flops_per_step=6 * cfg["params"] * tokens_per_step, domains=domains,
                   mixture=weights, seed=args.seed, device=device,
                   dtype="bf16" if dtype is not None else "fp32", compile=compile_on,
                   attention=attn, torch=torch.__version__, eval_every=args.eval_every)
    proto.emit("start", step=step, resumed_from_step=resumed_from, config=run_cfg)
    log("preset %s: %d parameters, %d tokens/step, device %s, %s, attention %s"
        % (cfg["preset"], cfg["params"], tokens_per_step, device, run_cfg["dtype"], attn))

    stop = {"requested": False}

    def on_term(signum, frame):
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)

    val_batches = [torch.from_numpy(eval_rows(s, cfg["seq_len"], args.eval_batches * cfg["micro_batch"]))
                   for s in val_shards]

    def evaluate():
        raw.eval()
        out = {}
        with torch.no_grad():
            for name, rows in zip(domains, val_batches):
                total = 0.0
                for i in range(0, rows.shape[0], cfg["micro_batch"]):
                    b = rows[i:i + cfg["micro_batch"]].to(device)
                    with autocast(device_type, dtype):
                        total += raw(b[:, :-1], b[:, 1:]).item() * b.shape[0]
                out[name + "_ce"] = total / rows.shape[0]
        out["mean_ce"] = sum(out[d + "_ce"] for d in domains) / len(domains)
        raw.train()
        return out

    def checkpoint():
        if not ckpt_path:
            return
        total = dist.sum_counts(counts, device)
        if dist.rank == 0:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
            save_checkpoint(ckpt_path, raw, opt, dict(
                step=step, tokens=tokens, domain_sequences=total, wall_time_s=proto.wall(),
                config=dict(run_cfg)))
            proto.emit("checkpoint", step=step, tokens=tokens, path=ckpt_path, wall_time_s=proto.wall())
        dist.barrier()

    def do_eval(train_loss):
        if dist.rank == 0:
            m = evaluate()
            proto.emit("eval", step=step, tokens=tokens, train_loss=train_loss, metrics=m,
                       wall_time_s=proto.wall())
        dist.barrier()

    if step == 0:
        do_eval(None)
    interval_losses = []
    last_eval = step
    t_log, tok_log = time.time(), tokens
    while step < args.steps:
        if args.fault == "crash" and step + 1 == args.fault_step:
            raise RuntimeError("injected crash")
        if args.fault == "oom" and step + 1 == args.fault_step:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")
        if args.fault == "hang" and step + 1 == args.fault_step:
            time.sleep(3600)
        lr = lr_at(step, cfg["lr"], args.min_lr_ratio, warmup, horizon)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for micro in range(grad_accum):
            rows, doms = sample_batch(train_shards, weights, cfg["seq_len"], args.seed, step,
                                      dist.rank, micro, cfg["micro_batch"])
            for d in doms:
                counts[d] += 1
            b = torch.from_numpy(rows).to(device, non_blocking=True)
            sync = (not dist.enabled) or micro == grad_accum - 1
            ctx = model.no_sync() if not sync else _null()
            with ctx:
                with autocast(device_type, dtype):
                    loss = model(b[:, :-1], b[:, 1:])
                (loss / grad_accum).backward()
            loss_sum += loss.item()
        train_loss = loss_sum / grad_accum
        if args.fault == "nan" and step + 1 >= args.fault_step:
            train_loss = float("nan")
        if dist.any(not math.isfinite(train_loss), device):
            raise Diverged("training loss is %s at step %d" % (train_loss, step + 1))
        gnorm = torch.nn.utils.clip_grad_norm_(raw.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += tokens_per_step
        proto.step = step
        interval_losses.append(train_loss)
        if step % args.log_every == 0 or step == args.steps:
            now = time.time()
            tps = (tokens - tok_log) / max(now - t_log, 1e-9)
            t_log, tok_log = now, tokens
            proto.emit("point", step=step, tokens=tokens, train_loss=train_loss, lr=lr,
                       grad_norm=float(gnorm), tokens_per_s=round(tps, 1), wall_time_s=proto.wall())
        stopping = dist.any(stop["requested"], device)
        if step % args.eval_every == 0 or step == args.steps or stopping:
            do_eval(sum(interval_losses) / len(interval_losses))
            interval_losses, last_eval = [], step
        if (args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps) or stopping:
            checkpoint()
        if stopping:
            log("stopped on SIGTERM at step %d" % step)
            proto.emit("done", status="stopped", step=step, tokens=tokens,
                       domain_sequences=dict(zip(domains, dist.sum_counts(counts, device))), wall_time_s=proto.wall())
            return EXIT_STOPPED
    if last_eval != step or step == resumed_from and step > 0:
        do_eval(None)
    checkpoint()
    extra = {}
    if args.max_memory_check and device_type == "cuda":
        extra["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    proto.emit("done", status="completed", step=step, tokens=tokens,
               domain_sequences=dict(zip(domains, dist.sum_counts(counts, device))), wall_time_s=proto.wall(), **extra)
    return EXIT_OK


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


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
