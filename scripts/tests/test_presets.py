import json
import unittest

from helpers import run_train
import train


class PresetTest(unittest.TestCase):
    def cfg(self, preset, vocab=50257):
        args = train.build_parser().parse_args(["--preset", preset])
        return train.resolve_config(args, vocab)

    def test_nominal_sizes_within_5_percent(self):
        for name, p in train.PRESETS.items():
            if p["nominal"] is None:
                continue
            with self.subTest(preset=name):
                n = self.cfg(name)["params"]
                self.assertLess(abs(n / p["nominal"] - 1), 0.05, "%s has %d parameters" % (name, n))

    def test_table_shapes(self):
        want = {"20M": (256, 8, 8), "60M": (512, 8, 8), "150M": (768, 12, 12), "300M": (1024, 16, 16),
                "500M": (1280, 16, 16), "700M": (1536, 16, 16), "1B": (2048, 16, 16)}
        for name, shape in want.items():
            p = train.PRESETS[name]
            self.assertEqual((p["d_model"], p["n_layers"], p["n_heads"]), shape, name)

    def test_formula_matches_model(self):
        for name in ("tiny", "tiny-m", "tiny-l", "20M"):
            with self.subTest(preset=name):
                cfg = self.cfg(name)
                model, _ = train.build_model(cfg)
                self.assertEqual(sum(p.numel() for p in model.parameters()), cfg["params"])
                self.assertFalse(any(n.endswith("bias") for n, _ in model.named_parameters()))

    def test_print_config(self):
        code, out, err = run_train("--preset", "150M", "--print-config")
        self.assertEqual(code, 0, err)
        cfg = json.loads(out)
        self.assertEqual(cfg["d_model"], 768)
        self.assertAlmostEqual(cfg["params"] / 150e6, 1, delta=0.05)
        self.assertEqual(cfg["tokens_per_step"], cfg["batch_size"] * cfg["seq_len"])

    def test_lr_schedule(self):
        lr = [train.lr_at(s, 1.0, 0.1, 10, 100) for s in range(120)]
        self.assertAlmostEqual(lr[9], 1.0)
        self.assertTrue(all(a >= b for a, b in zip(lr[9:100], lr[10:100])))
        self.assertAlmostEqual(lr[110], 0.1)


if __name__ == "__main__":
    unittest.main()
