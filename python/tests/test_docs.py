"""The worked example of docs/python.md, run as written against a real coordinator."""

import contextlib
import io
import os
import re
from unittest import mock

from harness import REPO, CoordinatorTest

DOC = os.path.join(REPO, "docs", "python.md")


def example_blocks():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("<!-- example:start"):text.index("<!-- example:end -->")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


class DocsExampleTest(CoordinatorTest):
    def test_worked_example_runs(self):
        blocks = example_blocks()
        self.assertGreaterEqual(len(blocks), 4, "the example's code blocks")
        ns = {"__name__": "docs_example"}
        out = io.StringIO()
        cwd = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, cwd)
        with mock.patch.dict(os.environ, {"MIXOPT_ADDR": self.coord.addr}), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(io.StringIO()):
            for block in blocks:
                exec(compile(block, DOC, "exec"), ns)
        done = ns["done"]
        self.assertEqual(done.state, "completed", out.getvalue())
        self.assertEqual(done.trials_created, 10)
        self.assertEqual(set(ns["trials"]["state"]), {"succeeded"})
        self.assertEqual(len(ns["curves"]), sum(ns["trials"]["steps"] // 20))
        self.assertIsNotNone(ns["best"])
        for name in ("regret.png", "curves.png", "web-code-books.csv"):
            self.assertGreater(os.path.getsize(os.path.join(self.tmp, name)), 100, name)
        ns["client"].close()
