"""The client against a real coordinator: bad specs raise with the field named, a study run
by an in-process external worker reads back as dataclasses and DataFrames of the right
shape, plots draw, exports match, and the study's lifecycle calls work."""

import csv
import json
import os
import threading

from harness import CoordinatorTest, losses, small_spec

import mixopt


def run_worker(client, study_id):
    """Run every trial of the study in this process."""
    for trial in client.work(study_id, worker_name="in-process", poll_wait=0.5, flush_interval=0.1):
        with trial:
            for step in range(1, trial.steps + 1):
                trial.report(step, losses(trial.mixture, trial.scale, step), tokens=step * 1000)


class BadSpecTest(CoordinatorTest):
    def setUp(self):
        super().setUp()
        self.client = mixopt.Client(self.coord.addr)
        self.addCleanup(self.client.close)

    def test_the_field_is_named(self):
        cases = [
            ({"domains": [{"name": "only"}]}, "domains"),
            ({"target": {"scale": "huge", "steps": 20}}, "target.scale"),
            ({"target": {"scale": "big", "steps": 15}}, "target.steps"),
            ({"budget_flops": -1}, "budget_flops"),
            ({"objective": {"metric": "accuracy"}}, "objective.metric"),
            ({"scales": [{"name": "small", "params": 0, "flops_per_step": 1}]}, "scales[0].params"),
            ({"scales": [{"name": "small", "parms": 1e6}]}, "scales[0].parms"),  # refused by the client
        ]
        for override, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(mixopt.InvalidArgumentError) as cm:
                    self.client.create_study(small_spec(**override))
                self.assertEqual(cm.exception.field, field, str(cm.exception))
        self.assertEqual(len(self.client.studies()), 0, "nothing is created from a bad spec")

    def test_yaml_file(self):
        path = os.path.join(self.tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write("name: y\ndomains: [{name: a}, {name: b}]\nscales: [{name: s, params: 1e6, flops_per_step: 1e9}]\n"
                    "steps: [10]\nobjective: {metric: b_ce}\ntarget: {scale: s, steps: 10}\nbudget_flops: 0\n")
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            self.client.create_study(path)
        self.assertEqual(cm.exception.field, "budget_flops")
        good = os.path.join(self.tmp, "good.yaml")
        with open(good, "w") as f:
            f.write("name: y\ndomains: [{name: a}, {name: b}]\nscales: [{name: s, params: 1e6, flops_per_step: 1e9}]\n"
                    "steps: [10]\nobjective: {metric: b_ce}\ntarget: {scale: s, steps: 10}\nbudget_flops: 1e12\n")
        st = self.client.create_study(good)
        self.assertEqual((st.name, st.state, st.domains), ("y", "running", ["a", "b"]))

    def test_not_found(self):
        with self.assertRaises(mixopt.NotFoundError):
            self.client.study(404)
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            self.client.study(0)
        self.assertEqual(cm.exception.field, "study_id")


class StudyDataTest(CoordinatorTest):
    def setUp(self):
        super().setUp()
        self.client = mixopt.Client(self.coord.addr)
        self.addCleanup(self.client.close)

    def test_run_and_read_back(self):
        study = self.client.create_study(small_spec(max_trials=3))
        self.assertIsNone(study.best(), "nothing to recommend before any trial")
        th = threading.Thread(target=run_worker, args=(self.client, study.id), daemon=True)
        th.start()
        seen = []
        final = study.wait(timeout=120, interval=0.2, progress=seen.append)
        th.join(30)
        self.assertFalse(th.is_alive(), "the work loop ends when the study does")
        self.assertEqual(final.state, "completed")
        self.assertTrue(seen and seen[-1].done)
        self.assertEqual(final.trials_by_state, {"succeeded": 3})

        trials = study.trials()
        self.assertEqual(len(trials), 3)
        total_points = sum(t.steps for t in trials)
        for t in trials:
            self.assertEqual(list(t.mixture), ["web", "code", "books"])
            self.assertAlmostEqual(sum(t.mixture.values()), 1.0, places=9)
            self.assertAlmostEqual(t.value, losses(t.mixture, t.scale, t.steps)["mean_ce"])

        df = trials.to_pandas()
        self.assertEqual(df.shape, (3, 17))  # 14 trial columns + a weight per domain; id is the index
        self.assertEqual(df.index.name, "id")
        self.assertEqual(list(df.columns[-3:]), ["w_web", "w_code", "w_books"])
        self.assertTrue((df["state"] == "succeeded").all())
        self.assertAlmostEqual(float(df[["w_web", "w_code", "w_books"]].sum(axis=1).max()), 1.0)

        curves = study.curves()
        cdf = curves.to_pandas()
        metrics = ["books_ce", "code_ce", "mean_ce", "web_ce"]
        self.assertEqual(cdf.shape, (total_points, 6 + len(metrics)))
        self.assertEqual(list(cdf.columns), ["trial_id", "seq", "step", "tokens", "train_loss", "wall_time_s"] + metrics)
        self.assertEqual(sorted(cdf["trial_id"].unique()), sorted(t.id for t in trials))
        self.assertTrue((cdf["tokens"] == cdf["step"] * 1000).all())

        d = final.to_dict()
        self.assertEqual((d["id"], d["state"], d["spec"]["name"]), (study.id, "completed", "pyclient-test"))
        self.assertEqual(d["recommendation"]["basis"], final.recommendation.basis)
        self.assertNotIn("_client", d)
        self.assertEqual(trials[0].to_dict()["mixture"], trials[0].mixture)

        sdf = self.client.studies().to_pandas()
        self.assertEqual(sdf.shape, (1, 10))
        self.assertEqual(sdf.loc[study.id, "state"], "completed")

        one = self.client.trial(trials[0].id)
        self.assertEqual([p.seq for p in one.curve], list(range(1, one.steps + 1)))

        best = study.best()
        self.assertIsNotNone(best)
        self.assertEqual(list(best.mixture), ["web", "code", "books"])
        self.assertTrue(best.basis)
        if best.has_interval:  # the random policy may give none
            self.assertLessEqual(best.lower, best.value)
            self.assertLessEqual(best.value, best.upper)
        # The best observed target value is among the trials' values.
        self.assertAlmostEqual(best.value, min(t.value for t in trials if t.scale == "big" and t.steps == 20))
        self.assertEqual(best.trials, 3)

        csv_path = os.path.join(self.tmp, "s.csv")
        self.assertEqual(study.export(csv_path), total_points)
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0][:8], ["trial", "state", "attempt", "scale", "steps", "w_web", "w_code", "w_books"])
        self.assertEqual(len(rows), total_points + 1)
        jsonl_path = os.path.join(self.tmp, "s.jsonl")
        self.assertEqual(study.export(jsonl_path, format="jsonl"), 3)
        with open(jsonl_path) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(sum(len(x["points"]) for x in lines), total_points)
        with self.assertRaises(mixopt.InvalidArgumentError):
            study.export(csv_path, format="xml")

        import matplotlib
        matplotlib.use("Agg")
        ax = final.plot_regret()
        self.assertGreaterEqual(len(ax.lines), 1)
        ax2 = final.plot_curves()
        self.assertEqual(len(ax2.lines), 3)  # one curve per trial
        png = os.path.join(self.tmp, "regret.png")
        ax.figure.savefig(png)
        self.assertGreater(os.path.getsize(png), 1000)

    def test_lifecycle(self):
        study = self.client.create_study(small_spec())
        self.assertEqual(study.pause().state, "paused")
        self.assertEqual(study.resume().state, "running")
        self.assertEqual(study.cancel().state, "cancelled")
        with self.assertRaises(mixopt.FailedPreconditionError):
            study.resume()
        self.assertEqual(self.client.trials(study.id, state="running"), [])
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            self.client.trials(study.id, state="sleeping")
        self.assertEqual(cm.exception.field, "state")
        # A work loop on an ended study ends at once.
        self.assertEqual(list(self.client.work(study.id, worker_name="late", poll_wait=0.1)), [])

    def test_work_takes_only_its_studys_trials(self):
        other = self.client.create_study(small_spec(name="other", max_trials=2))
        mine = self.client.create_study(small_spec(name="mine", max_trials=2, max_parallel=1))
        got = []
        for trial in self.client.work(mine.id, worker_name="picky", poll_wait=0.3, flush_interval=0.05):
            got.append(trial.study_id)
            with trial:
                for step in range(1, trial.steps + 1):
                    trial.report(step, losses(trial.mixture, trial.scale, step))
        self.assertEqual(got, [mine.id, mine.id])
        self.assertEqual(self.client.study(mine.id).state, "completed")
        self.assertEqual(self.client.study(other.id).trials_created, 0, "the other study got no trial")

    def test_scales_that_need_gpus_go_to_a_worker_that_declares_them(self):
        scales = [{"name": "small", "params": 1e6, "flops_per_step": 1e9},
                  {"name": "big", "params": 1e7, "flops_per_step": 1e10, "gpus": 2, "min_gpu_memory_mib": 40000}]
        study = self.client.create_study(small_spec(scales=scales, max_trials=1, max_parallel=1))
        # Without GPUs the worker gets nothing (idle_timeout ends the loop).
        self.assertEqual(list(self.client.work(study.id, worker_name="cpu", poll_wait=0.2, idle_timeout=0.5)), [])
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            self.client.work(study.id, worker_name="bad", gpus=[{"memory_mib": -1}])
        self.assertEqual(cm.exception.field, "gpus[0]")
        it = self.client.work(study.id, worker_name="node", poll_wait=0.2, gpus=4, gpu_memory_mib=81920)
        trial = next(it)
        self.assertEqual((trial.scale, len(trial.gpu_indices)), ("big", 2))
        for step in range(1, trial.steps + 1):
            trial.report(step, losses(trial.mixture, trial.scale, step))
        trial.finish()
        self.assertEqual(list(it), [])
        self.assertEqual(self.client.study(study.id).state, "completed")

    def test_a_study_that_admits_no_real_worker_is_refused_at_once(self):
        sim = self.client.create_study(small_spec(workers={"kinds": ["WORKER_KIND_SIMULATED"]}))
        with self.assertRaises(mixopt.FailedPreconditionError) as cm:
            next(iter(self.client.work(sim.id, worker_name="real")))
        self.assertEqual(cm.exception.field, "workers")
        labelled = self.client.create_study(small_spec(workers={"kinds": ["WORKER_KIND_REAL"],
                                                                 "labels": {"cluster": "a100"}}))
        with self.assertRaises(mixopt.FailedPreconditionError) as cm:
            next(iter(self.client.work(labelled.id, worker_name="real", labels={"cluster": "v100"})))
        self.assertEqual(cm.exception.field, "workers.labels")
        it = iter(self.client.work(labelled.id, worker_name="real", labels={"cluster": "a100"}, poll_wait=0.3))
        self.assertEqual(next(it).study_id, labelled.id)
        it.close()

    def test_stop_request_and_failure(self):
        study = self.client.create_study(small_spec(max_trials=2, max_parallel=1))
        it = iter(self.client.work(study.id, worker_name="stopper", poll_wait=0.5, flush_interval=0.05))
        trial = next(it)
        trial.report(1, losses(trial.mixture, trial.scale, 1))
        trial.flush()
        self.client.cancel_trial(trial.id)
        trial.report(2, losses(trial.mixture, trial.scale, 2))
        trial.flush()  # the answer to this report carries the stop request
        self.assertTrue(trial.stop_requested)
        with self.assertRaises(mixopt.TrialStopped):
            trial.check_stop()
        trial.finish()
        self.assertEqual(self.client.trial(trial.id).state, "stopped")
        self.assertEqual(len(self.client.trial(trial.id).curve), 2)

        second = next(it)
        self.assertNotEqual(second.id, trial.id)
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            second.report(second.steps + 1, {"train_loss": 1.0})
        self.assertEqual(cm.exception.field, "step")
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            second.report(1, {"train_loss": float("nan")})
        self.assertEqual(cm.exception.field, "metrics.train_loss")
        with self.assertRaises(mixopt.InvalidArgumentError):
            second.fail("x", "cosmic_rays")
        second.fail("out of memory at batch 3", "oom")
        t = self.client.trial(second.id)
        self.assertEqual(t.state, "failed")
        self.assertTrue(t.failure_reason.startswith("oom: out of memory"), t.failure_reason)
        it.close()
