"""The client: studies, trials and curves over the coordinator's ControlService, and
external trials over its WorkerService (Client.work)."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Mapping, Optional

import grpc
from google.protobuf import json_format

from . import _connection
from .errors import InvalidArgumentError, UnavailableError, from_rpc_error
from .models import CurveList, Recommendation, Study, StudyList, Trial, TrialList, Worker, trial_state
from .spec import SpecLike, load_spec
from .v1 import control_pb2, control_pb2_grpc, types_pb2

if TYPE_CHECKING:
    from .work import ExternalTrial

EXPORT_FORMATS = ("csv", "jsonl")


class Client:
    """A connection to a mixopt coordinator.

    addr defaults to $MIXOPT_ADDR, else 127.0.0.1:7070. TLS is on when tls_ca (or
    $MIXOPT_TLS_CA) or a client certificate is given, or tls=True (system roots). The token
    comes from token_file, else the file named by $MIXOPT_TOKEN_FILE, else $MIXOPT_TOKEN,
    exactly as mixctl finds it. timeout bounds each call, in seconds.
    """

    def __init__(self, addr: Optional[str] = None, *, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, tls_server_name: Optional[str] = None,
                 token_file: Optional[str] = None, tls: bool = False, timeout: float = 30.0):
        self.addr = _connection.resolve_addr(addr)
        self.timeout = timeout
        self._channel, self._metadata = _connection.dial(
            self.addr, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, tls_server_name=tls_server_name,
            token_file=token_file, tls=tls)
        self._control = control_pb2_grpc.ControlServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: Callable, request, timeout: Optional[float] = None, read: bool = False):
        """One call. Reads (read=True) are retried while the coordinator is unavailable, up
        to the timeout: a restarted coordinator answers again within seconds."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.01) if read else timeout,
                              metadata=self._metadata)
            except grpc.RpcError as e:
                if not (read and e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() + delay < deadline):
                    raise from_rpc_error(e) from None
            time.sleep(delay)
            delay = min(2 * delay, 1.0)

    def _pages(self, method: Callable, request, items: str) -> List[Any]:
        """Every item of a List call, following next_page_token when the API pages."""
        paged = "page_token" in request.DESCRIPTOR.fields_by_name
        out: List[Any] = []
        while True:
            resp = self._call(method, request, read=True)
            out.extend(getattr(resp, items))
            token = getattr(resp, "next_page_token", "") if paged else ""
            if not token:
                return out
            request.page_token = token

    # Studies.

    def create_study(self, spec: SpecLike) -> Study:
        """Create a study from a dict, a YAML or JSON file (mixctl's spec format) or a
        StudySpec. A bad spec raises InvalidArgumentError whose .field names the field."""
        msg = load_spec(spec)
        resp = self._call(self._control.CreateStudy, control_pb2.CreateStudyRequest(spec=msg))
        return self.study(resp.study.id)

    def study(self, study_id: int) -> Study:
        resp = self._call(self._control.GetStudy, control_pb2.GetStudyRequest(study_id=_id(study_id, "study_id")), read=True)
        return Study.from_proto(resp.status.study, resp.status, client=self)

    def studies(self) -> StudyList:
        statuses = self._pages(self._control.ListStudies, control_pb2.ListStudiesRequest(), "studies")
        return StudyList(Study.from_proto(s.study, s, client=self) for s in statuses)

    def pause(self, study_id: int) -> Study:
        self._call(self._control.PauseStudy, control_pb2.PauseStudyRequest(study_id=_id(study_id, "study_id")))
        return self.study(study_id)

    def resume(self, study_id: int) -> Study:
        self._call(self._control.ResumeStudy, control_pb2.ResumeStudyRequest(study_id=_id(study_id, "study_id")))
        return self.study(study_id)

    def cancel(self, study_id: int) -> Study:
        self._call(self._control.CancelStudy, control_pb2.CancelStudyRequest(study_id=_id(study_id, "study_id")))
        return self.study(study_id)

    def best(self, study_id: int) -> Optional[Recommendation]:
        """The recommended mixture at the target with its 90% interval and basis (what
        GetRecommendation answers, read from the study's status); None while the study has
        nothing to recommend from."""
        return self.study(study_id).recommendation

    def wait(self, study_id: int, *, timeout: Optional[float] = None, interval: float = 1.0,
             progress: Any = True) -> Study:
        """Block until the study ends (completed, cancelled, or any end state), riding out
        coordinator restarts. progress: True shows a tqdm bar of the budget when tqdm is
        installed, else a line per change on stderr; False shows nothing; a callable is
        called with each Study. Raises TimeoutError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        show = _progress(progress)
        try:
            while True:
                try:
                    st = self.study(study_id)
                except UnavailableError:
                    st = None  # the coordinator may be restarting
                if st is not None:
                    show(st)
                    if st.done:
                        return st
                if deadline is not None and time.monotonic() > deadline:
                    state = st.state if st else "unreachable"
                    raise TimeoutError(f"study {study_id} still {state} after {timeout} s")
                time.sleep(interval)
        finally:
            show(None)

    # Trials and curves.

    def _domains(self, study_id: int) -> List[str]:
        return self.study(study_id).domains

    def trials(self, study_id: int, *, state: Optional[str] = None, scale: Optional[str] = None) -> TrialList:
        """The study's trials, optionally only those in a state ("running", "succeeded", ...)
        or at a scale."""
        req = control_pb2.ListTrialsRequest(study_id=_id(study_id, "study_id"), scale=scale or "")
        if state:
            try:
                req.state = types_pb2.TrialState.Value("TRIAL_STATE_" + state.upper())
            except ValueError:
                known = [n[len("TRIAL_STATE_"):].lower() for n in types_pb2.TrialState.keys()][1:]
                raise InvalidArgumentError(f"state: {state!r} is not one of {known}", field="state") from None
        domains = self._domains(study_id)
        return TrialList(Trial.from_proto(t, domains) for t in self._pages(self._control.ListTrials, req, "trials"))

    def trial(self, trial_id: int) -> Trial:
        """A trial with its current attempt's curve (Trial.curve)."""
        resp = self._call(self._control.GetTrial, control_pb2.GetTrialRequest(trial_id=_id(trial_id, "trial_id")), read=True)
        return Trial.from_proto(resp.trial, self._domains(resp.trial.study_id), resp.points)

    def curve(self, trial_id: int) -> CurveList:
        return CurveList(self.trial(trial_id).curve)

    def curves(self, study_id: int) -> CurveList:
        """Every trial's curve points, in trial then sequence order."""
        out = CurveList()
        for t in self.trials(study_id):
            out.extend(self.trial(t.id).curve)
        return out

    def cancel_trial(self, trial_id: int) -> Trial:
        resp = self._call(self._control.CancelTrial, control_pb2.CancelTrialRequest(trial_id=_id(trial_id, "trial_id")))
        return Trial.from_proto(resp.trial, self._domains(resp.trial.study_id))

    def workers(self) -> List[Worker]:
        return [Worker.from_proto(w) for w in self._pages(self._control.ListWorkers, control_pb2.ListWorkersRequest(), "workers")]

    def export(self, study_id: int, path: str, *, format: str = "csv") -> int:
        """Write the study's trials and curves as mixctl export does: csv (a row per point)
        or jsonl (a trial with its points per line). Returns the rows written."""
        if format not in EXPORT_FORMATS:
            raise InvalidArgumentError(f"format: {format!r} is not one of {EXPORT_FORMATS}", field="format")
        study = self.study(study_id)
        trials = [self._call(self._control.GetTrial, control_pb2.GetTrialRequest(trial_id=t.id), read=True)
                  for t in self._pages(self._control.ListTrials, control_pb2.ListTrialsRequest(study_id=study.id), "trials")]
        rows = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            if format == "jsonl":
                for t in trials:
                    f.write(json.dumps(json_format.MessageToDict(t, preserving_proto_field_name=True),
                                       separators=(",", ":")) + "\n")
                    rows += 1
                return rows
            metrics = sorted({m for t in trials for p in t.points for m in p.eval})
            w = csv.writer(f)
            w.writerow(["trial", "state", "attempt", "scale", "steps"] + ["w_" + d for d in study.domains]
                       + ["seq", "step", "tokens", "train_loss", "wall_time_s"] + metrics)
            for t in trials:
                tr = t.trial
                head = [tr.id, trial_state(tr.state), tr.attempt, tr.scale, tr.steps] + [repr(x) for x in tr.mixture]
                for p in t.points:
                    w.writerow(head + [p.seq, p.step, p.tokens, repr(p.train_loss), repr(p.wall_time_s)]
                               + [repr(p.eval[m]) if m in p.eval else "" for m in metrics])
                    rows += 1
        return rows

    # External trials.

    def work(self, study_id: int, *, worker_name: str, labels: Optional[Mapping[str, str]] = None,
             **options) -> Iterator["ExternalTrial"]:
        """Run the study's trials with your own launcher: yields one ExternalTrial at a time
        until the study ends (or idle_timeout seconds pass without a trial). See
        mixopt.work.ExternalWorker for the options."""
        from .work import ExternalWorker
        worker = ExternalWorker(self, study_id, worker_name=worker_name, labels=labels, **options)
        return worker.trials()


