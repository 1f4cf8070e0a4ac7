#!/usr/bin/env python3
"""Turn text or JSONL per domain into the uint16 token shards scripts/train.py reads.

Layout written to --out-dir:
    meta.json                 {"version": 1, "tokenizer": "gpt2"|"byte", "vocab_size", "eot", "domains": {...}}
    <domain>/train.bin        uint16 little-endian token ids, documents joined by the EOT token
    <domain>/val.bin

Tokenizers: GPT-2 BPE through tiktoken when it is installed and its files are already in the
local cache (nothing is downloaded), else byte-level (ids 0-255, EOT 256). Output is a pure
function of the inputs and flags: documents go to val by a hash of their text, not by order or
chance.

--synthetic writes a small reproducible multi-domain corpus whose domains have distinct
statistics (prose, code, arithmetic, DNA-like, dialogue), so mixture weights change what a model
learns.
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys

import numpy as np

META_VERSION = 1
BYTE_VOCAB = 257
BYTE_EOT = 256
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GPT2_FILES = (
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
)


class PrepareError(Exception):
    pass


def log(msg):
    print("prepare_data.py: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Tokenizers


class ByteTokenizer:
    name = "byte"
    vocab_size = BYTE_VOCAB
    eot = BYTE_EOT

    def encode(self, text):
        return list(text.encode("utf-8"))


class GPT2Tokenizer:
    name = "gpt2"

    def __init__(self, enc):
        self.enc = enc
        self.vocab_size = enc.n_vocab
        self.eot = enc.eot_token

    def encode(self, text):
        return self.enc.encode_ordinary(text)


def tiktoken_cached():
    """True when tiktoken's GPT-2 files are in its cache, so loading them downloads nothing."""
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if not cache:
        import tempfile
        cache = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return all(os.path.exists(os.path.join(cache, hashlib.sha1(u.encode()).hexdigest())) for u in GPT2_FILES)


def get_tokenizer(kind):
    if kind == "byte":
        return ByteTokenizer()
    try:
        import tiktoken
    except ImportError:
        if kind == "gpt2":
            raise PrepareError("--tokenizer gpt2 needs the tiktoken package")
        log("tiktoken is not installed; using the byte-level tokenizer")
        return ByteTokenizer()
    if not tiktoken_cached():
        if kind == "gpt2":
            raise PrepareError("tiktoken's GPT-2 files are not cached and nothing is downloaded at run "
                               "time; set TIKTOKEN_CACHE_DIR to a directory holding them")
        log("tiktoken's GPT-2 files are not cached; using the byte-level tokenizer")
        return ByteTokenizer()
    return GPT2Tokenizer(tiktoken.get_encoding("gpt2"))


# ---------------------------------------------------------------------------------------------
# Inputs


def read_documents(path, text_field):
    """Yields documents from a .txt file (one document), a .jsonl file (one per line) or a directory."""
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            if name.endswith((".txt", ".jsonl")):
                yield from read_documents(os.path.join(path, name), text_field)
        return
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise PrepareError("%s:%d: not JSON: %s" % (path, n, e))
                text = rec.get(text_field) if isinstance(rec, dict) else None
                if not isinstance(text, str):
                    raise PrepareError("%s:%d: no string field %r" % (path, n, text_field))
                yield text
        return
    if path.endswith(".txt"):
        with open(path, encoding="utf-8") as f:
            yield f.read()
        return
    raise PrepareError("%s: expected a .txt or .jsonl file or a directory" % path)


def is_val(text, val_fraction):
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return (h % 1_000_000) < val_fraction * 1_000_000


def write_domain(out_dir, name, docs, tok, val_fraction):
    train, val = [], []
    ndocs = [0, 0]
    for text in docs:
        ids = tok.encode(text)
        ids.append(tok.eot)
        if is_val(text, val_fraction):
            val.extend(ids)
            ndocs[1] += 1
        else:
            train.extend(ids)
            ndocs[0] += 1
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for split, ids in (("train", train), ("val", val)):
        arr = np.asarray(ids, dtype=np.uint16)
        if arr.size and int(np.max(ids)) >= 65536:
            raise PrepareError("token id over uint16")
        tmp = os.path.join(d, split + ".bin.tmp")
        arr.astype("<u2").tofile(tmp)
        os.replace(tmp, os.path.join(d, split + ".bin"))
    log("%s: %d train tokens (%d docs), %d val tokens (%d docs)" % (name, len(train), ndocs[0], len(val), ndocs[1]))
    return {"train_tokens": len(train), "val_tokens": len(val), "train_docs": ndocs[0], "val_docs": ndocs[1]}


def write_meta(out_dir, tok, domains, extra=None):
    meta = {"version": META_VERSION, "tokenizer": tok.name, "vocab_size": tok.vocab_size,
            "eot": tok.eot, "domains": domains}
    meta.update(extra or {})
    tmp = os.path.join(out_dir, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "meta.json"))


# ---------------------------------------------------------------------------------------------
# Synthetic corpus

_WORDS = ("the of and a to in is was for on that with as by at from his her it an were are which "
          "this be had not or have one their also first new after who two has they been its but "
          "more other when time during over into years some only such city most where these between "
          "river music world school north south state war team house small great early later known "
          "family village church century country government season people language history").split()
