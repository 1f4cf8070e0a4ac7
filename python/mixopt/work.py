"""External trials: run a study's trials with your own launcher over the WorkerService
contract the Go worker uses — register, long-poll for a lease, report points with
per-attempt sequence numbers, heartbeat, finish or fail — so that nothing is lost or
stored twice when the coordinator restarts.

    for trial in client.work(study_id, worker_name="slurm-array-7"):
        with trial:                      # fails the trial if the body raises
            for step in range(1, trial.steps + 1):
                loss = train_one_step(trial.mixture, trial.scale)
                trial.report(step, {"train_loss": loss})
                trial.check_stop()       # raises TrialStopped on an early stop: finishes
        # leaving the block without an error finishes the trial
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import grpc

from .errors import (FailedPreconditionError, InvalidArgumentError, LeaseLostError, MixoptError,
                     PermissionDeniedError, TrialStopped, from_rpc_error)
from .v1 import control_pb2, types_pb2, worker_pb2, worker_pb2_grpc

log = logging.getLogger("mixopt.work")

# The failure classes the scheduler's retry policy knows (the FailureClass enum of
# types.proto, by short name: FAILURE_CLASS_BAD_DATA is "bad_data"): oom, diverged,
# bad_data and bad_input fail the trial; other is retried up to the delivery limit.
FAILURE_CLASSES: Dict[str, int] = {
    name[len("FAILURE_CLASS_"):].lower(): value for name, value in types_pb2.FailureClass.items()
    if value != types_pb2.FAILURE_CLASS_UNSPECIFIED}
ERROR_CLASSES = tuple(FAILURE_CLASSES)


def failure_class(error_class) -> int:
    """The FailureClass value of a short name ("oom") or of a FailureClass value itself."""
    if isinstance(error_class, str) and error_class in FAILURE_CLASSES:
        return FAILURE_CLASSES[error_class]
    if (isinstance(error_class, int) and not isinstance(error_class, bool)
            and error_class in FAILURE_CLASSES.values()):
        return error_class
    raise InvalidArgumentError(f"error_class: {str(error_class)[:40]!r} is not one of {ERROR_CLASSES}",
                               field="error_class")

# Codes that mean "the coordinator is away or busy: try again" (the Go worker's list).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})

# Bounds on what the client sends, within the coordinator's limits.
MAX_NAME_CHARS = 128
MAX_METRICS_PER_POINT = 256
MAX_REASON_CHARS = 2000
MAX_LABELS = 64


def _retryable(err: grpc.RpcError) -> bool:
    return err.code() in RETRYABLE


class _Backoff:
    """Exponential with full jitter, capped."""

    def __init__(self, cap: float):
        self.cap, self.next = cap, 0.05

    def wait(self, stop: threading.Event) -> None:
        d = random.uniform(0, self.next)
        self.next = min(2 * self.next, self.cap)
        stop.wait(d)


MAX_GPUS = 64


def _gpu_list(gpus: Any, memory_mib: int) -> List[types_pb2.Gpu]:
    """The GPUs this worker declares for placement: a count (each with memory_mib), or a
    list of {"name": ..., "memory_mib": ...}. None declared: one trial slot, for scales that
    need at most one GPU and no GPU memory."""
    if isinstance(gpus, bool) or memory_mib < 0:
        raise InvalidArgumentError("gpus: a count or a list of GPUs, with memory_mib >= 0", field="gpus")
    if isinstance(gpus, int):
        gpus = [{"memory_mib": memory_mib}] * gpus
    if not isinstance(gpus, (list, tuple)) or len(gpus) > MAX_GPUS:
        raise InvalidArgumentError(f"gpus: a count or a list of at most {MAX_GPUS} GPUs", field="gpus")
    out = []
    for i, g in enumerate(gpus):
        name, mem = str(g.get("name", "external")), g.get("memory_mib", memory_mib)
        if isinstance(mem, bool) or not isinstance(mem, int) or mem < 0 or not name or len(name) > MAX_NAME_CHARS:
            raise InvalidArgumentError(f"gpus[{i}]: name of 1 to {MAX_NAME_CHARS} characters and memory_mib >= 0",
                                       field=f"gpus[{i}]")
        out.append(types_pb2.Gpu(index=i, name=name, memory_mib=mem))
    return out


class ExternalWorker:
    """One worker that runs one study's trials, one at a time, for a script.

    poll_wait: seconds one AcquireTrial call may wait for work. idle_timeout: stop after this
    long without a trial (None: only when the study ends). flush_interval: longest a point
    waits before it is sent. max_buffered_points: points kept while the coordinator is away;
    report() blocks when they are all unacknowledged. id_file: keeps the worker id across
    restarts of the script, so the coordinator requeues the trials it lost at once. gpus
    (a count, with gpu_memory_mib each, or a list of {"name", "memory_mib"}) are what the
    coordinator places trials on: a scale that needs several GPUs, or GPU memory, runs only
    on a worker that declares them; trial.gpu_indices says which to use.
    """

    def __init__(self, client, study_id: int, *, worker_name: str, labels: Optional[Mapping[str, str]] = None,
                 poll_wait: float = 2.0, idle_timeout: Optional[float] = None, flush_interval: float = 0.5,
                 max_batch: int = 500, max_buffered_points: int = 100_000, rpc_timeout: float = 10.0,
                 max_backoff: float = 2.0, id_file: Optional[str] = None, gpus: Any = 0,
                 gpu_memory_mib: int = 0):
        if not isinstance(worker_name, str) or not worker_name or len(worker_name) > MAX_NAME_CHARS:
            raise InvalidArgumentError(f"worker_name: must be 1 to {MAX_NAME_CHARS} characters", field="worker_name")
        labels = dict(labels or {})
        if len(labels) > MAX_LABELS or any(not isinstance(k, str) or not isinstance(v, str) or not k
                                           or len(k) > MAX_NAME_CHARS or len(v) > MAX_NAME_CHARS
                                           for k, v in labels.items()):
            raise InvalidArgumentError(
                f"labels: at most {MAX_LABELS} string pairs of 1 to {MAX_NAME_CHARS} characters", field="labels")
        if isinstance(study_id, bool) or not isinstance(study_id, int) or study_id <= 0:
            raise InvalidArgumentError(f"study_id: {study_id!r} is not a positive integer id", field="study_id")
        self._gpus = _gpu_list(gpus, gpu_memory_mib)
        self.client = client
        self.study_id = study_id
        self.worker_name = worker_name
        self.labels = labels
        self.poll_wait = poll_wait
        self.idle_timeout = idle_timeout
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_buffered_points = max_buffered_points
        self.rpc_timeout = rpc_timeout
        self.max_backoff = max_backoff
        self.id_file = id_file
        self._stub = worker_pb2_grpc.WorkerServiceStub(client._channel)
        self._metadata = client._metadata
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._wake_flush = threading.Event()
        self.worker_id = self._read_id()
        self._trial: Optional[ExternalTrial] = None
        self._hb_every = 1.0
        self._fence_after = 0.0
        self._last_contact = time.monotonic()
        self._threads: List[threading.Thread] = []
        self._unsure_of_leases = False

    # RPC plumbing.

    def _rpc(self, name: str, request, timeout: Optional[float] = None):
        """One call; raises grpc.RpcError. A successful call counts as contact (fencing)."""
        resp = getattr(self._stub, name)(request, timeout=timeout or self.rpc_timeout, metadata=self._metadata)
        with self._lock:
            self._last_contact = time.monotonic()
        return resp

    def _retry(self, name: str, make_request, give_up=lambda: False):
        """Call until it succeeds, retrying while the coordinator is away; a refusal raises
        its MixoptError. make_request is called per try (leases may change meanwhile)."""
        b = _Backoff(self.max_backoff)
        while True:
            try:
                return self._rpc(name, make_request())
            except grpc.RpcError as e:
                if not _retryable(e) or self._closed.is_set() or give_up():
                    raise from_rpc_error(e) from None
                log.debug("%s failed (%s); retrying", name, e.code().name)
                b.wait(self._closed)

    def _read_id(self) -> int:
        if not self.id_file or not os.path.exists(self.id_file):
            return 0
        with open(self.id_file, encoding="utf-8") as f:
            text = f.read().strip()
        if not text.isdigit():
            raise InvalidArgumentError(f"id_file: {self.id_file} does not hold a worker id", field="id_file")
        return int(text)

    def _write_id(self) -> None:
        if self.id_file:
            tmp = self.id_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"{self.worker_id}\n")
            os.replace(tmp, self.id_file)

    def _held(self) -> List[worker_pb2.HeldLease]:
        t = self._trial
        if t is None or t.lost or t.done:
            return []
        return [worker_pb2.HeldLease(trial_id=t.id, lease_id=t.lease_id, attempt=t.attempt)]

    def _register(self) -> None:
        identity = types_pb2.WorkerIdentity(
            kind=types_pb2.WORKER_KIND_REAL, labels=self.labels,
            interpreter=types_pb2.Interpreter(path=sys.executable, python_version=platform.python_version()))
        resp = self._retry("Register", lambda: worker_pb2.RegisterRequest(
            worker_id=self.worker_id, hostname=self.worker_name, gpus=self._gpus, leases=self._held(),
            identity=identity))
        with self._lock:
            self.worker_id = resp.worker_id
            if resp.heartbeat_interval_ms > 0:
                self._hb_every = resp.heartbeat_interval_ms / 1000
            if resp.fence_after_ms > 0:
                self._fence_after = resp.fence_after_ms / 1000
        self._write_id()
        log.info("registered as worker %d", resp.worker_id)

    # The loop.

    def trials(self) -> Iterator["ExternalTrial"]:
        self._check_study()
        self._register()
        for target in (self._heartbeat_loop, self._flush_loop):
            th = threading.Thread(target=target, name=f"mixopt-{target.__name__}", daemon=True)
            th.start()
            self._threads.append(th)
        idle_since = time.monotonic()
        try:
            while True:
                prev = self._trial
                if prev is not None and not prev.done and not prev.lost:
                    try:
                        prev.fail("the script asked for the next trial without finishing this one", "other")
                    except MixoptError as e:
                        log.warning("could not fail trial %d: %s", prev.id, e)
                self._trial = None
                a = self._acquire()
                if a is None:
                    if self._study_ended():
                        return
                    if self.idle_timeout is not None and time.monotonic() - idle_since > self.idle_timeout:
                        return
                    continue
                self._trial = ExternalTrial(self, a)
                log.info("trial %d attempt %d leased", a.trial.id, a.attempt)
                yield self._trial
                idle_since = time.monotonic()
        finally:
            t = self._trial
            if t is not None and not t.done and not t.lost:
                try:
                    t.fail("the work loop ended before the trial did", "other")
                except MixoptError as e:
                    log.warning("could not fail trial %d: %s", t.id, e)
            self.close()

    def close(self) -> None:
        self._closed.set()
        self._wake_flush.set()
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(timeout=5)

    def _check_study(self) -> None:
        """Refuse at once a study whose worker selector never admits this worker, rather
        than polling forever."""
        try:
            study = self.client.study(self.study_id)
        except PermissionDeniedError:
            return  # a worker-role token may not read studies; AcquireTrial still works
        selector = study.spec.get("workers") or {}
        kinds = selector.get("kinds") or []
        if kinds and "WORKER_KIND_REAL" not in kinds:
            raise FailedPreconditionError(
                f"workers: study {self.study_id} accepts only {kinds} workers; external workers are WORKER_KIND_REAL",
                field="workers")
        missing = {k: v for k, v in (selector.get("labels") or {}).items() if self.labels.get(k) != v}
        if missing:
            raise FailedPreconditionError(
                f"workers.labels: study {self.study_id} wants labels {missing} this worker does not carry",
                field="workers.labels")

    def _study_ended(self) -> bool:
        try:
            return self.client.study(self.study_id).done
        except PermissionDeniedError:
            return False
        except MixoptError as e:
            if e.code in RETRYABLE:
                return False
            raise

    def _acquire(self) -> Optional[worker_pb2.Assignment]:
        if self._unsure_of_leases:
            # A failed AcquireTrial may have leased a trial whose answer never arrived.
            # Registering again with the leases held (none, between trials) makes the
            # coordinator requeue such a trial at once instead of after its lease TTL.
            self._register()
            self._unsure_of_leases = False
        req = worker_pb2.AcquireTrialRequest(worker_id=self.worker_id, wait_ms=int(self.poll_wait * 1000),
                                             study_id=self.study_id)
        try:
            resp = self._rpc("AcquireTrial", req, timeout=self.poll_wait + 5)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                self._register()  # a coordinator with a fresh database no longer knows us
                return None
            if _retryable(e):
                self._unsure_of_leases = True
                _Backoff(self.max_backoff).wait(self._closed)
                return None
            raise from_rpc_error(e) from None
        return resp.assignment if resp.HasField("assignment") else None

    def _heartbeat_loop(self) -> None:
        while True:
            with self._lock:
                every = self._hb_every
            # Jitter spreads a fleet's heartbeats.
            if self._closed.wait(every * random.uniform(0.8, 1.0)):
                return
            t = self._trial
            held = self._held()
            try:
                resp = self._rpc("Heartbeat", worker_pb2.HeartbeatRequest(worker_id=self.worker_id, leases=held),
                                 timeout=max(every, 1.0))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    try:
                        self._register()
                    except MixoptError as re:
                        log.warning("re-register failed: %s", re)
                self._check_fence()
                continue
            with self._lock:
                if resp.fence_after_ms > 0:
                    self._fence_after = resp.fence_after_ms / 1000
            # Judge only the attempt this heartbeat carried: a newer attempt of the same
            # trial, leased meanwhile, is not what the answer is about.
            if t is None or not held or t is not self._trial:
                continue
            named = list(getattr(resp, "stop_leases", ()))
            if named:
                hit = any(s.trial_id == t.id and s.attempt == t.attempt and s.lease_id == t.lease_id for s in named)
            else:
                hit = t.id in resp.stop_trials  # a coordinator that names trials only
            if hit:
                t._lose("the coordinator no longer holds this attempt for this worker")

    def _check_fence(self) -> None:
        """Stop the trial once the coordinator has been unreachable longer than it allows: it
        may have requeued the trial, and two attempts must never run at once."""
        with self._lock:
            silent = time.monotonic() - self._last_contact
            limit = self._fence_after
        t = self._trial
        if t is not None and limit > 0 and silent > limit and not t.done:
            t._lose(f"fenced: the coordinator was unreachable for {silent:.1f} s (limit {limit:.1f} s)")

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake_flush.wait(self.flush_interval)
            self._wake_flush.clear()
            t = self._trial
            if t is None or t.done or t.lost:
                continue
            try:
                t._flush_once()
            except grpc.RpcError as e:
                if not _retryable(e):
                    t._refused(e)


class ExternalTrial:
    """A trial leased to this script: mixture (domain -> weight), scale, steps, eval_every,
    seed. Report points with report(); end with finish() or fail(). stop_requested turns
    True when the coordinator asks to stop at the current step (finish then); lost when the
    lease is gone (stop, report nothing more)."""

    def __init__(self, worker: ExternalWorker, a: worker_pb2.Assignment):
        self._w = worker
        self.id = a.trial.id
        self.study_id = a.trial.study_id
        self.attempt = a.attempt
        self.lease_id = a.lease_id
        self.domains = list(a.domains)
        self.mixture: Dict[str, float] = dict(zip(a.domains, a.trial.mixture))
        self.scale = a.scale.name
        self.params = a.scale.params
        self.tokens_per_step = a.scale.tokens_per_step
        self.steps = a.trial.steps
        self.eval_every = a.eval_every
        self.seed = a.seed
        self.gpu_indices = list(a.gpu_indices)
        self.stop_requested = False
        self.lost: Optional[str] = None  # why, once the lease is gone
        self.done = False
        self._cond = threading.Condition()
        self._send = threading.Lock()
        self._pending: List[types_pb2.CurvePoint] = []
        self._next_seq = 1
        self._last_step = 0
        self._error: Optional[MixoptError] = None
        self._started = time.monotonic()

    def __repr__(self) -> str:
        return (f"ExternalTrial(id={self.id}, attempt={self.attempt}, scale={self.scale!r}, steps={self.steps}, "
                f"mixture={self.mixture})")

    @property
    def unacknowledged(self) -> int:
        with self._cond:
            return len(self._pending)

    def _lose(self, why: str) -> None:
        with self._cond:
            if self.lost is None and not self.done:
                self.lost = why
                log.warning("trial %d attempt %d: %s", self.id, self.attempt, why)
            self._cond.notify_all()

    def _refused(self, err: grpc.RpcError) -> None:
        if err.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            self._lose(f"lease refused: {err.details()}")
        else:
            with self._cond:
                self._error = from_rpc_error(err)
                self._cond.notify_all()

    def _raise_if_unusable(self) -> None:
        if self.lost is not None:
            raise LeaseLostError(f"trial {self.id} attempt {self.attempt}: {self.lost}",
                                 grpc.StatusCode.FAILED_PRECONDITION)
        if self._error is not None:
            raise self._error
        if self.done:
            raise RuntimeError(f"trial {self.id} has already ended")

    def check_stop(self) -> None:
        """Raise TrialStopped if the coordinator asked to stop, LeaseLostError if the lease is gone."""
        self._raise_if_unusable()
        if self.stop_requested:
            raise TrialStopped(f"trial {self.id}: the coordinator asked to stop at step {self._last_step}")

    def report(self, step: int, metrics: Optional[Mapping[str, float]] = None, *, tokens: Optional[int] = None,
               wall_time_s: Optional[float] = None) -> None:
        """Queue one curve point; it is sent in the background and re-sent until the
        coordinator acknowledges it. metrics must hold train_loss; other names
        (``<domain>_ce``, ``mean_ce``, extra metrics) are evaluation metrics. Steps must
        increase and stay within trial.steps; values must be finite."""
        self._raise_if_unusable()
        if isinstance(step, bool) or not isinstance(step, int) or not (self._last_step < step <= self.steps):
            raise InvalidArgumentError(
                f"step: {step!r} must be an integer above the last step ({self._last_step}) and at most {self.steps}",
                field="step")
        metrics = dict(metrics or {})
        if "train_loss" not in metrics:
            raise InvalidArgumentError("metrics.train_loss: missing", field="metrics.train_loss")
        if len(metrics) > MAX_METRICS_PER_POINT:
            raise InvalidArgumentError(f"metrics: more than {MAX_METRICS_PER_POINT} metrics", field="metrics")
        for name, v in metrics.items():
            if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
                raise InvalidArgumentError(f"metrics: name {name!r} must be 1 to {MAX_NAME_CHARS} characters",
                                           field="metrics")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidArgumentError(f"metrics.{name}: {v!r} is not a finite number", field=f"metrics.{name}")
        train_loss = float(metrics.pop("train_loss"))
        if tokens is None:
            tokens = step * self.tokens_per_step
        if wall_time_s is None:
            wall_time_s = time.monotonic() - self._started
        if tokens < 0 or not math.isfinite(wall_time_s) or wall_time_s < 0:
            raise InvalidArgumentError("tokens and wall_time_s must not be negative", field="tokens")
        with self._cond:
            # Back-pressure instead of unbounded memory while the coordinator is away.
            while len(self._pending) >= self._w.max_buffered_points and self.lost is None and self._error is None:
                self._cond.wait(0.5)
            self._raise_if_unusable()
            self._pending.append(types_pb2.CurvePoint(
                seq=self._next_seq, step=step, tokens=int(tokens), train_loss=train_loss,
                eval={k: float(v) for k, v in metrics.items()}, wall_time_s=float(wall_time_s)))
            self._next_seq += 1
            self._last_step = step
            full = len(self._pending) >= self._w.max_batch
        if full:
            self._w._wake_flush.set()

    def _flush_once(self) -> int:
        """Send the oldest unacknowledged batch; returns how many remain. Raises grpc.RpcError."""
        with self._send:
            with self._cond:
                batch = self._pending[: self._w.max_batch]
            if not batch or self.lost is not None:
                return len(batch)
            resp = self._w._rpc("ReportPoints", worker_pb2.ReportPointsRequest(
                worker_id=self._w.worker_id, trial_id=self.id, lease_id=self.lease_id, attempt=self.attempt,
                points=batch))
            with self._cond:
                # Everything up to acked_seq is committed, including a batch the coordinator
                # stored before a restart cut off its answer.
                self._pending = [p for p in self._pending if p.seq > resp.acked_seq]
                if resp.stop:
                    self.stop_requested = True
                self._cond.notify_all()
                return len(self._pending)

    def flush(self) -> None:
        """Block until every reported point is acknowledged, retrying while the coordinator
        is away."""
        b = _Backoff(self._w.max_backoff)
        while True:
            self._raise_if_unusable()
            try:
                if self._flush_once() == 0:
                    return
                continue
            except grpc.RpcError as e:
                if not _retryable(e):
                    self._refused(e)
                    continue
            self._w._check_fence()
            b.wait(self._w._closed)

    def finish(self) -> None:
        """Send every point, then mark the trial succeeded (or stopped, after a stop request)."""
        self.flush()
        final = self._next_seq - 1
        self._end("FinishTrial", lambda: worker_pb2.FinishTrialRequest(
            worker_id=self._w.worker_id, trial_id=self.id, lease_id=self.lease_id, attempt=self.attempt,
            final_seq=final), ("succeeded", "stopped"))

    def fail(self, reason: str, error_class="other") -> None:
        """Mark the attempt failed. error_class, a short name or a types_pb2.FailureClass value:
        oom, diverged, bad_data, bad_input (the trial fails) or other (retried up to the
        coordinator's delivery limit)."""
        cls = failure_class(error_class)
        reason = str(reason)[:MAX_REASON_CHARS] or "failed"
        try:
            self.flush()  # the points before the failure are part of the attempt's record
        except LeaseLostError:
            raise
        except MixoptError as e:
            log.warning("trial %d: points before the failure not sent: %s", self.id, e)
        self._end("FailTrial", lambda: worker_pb2.FailTrialRequest(
            worker_id=self._w.worker_id, trial_id=self.id, lease_id=self.lease_id, attempt=self.attempt,
            reason=reason, failure_class=cls), ("failed", "pending", "lost"))

    def _end(self, rpc: str, make_request, ended_states: Tuple[str, ...]) -> None:
        self._raise_if_unusable()
        retried = [False]

        def give_up() -> bool:
            retried[0] = True
            return self.lost is not None

        try:
            self._w._retry(rpc, make_request, give_up=give_up)
        except MixoptError as e:
            # The coordinator may have committed the end just before a restart cut off its
            # answer: the retry then finds the lease gone. Check what it stored.
            if not (retried[0] and e.code == grpc.StatusCode.FAILED_PRECONDITION and self._ended_as(ended_states)):
                self._raise_if_unusable()  # a lost lease says so rather than the last retry's code
                raise
        self.done = True
        with self._cond:
            self._cond.notify_all()

    def _ended_as(self, states: Tuple[str, ...]) -> bool:
        try:
            t = self._w.client._call(self._w.client._control.GetTrial, control_pb2.GetTrialRequest(trial_id=self.id))
        except MixoptError:
            return False
        from .models import trial_state
        return t.trial.attempt == self.attempt and trial_state(t.trial.state) in states

    def __enter__(self) -> "ExternalTrial":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.done:
            return False
        if exc_type is None or issubclass(exc_type, TrialStopped):
            if self.lost is None:
                self.finish()
            return exc_type is not None
        if issubclass(exc_type, LeaseLostError):
            return True  # nothing more to report; the loop goes on to the next trial
        if self.lost is None:
            try:
                self.fail(f"{exc_type.__name__}: {exc}", "other")
            except MixoptError as e:
                log.warning("could not fail trial %d: %s", self.id, e)
        return False
