#!/usr/bin/env python3
"""Turn a folder of text or JSON lines per domain into the token shards scripts/train.py reads.

Layout written to --out-dir:
    meta.json                 {"version": 2, "tokenizer", "vocab_size", "eot", "dtype", "domains": {...}}
    <domain>/train.bin        token ids (uint16 little-endian, uint32 when the vocabulary needs it),
    <domain>/val.bin          documents joined by the end-of-text token

Inputs, found recursively in a domain's folder (or one file): .jsonl / .json (one JSON object a
line, the text in --text-field), .txt (one document a file), each also compressed as .gz or .zst.
Undecodable bytes become U+FFFD and are counted; lines that are not JSON objects with a string
text field are skipped and counted. Preparation streams: memory stays bounded whatever the corpus
size, shards grow as chunks are tokenized by --workers processes, and the output is the same for
any number of workers.

Tokenizers are explicit: gpt2 (tiktoken, its files already cached: nothing is downloaded), a
Hugging Face tokenizer.json (the tokenizers package), or byte (ids 0-255, EOT 256). A document
goes to val by a hash of its text, not by order or chance. A domain with no documents, or whose
validation split is too small to evaluate, is refused with its name.

--synthetic writes a small reproducible multi-domain corpus whose domains have distinct
statistics (prose, code, arithmetic, DNA-like, dialogue), so mixture weights change what a model
learns.
"""

import argparse
import codecs
import collections
import gzip
import hashlib
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import sys
import time

import numpy as np

META_VERSION = 2
BYTE_VOCAB = 257
BYTE_EOT = 256
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GPT2_FILES = (
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
)
# End-of-text tokens looked up in a tokenizer.json when --eot-token is not given.
EOT_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>", "[SEP]")
JSON_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)
COMPRESSIONS = ("", ".gz", ".zst")
# One window of the GPU presets' 1024-token sequences and its last target: the least train.py
# can score. train.py scores up to --eval-tokens (131072) a domain; fewer is noisier.
DEFAULT_MIN_VAL_TOKENS = 1025
TRAIN_EVAL_TOKENS = 128 * 1024
UTF8_REPLACEMENT = b"\xef\xbf\xbd"


class PrepareError(Exception):
    pass


def log(msg):
    print("prepare_data.py: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Tokenizers: encode_batch(texts) -> list of id sequences; vocab_size covers every id.


class ByteTokenizer:
    name = "byte"
    vocab_size = BYTE_VOCAB
    eot = BYTE_EOT

    def encode_batch(self, texts):
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]


class TiktokenGPT2:
    name = "gpt2"

    def __init__(self):
        try:
            import tiktoken
        except ImportError:
            raise PrepareError("--tokenizer gpt2 needs the tiktoken package (not installed for %s)"
                               % sys.executable)
        if not tiktoken_cached():
            raise PrepareError("--tokenizer gpt2: tiktoken's GPT-2 files are not in its cache and nothing "
                               "is downloaded here; set TIKTOKEN_CACHE_DIR to a directory holding them")
        self.enc = tiktoken.get_encoding("gpt2")
        self.vocab_size = self.enc.n_vocab
        self.eot = self.enc.eot_token

    def encode_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts, num_threads=1)


class HFTokenizer:
    def __init__(self, path, eot_token):
        try:
            import tokenizers
        except ImportError:
            raise PrepareError("--tokenizer %s needs the tokenizers package (not installed for %s)"
                               % (path, sys.executable))
        try:
            self.tok = tokenizers.Tokenizer.from_file(path)
        except Exception as e:
            raise PrepareError("--tokenizer %s: not a Hugging Face tokenizer.json: %s" % (path, e))
        self.name = "hf:" + os.path.basename(path)
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        names = [eot_token] if eot_token else EOT_CANDIDATES
        ids = [(n, self.tok.token_to_id(n)) for n in names]
        found = [(n, i) for n, i in ids if i is not None]
        if not found:
            raise PrepareError("--tokenizer %s has no end-of-text token %s; name it with --eot-token"
                               % (path, " or ".join(names)))
        self.eot_name, self.eot = found[0]

    def encode_batch(self, texts):
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]


