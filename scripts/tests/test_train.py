import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
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
        self.assertTrue(os.path.exists(os.path.join(ck, "ckpt.pt")))

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

    def check(self, args, code, cls, msg):
        t0 = time.time()
        got, out, err = run_train(*args)
        self.assertEqual(got, code, err)
        events = parse_protocol(out)
        self.assertEqual(len(events), 1, out)
        self.assertEqual(events[0]["event"], "error")
        self.assertEqual(events[0]["class"], cls)
        self.assertIn(msg, events[0]["message"])
        self.assertIn(msg, err)
        self.assertFalse(any(e["event"] == "start" for e in events))
        return time.time() - t0

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
                # Errors come before torch is imported, so each takes well under the import time.
                self.assertLess(self.check(args, code, cls, msg), 10)


if __name__ == "__main__":
    unittest.main()
