from mixopt.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddTrialRequest(_message.Message):
    __slots__ = ["mixture", "scale", "steps", "study_id"]
    MIXTURE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    mixture: _containers.RepeatedScalarFieldContainer[float]
    scale: str
    steps: int
    study_id: int
    def __init__(self, study_id: _Optional[int] = ..., mixture: _Optional[_Iterable[float]] = ..., scale: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class AddTrialResponse(_message.Message):
    __slots__ = ["trial"]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _types_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_types_pb2.Trial, _Mapping]] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ["chunk"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class CancelStudyRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class CancelStudyResponse(_message.Message):
    __slots__ = ["study"]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _types_pb2.Study
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ...) -> None: ...

class CancelTrialRequest(_message.Message):
    __slots__ = ["trial_id"]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    trial_id: int
    def __init__(self, trial_id: _Optional[int] = ...) -> None: ...

class CancelTrialResponse(_message.Message):
    __slots__ = ["trial"]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _types_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_types_pb2.Trial, _Mapping]] = ...) -> None: ...

class CreateStudyRequest(_message.Message):
    __slots__ = ["spec"]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.StudySpec
    def __init__(self, spec: _Optional[_Union[_types_pb2.StudySpec, _Mapping]] = ...) -> None: ...

class CreateStudyResponse(_message.Message):
    __slots__ = ["study"]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _types_pb2.Study
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ...) -> None: ...

class DeleteStudyRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class DeleteStudyResponse(_message.Message):
    __slots__ = ["trials_deleted"]
    TRIALS_DELETED_FIELD_NUMBER: _ClassVar[int]
    trials_deleted: int
    def __init__(self, trials_deleted: _Optional[int] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ["undrain", "worker_id"]
    UNDRAIN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    undrain: bool
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ..., undrain: bool = ...) -> None: ...

class DrainWorkerResponse(_message.Message):
    __slots__ = ["worker"]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: _types_pb2.Worker
    def __init__(self, worker: _Optional[_Union[_types_pb2.Worker, _Mapping]] = ...) -> None: ...

class ForgetWorkerRequest(_message.Message):
    __slots__ = ["worker_id"]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ...) -> None: ...

class ForgetWorkerResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetRecommendationRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class GetRecommendationResponse(_message.Message):
    __slots__ = ["recommendation"]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    recommendation: _types_pb2.Recommendation
    def __init__(self, recommendation: _Optional[_Union[_types_pb2.Recommendation, _Mapping]] = ...) -> None: ...

class GetStoreHealthRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStoreHealthResponse(_message.Message):
    __slots__ = ["last_write_error", "last_write_error_unix_ms", "last_write_ok_unix_ms", "write_failures"]
    LAST_WRITE_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_WRITE_ERROR_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_WRITE_OK_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WRITE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    last_write_error: str
    last_write_error_unix_ms: int
    last_write_ok_unix_ms: int
    write_failures: int
    def __init__(self, write_failures: _Optional[int] = ..., last_write_error: _Optional[str] = ..., last_write_error_unix_ms: _Optional[int] = ..., last_write_ok_unix_ms: _Optional[int] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class GetStudyResponse(_message.Message):
    __slots__ = ["status"]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: StudyStatus
    def __init__(self, status: _Optional[_Union[StudyStatus, _Mapping]] = ...) -> None: ...

class GetTrialRequest(_message.Message):
    __slots__ = ["trial_id"]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    trial_id: int
    def __init__(self, trial_id: _Optional[int] = ...) -> None: ...

class GetTrialResponse(_message.Message):
    __slots__ = ["points", "trial"]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_types_pb2.CurvePoint]
    trial: _types_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_types_pb2.Trial, _Mapping]] = ..., points: _Optional[_Iterable[_Union[_types_pb2.CurvePoint, _Mapping]]] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ["next_page_token", "studies"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    studies: _containers.RepeatedCompositeFieldContainer[StudyStatus]
    def __init__(self, studies: _Optional[_Iterable[_Union[StudyStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "scale", "state", "study_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    scale: str
    state: _types_pb2.TrialState
    study_id: int
    def __init__(self, study_id: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.TrialState, str]] = ..., scale: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ["next_page_token", "trials"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    trials: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trial]
    def __init__(self, trials: _Optional[_Iterable[_Union[_types_pb2.Trial, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ["next_page_token", "workers"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[_types_pb2.Worker, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseStudyRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class PauseStudyResponse(_message.Message):
    __slots__ = ["study"]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _types_pb2.Study
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ...) -> None: ...

class ResumeStudyRequest(_message.Message):
    __slots__ = ["study_id"]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: int
    def __init__(self, study_id: _Optional[int] = ...) -> None: ...

class ResumeStudyResponse(_message.Message):
    __slots__ = ["study"]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _types_pb2.Study
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ...) -> None: ...

class StudyStatus(_message.Message):
    __slots__ = ["committed_flops", "recommendation", "study", "trials_by_state"]
    class TrialsByStateEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COMMITTED_FLOPS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TRIALS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    committed_flops: float
    recommendation: _types_pb2.Recommendation
    study: _types_pb2.Study
    trials_by_state: _containers.ScalarMap[str, int]
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ..., trials_by_state: _Optional[_Mapping[str, int]] = ..., committed_flops: _Optional[float] = ..., recommendation: _Optional[_Union[_types_pb2.Recommendation, _Mapping]] = ...) -> None: ...

class UpdateStudyRequest(_message.Message):
    __slots__ = ["budget_flops", "max_consecutive_failures", "max_parallel", "max_trials", "study_id"]
    BUDGET_FLOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    budget_flops: float
    max_consecutive_failures: int
    max_parallel: int
    max_trials: int
    study_id: int
    def __init__(self, study_id: _Optional[int] = ..., budget_flops: _Optional[float] = ..., max_trials: _Optional[int] = ..., max_parallel: _Optional[int] = ..., max_consecutive_failures: _Optional[int] = ...) -> None: ...

class UpdateStudyResponse(_message.Message):
    __slots__ = ["study"]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _types_pb2.Study
    def __init__(self, study: _Optional[_Union[_types_pb2.Study, _Mapping]] = ...) -> None: ...

class VerifyStoreRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class VerifyStoreResponse(_message.Message):
    __slots__ = ["duration_ms", "problems", "records"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    records: int
    def __init__(self, problems: _Optional[_Iterable[str]] = ..., records: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...
