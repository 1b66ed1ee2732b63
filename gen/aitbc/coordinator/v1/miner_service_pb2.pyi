import datetime

from aitbc.coordinator.v1 import job_pb2 as _job_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Gpu(_message.Message):
    __slots__ = ("name", "memory_mb")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    name: str
    memory_mb: int
    def __init__(self, name: _Optional[str] = ..., memory_mb: _Optional[int] = ...) -> None: ...

class ServiceOffer(_message.Message):
    __slots__ = ("service", "unit_price", "unit_type")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    service: str
    unit_price: str
    unit_type: str
    def __init__(self, service: _Optional[str] = ..., unit_price: _Optional[str] = ..., unit_type: _Optional[str] = ...) -> None: ...

class MinerCapabilities(_message.Message):
    __slots__ = ("gpus", "cuda_version", "region", "models", "services", "slots", "cpu_cores", "memory_mb", "agent_version")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    cuda_version: str
    region: str
    models: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedCompositeFieldContainer[ServiceOffer]
    slots: int
    cpu_cores: int
    memory_mb: int
    agent_version: str
    def __init__(self, gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., cuda_version: _Optional[str] = ..., region: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[_Union[ServiceOffer, _Mapping]]] = ..., slots: _Optional[int] = ..., cpu_cores: _Optional[int] = ..., memory_mb: _Optional[int] = ..., agent_version: _Optional[str] = ...) -> None: ...

class HeldLease(_message.Message):
    __slots__ = ("lease_id", "job_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("capabilities", "held_leases", "heartbeat_interval_ms", "public_key", "accepts_batches")
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    HELD_LEASES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    capabilities: MinerCapabilities
    held_leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    heartbeat_interval_ms: int
    public_key: str
    accepts_batches: bool
    def __init__(self, capabilities: _Optional[_Union[MinerCapabilities, _Mapping]] = ..., held_leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ..., heartbeat_interval_ms: _Optional[int] = ..., public_key: _Optional[str] = ..., accepts_batches: _Optional[bool] = ...) -> None: ...

class MinerHeartbeat(_message.Message):
    __slots__ = ("interval_ms", "lease_ids", "load")
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    load: float
    def __init__(self, interval_ms: _Optional[int] = ..., lease_ids: _Optional[_Iterable[str]] = ..., load: _Optional[float] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("lease_id", "job_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class JobProgressUpdate(_message.Message):
    __slots__ = ("lease_id", "job_id", "fraction", "message")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    fraction: float
    message: str
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class MinerClaim(_message.Message):
    __slots__ = ("job_id", "lease_id", "miner_id", "artifact_hash", "started_at", "completed_at", "alg", "key_id", "sig")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MINER_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_HASH_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_id: str
    miner_id: str
    artifact_hash: str
    started_at: int
    completed_at: int
    alg: str
    key_id: str
    sig: str
    def __init__(self, job_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., miner_id: _Optional[str] = ..., artifact_hash: _Optional[str] = ..., started_at: _Optional[int] = ..., completed_at: _Optional[int] = ..., alg: _Optional[str] = ..., key_id: _Optional[str] = ..., sig: _Optional[str] = ...) -> None: ...

class JobResultDelivery(_message.Message):
    __slots__ = ("lease_id", "job_id", "result", "claim")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    result: _job_pb2.JobResult
    claim: MinerClaim
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ..., result: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., claim: _Optional[_Union[MinerClaim, _Mapping]] = ...) -> None: ...

class JobFailure(_message.Message):
    __slots__ = ("lease_id", "job_id", "code", "message", "retryable")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    code: str
    message: str
    retryable: bool
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "heartbeat", "started", "progress", "result", "failure", "drain", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: MinerHeartbeat
    started: JobStarted
    progress: JobProgressUpdate
    result: JobResultDelivery
    failure: JobFailure
    drain: DrainNotice
    batch: ConnectRequestBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[MinerHeartbeat, _Mapping]] = ..., started: _Optional[_Union[JobStarted, _Mapping]] = ..., progress: _Optional[_Union[JobProgressUpdate, _Mapping]] = ..., result: _Optional[_Union[JobResultDelivery, _Mapping]] = ..., failure: _Optional[_Union[JobFailure, _Mapping]] = ..., drain: _Optional[_Union[DrainNotice, _Mapping]] = ..., batch: _Optional[_Union[ConnectRequestBatch, _Mapping]] = ...) -> None: ...

class ConnectRequestBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectRequest, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("miner_id", "session_id", "kept_lease_ids", "dropped_lease_ids", "heartbeat_interval_ms", "accepts_batches")
    MINER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KEPT_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    miner_id: str
    session_id: str
    kept_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    dropped_lease_ids: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_interval_ms: int
    accepts_batches: bool
    def __init__(self, miner_id: _Optional[str] = ..., session_id: _Optional[str] = ..., kept_lease_ids: _Optional[_Iterable[str]] = ..., dropped_lease_ids: _Optional[_Iterable[str]] = ..., heartbeat_interval_ms: _Optional[int] = ..., accepts_batches: _Optional[bool] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("lease_id", "job", "deadline")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job: _job_pb2.Job
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, lease_id: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelNotice(_message.Message):
    __slots__ = ("lease_id", "job_id", "reason")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    reason: str
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DrainNotice(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("lease_id", "job_id", "accepted", "code", "message", "receipt")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    job_id: str
    accepted: bool
    code: str
    message: str
    receipt: str
    def __init__(self, lease_id: _Optional[str] = ..., job_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., receipt: _Optional[str] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "assignment", "cancel", "drain", "ack", "batch")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assignment: Assignment
    cancel: CancelNotice
    drain: DrainNotice
    ack: Ack
    batch: ConnectResponseBatch
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelNotice, _Mapping]] = ..., drain: _Optional[_Union[DrainNotice, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., batch: _Optional[_Union[ConnectResponseBatch, _Mapping]] = ...) -> None: ...

class ConnectResponseBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectResponse]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectResponse, _Mapping]]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("capabilities", "public_key")
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    capabilities: MinerCapabilities
    public_key: str
    def __init__(self, capabilities: _Optional[_Union[MinerCapabilities, _Mapping]] = ..., public_key: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("miner_id", "session_token", "heartbeat_interval_ms")
    MINER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    miner_id: str
    session_token: str
    heartbeat_interval_ms: int
    def __init__(self, miner_id: _Optional[str] = ..., session_token: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("session_token", "lease_ids", "load")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    load: float
    def __init__(self, session_token: _Optional[str] = ..., lease_ids: _Optional[_Iterable[str]] = ..., load: _Optional[float] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("cancels", "draining")
    CANCELS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    cancels: _containers.RepeatedCompositeFieldContainer[CancelNotice]
    draining: bool
    def __init__(self, cancels: _Optional[_Iterable[_Union[CancelNotice, _Mapping]]] = ..., draining: _Optional[bool] = ...) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("session_token", "max_wait_seconds")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    max_wait_seconds: int
    def __init__(self, session_token: _Optional[str] = ..., max_wait_seconds: _Optional[int] = ...) -> None: ...

class PollResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class SubmitResultRequest(_message.Message):
    __slots__ = ("job_id", "lease_id", "result", "claim")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_id: str
    result: _job_pb2.JobResult
    claim: MinerClaim
    def __init__(self, job_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., result: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., claim: _Optional[_Union[MinerClaim, _Mapping]] = ...) -> None: ...

class SubmitResultResponse(_message.Message):
    __slots__ = ("ack", "receipt")
    ACK_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    receipt: str
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ..., receipt: _Optional[str] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("job_id", "lease_id", "code", "message", "retryable")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_id: str
    code: str
    message: str
    retryable: bool
    def __init__(self, job_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class DrainResponse(_message.Message):
    __slots__ = ("draining",)
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    def __init__(self, draining: _Optional[bool] = ...) -> None: ...
