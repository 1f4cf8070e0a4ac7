"""Two external Python workers run a study to the end while the coordinator is SIGKILLed
and restarted twice; every point each worker reported is stored exactly once."""

import collections
import json
import os
import subprocess
import sys
import time

from harness import CoordinatorTest, small_spec

import mixopt

HERE = os.path.dirname(os.path.abspath(__file__))


class RestartTest(CoordinatorTest):
    def test_two_external_workers_survive_sigkill(self):
        client = mixopt.Client(self.coord.addr, timeout=5)
        self.addCleanup(client.close)
        study = client.create_study(small_spec(max_trials=8, name="restart"))
        workers, logs = [], []
        for i in range(2):
            log = os.path.join(self.tmp, f"worker-{i}.jsonl")
            logs.append(log)
            err = open(os.path.join(self.tmp, f"worker-{i}.err"), "w")
            workers.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "external_worker.py"), self.coord.addr, str(study.id),
                 f"py-{i}", log, "0.04"], stdout=err, stderr=err))
            err.close()
        self.addCleanup(lambda: [w.kill() for w in workers if w.poll() is None])

        def stored_points():
            return sum(len(client.trial(t.id).curve) for t in client.trials(study.id))

        outages = []
        for threshold in (15, 70):
            deadline = time.monotonic() + 60
            while stored_points() < threshold:
                self.assertLess(time.monotonic(), deadline, f"fewer than {threshold} points stored in 60 s")
                time.sleep(0.05)
            running = client.trials(study.id, state="running")
            self.assertTrue(running, "the kill must land while trials run")
            self.coord.kill()
            down = time.time()
            time.sleep(1.5)  # the workers keep training and buffer their points meanwhile
            outages.append((down, time.time()))
            self.coord.start()

        final = client.wait(study.id, timeout=120, interval=0.2, progress=False)
        for w in workers:
            self.assertEqual(w.wait(60), 0, f"worker exit; stderr: {self._stderr()}")
        self.assertEqual(self.coord.starts, 3)
        self.assertEqual(final.state, "completed", final)
        self.assertEqual(final.trials_created, 8)

        reported = collections.defaultdict(list)  # (trial, attempt) -> points in report order
        by_worker = collections.Counter()
        during_outage = 0
        for i, log in enumerate(logs):
            with open(log, encoding="utf-8") as f:
                for line in f:
                    p = json.loads(line)
                    reported[(p["trial"], p["attempt"])].append((p["seq"], p["step"], p["train_loss"]))
                    by_worker[i] += 1
                    during_outage += any(a < p["time"] < b for a, b in outages)
        self.assertEqual(len(by_worker), 2, "both workers ran trials")
        self.assertGreater(during_outage, 0, "points reported while the coordinator was down (buffered, re-sent)")

        trials = client.trials(study.id)
        self.assertEqual(len(trials), 8)
        for t in trials:
            self.assertEqual(t.state, "succeeded", t)
            # A trial is requeued only when a kill cut off the answer that leased it (the
            # worker never saw that attempt): no attempt a worker reported points for is lost.
            lost = [a for (tid, a), pts in reported.items() if tid == t.id and a != t.attempt and pts]
            self.assertEqual(lost, [], f"trial {t.id}: points reported for attempts the coordinator dropped")
            stored = [(p.seq, p.step, p.train_loss) for p in client.trial(t.id).curve]
            # Every step exactly once, in order, with what the worker sent.
            self.assertEqual([s for _, s, _ in stored], list(range(1, t.steps + 1)), f"trial {t.id}")
            self.assertEqual([q for q, _, _ in stored], list(range(1, t.steps + 1)), f"trial {t.id}")
            self.assertEqual(stored, reported[(t.id, t.attempt)], f"trial {t.id}: stored points differ from reported")
            self.assertEqual(t.steps_done, t.steps)

    def _stderr(self):
        out = []
        for i in range(2):
            with open(os.path.join(self.tmp, f"worker-{i}.err"), encoding="utf-8", errors="replace") as f:
                out.append(f.read()[-2000:])
        return "\n".join(out) + "\ncoordinator:\n" + self.coord.log()