_KEYWORDS = ["def", "return", "if", "else", "for", "in", "while", "import", "class", "print", "range", "len"]
_NAMES = ["alpha", "beta", "count", "data", "item", "key", "node", "total", "value", "x", "y", "z"]


def _prose(r):
    out = []
    for _ in range(r.randint(3, 8)):
        n = r.randint(6, 16)
        # Zipf-like word choice gives natural-language-like unigram statistics.
        words = [_WORDS[min(int(r.paretovariate(1.1)) - 1, len(_WORDS) - 1)] for _ in range(n)]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def _code(r):
    lines = []
    for _ in range(r.randint(1, 3)):
        fn = r.choice(_NAMES) + "_" + r.choice(_NAMES)
        a, b = r.sample(_NAMES, 2)
        lines.append("def %s(%s, %s):" % (fn, a, b))
        for _ in range(r.randint(1, 4)):
            kind = r.randrange(3)
            if kind == 0:
                lines.append("    %s = %s + %d" % (a, b, r.randint(0, 9)))
            elif kind == 1:
                lines.append("    for i in range(len(%s)):" % a)
                lines.append("        %s += i" % b)
            else:
                lines.append("    if %s > %s:" % (a, b))
                lines.append("        print(%s)" % a)
        lines.append("    return %s" % r.choice([a, b]))
        lines.append("")
    return "\n".join(lines)


def _math(r):
    lines = []
    for _ in range(r.randint(4, 12)):
        a, b = r.randint(0, 99), r.randint(0, 99)
        op = r.choice("+-*")
        val = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append("%d %s %d = %d" % (a, op, b, val))
    return "\n".join(lines)


def _dna(r):
    # A first-order Markov chain with strong preferences: low entropy once learned.
    trans = {"A": "AACGT", "C": "CCGAT", "G": "GGGAC", "T": "TTACG"}
    s, c = [], r.choice("ACGT")
    for _ in range(r.randint(80, 240)):
        s.append(c)
        c = r.choice(trans[c])
    return "".join(s)


def _chat(r):
    turns = []
    for i in range(r.randint(2, 5)):
        who = "User" if i % 2 == 0 else "Assistant"
        turns.append("%s: %s" % (who, _prose(r).split(".")[0].strip() + ("?" if who == "User" else ".")))
    return "\n".join(turns)


SYNTHETIC = {"prose": _prose, "code": _code, "math": _math, "dna": _dna, "chat": _chat}


def synthetic_documents(domain, seed, approx_chars):
    # Seeding with the domain name keeps each domain's text independent of the others chosen.
    r = random.Random("%s:%d" % (domain, seed))
    gen, total = SYNTHETIC[domain], 0
    while total < approx_chars:
        doc = gen(r)
        total += len(doc) + 1
        yield doc


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--domain", action="append", default=[], metavar="NAME=PATH",
                   help="a domain and its .txt/.jsonl file or directory; repeat per domain")
    p.add_argument("--text-field", default="text", help="JSONL field holding the document text")
    p.add_argument("--tokenizer", default="auto", choices=["auto", "gpt2", "byte"])
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--synthetic", action="store_true", help="generate the synthetic corpus instead of reading files")
    p.add_argument("--synthetic-domains", default="prose,code,math",
                   help="comma-separated from: " + ",".join(SYNTHETIC))
    p.add_argument("--synthetic-chars", type=int, default=200_000, help="approximate characters per domain")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if not 0 < args.val_fraction < 1:
            raise PrepareError("--val-fraction must be in (0, 1)")
        tok = get_tokenizer(args.tokenizer)
        os.makedirs(args.out_dir, exist_ok=True)
        stats, extra = {}, {}
        if args.synthetic:
            if args.domain:
                raise PrepareError("--synthetic and --domain are exclusive")
            names = [x.strip() for x in args.synthetic_domains.split(",") if x.strip()]
            for n in names:
                if n not in SYNTHETIC:
                    raise PrepareError("unknown synthetic domain %r (known: %s)" % (n, ", ".join(SYNTHETIC)))
            for n in names:
                stats[n] = write_domain(args.out_dir, n, synthetic_documents(n, args.seed, args.synthetic_chars),
                                        tok, args.val_fraction)
            extra = {"synthetic": {"seed": args.seed, "chars": args.synthetic_chars}}
        else:
            if not args.domain:
                raise PrepareError("give --domain NAME=PATH (repeatable) or --synthetic")
            for spec in args.domain:
                name, sep, path = spec.partition("=")
                if not sep or not NAME_RE.match(name):
                    raise PrepareError("--domain %r: want NAME=PATH with a plain name" % spec)
                if name in stats:
                    raise PrepareError("domain %s given twice" % name)
                if not os.path.exists(path):
                    raise PrepareError("--domain %s: %s does not exist" % (name, path))
                stats[name] = write_domain(args.out_dir, name, read_documents(path, args.text_field), tok,
                                           args.val_fraction)
        write_meta(args.out_dir, tok, stats, extra)
    except (PrepareError, OSError) as e:
        log("error: %s" % e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
