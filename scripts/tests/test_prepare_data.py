import gzip
import json
import os
import subprocess
import tempfile
import unittest

import zstandard

import numpy as np

from helpers import load_json, tmpdir, PREPARE, PYTHON
import prepare_data


def prepare(*args):
    return subprocess.run([PYTHON, PREPARE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def read_dir(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), d)] = fh.read()
    return out


class PrepareDataTest(unittest.TestCase):
    def test_synthetic_is_deterministic(self):
        a, b = tmpdir(self), tmpdir(self)
        for d in (a, b):
            p = prepare("--out-dir", d, "--synthetic", "--tokenizer", "byte", "--synthetic-chars", "20000",
                        "--synthetic-domains", "prose,code,math,dna,chat", "--min-val-tokens", "100")
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_dir(a), read_dir(b))
        meta = load_json(os.path.join(a, "meta.json"))
        self.assertEqual(meta["vocab_size"], 257)
        self.assertEqual(sorted(meta["domains"]), ["chat", "code", "dna", "math", "prose"])
        for name, st in meta["domains"].items():
            self.assertGreater(st["val_tokens"], 0, name)
            arr = np.fromfile(os.path.join(a, name, "train.bin"), dtype="<u2")
            self.assertEqual(arr.size, st["train_tokens"])

    def test_domains_differ(self):
        # Distinct unigram statistics are what make the mixture matter.
        d = tmpdir(self)
        self.assertEqual(prepare("--out-dir", d, "--synthetic", "--tokenizer", "byte",
                                 "--synthetic-chars", "20000", "--min-val-tokens", "100").returncode, 0)
        hists = {}
        for name in ("prose", "code", "math"):
            arr = np.fromfile(os.path.join(d, name, "train.bin"), dtype="<u2")
            h = np.bincount(arr, minlength=257).astype(float)
            hists[name] = h / h.sum()
        for a in hists:
            for b in hists:
                if a < b:
                    self.assertGreater(0.5 * np.abs(hists[a] - hists[b]).sum(), 0.3, (a, b))

    def test_text_and_jsonl_inputs(self):
        src, out = tmpdir(self), tmpdir(self)
        with open(os.path.join(src, "a.jsonl"), "w") as f:
            for i in range(50):
                f.write(json.dumps({"text": "document number %d héllo" % i}) + "\n")
        os.makedirs(os.path.join(src, "docs"))
        for i in range(5):
            with open(os.path.join(src, "docs", "%d.txt" % i), "w") as f:
                f.write("plain text file %d\n" % i)
        p = prepare("--out-dir", out, "--tokenizer", "byte", "--val-fraction", "0.2", "--min-val-tokens", "1",
                    "--domain", "web=" + os.path.join(src, "a.jsonl"), "--domain", "books=" + os.path.join(src, "docs"))
        self.assertEqual(p.returncode, 0, p.stderr)
        meta = load_json(os.path.join(out, "meta.json"))
        web = meta["domains"]["web"]
        self.assertEqual(web["train_docs"] + web["val_docs"], 50)
        tr = np.fromfile(os.path.join(out, "books", "train.bin"), dtype="<u2")
        va = np.fromfile(os.path.join(out, "books", "val.bin"), dtype="<u2")
        ids = np.concatenate([tr, va])
        self.assertEqual(int((ids == 256).sum()), 5)  # one EOT per document
        text = bytes(int(x) for x in ids if x < 256).decode()
        self.assertIn("plain text file 3", text)

    def test_bad_inputs(self):
        out = tmpdir(self)
        for args, msg in ((["--domain", "noequals"], "NAME=PATH"),
                          (["--domain", "x=/nonexistent/file.jsonl"], "does not exist"),
                          (["--domain", "../x=/tmp"], "plain name"),
                          (["--synthetic", "--synthetic-domains", "klingon"], "unknown synthetic domain"),
                          ([], "--synthetic")):
            with self.subTest(args=args):
                p = prepare("--out-dir", out, "--tokenizer", "byte", *args)
                self.assertEqual(p.returncode, 2)
                self.assertIn(msg, p.stderr)

    def test_val_split_is_by_content(self):
        self.assertEqual(prepare_data.is_val("abc", 0.3), prepare_data.is_val("abc", 0.3))
        frac = sum(prepare_data.is_val("doc %d" % i, 0.1) for i in range(20000)) / 20000
        self.assertAlmostEqual(frac, 0.1, delta=0.01)


