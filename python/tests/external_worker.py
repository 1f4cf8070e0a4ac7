"""An external worker for the tests: runs a study's trials through Client.work, sleeping a
little per step so that a coordinator restart lands mid-trial, and logs every point it
reported (trial, attempt, seq, step, train_loss) as a JSON line."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mixopt  # noqa: E402
from harness import losses  # noqa: E402


def main():
    addr, study_id, name, log_path, step_sleep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    client = mixopt.Client(addr, timeout=5)
    with open(log_path, "a", encoding="utf-8") as log:
        for trial in client.work(study_id, worker_name=name, poll_wait=1.0, flush_interval=0.2):
            with trial:
                for step in range(1, trial.steps + 1):
                    time.sleep(step_sleep)
                    if step % max(trial.eval_every, 1) and step != trial.steps:
                        continue
                    m = losses(trial.mixture, trial.scale, step)
                    trial.report(step, m)
                    log.write(json.dumps({"trial": trial.id, "attempt": trial.attempt, "seq": trial._next_seq - 1,
                                          "step": step, "train_loss": m["train_loss"],
                                          "time": time.time()}) + "\n")
                    log.flush()
                    trial.check_stop()
    client.close()


if __name__ == "__main__":
    main()