def tiktoken_cached():
    """True when tiktoken's GPT-2 files are in its cache, so loading them downloads nothing."""
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if not cache:
        import tempfile
        cache = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return all(os.path.exists(os.path.join(cache, hashlib.sha1(u.encode()).hexdigest())) for u in GPT2_FILES)


def make_tokenizer(spec, eot_token=""):
    if spec == "byte":
        return ByteTokenizer()
    if spec == "gpt2":
        return TiktokenGPT2()
    if spec.endswith(".json") or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise PrepareError("--tokenizer %s: no such file" % spec)
        return HFTokenizer(spec, eot_token)
    raise PrepareError("--tokenizer %r: want gpt2, byte, or the path of a Hugging Face tokenizer.json" % spec)


def shard_dtype(vocab_size):
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


# ---------------------------------------------------------------------------------------------
# Workers: each tokenizes whole chunks; the tokenizer is built once per process.

_worker_tok = None  # this process's tokenizer, set by init_worker (multiprocessing's pattern)


def init_worker(spec, eot_token):
    global _worker_tok
    _worker_tok = make_tokenizer(spec, eot_token)


def decode(raw):
    """(text, undecodable byte sequences replaced by U+FFFD)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        # U+FFFD already in the input is not a replacement.
        return text, text.count("\ufffd") - raw.count(UTF8_REPLACEMENT)


def clean(text):
    """text safe to encode: lone surrogates (from JSON escapes) replaced; (text, replaced)."""
    try:
        text.encode("utf-8")
        return text, 0
    except UnicodeEncodeError:
        fixed = text.encode("utf-8", "replace").decode("utf-8")
        return fixed, fixed.count("?") - text.count("?")


def peak_rss_mib():
    """This process's peak resident set in MiB. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss across exec, so it would count the parent that started this script."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def is_val(text, val_fraction):
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return (h % 1_000_000) < val_fraction * 1_000_000


Chunk = collections.namedtuple("Chunk", "kind data path line split last")
# kind "jsonl": data is bytes of whole lines, line the first one's number; "text": a piece of one
# .txt document, split decided by its first piece, last marks the piece the EOT follows;
# "docs": a list of str (the synthetic corpus).


def process_chunk(chunk, text_field, val_fraction):
    tok = _worker_tok
    stats = collections.Counter()
    examples = []
    docs, splits = [], []
    if chunk.kind == "jsonl":
        for n, line in enumerate(chunk.data.split(b"\n"), chunk.line):
            if not line.strip():
                continue
            text, bad = decode(line)
            stats["invalid_utf8"] += bad
            try:
                rec = json.loads(text)
            except ValueError as e:
                stats["skipped_not_json"] += 1
                if len(examples) < 3:
                    examples.append("%s:%d: not JSON: %s" % (chunk.path, n, e))
                continue
            doc = rec.get(text_field) if isinstance(rec, dict) else None
            if not isinstance(doc, str):
                stats["skipped_no_text"] += 1
                if len(examples) < 3:
                    examples.append("%s:%d: no string field %r" % (chunk.path, n, text_field))
                continue
            doc, bad = clean(doc)
            stats["invalid_utf8"] += bad
            docs.append(doc)
            splits.append(is_val(doc, val_fraction))
    elif chunk.kind == "text":
        doc, bad = decode(chunk.data)
        stats["invalid_utf8"] += bad
        docs, splits = [doc], [chunk.split]
    else:
        docs = chunk.data
        splits = [is_val(d, val_fraction) for d in docs]
    out = {False: [], True: []}
    eot = np.array([tok.eot], dtype=np.uint32)
    for ids, val in zip(tok.encode_batch(docs), splits):
        out[val].append(np.asarray(ids, dtype=np.uint32))
        if chunk.kind != "text" or chunk.last:
            out[val].append(eot)
            stats["val_docs" if val else "train_docs"] += 1
    result = {}
    for val, name in ((False, "train"), (True, "val")):
        arr = np.concatenate(out[val]) if out[val] else np.zeros(0, dtype=np.uint32)
        if arr.size and int(arr.max()) >= tok.vocab_size:
            raise PrepareError("%s: tokenizer %s produced id %d >= its vocabulary %d"
                               % (chunk.path, tok.name, int(arr.max()), tok.vocab_size))
        # In the shard's width already: half the bytes to send back for most vocabularies.
        result[name] = arr.astype(np.dtype(shard_dtype(tok.vocab_size)).newbyteorder("<"))
    return result["train"], result["val"], stats, examples, peak_rss_mib()


