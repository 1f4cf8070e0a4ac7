from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FAILURE_CLASS_BAD_DATA: FailureClass
FAILURE_CLASS_BAD_INPUT: FailureClass
FAILURE_CLASS_DIVERGED: FailureClass
FAILURE_CLASS_OOM: FailureClass
FAILURE_CLASS_OTHER: FailureClass
FAILURE_CLASS_UNSPECIFIED: FailureClass
STUDY_STATE_CANCELLED: StudyState
STUDY_STATE_COMPLETED: StudyState
STUDY_STATE_FAILED: StudyState
STUDY_STATE_PAUSED: StudyState
STUDY_STATE_RUNNING: StudyState
STUDY_STATE_UNSPECIFIED: StudyState
TRIAL_STATE_FAILED: TrialState
TRIAL_STATE_LOST: TrialState
TRIAL_STATE_PENDING: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_STOPPED: TrialState
TRIAL_STATE_SUCCEEDED: TrialState
TRIAL_STATE_UNSPECIFIED: TrialState
WORKER_KIND_REAL: WorkerKind
WORKER_KIND_SIMULATED: WorkerKind
WORKER_KIND_UNSPECIFIED: WorkerKind
WORKER_STATE_ALIVE: WorkerState
WORKER_STATE_DRAINING: WorkerState
WORKER_STATE_LOST: WorkerState
WORKER_STATE_UNSPECIFIED: WorkerState

