import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import numpy as np

from helpers import load_json, tmpdir, PYTHON, TRAIN, parse_protocol, run_train, toy_corpus
import train

DOMAINS = "prose,code,math"


def base_args(data, *extra):
    return ["--preset", "tiny", "--data-dir", data, "--domains", DOMAINS, "--mixture", "0.5,0.3,0.2",
            "--seq-len", "32", "--threads", "1"] + list(extra)


def evals(events):
    return {e["step"]: e["metrics"] for e in events if e["event"] == "eval"}


class TrainRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = toy_corpus()

    def test_loss_falls_protocol_and_proportions(self):
        code, out, err = run_train(*base_args(self.data, "--steps", "60", "--eval-every", "20",
                                              "--batch-size", "32", "--micro-batch", "16"))
        self.assertEqual(code, 0, err)
        events = parse_protocol(out)
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-1], "done")
        self.assertNotIn("error", kinds)
        ev = evals(events)
        self.assertEqual(sorted(ev), [0, 20, 40, 60])
        for m in ev.values():
            self.assertEqual(sorted(m), ["code_ce", "math_ce", "mean_ce", "prose_ce"])
            self.assertAlmostEqual(m["mean_ce"], (m["code_ce"] + m["math_ce"] + m["prose_ce"]) / 3)
        self.assertLess(ev[60]["mean_ce"], ev[0]["mean_ce"] - 1.5)
        points = [e for e in events if e["event"] == "point"]
        self.assertLess(points[-1]["train_loss"], points[0]["train_loss"])
        self.assertEqual(points[-1]["tokens"], 60 * 32 * 32)
        counts = events[-1]["domain_sequences"]
        total = sum(counts.values())
        self.assertEqual(total, 60 * 32)
        for d, w in zip(DOMAINS.split(","), (0.5, 0.3, 0.2)):
            # 1920 draws: binomial sd <= 0.012, so 0.05 is over 4 sd.
            self.assertAlmostEqual(counts[d] / total, w, delta=0.05, msg=d)

    def test_sampler_proportions(self):
        w = [0.6, 0.25, 0.1, 0.05]
        seen = np.zeros(4)
        for step in range(200):
            doms, _ = train.sample_domains(w, 7, step, 0, 0, 256)
            seen += np.bincount(doms, minlength=4)
        np.testing.assert_allclose(seen / seen.sum(), w, atol=0.01)
        a, _ = train.sample_domains(w, 7, 3, 0, 0, 64)
        b, _ = train.sample_domains(w, 7, 3, 0, 0, 64)
        np.testing.assert_array_equal(a, b)

    def test_resume_continues_the_curve(self):
        full, part = tmpdir(self), tmpdir(self)
        common = ("--eval-every", "10", "--log-every", "5", "--schedule-steps", "30")
        code, out, err = run_train(*base_args(self.data, "--steps", "30", "--checkpoint-dir", full, *common))
        self.assertEqual(code, 0, err)
        ref = parse_protocol(out)
        code, out, err = run_train(*base_args(self.data, "--steps", "15", "--checkpoint-dir", part, *common))
        self.assertEqual(code, 0, err)
        first = parse_protocol(out)
        self.assertEqual([e["step"] for e in first if e["event"] == "checkpoint"], [15])
        self.assertEqual(load_weights_only(os.path.join(part, "ckpt.pt"))[1]["step"], 15)
        code, out, err = run_train(*base_args(self.data, "--steps", "30", "--checkpoint-dir", part, *common))
        self.assertEqual(code, 0, err)
        second = parse_protocol(out)
        self.assertEqual(second[0]["resumed_from_step"], 15)
        self.assertEqual(min(e["step"] for e in second if e["event"] == "point"), 20)
        ref_points = {e["step"]: e["train_loss"] for e in ref if e["event"] == "point"}
        for e in second:
            if e["event"] == "point":
                self.assertAlmostEqual(e["train_loss"], ref_points[e["step"]], places=4, msg=e["step"])
        for step in (20, 30):
            self.assertAlmostEqual(evals(second)[step]["mean_ce"], evals(ref)[step]["mean_ce"], places=4)
        self.assertEqual(second[-1]["domain_sequences"], ref[-1]["domain_sequences"])
        self.assertGreaterEqual(second[-1]["wall_time_s"], first[-1]["wall_time_s"])

    def test_faults_are_classified(self):
        for fault, code_want, cls in (("nan", train.EXIT_DIVERGED, "diverged"), ("oom", train.EXIT_OOM, "oom")):
            with self.subTest(fault=fault):
                code, out, err = run_train(*base_args(self.data, "--steps", "10", "--fault", fault,
                                                      "--fault-step", "3", "--log-every", "1"))
                self.assertEqual(code, code_want, err)
                events = parse_protocol(out)
                self.assertEqual(events[-1]["event"], "error")
                self.assertEqual(events[-1]["class"], cls)
                self.assertEqual(events[-1]["exit_code"], code_want)

    def test_sigterm_checkpoints_and_stops(self):
        ck = tmpdir(self)
        p = subprocess.Popen([PYTHON, TRAIN] + base_args(self.data, "--steps", "100000", "--log-every", "1",
                                                          "--checkpoint-dir", ck),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
        lines = []
        try:
            for line in p.stdout:
                lines.append(line)
                if '"event":"point"' in line:
                    p.send_signal(signal.SIGTERM)
                    break
            rest, _ = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        events = parse_protocol("".join(lines) + rest)
        self.assertEqual(p.returncode, train.EXIT_STOPPED)
        self.assertEqual(events[-1]["event"], "done")
        self.assertEqual(events[-1]["status"], "stopped")
        _, state = load_weights_only(os.path.join(ck, "ckpt.pt"))
        self.assertEqual(state["step"], events[-1]["step"])

    def test_ddp_on_cpu(self):
        # torchrun's own launcher is broken on Debian's torch 1.13 with Python 3.11, so the two
        # ranks get the environment torchrun would give them; gloo carries the collectives.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for rank in (0, 1):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                       RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(
                [PYTHON, TRAIN] + base_args(self.data, "--steps", "10", "--eval-every", "5", "--micro-batch", "8",
                                            "--device", "cpu"),
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True))
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(outs[1][0], "", "only rank 0 writes the protocol")
        events = parse_protocol(outs[0][0])
        self.assertEqual(events[0]["config"]["world_size"], 2)
        self.assertEqual(events[0]["config"]["grad_accum"], 1)
        self.assertEqual(sum(events[-1]["domain_sequences"].values()), 10 * 16)
        self.assertEqual(sorted(evals(events)), [0, 5, 10])