# ---------------------------------------------------------------------------------------------
# Inputs


def input_kind(name):
    """"jsonl", "text", or None for a file name prepare_data does not read."""
    for comp in COMPRESSIONS:
        for suf in JSON_SUFFIXES:
            if name.endswith(suf + comp):
                return "jsonl"
        for suf in TEXT_SUFFIXES:
            if name.endswith(suf + comp):
                return "text"
    return None


def find_inputs(path):
    """(readable files in name order, recursing into folders; names of files skipped)."""
    if os.path.isfile(path):
        if input_kind(path) is None:
            raise PrepareError("%s: expected .jsonl, .json or .txt, optionally .gz or .zst" % path)
        return [path], []
    files, skipped = [], []
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(root, n)
            (files if input_kind(n) else skipped).append(p)
    return files, skipped


def open_binary(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise PrepareError("%s: reading .zst needs the zstandard package (Debian: python3-zstandard)" % path)
        f = open(path, "rb")
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
    return open(path, "rb")


def file_chunks(path, chunk_bytes, val_fraction):
    """Chunks of one input file, read with bounded memory."""
    kind = input_kind(os.path.basename(path))
    try:
        with open_binary(path) as f:
            if kind == "jsonl":
                rest, line = b"", 1
                while True:
                    block = f.read(chunk_bytes)
                    if not block:
                        break
                    data = rest + block
                    cut = data.rfind(b"\n")
                    if cut < 0 and len(data) < 16 * chunk_bytes:
                        rest = data  # a line longer than a chunk: keep reading (bounded)
                        continue
                    if cut < 0:
                        cut = len(data) - 1
                    whole, rest = data[:cut + 1], data[cut + 1:]
                    yield Chunk("jsonl", whole, path, line, None, False)
                    line += whole.count(b"\n")
                if rest:
                    yield Chunk("jsonl", rest, path, line, None, False)
            else:
                # One document, possibly huge: pieces end at a newline where there is one, and
                # the whole document follows its first piece into train or val.
                split, carry = None, b""
                while True:
                    block = f.read(chunk_bytes)
                    data = carry + block
                    if not block:
                        if split is not None:  # an empty file is no document
                            yield Chunk("text", data, path, 0, split, True)
                        elif data:
                            yield Chunk("text", data, path, 0, is_val(decode(data)[0], val_fraction), True)
                        break
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        cut = len(data) - 1
                    piece, carry = data[:cut + 1], data[cut + 1:]
                    if split is None:
                        split = is_val(decode(piece)[0], val_fraction)
                    yield Chunk("text", piece, path, 0, split, False)
    except (OSError, EOFError) as e:
        raise PrepareError("%s: cannot read: %s" % (path, e))
    except Exception as e:
        if type(e).__module__.startswith("zstd"):
            raise PrepareError("%s: cannot decompress: %s" % (path, e))
        raise


def doc_chunks(docs, chunk_bytes):
    batch, size = [], 0
    for d in docs:
        batch.append(d)
        size += len(d)
        if size >= chunk_bytes:
            yield Chunk("docs", batch, "synthetic", 0, None, False)
            batch, size = [], 0
    if batch:
        yield Chunk("docs", batch, "synthetic", 0, None, False)


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
# Writing


class Pipeline:
    """Tokenizes chunks in order on a process pool (or in this process), with a bounded number in
    flight, so memory does not grow with the corpus and output does not depend on --workers."""

    def __init__(self, args):
        self.args = args
        self.workers = max(1, args.workers)
        self.pool = None
        if self.workers > 1:
            self.pool = multiprocessing.get_context("fork").Pool(
                self.workers, initializer=init_worker, initargs=(args.tokenizer, args.eot_token))
        else:
            init_worker(args.tokenizer, args.eot_token)

    def run(self, chunks, sink):
        fn_args = (self.args.text_field, self.args.val_fraction)
        if self.pool is None:
            for c in chunks:
                sink(c, process_chunk(c, *fn_args))
            return
        pending = collections.deque()
        for c in chunks:
            pending.append((c, self.pool.apply_async(process_chunk, (c,) + fn_args)))
            if len(pending) >= 2 * self.workers:
                c0, r = pending.popleft()
                sink(c0, r.get())
        while pending:
            c0, r = pending.popleft()
            sink(c0, r.get())

    def close(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.join()

    def terminate(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


class DomainWriter:
    """Appends a domain's tokens to <domain>/{train,val}.bin.tmp; commit renames them."""

    def __init__(self, out_dir, name, dtype):
        self.dir = os.path.join(out_dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.files = {s: open(os.path.join(self.dir, s + ".bin.tmp"), "wb") for s in ("train", "val")}
        self.tokens = {"train": 0, "val": 0}
        self.stats = collections.Counter()
        self.examples = []
        self.input_bytes = 0
        self.worker_rss_mib = 0.0  # the largest peak of the processes that tokenized chunks

    def add(self, chunk, result):
        train, val, stats, examples, rss = result
        self.worker_rss_mib = max(self.worker_rss_mib, rss)
        for split, arr in (("train", train), ("val", val)):
            if arr.size:
                arr.astype(self.dtype).tofile(self.files[split])
                self.tokens[split] += int(arr.size)
        self.stats.update(stats)
        self.examples.extend(examples[: 3 - len(self.examples)])
        self.input_bytes += len(chunk.data) if chunk.kind != "docs" else sum(len(d) for d in chunk.data)

    def close(self):
        for f in self.files.values():
            f.close()

    def commit(self):
        for s in self.files:
            os.replace(os.path.join(self.dir, s + ".bin.tmp"), os.path.join(self.dir, s + ".bin"))

    def discard(self):
        self.close()
        for s in self.files:
            try:
                os.remove(os.path.join(self.dir, s + ".bin.tmp"))
            except FileNotFoundError:
                pass

    def summary(self):
        return {"train_tokens": self.tokens["train"], "val_tokens": self.tokens["val"],
                "train_docs": self.stats["train_docs"], "val_docs": self.stats["val_docs"],
                "invalid_utf8": self.stats["invalid_utf8"],
                "skipped_lines": self.stats["skipped_not_json"] + self.stats["skipped_no_text"],
                "input_bytes": self.input_bytes}


def check_domain(name, source, w, args, nfiles):
    """Refuses a domain train.py could not use or score, naming it."""
    s = w.summary()
    if s["train_docs"] + s["val_docs"] == 0:
        why = "%d input files" % nfiles
        if w.stats["skipped_no_text"]:
            why += ", %d lines without a string field %r" % (w.stats["skipped_no_text"], args.text_field)
        if w.stats["skipped_not_json"]:
            why += ", %d lines that are not JSON" % w.stats["skipped_not_json"]
        raise PrepareError("domain %s: no documents in %s (%s)" % (name, source, why))
    if s["val_tokens"] < args.min_val_tokens:
        raise PrepareError("domain %s: validation split has %d tokens (%d documents), fewer than "
                           "--min-val-tokens %d needed to evaluate; raise --val-fraction (now %g) or add documents"
                           % (name, s["val_tokens"], s["val_docs"], args.min_val_tokens, args.val_fraction))
    if s["val_tokens"] < TRAIN_EVAL_TOKENS:
        log("warning: domain %s has %d validation tokens, fewer than train.py's default --eval-tokens "
            "%d: every scale is still scored on the same tokens, with a noisier estimate"
            % (name, s["val_tokens"], TRAIN_EVAL_TOKENS))
    if s["train_tokens"] < args.min_val_tokens:
        raise PrepareError("domain %s: training split has only %d tokens" % (name, s["train_tokens"]))


def write_meta(out_dir, tok, domains, extra=None):
    meta = {"version": META_VERSION, "tokenizer": tok.name, "vocab_size": tok.vocab_size,
            "eot": tok.eot, "dtype": shard_dtype(tok.vocab_size), "domains": domains}
    meta.update(extra or {})
    tmp = os.path.join(out_dir, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "meta.json"))


def print_table(domains, out=sys.stdout):
    cols = ("train_tokens", "val_tokens", "train_docs", "val_docs", "invalid_utf8", "skipped_lines")
    width = max([6] + [len(n) for n in domains])
    out.write("%-*s %s\n" % (width, "domain", " ".join("%14s" % c for c in cols)))
    for n, s in domains.items():
        out.write("%-*s %s\n" % (width, n, " ".join("%14d" % s[c] for c in cols)))
    total = {c: sum(s[c] for s in domains.values()) for c in cols}
    out.write("%-*s %s\n" % (width, "total", " ".join("%14d" % total[c] for c in cols)))
    out.flush()




def parse_domains(specs):
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not NAME_RE.match(name):
            raise PrepareError("--domain %r: want NAME=PATH with a plain name" % spec)
        if name in [n for n, _ in out]:
            raise PrepareError("domain %s given twice" % name)
        if not os.path.exists(path):
            raise PrepareError("--domain %s: %s does not exist" % (name, path))
        out.append((name, path))
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--domain", action="append", default=[], metavar="NAME=PATH",
                   help="a domain and its file or folder (searched recursively); repeat per domain")
    p.add_argument("--text-field", default="text", help="JSON field holding the document text")
    p.add_argument("--tokenizer", required=True,
                   help="gpt2 (tiktoken), byte, or the path of a Hugging Face tokenizer.json")
    p.add_argument("--eot-token", default="",
                   help="end-of-text token of a tokenizer.json (default: the first of %s it has)"
                        % ", ".join(EOT_CANDIDATES))
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--min-val-tokens", type=int, default=DEFAULT_MIN_VAL_TOKENS,
                   help="refuse a domain whose validation split is smaller")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="tokenizer processes (default: one per core)")
    p.add_argument("--chunk-mib", type=float, default=4.0,
                   help="MiB of input per work item; memory is about 2 x workers x this x 10")
    p.add_argument("--report", default="", help="also write timing and peak memory as JSON here")
    p.add_argument("--synthetic", action="store_true", help="generate the synthetic corpus instead of reading files")
    p.add_argument("--synthetic-domains", default="prose,code,math",
                   help="comma-separated from: " + ",".join(SYNTHETIC))
    p.add_argument("--synthetic-chars", type=int, default=200_000, help="approximate characters per domain")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    pipeline, writer, t0 = None, None, time.time()
    try:
        if not 0 < args.val_fraction < 1:
            raise PrepareError("--val-fraction must be in (0, 1)")
        if args.min_val_tokens < 1 or args.workers < 1 or not args.chunk_mib > 0:
            raise PrepareError("--min-val-tokens, --workers and --chunk-mib must be positive")
        tok = make_tokenizer(args.tokenizer, args.eot_token)  # fails here, before any work
        chunk_bytes = max(1 << 12, int(args.chunk_mib * (1 << 20)))
        if args.synthetic:
            if args.domain:
                raise PrepareError("--synthetic and --domain are exclusive")
            names = [x.strip() for x in args.synthetic_domains.split(",") if x.strip()]
            for n in names:
                if n not in SYNTHETIC:
                    raise PrepareError("unknown synthetic domain %r (known: %s)" % (n, ", ".join(SYNTHETIC)))
            sources = [(n, "synthetic", lambda n=n: doc_chunks(
                synthetic_documents(n, args.seed, args.synthetic_chars), chunk_bytes), 0) for n in names]
            extra = {"synthetic": {"seed": args.seed, "chars": args.synthetic_chars}}
        else:
            if not args.domain:
                raise PrepareError("give --domain NAME=PATH (repeatable) or --synthetic")
            sources = []
            for name, path in parse_domains(args.domain):
                files, skipped = find_inputs(path)
                if skipped:
                    log("domain %s: skipping %d files that are not .jsonl/.json/.txt(.gz/.zst), e.g. %s"
                        % (name, len(skipped), skipped[0]))
                if not files:
                    raise PrepareError("domain %s: no .jsonl, .json or .txt files (optionally .gz or .zst) "
                                       "under %s" % (name, path))
                sources.append((name, path, lambda files=files: (
                    c for f in files for c in file_chunks(f, chunk_bytes, args.val_fraction)), len(files)))
            extra = {"text_field": args.text_field}
        os.makedirs(args.out_dir, exist_ok=True)
        pipeline = Pipeline(args)
        stats, writers, worker_rss = {}, [], 0.0
        for name, source, chunks, nfiles in sources:
            writer = DomainWriter(args.out_dir, name, shard_dtype(tok.vocab_size))
            pipeline.run(chunks(), writer.add)
            worker_rss = max(worker_rss, writer.worker_rss_mib)
            writer.close()
            for e in writer.examples:
                log("domain %s: skipped %s" % (name, e))
            check_domain(name, source, writer, args, nfiles)
            stats[name] = writer.summary()
            writers.append(writer)
            log("%s: %d train tokens (%d docs), %d val tokens (%d docs)" % (
                name, stats[name]["train_tokens"], stats[name]["train_docs"],
                stats[name]["val_tokens"], stats[name]["val_docs"]))
            writer = None
        pipeline.close()
        pipeline = None
        # Shards appear only when every domain passed: a refused run leaves no half-written set.
        for w in writers:
            w.commit()
        write_meta(args.out_dir, tok, stats, extra)
        print_table(stats)
        seconds = time.time() - t0
        rss_main, rss_worker = peak_rss_mib(), worker_rss if args.workers > 1 else 0.0
        # CPU seconds of this process and its (joined) workers: throughput per core that does not
        # depend on how busy the machine was.
        cpu_s = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                    for f in ("ru_utime", "ru_stime"))
        nbytes = sum(s["input_bytes"] for s in stats.values())
        log("%.1f MB in %.1f s (%.2f MB/s, %.2f MB per CPU second); peak RSS %.0f MiB main, %.0f MiB largest worker"
            % (nbytes / 1e6, seconds, nbytes / 1e6 / seconds, nbytes / 1e6 / max(cpu_s, 1e-9), rss_main, rss_worker))
        if args.report:
            with open(args.report, "w") as f:
                json.dump({"seconds": seconds, "cpu_seconds": cpu_s, "input_bytes": nbytes, "workers": args.workers,
                           "tokens": sum(s["train_tokens"] + s["val_tokens"] for s in stats.values()),
                           "peak_rss_main_mib": rss_main, "peak_rss_worker_mib": rss_worker}, f)
    except (PrepareError, OSError) as e:
        if pipeline is not None:
            pipeline.terminate()
        if writer is not None:
            writer.discard()
        for w in locals().get("writers", []):
            w.discard()
        log("error: %s" % e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