class CurvePoint(_message.Message):
    __slots__ = ["eval", "seq", "step", "tokens", "train_loss", "wall_time_s"]
    class EvalEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVAL_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    eval: _containers.ScalarMap[str, float]
    seq: int
    step: int
    tokens: int
    train_loss: float
    wall_time_s: float
    def __init__(self, seq: _Optional[int] = ..., step: _Optional[int] = ..., tokens: _Optional[int] = ..., train_loss: _Optional[float] = ..., eval: _Optional[_Mapping[str, float]] = ..., wall_time_s: _Optional[float] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ["max_weight", "min_weight", "name"]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    max_weight: float
    min_weight: float
    name: str
    def __init__(self, name: _Optional[str] = ..., min_weight: _Optional[float] = ..., max_weight: _Optional[float] = ...) -> None: ...

class Fidelity(_message.Message):
    __slots__ = ["scale", "steps"]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    scale: str
    steps: int
    def __init__(self, scale: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ["index", "memory_mib", "name"]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    memory_mib: int
    name: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., memory_mib: _Optional[int] = ...) -> None: ...

class Interpreter(_message.Message):
    __slots__ = ["compile_available", "cuda_available", "cuda_version", "devices", "path", "python_version", "torch_version"]
    COMPILE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CUDA_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    compile_available: bool
    cuda_available: bool
    cuda_version: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    path: str
    python_version: str
    torch_version: str
    def __init__(self, path: _Optional[str] = ..., python_version: _Optional[str] = ..., torch_version: _Optional[str] = ..., cuda_version: _Optional[str] = ..., compile_available: bool = ..., cuda_available: bool = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class Mixture(_message.Message):
    __slots__ = ["weights"]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, weights: _Optional[_Iterable[float]] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ["maximize", "metric"]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    maximize: bool
    metric: str
    def __init__(self, metric: _Optional[str] = ..., maximize: bool = ...) -> None: ...

class PriorRun(_message.Message):
    __slots__ = ["curve", "mixture", "scale", "source_run", "steps"]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    MIXTURE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    curve: _containers.RepeatedCompositeFieldContainer[CurvePoint]
    mixture: _containers.RepeatedScalarFieldContainer[float]
    scale: str
    source_run: str
    steps: int
    def __init__(self, scale: _Optional[str] = ..., mixture: _Optional[_Iterable[float]] = ..., steps: _Optional[int] = ..., curve: _Optional[_Iterable[_Union[CurvePoint, _Mapping]]] = ..., source_run: _Optional[str] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ["basis", "has_interval", "label", "lower", "mixture", "observed_scale", "observed_steps", "study_id", "study_state", "target_observed", "trials", "upper", "value", "value_observed"]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    HAS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    MIXTURE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_SCALE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_STEPS_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_OBSERVED_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_OBSERVED_FIELD_NUMBER: _ClassVar[int]
    basis: str
    has_interval: bool
    label: str
    lower: float
    mixture: _containers.RepeatedScalarFieldContainer[float]
    observed_scale: str
    observed_steps: int
    study_id: int
    study_state: StudyState
    target_observed: bool
    trials: int
    upper: float
    value: float
    value_observed: bool
    def __init__(self, study_id: _Optional[int] = ..., mixture: _Optional[_Iterable[float]] = ..., value: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., basis: _Optional[str] = ..., trials: _Optional[int] = ..., target_observed: bool = ..., has_interval: bool = ..., value_observed: bool = ..., observed_scale: _Optional[str] = ..., observed_steps: _Optional[int] = ..., study_state: _Optional[_Union[StudyState, str]] = ..., label: _Optional[str] = ...) -> None: ...

class Scale(_message.Message):
    __slots__ = ["flops_per_step", "gpus", "min_gpu_memory_mib", "name", "params", "pool", "tokens_per_step"]
    FLOPS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    MIN_GPU_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    flops_per_step: float
    gpus: int
    min_gpu_memory_mib: int
    name: str
    params: float
    pool: _containers.RepeatedCompositeFieldContainer[Mixture]
    tokens_per_step: int
    def __init__(self, name: _Optional[str] = ..., params: _Optional[float] = ..., flops_per_step: _Optional[float] = ..., tokens_per_step: _Optional[int] = ..., gpus: _Optional[int] = ..., min_gpu_memory_mib: _Optional[int] = ..., pool: _Optional[_Iterable[_Union[Mixture, _Mapping]]] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ["consecutive_failures", "create_time_unix_ms", "end_reason", "end_time_unix_ms", "final_recommendation", "id", "spec", "spent_flops", "spent_gpu_hours", "state", "trials_created"]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINAL_RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPENT_FLOPS_FIELD_NUMBER: _ClassVar[int]
    SPENT_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_CREATED_FIELD_NUMBER: _ClassVar[int]
    consecutive_failures: int
    create_time_unix_ms: int
    end_reason: str
    end_time_unix_ms: int
    final_recommendation: Recommendation
    id: int
    spec: StudySpec
    spent_flops: float
    spent_gpu_hours: float
    state: StudyState
    trials_created: int
    def __init__(self, id: _Optional[int] = ..., spec: _Optional[_Union[StudySpec, _Mapping]] = ..., state: _Optional[_Union[StudyState, str]] = ..., spent_flops: _Optional[float] = ..., trials_created: _Optional[int] = ..., create_time_unix_ms: _Optional[int] = ..., end_time_unix_ms: _Optional[int] = ..., end_reason: _Optional[str] = ..., spent_gpu_hours: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., final_recommendation: _Optional[_Union[Recommendation, _Mapping]] = ...) -> None: ...

class StudySpec(_message.Message):
    __slots__ = ["budget_flops", "domains", "eval_every", "extra_metrics", "max_consecutive_failures", "max_parallel", "max_trials", "name", "objective", "policy", "prior_runs", "scales", "seed", "steps", "target", "workers"]
    BUDGET_FLOPS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_METRICS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIOR_RUNS_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    budget_flops: float
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    eval_every: int
    extra_metrics: _containers.RepeatedScalarFieldContainer[str]
    max_consecutive_failures: int
    max_parallel: int
    max_trials: int
    name: str
    objective: Objective
    policy: str
    prior_runs: _containers.RepeatedCompositeFieldContainer[PriorRun]
    scales: _containers.RepeatedCompositeFieldContainer[Scale]
    seed: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    target: Fidelity
    workers: WorkerSelector
    def __init__(self, name: _Optional[str] = ..., domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ..., scales: _Optional[_Iterable[_Union[Scale, _Mapping]]] = ..., steps: _Optional[_Iterable[int]] = ..., objective: _Optional[_Union[Objective, _Mapping]] = ..., target: _Optional[_Union[Fidelity, _Mapping]] = ..., budget_flops: _Optional[float] = ..., max_parallel: _Optional[int] = ..., policy: _Optional[str] = ..., seed: _Optional[int] = ..., max_trials: _Optional[int] = ..., eval_every: _Optional[int] = ..., extra_metrics: _Optional[_Iterable[str]] = ..., workers: _Optional[_Union[WorkerSelector, _Mapping]] = ..., max_consecutive_failures: _Optional[int] = ..., prior_runs: _Optional[_Iterable[_Union[PriorRun, _Mapping]]] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ["attempt", "attempt_wall_time_s", "create_time_unix_ms", "end_time_unix_ms", "failure_reason", "gpu_indices", "gpu_seconds", "has_value", "id", "last_seq", "last_value", "lease_id", "manual", "mixture", "reason_history", "scale", "source_distance", "source_run", "start_time_unix_ms", "state", "steps", "steps_done", "stop_requested", "study_id", "uncounted_attempts", "worker_id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HAS_VALUE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_VALUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    MIXTURE_FIELD_NUMBER: _ClassVar[int]
    REASON_HISTORY_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RUN_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    UNCOUNTED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    attempt_wall_time_s: float
    create_time_unix_ms: int
    end_time_unix_ms: int
    failure_reason: str
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    gpu_seconds: float
    has_value: bool
    id: int
    last_seq: int
    last_value: float
    lease_id: str
    manual: bool
    mixture: _containers.RepeatedScalarFieldContainer[float]
    reason_history: _containers.RepeatedScalarFieldContainer[str]
    scale: str
    source_distance: float
    source_run: str
    start_time_unix_ms: int
    state: TrialState
    steps: int
    steps_done: int
    stop_requested: bool
    study_id: int
    uncounted_attempts: int
    worker_id: int
    def __init__(self, id: _Optional[int] = ..., study_id: _Optional[int] = ..., mixture: _Optional[_Iterable[float]] = ..., scale: _Optional[str] = ..., steps: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., attempt: _Optional[int] = ..., lease_id: _Optional[str] = ..., worker_id: _Optional[int] = ..., last_seq: _Optional[int] = ..., steps_done: _Optional[int] = ..., last_value: _Optional[float] = ..., has_value: bool = ..., failure_reason: _Optional[str] = ..., source_run: _Optional[str] = ..., source_distance: _Optional[float] = ..., create_time_unix_ms: _Optional[int] = ..., start_time_unix_ms: _Optional[int] = ..., end_time_unix_ms: _Optional[int] = ..., reason_history: _Optional[_Iterable[str]] = ..., gpu_indices: _Optional[_Iterable[int]] = ..., gpu_seconds: _Optional[float] = ..., stop_requested: bool = ..., attempt_wall_time_s: _Optional[float] = ..., uncounted_attempts: _Optional[int] = ..., manual: bool = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ["draining", "gpus", "hostname", "id", "identity", "last_heartbeat_unix_ms", "register_time_unix_ms", "running_trials", "simulated_capacity", "state"]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TRIALS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    hostname: str
    id: int
    identity: WorkerIdentity
    last_heartbeat_unix_ms: int
    register_time_unix_ms: int
    running_trials: _containers.RepeatedScalarFieldContainer[int]
    simulated_capacity: int
    state: WorkerState
    def __init__(self, id: _Optional[int] = ..., hostname: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., simulated_capacity: _Optional[int] = ..., state: _Optional[_Union[WorkerState, str]] = ..., register_time_unix_ms: _Optional[int] = ..., last_heartbeat_unix_ms: _Optional[int] = ..., running_trials: _Optional[_Iterable[int]] = ..., draining: bool = ..., identity: _Optional[_Union[WorkerIdentity, _Mapping]] = ...) -> None: ...

class WorkerIdentity(_message.Message):
    __slots__ = ["interpreter", "kind", "labels", "sim_source"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INTERPRETER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SIM_SOURCE_FIELD_NUMBER: _ClassVar[int]
    interpreter: Interpreter
    kind: WorkerKind
    labels: _containers.ScalarMap[str, str]
    sim_source: str
    def __init__(self, kind: _Optional[_Union[WorkerKind, str]] = ..., sim_source: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., interpreter: _Optional[_Union[Interpreter, _Mapping]] = ...) -> None: ...

class WorkerSelector(_message.Message):
    __slots__ = ["kinds", "labels"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[WorkerKind]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, kinds: _Optional[_Iterable[_Union[WorkerKind, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class FailureClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WorkerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