def load_weights_only(path):
    """Loads a checkpoint the way torch >= 2.6 does by default: no code unpickled."""
    import torch
    ck = torch.load(path, map_location="cpu", weights_only=True)
    return ck, json.loads(ck["state"])


class CheckpointTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = toy_corpus()

    def test_checkpoints_load_weights_only(self):
        ck = tmpdir(self)
        code, out, err = run_train(*base_args(self.data, "--steps", "10", "--checkpoint-every", "4",
                                              "--checkpoint-dir", ck))
        self.assertEqual(code, 0, err)
        self.assertEqual([e["step"] for e in parse_protocol(out) if e["event"] == "checkpoint"], [4, 8, 10])
        raw, state = load_weights_only(os.path.join(ck, "ckpt.pt"))
        self.assertEqual(raw["format"], train.CHECKPOINT_FORMAT)
        self.assertEqual(state["step"], 10)
        self.assertIsInstance(state["config"]["torch"], str)
        self.assertEqual(state["config"]["domains"], DOMAINS.split(","))
        # The optimizer's floats (lr, betas, eps) survive the JSON round trip exactly.
        import torch
        opt = train.unpack_state(state["optim"], raw["tensors"])
        self.assertEqual(opt["param_groups"][0]["betas"], (0.9, 0.95))
        self.assertTrue(all(torch.is_tensor(v) for st in opt["state"].values() for v in st.values()))
        self.assertIn(0, opt["state"])  # integer keys restored

    def test_time_based_checkpoints(self):
        self.assertGreater(train.build_parser().parse_args(["--preset", "tiny"]).checkpoint_minutes, 0)
        ck = tmpdir(self)
        code, out, err = run_train(*base_args(self.data, "--steps", "4", "--log-every", "100",
                                              "--checkpoint-minutes", "1e-9", "--checkpoint-dir", ck))
        self.assertEqual(code, 0, err)
        self.assertEqual([e["step"] for e in parse_protocol(out) if e["event"] == "checkpoint"], [1, 2, 3, 4])
        load_weights_only(os.path.join(ck, "ckpt.pt"))

    def test_unreadable_checkpoint_is_bad_input(self):
        import torch
        garbage, old = tmpdir(self), tmpdir(self)
        with open(os.path.join(garbage, "ckpt.pt"), "wb") as f:
            f.write(b"not a checkpoint")
        # The previous layout: a pickled dict holding floats and torch's version object.
        torch.save({"model": {}, "step": 3, "wall_time_s": 1.5, "config": {"torch": torch.__version__}},
                   os.path.join(old, "ckpt.pt"))
        for d in (garbage, old):
            with self.subTest(d=d):
                code, out, err = run_train(*base_args(self.data, "--steps", "5", "--checkpoint-dir", d))
                self.assertEqual(code, train.EXIT_BAD_INPUT, err)
                events = parse_protocol(out)
                self.assertEqual(events[-1]["class"], "bad_input")
                self.assertIn("cannot resume from", events[-1]["message"])
                self.assertIn("--no-resume", events[-1]["message"])
        code, out, err = run_train(*base_args(self.data, "--steps", "3", "--checkpoint-dir", garbage, "--no-resume"))
        self.assertEqual(code, 0, err)


class CompileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = toy_corpus()

    def test_compile_failure_falls_back_to_eager(self):
        common = ("--steps", "6", "--log-every", "1", "--eval-every", "3")
        code, out, err = run_train(*base_args(self.data, "--compile", "off", *common))
        self.assertEqual(code, 0, err)
        eager = parse_protocol(out)
        code, out, err = run_train(*base_args(self.data, "--compile", "on", "--fault", "compile", *common))
        self.assertEqual(code, 0, err)
        events = parse_protocol(out)
        warnings = [e for e in events if e["event"] == "warning"]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertEqual(warnings[0]["code"], "compile_fallback")
        self.assertIn("injected torch.compile failure", warnings[0]["message"])
        kinds = [e["event"] for e in events]
        self.assertLess(kinds.index("warning"), kinds.index("point"))
        self.assertEqual(events[-1]["event"], "done")
        # The failed step is redone from the same batches: the curve is the eager run's.
        loss = lambda evs: [(e["step"], round(e["train_loss"], 5)) for e in evs if e["event"] == "point"]
        self.assertEqual(loss(events), loss(eager))
        self.assertEqual(events[-1]["domain_sequences"], eager[-1]["domain_sequences"])


class ValidationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = toy_corpus()

    def start_config(self, *args):
        code, out, err = run_train("--data-dir", self.data, "--domains", DOMAINS, "--mixture", "0.5,0.3,0.2",
                                   "--steps", "1", "--threads", "1", *args)
        self.assertEqual(code, 0, err)
        return parse_protocol(out)[0]["config"]

    def test_same_windows_across_presets_and_micro_batches(self):
        runs = [self.start_config("--preset", "tiny", "--seq-len", "32"),
                self.start_config("--preset", "tiny-m", "--seq-len", "32", "--micro-batch", "4"),
                self.start_config("--preset", "tiny-l", "--seq-len", "32", "--micro-batch", "2", "--batch-size", "8")]
        self.assertEqual(len({r["micro_batch"] for r in runs}), 3)
        self.assertEqual(len({r["preset"] for r in runs}), 3)
        for r in runs[1:]:
            self.assertEqual(r["eval_windows"], runs[0]["eval_windows"])
            self.assertEqual(r["eval_digest"], runs[0]["eval_digest"])
        other = self.start_config("--preset", "tiny", "--seq-len", "32", "--eval-tokens", "256")
        self.assertNotEqual(other["eval_digest"], runs[0]["eval_digest"])
        self.assertEqual(other["eval_windows"], [8, 8, 8])

    def test_gpu_presets_share_windows(self):
        # Every GPU preset has the same sequence length, so all of them score the same windows.
        shard = np.arange(500_000, dtype=np.int64) % 50000
        gpu = [n for n, p in train.PRESETS.items() if p["nominal"]]
        digests = set()
        for name in gpu:
            cfg = train.resolve_config(train.build_parser().parse_args(["--preset", name]), 50257)
            w = train.eval_windows(shard, cfg["seq_len"], train.DEFAULT_EVAL_TOKENS)
            self.assertEqual(w.shape, (128, 1025), name)
            digests.add(train.windows_digest([w]))
        self.assertEqual(len(digests), 1)