def write_compressed(path, data):
    """Writes bytes to path, compressed by its suffix (.gz, .zst or none)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".gz"):
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    elif path.endswith(".zst"):
        with open(path, "wb") as f:
            f.write(zstandard.ZstdCompressor(level=1).compress(data))
    else:
        with open(path, "wb") as f:
            f.write(data)


def jsonl(docs, field="text"):
    return "".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)).encode()


def docs_text(out, domain):
    """The byte-tokenized documents of a domain's train and val shards, as strings."""
    docs = []
    for split in ("train", "val"):
        ids = np.fromfile(os.path.join(out, domain, split + ".bin"), dtype="<u2")
        parts = np.split(ids, np.nonzero(ids == 256)[0] + 1)
        docs += [bytes(p[p < 256].astype(np.uint8)).decode("utf-8") for p in parts if p.size]
    return docs


class StreamingTest(unittest.TestCase):
    def nested_corpus(self):
        """A domain folder with every input kind, nested, plus a file that is skipped."""
        src = tmpdir(self)
        docs = ["web document %d: %s" % (i, "lorem ipsum dolor sit amet " * (i % 7 + 1)) for i in range(400)]
        write_compressed(os.path.join(src, "a", "b", "c", "part-0.jsonl.zst"), jsonl(docs[:150]))
        write_compressed(os.path.join(src, "a", "part-1.json.gz"), jsonl(docs[150:250]))
        write_compressed(os.path.join(src, "d", "part-2.jsonl.gz"), jsonl(docs[250:300]))
        write_compressed(os.path.join(src, "d", "e", "part-3.jsonl"), jsonl(docs[300:398]))
        # Two text documents, one of them with an invalid UTF-8 byte, and lines to skip.
        write_compressed(os.path.join(src, "f", "book.txt.zst"), ("\n".join(docs[398:399] * 300)).encode())
        write_compressed(os.path.join(src, "f", "g", "bad.jsonl.gz"),
                         b'{"text": "caf\xe9 au lait"}\nnot json\n{"title": "no text field"}\n')
        write_compressed(os.path.join(src, "README.md"), b"not an input")
        return src, docs

    def test_nested_compressed_inputs(self):
        src, docs = self.nested_corpus()
        outs = []
        for workers, chunk in (("1", "4"), ("3", "0.004")):
            out = tmpdir(self)
            p = prepare("--out-dir", out, "--tokenizer", "byte", "--domain", "web=" + src, "--workers", workers,
                        "--chunk-mib", chunk, "--val-fraction", "0.2", "--min-val-tokens", "100")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("skipping 1 files", p.stderr)
            outs.append(out)
        # The same shards whatever the number of workers and the chunk size (4 KiB: many chunks,
        # the text document split in pieces).
        self.assertEqual(read_dir(outs[0]), read_dir(outs[1]))
        meta = load_json(os.path.join(outs[0], "meta.json"))
        self.assertEqual(meta["dtype"], "uint16")
        web = meta["domains"]["web"]
        self.assertEqual(web["train_docs"] + web["val_docs"], 398 + 1 + 1)
        self.assertEqual(web["invalid_utf8"], 1)
        self.assertEqual(web["skipped_lines"], 2)
        got = docs_text(outs[0], "web")
        self.assertEqual(sorted(got), sorted(docs[:398] + ["\n".join(docs[398:399] * 300), "caf\ufffd au lait"]))
        # The per-domain table on stdout.
        rows = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines()}
        self.assertEqual(rows["domain"][:2], ["train_tokens", "val_tokens"])
        self.assertEqual([int(x) for x in rows["web"][:2]], [web["train_tokens"], web["val_tokens"]])

    def test_memory_bounded(self):
        # Peak memory must not grow with the corpus: 4x the input adds far less than the 8 bytes
        # a token that holding the tokens in memory would cost.
        line = "".join("word%d " % (i % 97) for i in range(200))
        reports = []
        for mib in (12, 48):
            src, out = tmpdir(self), tmpdir(self)
            n = mib * (1 << 20) // (len(line) + 40)
            per_file = n // 4
            for k in range(4):
                docs = ("%d %s" % (k * per_file + i, line) for i in range(per_file))
                write_compressed(os.path.join(src, "x%d" % k, "y", "p.jsonl.zst"), jsonl(docs))
            rep = os.path.join(out, "report.json")
            p = prepare("--out-dir", out, "--tokenizer", "byte", "--domain", "big=" + src, "--workers", "2",
                        "--chunk-mib", "1", "--report", rep)
            self.assertEqual(p.returncode, 0, p.stderr)
            r = load_json(rep)
            self.assertGreater(r["input_bytes"], mib * (1 << 20) * 0.9)
            reports.append(r)
        small, large = reports
        grow = max(large["peak_rss_main_mib"], large["peak_rss_worker_mib"]) - \
            max(small["peak_rss_main_mib"], small["peak_rss_worker_mib"])
        tokens_added_mib = (large["tokens"] - small["tokens"]) / (1 << 20)
        self.assertLess(grow, 16, reports)
        self.assertGreater(tokens_added_mib, 30)  # so that 8 bytes a token would be over 240 MiB


