"""How fast one external Python worker gets curve points committed: a coordinator on
loopback, one trial of N steps with a point per step, reported as fast as the script can.
Prints points/s for queueing (report) and for commits (until every point is acknowledged).

    /usr/bin/python3 python/tests/bench_points.py [N]
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Coordinator, small_spec  # noqa: E402

import mixopt  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    tmp = tempfile.mkdtemp(prefix="mixopt-bench-")
    coord = Coordinator(tmp)
    coord.start()
    try:
        client = mixopt.Client(coord.addr)
        spec = small_spec(steps=[n], target={"scale": "big", "steps": n}, max_trials=1, max_parallel=1,
                          budget_flops=1e10 * n * 2)
        study = client.create_study(spec)
        for trial in client.work(study.id, worker_name="bench", poll_wait=0.5):
            start = time.perf_counter()
            for step in range(1, n + 1):
                trial.report(step, {"train_loss": 3.0 + 1.0 / step, "mean_ce": 3.1, "web_ce": 3.0,
                                    "code_ce": 3.2, "books_ce": 3.1})
            queued = time.perf_counter()
            trial.finish()
            done = time.perf_counter()
            stored = len(client.trial(trial.id).curve)
        print(f"points              {n}")
        print(f"stored              {stored}")
        print(f"report (queue) /s   {n / (queued - start):,.0f}")
        print(f"committed /s        {n / (done - start):,.0f}")
        client.close()
    finally:
        coord.stop()
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