class WideVocabularyTest(unittest.TestCase):
    def test_uint32_shards(self):
        d = tmpdir(self)
        rng = np.random.default_rng(0)
        os.makedirs(os.path.join(d, "web"))
        rng.integers(0, 70000, 20000).astype("<u4").tofile(os.path.join(d, "web", "train.bin"))
        rng.integers(0, 70000, 2000).astype("<u4").tofile(os.path.join(d, "web", "val.bin"))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"version": 2, "tokenizer": "test", "vocab_size": 70000, "eot": 0, "dtype": "uint32",
                       "domains": {}}, f)
        code, out, err = run_train("--preset", "tiny", "--data-dir", d, "--domains", "web", "--mixture", "1",
                                   "--steps", "2", "--seq-len", "16", "--micro-batch", "4", "--batch-size", "4",
                                   "--threads", "1", "--eval-tokens", "64")
        self.assertEqual(code, 0, err)
        events = parse_protocol(out)
        self.assertEqual(events[0]["config"]["padded_vocab"], 70016)
        self.assertEqual(events[-1]["status"], "completed")


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = toy_corpus()
        # A corpus whose "short" domain is shorter than one sequence.
        cls.short = tempfile.mkdtemp(prefix="mixopt-test-")
        cls.addClassCleanup(shutil.rmtree, cls.short, True)
        meta = load_json(os.path.join(cls.data, "meta.json"))
        os.makedirs(os.path.join(cls.short, "short"))
        for split in ("train", "val"):
            np.arange(10, dtype="<u2").tofile(os.path.join(cls.short, "short", split + ".bin"))
        with open(os.path.join(cls.short, "meta.json"), "w") as f:
            json.dump(meta, f)
        cls.no_torch = os.path.join(cls.short, "no-torch")
        os.makedirs(cls.no_torch)
        with open(os.path.join(cls.no_torch, "torch.py"), "w") as f:
            f.write("raise ImportError('torch imported before the inputs were checked')\n")

    def test_every_token_id_is_checked(self):
        # An id beyond the vocabulary at the very end of a shard of more than a million tokens.
        d = tmpdir(self)
        meta = load_json(os.path.join(self.data, "meta.json"))
        os.makedirs(os.path.join(d, "web"))
        ids = np.arange(1_200_000, dtype=np.int64) % 256
        ids[-1] = 300
        ids.astype("<u2").tofile(os.path.join(d, "web", "train.bin"))
        np.arange(500, dtype="<u2").tofile(os.path.join(d, "web", "val.bin"))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
        self.check(["--preset", "tiny", "--data-dir", d, "--domains", "web", "--mixture", "1", "--steps", "5"],
                   3, "bad_data", "token id 300 >= vocabulary 257")

    def check(self, args, code, cls, msg):
        # A torch that fails on import proves these errors come before the slow import.
        got, out, err = run_train(*args, env=dict(os.environ, PYTHONPATH=self.no_torch))
        self.assertEqual(got, code, err)
        events = parse_protocol(out)
        self.assertEqual(len(events), 1, out)
        self.assertEqual(events[0]["event"], "error")
        self.assertEqual(events[0]["class"], cls)
        self.assertIn(msg, events[0]["message"])
        self.assertIn(msg, err)
        self.assertFalse(any(e["event"] == "start" for e in events))

    def test_bad_inputs(self):
        d = self.data
        cases = [
            (["--preset", "13B", "--data-dir", d, "--domains", "prose", "--mixture", "1", "--steps", "5"],
             2, "bad_input", "unknown preset"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "prose,code", "--mixture", "0.5,0.4", "--steps", "5"],
             2, "bad_input", "sum to 0.9"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "prose,code", "--mixture", "1", "--steps", "5"],
             2, "bad_input", "has 1 weights"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "prose,code", "--mixture", "1.5,-0.5", "--steps", "5"],
             2, "bad_input", "non-negative"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "../etc", "--mixture", "1", "--steps", "5"],
             2, "bad_input", "plain name"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "prose", "--mixture", "1"],
             2, "bad_input", "--steps"),
            (["--preset", "tiny", "--bogus-flag"], 2, "bad_input", "unrecognized"),
            (["--preset", "tiny", "--data-dir", d, "--domains", "klingon", "--mixture", "1", "--steps", "5"],
             3, "bad_data", "unknown domain 'klingon'"),
            (["--preset", "tiny", "--data-dir", "/nonexistent", "--domains", "prose", "--mixture", "1", "--steps", "5"],
             3, "bad_data", "meta.json not found"),
            (["--preset", "tiny", "--data-dir", self.short, "--domains", "short", "--mixture", "1", "--steps", "5"],
             3, "bad_data", "has 10 tokens"),
        ]
        os.makedirs(os.path.join(self.short, "nosplit"), exist_ok=True)
        cases.append((["--preset", "tiny", "--data-dir", self.short, "--domains", "nosplit", "--mixture", "1",
                       "--steps", "5"], 3, "bad_data", "missing shard"))
        for args, code, cls, msg in cases:
            with self.subTest(msg=msg):
                self.check(args, code, cls, msg)


if __name__ == "__main__":
    unittest.main()
