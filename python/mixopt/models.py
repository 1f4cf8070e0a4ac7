"""What the client returns: plain dataclasses built from the API's messages, and lists of
them with to_pandas() (pandas is imported only when asked for)."""

from __future__ import annotations

import copy
import datetime as _dt
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional, Sequence

from google.protobuf import json_format

from .v1 import control_pb2, types_pb2


def _pandas():
    try:
        import pandas
    except ImportError as e:  # optional dependency
        raise ImportError("to_pandas() needs pandas: pip install pandas (or apt-get install python3-pandas)") from e
    return pandas


def _enum_name(enum, value: int, prefix: str) -> str:
    """STUDY_STATE_RUNNING -> "running"; an unknown number stays visible as its number."""
    try:
        return enum.Name(value)[len(prefix):].lower()
    except ValueError:
        return str(value)


def _time(ms: int) -> Optional[_dt.datetime]:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc) if ms else None


def study_state(value: int) -> str:
    return _enum_name(types_pb2.StudyState, value, "STUDY_STATE_")


def trial_state(value: int) -> str:
    return _enum_name(types_pb2.TrialState, value, "TRIAL_STATE_")


# Study states after which nothing more runs. Any state this client does not know is
# treated as an end too, so that a newer coordinator's end states (e.g. failed) end a wait.
ACTIVE_STUDY_STATES = ("running", "paused", "unspecified")


@dataclass
class Recommendation:
    """The policy's best mixture at the target: value with its 90% credible interval
    [lower, upper] (equal to value when the policy gives none) and how it was derived."""
    study_id: int
    mixture: Dict[str, float]
    value: float
    lower: float
    upper: float
    basis: str
    trials: int
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def has_interval(self) -> bool:
        return self.lower != self.upper

    @classmethod
    def from_proto(cls, r: types_pb2.Recommendation, domains: Sequence[str]) -> "Recommendation":
        # Fields a newer coordinator adds stay reachable without a client change.
        known = ("study_id", "mixture", "value", "lower", "upper", "basis", "trials")
        extra = {k: v for k, v in json_format.MessageToDict(r, preserving_proto_field_name=True).items()
                 if k not in known}
        rec = cls(study_id=r.study_id, mixture=_mixture(domains, r.mixture), value=r.value, lower=r.lower,
                  upper=r.upper, basis=r.basis, trials=r.trials, extra=extra)
        return rec


def _mixture(domains: Sequence[str], weights: Sequence[float]) -> Dict[str, float]:
    if len(domains) != len(weights):
        return {str(i): w for i, w in enumerate(weights)}
    return dict(zip(domains, weights))


@dataclass
class Study:
    """A study with its progress. ``spec`` is the spec as the coordinator stored it
    (defaults filled in), as a dict in the spec file's format."""
    id: int
    name: str
    state: str
    spec: Dict[str, Any]
    domains: List[str]
    spent_flops: float
    budget_flops: float
    spent_gpu_hours: float
    trials_created: int
    trials_by_state: Dict[str, int]
    committed_flops: float
    created: Optional[_dt.datetime]
    ended: Optional[_dt.datetime]
    end_reason: str
    recommendation: Optional[Recommendation]
    _client: Any = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.state not in ACTIVE_STUDY_STATES

    @classmethod
    def from_proto(cls, st: types_pb2.Study, status: Optional[control_pb2.StudyStatus] = None,
                   client: Any = None) -> "Study":
        domains = [d.name for d in st.spec.domains]
        rec = None
        if status is not None and status.HasField("recommendation"):
            rec = Recommendation.from_proto(status.recommendation, domains)
        return cls(
            id=st.id, name=st.spec.name, state=study_state(st.state),
            spec=json_format.MessageToDict(st.spec, preserving_proto_field_name=True), domains=domains,
            spent_flops=st.spent_flops, budget_flops=st.spec.budget_flops, spent_gpu_hours=st.spent_gpu_hours,
            trials_created=st.trials_created,
            trials_by_state=dict(status.trials_by_state) if status is not None else {},
            committed_flops=status.committed_flops if status is not None else 0.0,
            created=_time(st.create_time_unix_ms), ended=_time(st.end_time_unix_ms), end_reason=st.end_reason,
            recommendation=rec, _client=client)

    def to_dict(self) -> Dict[str, Any]:
        # Not asdict(self): it would deep-copy the client and its channel.
        out: Dict[str, Any] = {}
        for f in fields(self):
            if f.name != "_client":
                v = getattr(self, f.name)
                out[f.name] = asdict(v) if is_dataclass(v) else copy.deepcopy(v)
        return out

    # Conveniences that go through the client the study came from.
    def _need_client(self):
        if self._client is None:
            raise RuntimeError("this Study was not fetched through a Client")
        return self._client

    def refresh(self) -> "Study":
        return self._need_client().study(self.id)

    def trials(self, state: Optional[str] = None, scale: Optional[str] = None) -> "TrialList":
        return self._need_client().trials(self.id, state=state, scale=scale)

    def curves(self) -> "CurveList":
        return self._need_client().curves(self.id)

    def best(self) -> Optional[Recommendation]:
        return self._need_client().best(self.id)

    def wait(self, **kwargs) -> "Study":
        return self._need_client().wait(self.id, **kwargs)

    def pause(self) -> "Study":
        return self._need_client().pause(self.id)

    def resume(self) -> "Study":
        return self._need_client().resume(self.id)

    def cancel(self) -> "Study":
        return self._need_client().cancel(self.id)

    def export(self, path: str, format: str = "csv") -> int:
        return self._need_client().export(self.id, path, format=format)

    def plot_regret(self, ax=None, **kwargs):
        from .plots import plot_regret
        return plot_regret(self, self.trials(), ax=ax, **kwargs)

    def plot_curves(self, ax=None, **kwargs):
        from .plots import plot_curves
        return plot_curves(self, self.curves(), ax=ax, **kwargs)