def _id(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{field}: {value!r} is not a positive integer id", field=field)
    return value


def _progress(progress: Any) -> Callable[[Optional[Study]], None]:
    """A progress sink: called with each Study, then with None at the end."""
    if callable(progress):
        return lambda st: progress(st) if st is not None else None
    if not progress:
        return lambda st: None
    try:
        from tqdm.auto import tqdm  # optional
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = None

        def show(st: Optional[Study]) -> None:
            nonlocal bar
            if st is None:
                if bar is not None:
                    bar.close()
                return
            if bar is None:
                bar = tqdm(total=st.budget_flops, desc=f"study {st.id}", unit="FLOP", unit_scale=True)
            bar.n = min(st.spent_flops, st.budget_flops)
            n = st.trials_by_state
            bar.set_postfix_str(f"{st.state}; {n.get('running', 0)} running, {n.get('succeeded', 0)} succeeded")
        return show
    last = [""]

    def show_line(st: Optional[Study]) -> None:
        if st is None:
            return
        n = st.trials_by_state
        pct = 100 * st.spent_flops / st.budget_flops if st.budget_flops else math.nan
        line = (f"study {st.id} {st.state}: {n.get('running', 0)} running, {n.get('succeeded', 0)} succeeded, "
                f"{n.get('failed', 0)} failed; budget {pct:.0f}% spent")
        if line != last[0]:
            print(line, file=sys.stderr, flush=True)
            last[0] = line
    return show_line
