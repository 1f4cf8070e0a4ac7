"""The external worker's side of the WorkerService contract against a scripted in-process
server: what it registers as, the study filter it asks with, and which heartbeat answers
stop its attempt (stop_leases names exactly one attempt; stop_trials is the fallback)."""

import os
import threading
import time
import unittest
from concurrent import futures

import grpc

import harness  # noqa: F401  (puts the package on sys.path)
import mixopt
from mixopt.v1 import control_pb2, control_pb2_grpc, types_pb2, worker_pb2, worker_pb2_grpc


class FakeCoordinator(worker_pb2_grpc.WorkerServiceServicer, control_pb2_grpc.ControlServiceServicer):
    def __init__(self):
        self.lock = threading.Lock()
        self.registers, self.acquires, self.heartbeats, self.reports, self.fails = [], [], [], [], []
        self.heartbeat_answer = worker_pb2.HeartbeatResponse()
        self.fence_after_ms = 0
        self.away = False  # answer heartbeats and reports as a coordinator that is down
        self.refuse_points = ""  # refuse reports with InvalidArgument and this message
        self.assignments = [worker_pb2.Assignment(
            trial=types_pb2.Trial(id=5, study_id=3, mixture=[0.25, 0.75], steps=10, attempt=2),
            domains=["web", "code"], scale=types_pb2.Scale(name="small", tokens_per_step=8), lease_id="L2",
            attempt=2, eval_every=2, seed=11)]

    def Register(self, request, context):
        with self.lock:
            self.registers.append(request)
        return worker_pb2.RegisterResponse(worker_id=9, heartbeat_interval_ms=50, lease_ttl_ms=30000,
                                           fence_after_ms=self.fence_after_ms)

    def AcquireTrial(self, request, context):
        with self.lock:
            self.acquires.append(request)
            a = self.assignments.pop(0) if self.assignments else None
        if a is None:
            time.sleep(min(request.wait_ms / 1000, 0.1))
            return worker_pb2.AcquireTrialResponse()
        return worker_pb2.AcquireTrialResponse(assignment=a)

    def Heartbeat(self, request, context):
        if self.away:
            context.abort(grpc.StatusCode.UNAVAILABLE, "coordinator away")
        with self.lock:
            self.heartbeats.append(request)
            return self.heartbeat_answer

    def ReportPoints(self, request, context):
        if self.away:
            context.abort(grpc.StatusCode.UNAVAILABLE, "coordinator away")
        if self.refuse_points:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.refuse_points)
        with self.lock:
            self.reports.append(request)
        return worker_pb2.ReportPointsResponse(acked_seq=request.points[-1].seq)

    def FailTrial(self, request, context):
        with self.lock:
            self.fails.append(request)
        return worker_pb2.FailTrialResponse()

    def GetStudy(self, request, context):
        st = types_pb2.Study(id=request.study_id, state=types_pb2.STUDY_STATE_RUNNING,
                             spec=types_pb2.StudySpec(domains=[types_pb2.Domain(name="web"), types_pb2.Domain(name="code")]))
        return control_pb2.GetStudyResponse(status=control_pb2.StudyStatus(study=st))


class WorkerProtocolTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeCoordinator()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self.fake, self.server)
        control_pb2_grpc.add_ControlServiceServicer_to_server(self.fake, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.addCleanup(self.server.stop, None)
        self.client = mixopt.Client(f"127.0.0.1:{port}", timeout=5)
        self.addCleanup(self.client.close)

    def first_trial(self):
        it = self.client.work(3, worker_name="slurm-7", labels={"cluster": "a100"}, poll_wait=0.1, flush_interval=0.05)
        self.addCleanup(it.close)
        return it, next(it)

    def wait_for(self, cond, what, within=10):
        deadline = time.monotonic() + within
        while not cond():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.02)

    def test_registers_as_a_real_worker_and_asks_for_its_study(self):
        it, trial = self.first_trial()
        reg = self.fake.registers[0]
        self.assertEqual(reg.hostname, "slurm-7")
        self.assertEqual(reg.identity.kind, types_pb2.WORKER_KIND_REAL)
        self.assertEqual(dict(reg.identity.labels), {"cluster": "a100"})
        self.assertTrue(reg.identity.interpreter.python_version)
        self.assertEqual(self.fake.acquires[0].study_id, 3)
        self.assertEqual(self.fake.acquires[0].worker_id, 9)
        self.assertEqual((trial.id, trial.attempt, trial.lease_id, trial.scale, trial.steps, trial.eval_every),
                         (5, 2, "L2", "small", 10, 2))
        self.assertEqual(trial.mixture, {"web": 0.25, "code": 0.75})
        # Heartbeats carry the attempt held.
        self.wait_for(lambda: any(h.leases for h in self.fake.heartbeats), "a heartbeat with the lease")
        held = [h for h in self.fake.heartbeats if h.leases][0].leases[0]
        self.assertEqual((held.trial_id, held.attempt, held.lease_id), (5, 2, "L2"))
        # Points go out with contiguous sequence numbers and the default tokens.
        trial.report(2, {"train_loss": 3.0, "web_ce": 3.5})
        trial.report(4, {"train_loss": 2.5})
        trial.flush()
        sent = [p for r in self.fake.reports for p in r.points]
        self.assertEqual([(p.seq, p.step, p.tokens) for p in sent], [(1, 2, 16), (2, 4, 32)])
        self.assertEqual(dict(sent[0].eval), {"web_ce": 3.5})
        # Leaving the loop with the trial unfinished fails it (retryable), so it is not
        # left to time out.
        it.close()
        self.assertEqual([(f.trial_id, f.attempt, f.lease_id, f.failure_class, f.error_class) for f in self.fake.fails],
                         [(5, 2, "L2", types_pb2.FAILURE_CLASS_OTHER, "")])

    def test_failure_class_names_follow_the_enum(self):
        from mixopt.work import failure_class
        self.assertEqual(mixopt.ERROR_CLASSES, ("oom", "diverged", "bad_data", "bad_input", "other"))
        self.assertEqual(failure_class("bad_input"), types_pb2.FAILURE_CLASS_BAD_INPUT)
        self.assertEqual(failure_class(types_pb2.FAILURE_CLASS_DIVERGED), types_pb2.FAILURE_CLASS_DIVERGED)
        for bad in ("cosmic_rays", "OOM", "unspecified", types_pb2.FAILURE_CLASS_UNSPECIFIED, 99, True, None):
            with self.assertRaises(mixopt.InvalidArgumentError) as cm:
                failure_class(bad)
            self.assertEqual(cm.exception.field, "error_class")

    def test_stop_leases_names_exactly_one_attempt(self):
        _, trial = self.first_trial()
        # An older attempt of the same trial is named: this attempt keeps running.
        self.fake.heartbeat_answer = worker_pb2.HeartbeatResponse(
            stop_leases=[worker_pb2.HeldLease(trial_id=5, attempt=1, lease_id="L1")], stop_trials=[5])
        n = len(self.fake.heartbeats)
        self.wait_for(lambda: len(self.fake.heartbeats) >= n + 3, "three more heartbeats")
        self.assertIsNone(trial.lost)
        trial.report(2, {"train_loss": 1.0})
        self.fake.heartbeat_answer = worker_pb2.HeartbeatResponse(
            stop_leases=[worker_pb2.HeldLease(trial_id=5, attempt=2, lease_id="L2")])
        self.wait_for(lambda: trial.lost is not None, "the named attempt is stopped")
        with self.assertRaises(mixopt.LeaseLostError):
            trial.report(4, {"train_loss": 1.0})
        with self.assertRaises(mixopt.LeaseLostError):
            trial.finish()

    def test_fences_itself_when_the_coordinator_is_away_too_long(self):
        self.fake.fence_after_ms = 3000  # far above scheduling delays on a loaded machine
        _, trial = self.first_trial()
        self.fake.away = True
        trial.report(2, {"train_loss": 1.0})  # buffered: the coordinator does not answer
        time.sleep(0.2)
        self.assertIsNone(trial.lost, "within the fence limit the trial keeps running")
        self.wait_for(lambda: trial.lost is not None, "fenced after the limit")
        self.assertIn("fenced", trial.lost)
        with self.assertRaises(mixopt.LeaseLostError):
            trial.report(4, {"train_loss": 1.0})
        self.assertEqual(self.fake.reports, [], "nothing was acknowledged while away")

    def test_id_file_keeps_the_worker_id_across_restarts(self):
        import tempfile
        path = os.path.join(tempfile.mkdtemp(), "worker-id")
        self.fake.assignments.append(self.fake.assignments[0])
        for _ in range(2):
            it = self.client.work(3, worker_name="slurm-7", id_file=path, poll_wait=0.1)
            next(it)
            it.close()
        self.assertEqual([r.worker_id for r in self.fake.registers], [0, 9])
        with open(path) as f:
            self.assertEqual(f.read().strip(), "9")

    def test_a_point_the_coordinator_refuses_surfaces_on_the_next_call(self):
        _, trial = self.first_trial()
        self.fake.refuse_points = "points[0].eval: key \"x\" is too long: invalid argument"
        trial.report(2, {"train_loss": 1.0, "x": 2.0})
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            trial.flush()
        self.assertEqual(cm.exception.field, "points[0].eval")
        with self.assertRaises(mixopt.InvalidArgumentError):
            trial.report(4, {"train_loss": 1.0})
        self.assertIsNone(trial.lost)

    def test_stop_trials_is_the_fallback(self):
        _, trial = self.first_trial()
        self.fake.heartbeat_answer = worker_pb2.HeartbeatResponse(stop_trials=[4])
        n = len(self.fake.heartbeats)
        self.wait_for(lambda: len(self.fake.heartbeats) >= n + 3, "three more heartbeats")
        self.assertIsNone(trial.lost)
        self.fake.heartbeat_answer = worker_pb2.HeartbeatResponse(stop_trials=[5])
        self.wait_for(lambda: trial.lost is not None, "the trial named by id is stopped")


if __name__ == "__main__":
    unittest.main()