@dataclass
class CurvePoint:
    """One point of a trial's curve; ``metrics`` holds the evaluation metrics by name
    (``<domain>_ce``, ``mean_ce``, extra metrics)."""
    trial_id: int
    seq: int
    step: int
    tokens: int
    train_loss: float
    wall_time_s: float
    metrics: Dict[str, float]

    def value(self, metric: str) -> Optional[float]:
        if metric == "train_loss":
            return self.train_loss
        return self.metrics.get(metric)

    @classmethod
    def from_proto(cls, trial_id: int, p: types_pb2.CurvePoint) -> "CurvePoint":
        return cls(trial_id=trial_id, seq=p.seq, step=p.step, tokens=p.tokens, train_loss=p.train_loss,
                   wall_time_s=p.wall_time_s, metrics=dict(p.eval))


@dataclass
class Trial:
    """One (mixture, scale, steps) run of a study. ``value`` is the objective at the last
    reported point (None until one arrives); ``curve`` is filled by Client.trial()."""
    id: int
    study_id: int
    state: str
    mixture: Dict[str, float]
    scale: str
    steps: int
    steps_done: int
    attempt: int
    worker_id: int
    value: Optional[float]
    failure_reason: str
    gpu_seconds: float
    stop_requested: bool
    created: Optional[_dt.datetime]
    started: Optional[_dt.datetime]
    ended: Optional[_dt.datetime]
    curve: List[CurvePoint] = field(default_factory=list)

    @classmethod
    def from_proto(cls, t: types_pb2.Trial, domains: Sequence[str],
                   points: Sequence[types_pb2.CurvePoint] = ()) -> "Trial":
        return cls(
            id=t.id, study_id=t.study_id, state=trial_state(t.state), mixture=_mixture(domains, t.mixture),
            scale=t.scale, steps=t.steps, steps_done=t.steps_done, attempt=t.attempt, worker_id=t.worker_id,
            value=t.last_value if t.has_value else None, failure_reason=t.failure_reason,
            gpu_seconds=t.gpu_seconds, stop_requested=t.stop_requested, created=_time(t.create_time_unix_ms),
            started=_time(t.start_time_unix_ms), ended=_time(t.end_time_unix_ms),
            curve=[CurvePoint.from_proto(t.id, p) for p in points])

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("curve")
        return d


@dataclass
class Worker:
    id: int
    hostname: str
    state: str
    kind: str
    gpus: int
    running_trials: List[int]
    draining: bool
    last_heartbeat: Optional[_dt.datetime]

    @classmethod
    def from_proto(cls, w: types_pb2.Worker) -> "Worker":
        return cls(id=w.id, hostname=w.hostname, state=_enum_name(types_pb2.WorkerState, w.state, "WORKER_STATE_"),
                   kind=_enum_name(types_pb2.WorkerKind, w.identity.kind, "WORKER_KIND_"), gpus=len(w.gpus),
                   running_trials=list(w.running_trials), draining=w.draining,
                   last_heartbeat=_time(w.last_heartbeat_unix_ms))


class StudyList(list):
    """Studies; to_pandas() gives one row per study."""

    def to_pandas(self):
        pd = _pandas()
        cols = ["id", "name", "state", "spent_flops", "budget_flops", "spent_gpu_hours", "trials_created",
                "committed_flops", "created", "ended", "end_reason"]
        rows = [{c: getattr(s, c) for c in cols} for s in self]
        return pd.DataFrame(rows, columns=cols).set_index("id")


class TrialList(list):
    """Trials; to_pandas() gives one row per trial with a ``w_<domain>`` column per weight."""

    def to_pandas(self):
        pd = _pandas()
        cols = ["id", "study_id", "state", "scale", "steps", "steps_done", "attempt", "worker_id", "value",
                "gpu_seconds", "stop_requested", "failure_reason", "created", "started", "ended"]
        domains: List[str] = []
        for t in self:
            for d in t.mixture:
                if d not in domains:
                    domains.append(d)
        rows = []
        for t in self:
            row = {c: getattr(t, c) for c in cols}
            row["value"] = math.nan if t.value is None else t.value
            for d in domains:
                row["w_" + d] = t.mixture.get(d, math.nan)
            rows.append(row)
        return pd.DataFrame(rows, columns=cols + ["w_" + d for d in domains]).set_index("id")


class CurveList(list):
    """Curve points of one or several trials; to_pandas() gives one row per point with a
    column per metric (NaN where a point lacks it)."""

    def to_pandas(self):
        pd = _pandas()
        cols = ["trial_id", "seq", "step", "tokens", "train_loss", "wall_time_s"]
        metrics = sorted({m for p in self for m in p.metrics})
        rows = []
        for p in self:
            row = {c: getattr(p, c) for c in cols}
            for m in metrics:
                row[m] = p.metrics.get(m, math.nan)
            rows.append(row)
        return pd.DataFrame(rows, columns=cols + metrics)
