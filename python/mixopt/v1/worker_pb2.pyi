from mixopt.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AcquireTrialRequest(_message.Message):
    __slots__ = ["study_id", "wait_ms", "worker_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    wait_ms: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., wait_ms: _Optional[int] = ..., study_id: _Optional[int] = ...) -> None: ...

class AcquireTrialResponse(_message.Message):
    __slots__ = ["assignment"]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ["attempt", "domains", "eval_every", "gpu_indices", "lease_id", "lease_ttl_ms", "scale", "seed", "trial"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    domains: _containers.RepeatedScalarFieldContainer[str]
    eval_every: int
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    lease_id: str
    lease_ttl_ms: int
    scale: _types_pb2.Scale
    seed: int
    trial: _types_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_types_pb2.Trial, _Mapping]] = ..., domains: _Optional[_Iterable[str]] = ..., scale: _Optional[_Union[_types_pb2.Scale, _Mapping]] = ..., lease_id: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_ttl_ms: _Optional[int] = ..., eval_every: _Optional[int] = ..., seed: _Optional[int] = ..., gpu_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class FailTrialRequest(_message.Message):
    __slots__ = ["attempt", "error_class", "failure_class", "lease_id", "reason", "trial_id", "worker_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CLASS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    error_class: str
    failure_class: _types_pb2.FailureClass
    lease_id: str
    reason: str
    trial_id: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., trial_id: _Optional[int] = ..., lease_id: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ..., error_class: _Optional[str] = ..., failure_class: _Optional[_Union[_types_pb2.FailureClass, str]] = ...) -> None: ...

class FailTrialResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class FinishTrialRequest(_message.Message):
    __slots__ = ["attempt", "final_seq", "lease_id", "source_distance", "source_run", "trial_id", "worker_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FINAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    final_seq: int
    lease_id: str
    source_distance: float
    source_run: str
    trial_id: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., trial_id: _Optional[int] = ..., lease_id: _Optional[str] = ..., attempt: _Optional[int] = ..., final_seq: _Optional[int] = ..., source_run: _Optional[str] = ..., source_distance: _Optional[float] = ...) -> None: ...

class FinishTrialResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ["leases", "released_leases", "worker_id"]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    RELEASED_LEASES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    released_leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ..., released_leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ["fence_after_ms", "lease_ttl_ms", "stop_leases", "stop_trials"]
    FENCE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_LEASES_FIELD_NUMBER: _ClassVar[int]
    STOP_TRIALS_FIELD_NUMBER: _ClassVar[int]
    fence_after_ms: int
    lease_ttl_ms: int
    stop_leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    stop_trials: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stop_trials: _Optional[_Iterable[int]] = ..., lease_ttl_ms: _Optional[int] = ..., fence_after_ms: _Optional[int] = ..., stop_leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ...) -> None: ...

class HeldLease(_message.Message):
    __slots__ = ["attempt", "lease_id", "trial_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    lease_id: str
    trial_id: int
    def __init__(self, trial_id: _Optional[int] = ..., lease_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ["gpus", "hostname", "identity", "leases", "simulated_capacity", "worker_id"]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.Gpu]
    hostname: str
    identity: _types_pb2.WorkerIdentity
    leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    simulated_capacity: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., hostname: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.Gpu, _Mapping]]] = ..., simulated_capacity: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ..., identity: _Optional[_Union[_types_pb2.WorkerIdentity, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ["fence_after_ms", "heartbeat_interval_ms", "lease_ttl_ms", "worker_id"]
    FENCE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    fence_after_ms: int
    heartbeat_interval_ms: int
    lease_ttl_ms: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., lease_ttl_ms: _Optional[int] = ..., fence_after_ms: _Optional[int] = ...) -> None: ...

class ReportPointsRequest(_message.Message):
    __slots__ = ["attempt", "lease_id", "points", "trial_id", "worker_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    lease_id: str
    points: _containers.RepeatedCompositeFieldContainer[_types_pb2.CurvePoint]
    trial_id: int
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., trial_id: _Optional[int] = ..., lease_id: _Optional[str] = ..., attempt: _Optional[int] = ..., points: _Optional[_Iterable[_Union[_types_pb2.CurvePoint, _Mapping]]] = ...) -> None: ...

class ReportPointsResponse(_message.Message):
    __slots__ = ["acked_seq", "stop"]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    stop: bool
    def __init__(self, acked_seq: _Optional[int] = ..., stop: bool = ...) -> None: ...
