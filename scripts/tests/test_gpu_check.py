import json
import os
import subprocess
import unittest

from helpers import PYTHON, SCRIPTS, load_json, tmpdir

ORDER = ["env", "gemm", "flash", "compile", "resume", "sigterm", "oom", "1b_compiled", "1b_eager"]


def cuda_available():
    import torch
    return torch.cuda.is_available()


class GPUCheckTest(unittest.TestCase):
    def run_check(self, *args):
        """Runs gpu_check.sh, or gpu_check.py itself when given flags."""
        work = tmpdir(self)
        argv = [PYTHON, os.path.join(SCRIPTS, "gpu_check.py"), "--work-dir", work] + list(args) if args else \
            ["bash", os.path.join(SCRIPTS, "gpu_check.sh"), work]
        env = dict(os.environ, PYTHON=PYTHON, GPU_CHECK_CHARS="60000")
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           env=env, timeout=600)
        summary = load_json(os.path.join(work, "summary.json"))
        self.assertEqual(json.loads(p.stdout), summary)  # the summary is also printed
        self.assertEqual([s["name"] for s in summary["stages"]], ORDER)
        for s in summary["stages"]:
            self.assertIn(s["status"], ("ok", "failed", "timeout", "skipped"), s)
            self.assertIsInstance(s["timeout_s"], int)
        return p, summary

    def test_degrades_to_a_valid_summary_without_cuda(self):
        p, summary = self.run_check()
        stages = {s["name"]: s for s in summary["stages"]}
        self.assertEqual(stages["env"]["status"], "ok", p.stderr)
        self.assertIsInstance(stages["env"]["detail"]["torch"], str)
        if cuda_available():  # on a GPU host the check itself runs
            self.assertTrue(summary["cuda"])
            self.assertFalse(any(s.get("reason") == "skipped: no CUDA" for s in summary["stages"]))
            return
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(summary["cuda"])
        for name in ORDER[1:]:
            self.assertEqual(stages[name]["status"], "skipped", name)
            self.assertEqual(stages[name]["reason"], "skipped: no CUDA", name)
        self.assertEqual(summary["failed"], [])
        self.assertEqual(summary["goal"]["target"], 0.5)
        self.assertIsNone(summary["goal"]["met"])
        # The stage timeouts fit the 6-minute budget's intent: each stage is bounded.
        self.assertLessEqual(summary["budget_s"], 360)

    def test_training_stages_on_cpu(self):
        # The driver's resume, SIGTERM and throughput logic, run on the CPU with the tiny preset.
        p, summary = self.run_check("--cpu-smoke")
        self.assertEqual(p.returncode, 0, p.stderr)
        stages = {s["name"]: s for s in summary["stages"]}
        self.assertEqual(stages["resume"]["detail"], {"resumed_from_step": 20, "final_step": 40})
        sig = stages["sigterm"]["detail"]
        self.assertEqual((sig["exit_code"], sig["checkpoint"], sig["weights_only_load"]), (143, True, True))
        for name, steps in (("1b_compiled", 30), ("1b_eager", 8)):
            d = stages[name]["detail"]
            self.assertEqual(d["steps"], steps)
            self.assertGreater(d["median_tokens_per_s"], 0)
        if not cuda_available():
            self.assertEqual(stages["oom"]["reason"], "skipped: no CUDA")