class RefusalTest(unittest.TestCase):
    def check_refused(self, out, args, msg):
        p = prepare("--out-dir", out, *args)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(msg, p.stderr)
        # Nothing half-written: no meta.json and no shard.
        left = [f for f in read_dir(out) if f.endswith((".bin", ".json", ".tmp"))]
        self.assertEqual(left, [], p.stderr)
        return p

    def test_refusals(self):
        src = tmpdir(self)
        good = os.path.join(src, "good")
        write_compressed(os.path.join(good, "p.jsonl"), jsonl(["good document %d" % i for i in range(400)]))
        only_md = os.path.join(src, "only_md")
        write_compressed(os.path.join(only_md, "sub", "notes.md"), b"hello")
        wrong_field = os.path.join(src, "wrong_field")
        write_compressed(os.path.join(wrong_field, "p.jsonl.gz"), jsonl(["x %d" % i for i in range(20)], field="content"))
        tiny = os.path.join(src, "tiny")
        write_compressed(os.path.join(tiny, "p.jsonl"), jsonl(["small %d" % i for i in range(30)]))
        cases = [
            (["--domain", "web=" + good, "--domain", "empty=" + only_md], "domain empty: no .jsonl"),
            (["--domain", "web=" + good, "--domain", "code=" + wrong_field],
             "domain code: no documents in %s (1 input files, 20 lines without a string field 'text')" % wrong_field),
            (["--domain", "web=" + good, "--domain", "small=" + tiny], "domain small: validation split has"),
            (["--domain", "web=" + good, "--val-fraction", "0.00001"], "domain web: validation split has 0 tokens"),
        ]
        for args, msg in cases:
            with self.subTest(msg=msg):
                self.check_refused(tmpdir(self), ["--tokenizer", "byte", "--min-val-tokens", "300"] + args, msg)
        # With the right field, the same files are read.
        out = tmpdir(self)
        p = prepare("--out-dir", out, "--tokenizer", "byte", "--min-val-tokens", "1", "--val-fraction", "0.3",
                    "--text-field", "content", "--domain", "code=" + wrong_field)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_tokenizer_is_explicit(self):
        src = tmpdir(self)
        write_compressed(os.path.join(src, "p.jsonl"), jsonl(["doc %d" % i for i in range(100)]))
        base = ["--domain", "web=" + src, "--min-val-tokens", "1"]
        p = self.check_refused(tmpdir(self), base, "--tokenizer")
        self.assertIn("required", p.stderr)
        self.check_refused(tmpdir(self), base + ["--tokenizer", "auto"], "want gpt2, byte, or the path")
        self.check_refused(tmpdir(self), base + ["--tokenizer", "/nonexistent/tokenizer.json"], "no such file")
        try:
            import tiktoken  # noqa: F401
            has_tiktoken = True
        except ImportError:
            has_tiktoken = False
        if not has_tiktoken:
            self.check_refused(tmpdir(self), base + ["--tokenizer", "gpt2"], "needs the tiktoken package")
        try:
            import tokenizers  # noqa: F401
            has_tokenizers = True
        except ImportError:
            has_tokenizers = False
        if not has_tokenizers:
            tj = os.path.join(src, "tokenizer.json")
            with open(tj, "w") as f:
                f.write("{}")
            self.check_refused(tmpdir(self), base + ["--tokenizer", tj], "needs the tokenizers package")

    def test_ids_checked_against_vocabulary(self):
        class Wrong:
            name, vocab_size, eot = "wrong", 100, 99

            def encode_batch(self, texts):
                return [[len(t) + 100] for t in texts]
        old = prepare_data._worker_tok
        prepare_data._worker_tok = Wrong()
        try:
            chunk = prepare_data.Chunk("docs", ["abc"], "x.jsonl", 0, None, False)
            with self.assertRaisesRegex(prepare_data.PrepareError, "id 103 >= its vocabulary 100"):
                prepare_data.process_chunk(chunk, "text", 0.5)
        finally:
            prepare_data._worker_tok = old

    def test_shard_width_follows_vocabulary(self):
        self.assertEqual(prepare_data.shard_dtype(257), "uint16")
        self.assertEqual(prepare_data.shard_dtype(65536), "uint16")
        self.assertEqual(prepare_data.shard_dtype(65537), "uint32")
        self.assertEqual(prepare_data.shard_dtype(128256), "uint32")


