import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReleaseOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_OUTCOME_UNSPECIFIED: _ClassVar[ReleaseOutcome]
    RELEASE_OUTCOME_RELEASED: _ClassVar[ReleaseOutcome]
    RELEASE_OUTCOME_ALREADY_RELEASED: _ClassVar[ReleaseOutcome]
    RELEASE_OUTCOME_EXPIRED: _ClassVar[ReleaseOutcome]
    RELEASE_OUTCOME_UNKNOWN: _ClassVar[ReleaseOutcome]
RELEASE_OUTCOME_UNSPECIFIED: ReleaseOutcome
RELEASE_OUTCOME_RELEASED: ReleaseOutcome
RELEASE_OUTCOME_ALREADY_RELEASED: ReleaseOutcome
RELEASE_OUTCOME_EXPIRED: ReleaseOutcome
RELEASE_OUTCOME_UNKNOWN: ReleaseOutcome

class AcquireRequest(_message.Message):
    __slots__ = ("resource", "load", "priority", "lane", "timeout", "key")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    resource: str
    load: float
    priority: int
    lane: str
    timeout: _duration_pb2.Duration
    key: str
    def __init__(self, resource: _Optional[str] = ..., load: _Optional[float] = ..., priority: _Optional[int] = ..., lane: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., key: _Optional[str] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ("lease", "wait_time")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIME_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    wait_time: _duration_pb2.Duration
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., wait_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "resource", "load", "expire_time", "ttl", "grant_time")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    GRANT_TIME_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    resource: str
    load: float
    expire_time: _timestamp_pb2.Timestamp
    ttl: _duration_pb2.Duration
    grant_time: _timestamp_pb2.Timestamp
    def __init__(self, lease_id: _Optional[str] = ..., resource: _Optional[str] = ..., load: _Optional[float] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grant_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("lease_id", "actual_load", "feedback")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_LOAD_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    actual_load: float
    feedback: ProviderFeedback
    def __init__(self, lease_id: _Optional[str] = ..., actual_load: _Optional[float] = ..., feedback: _Optional[_Union[ProviderFeedback, _Mapping]] = ...) -> None: ...

class ProviderFeedback(_message.Message):
    __slots__ = ("throttled", "retry_after", "requests", "load", "input_tokens", "output_tokens")
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    throttled: bool
    retry_after: _duration_pb2.Duration
    requests: DimensionFeedback
    load: DimensionFeedback
    input_tokens: DimensionFeedback
    output_tokens: DimensionFeedback
    def __init__(self, throttled: bool = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., requests: _Optional[_Union[DimensionFeedback, _Mapping]] = ..., load: _Optional[_Union[DimensionFeedback, _Mapping]] = ..., input_tokens: _Optional[_Union[DimensionFeedback, _Mapping]] = ..., output_tokens: _Optional[_Union[DimensionFeedback, _Mapping]] = ...) -> None: ...

class DimensionFeedback(_message.Message):
    __slots__ = ("limit", "limit_period", "remaining", "reset")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    limit: float
    limit_period: _duration_pb2.Duration
    remaining: float
    reset: _duration_pb2.Duration
    def __init__(self, limit: _Optional[float] = ..., limit_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., remaining: _Optional[float] = ..., reset: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("resource", "feedback")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    resource: str
    feedback: ProviderFeedback
    def __init__(self, resource: _Optional[str] = ..., feedback: _Optional[_Union[ProviderFeedback, _Mapping]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("paused_until",)
    PAUSED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    paused_until: _timestamp_pb2.Timestamp
    def __init__(self, paused_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("outcome", "message")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    outcome: ReleaseOutcome
    message: str
    def __init__(self, outcome: _Optional[_Union[ReleaseOutcome, str]] = ..., message: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("lease_ids",)
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    lease_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lease_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LeaseState(_message.Message):
    __slots__ = ("lease_id", "held", "expire_time")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    held: bool
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, lease_id: _Optional[str] = ..., held: bool = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseState]
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseState, _Mapping]]] = ...) -> None: ...

class SessionCancel(_message.Message):
    __slots__ = ("acquire_request_id",)
    ACQUIRE_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    acquire_request_id: int
    def __init__(self, acquire_request_id: _Optional[int] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("request_id", "acquire", "release", "heartbeat", "cancel", "report", "batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    acquire: AcquireRequest
    release: ReleaseRequest
    heartbeat: HeartbeatRequest
    cancel: SessionCancel
    report: ReportRequest
    batch: SessionRequestBatch
    def __init__(self, request_id: _Optional[int] = ..., acquire: _Optional[_Union[AcquireRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatRequest, _Mapping]] = ..., cancel: _Optional[_Union[SessionCancel, _Mapping]] = ..., report: _Optional[_Union[ReportRequest, _Mapping]] = ..., batch: _Optional[_Union[SessionRequestBatch, _Mapping]] = ...) -> None: ...

class SessionRequestBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SessionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SessionRequest, _Mapping]]] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class LeaseExpired(_message.Message):
    __slots__ = ("lease_id", "resource")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    resource: str
    def __init__(self, lease_id: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("request_id", "granted", "released", "heartbeat", "failure", "lease_expired", "reported", "batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    granted: AcquireResponse
    released: ReleaseResponse
    heartbeat: HeartbeatResponse
    failure: Failure
    lease_expired: LeaseExpired
    reported: ReportResponse
    batch: SessionResponseBatch
    def __init__(self, request_id: _Optional[int] = ..., granted: _Optional[_Union[AcquireResponse, _Mapping]] = ..., released: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatResponse, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., lease_expired: _Optional[_Union[LeaseExpired, _Mapping]] = ..., reported: _Optional[_Union[ReportResponse, _Mapping]] = ..., batch: _Optional[_Union[SessionResponseBatch, _Mapping]] = ...) -> None: ...

class SessionResponseBatch(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SessionResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SessionResponse, _Mapping]]] = ...) -> None: ...
