import json
import os
import subprocess
import tempfile
import unittest

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
                        "--synthetic-domains", "prose,code,math,dna,chat")
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
                                 "--synthetic-chars", "20000").returncode, 0)
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
        p = prepare("--out-dir", out, "--tokenizer", "byte", "--val-fraction", "0.2",
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


if __name__ == "__main__":
    unittest.main()
