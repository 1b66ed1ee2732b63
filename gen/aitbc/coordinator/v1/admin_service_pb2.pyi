import datetime

from aitbc.coordinator.v1 import job_pb2 as _job_pb2
from aitbc.coordinator.v1 import miner_service_pb2 as _miner_service_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MinerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MINER_STATUS_UNSPECIFIED: _ClassVar[MinerStatus]
    MINER_STATUS_ONLINE: _ClassVar[MinerStatus]
    MINER_STATUS_DRAINING: _ClassVar[MinerStatus]
    MINER_STATUS_OFFLINE: _ClassVar[MinerStatus]
MINER_STATUS_UNSPECIFIED: MinerStatus
MINER_STATUS_ONLINE: MinerStatus
MINER_STATUS_DRAINING: MinerStatus
MINER_STATUS_OFFLINE: MinerStatus

class GetStatsRequest(_message.Message):
    __slots__ = ("window_seconds",)
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: int
    def __init__(self, window_seconds: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("jobs_by_state", "miners_online", "miners_draining", "miners_offline", "queue_depth", "window_seconds", "completed_in_window", "throughput_per_second", "latency_p50_ms", "latency_p99_ms")
    class JobsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOBS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    MINERS_ONLINE_FIELD_NUMBER: _ClassVar[int]
    MINERS_DRAINING_FIELD_NUMBER: _ClassVar[int]
    MINERS_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    jobs_by_state: _containers.ScalarMap[str, int]
    miners_online: int
    miners_draining: int
    miners_offline: int
    queue_depth: int
    window_seconds: int
    completed_in_window: int
    throughput_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    def __init__(self, jobs_by_state: _Optional[_Mapping[str, int]] = ..., miners_online: _Optional[int] = ..., miners_draining: _Optional[int] = ..., miners_offline: _Optional[int] = ..., queue_depth: _Optional[int] = ..., window_seconds: _Optional[int] = ..., completed_in_window: _Optional[int] = ..., throughput_per_second: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ...) -> None: ...

class AdminServiceListJobsRequest(_message.Message):
    __slots__ = ("state", "client_id", "miner_id", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MINER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: _job_pb2.JobState
    client_id: str
    miner_id: str
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[_job_pb2.JobState, str]] = ..., client_id: _Optional[str] = ..., miner_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AdminServiceListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MinerInfo(_message.Message):
    __slots__ = ("miner_id", "status", "mode", "slots", "inflight", "last_heartbeat_at", "completed", "failed", "avg_duration_ms", "capabilities")
    MINER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    AVG_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    miner_id: str
    status: MinerStatus
    mode: str
    slots: int
    inflight: int
    last_heartbeat_at: _timestamp_pb2.Timestamp
    completed: int
    failed: int
    avg_duration_ms: float
    capabilities: _miner_service_pb2.MinerCapabilities
    def __init__(self, miner_id: _Optional[str] = ..., status: _Optional[_Union[MinerStatus, str]] = ..., mode: _Optional[str] = ..., slots: _Optional[int] = ..., inflight: _Optional[int] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., avg_duration_ms: _Optional[float] = ..., capabilities: _Optional[_Union[_miner_service_pb2.MinerCapabilities, _Mapping]] = ...) -> None: ...

class ListMinersRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: MinerStatus
    def __init__(self, status: _Optional[_Union[MinerStatus, str]] = ...) -> None: ...

class ListMinersResponse(_message.Message):
    __slots__ = ("miners",)
    MINERS_FIELD_NUMBER: _ClassVar[int]
    miners: _containers.RepeatedCompositeFieldContainer[MinerInfo]
    def __init__(self, miners: _Optional[_Iterable[_Union[MinerInfo, _Mapping]]] = ...) -> None: ...