# Stand-ins for the optional tokenizer packages (neither is in Debian): they let the tests run
# prepare_data's own code around them - loading, the end-of-text lookup, id checks, shard width.
FAKE_TOKENIZERS = """
import json


class _Encoding:
    def __init__(self, ids):
        self.ids = ids


class Tokenizer:
    def __init__(self, spec):
        self.spec = spec

    @staticmethod
    def from_file(path):
        with open(path) as f:
            return Tokenizer(json.load(f))

    def get_vocab_size(self, with_added_tokens=True):
        return self.spec["vocab_size"]

    def token_to_id(self, name):
        return self.spec["special"].get(name)

    def encode_batch(self, texts, add_special_tokens=True):
        # One id per character, offset so that ids above 65535 appear.
        return [_Encoding([self.spec["offset"] + ord(c) % 1000 for c in t]) for t in texts]
"""

FAKE_TIKTOKEN = """
class _Encoding:
    n_vocab = 50257
    eot_token = 50256

    def encode_ordinary_batch(self, texts, num_threads=1):
        return [[ord(c) % 50000 for c in t] for t in texts]


def get_encoding(name):
    assert name == "gpt2"
    return _Encoding()
"""


class TokenizerPackagesTest(unittest.TestCase):
    def setUp(self):
        self.fake = tmpdir(self)
        for name, text in (("tokenizers.py", FAKE_TOKENIZERS), ("tiktoken.py", FAKE_TIKTOKEN)):
            with open(os.path.join(self.fake, name), "w") as f:
                f.write(text)
        self.src = tmpdir(self)
        write_compressed(os.path.join(self.src, "p.jsonl.zst"), jsonl(["document %d" % i for i in range(300)]))

    def run_prepare(self, out, tokenizer, *extra, env=None):
        return subprocess.run([PYTHON, PREPARE, "--out-dir", out, "--tokenizer", tokenizer, "--min-val-tokens", "10",
                               "--domain", "web=" + self.src] + list(extra), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              env=dict(os.environ, PYTHONPATH=self.fake, **(env or {})))

    def test_hugging_face_tokenizer_json(self):
        tj = os.path.join(self.src, "tokenizer.json")
        with open(tj, "w") as f:
            json.dump({"vocab_size": 70000, "offset": 68000, "special": {"</s>": 2}}, f)
        out = tmpdir(self)
        p = self.run_prepare(out, tj, "--workers", "2")
        self.assertEqual(p.returncode, 0, p.stderr)
        meta = load_json(os.path.join(out, "meta.json"))
        self.assertEqual((meta["vocab_size"], meta["eot"], meta["dtype"]), (70000, 2, "uint32"))
        ids = np.fromfile(os.path.join(out, "web", "train.bin"), dtype="<u4")
        self.assertEqual(ids.size, meta["domains"]["web"]["train_tokens"])
        self.assertEqual(int((ids == 2).sum()), meta["domains"]["web"]["train_docs"])
        self.assertGreater(int(ids.max()), 65535)
        # A tokenizer without any known end-of-text token, and one whose ids exceed its vocabulary.
        with open(tj, "w") as f:
            json.dump({"vocab_size": 70000, "offset": 0, "special": {}}, f)
        p = self.run_prepare(tmpdir(self), tj)
        self.assertEqual(p.returncode, 2)
        self.assertIn("no end-of-text token", p.stderr)
        self.assertEqual(self.run_prepare(tmpdir(self), tj, "--eot-token", "<none>").returncode, 2)
        with open(tj, "w") as f:
            json.dump({"vocab_size": 500, "offset": 450, "special": {"<|endoftext|>": 0}}, f)
        p = self.run_prepare(tmpdir(self), tj)
        self.assertEqual(p.returncode, 2)
        self.assertIn(">= its vocabulary 500", p.stderr)

    def test_gpt2_needs_cached_files(self):
        cache = tmpdir(self)
        p = self.run_prepare(tmpdir(self), "gpt2", env={"TIKTOKEN_CACHE_DIR": cache})
        self.assertEqual(p.returncode, 2)
        self.assertIn("not in its cache and nothing is downloaded", p.stderr)
        import hashlib
        for url in prepare_data.GPT2_FILES:
            open(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()), "w").close()
        out = tmpdir(self)
        p = self.run_prepare(out, "gpt2", env={"TIKTOKEN_CACHE_DIR": cache})
        self.assertEqual(p.returncode, 0, p.stderr)
        meta = load_json(os.path.join(out, "meta.json"))
        self.assertEqual((meta["tokenizer"], meta["vocab_size"], meta["eot"], meta["dtype"]),
                         ("gpt2", 50257, 50256, "uint16"))


if __name__ == "__main__":
    unittest.main()
