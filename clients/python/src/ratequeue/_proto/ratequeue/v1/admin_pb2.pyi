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

class Dimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_UNSPECIFIED: _ClassVar[Dimension]
    DIMENSION_REQUESTS: _ClassVar[Dimension]
    DIMENSION_LOAD: _ClassVar[Dimension]

class ApiKeyRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_KEY_ROLE_UNSPECIFIED: _ClassVar[ApiKeyRole]
    API_KEY_ROLE_WORKER: _ClassVar[ApiKeyRole]
    API_KEY_ROLE_ADMIN: _ClassVar[ApiKeyRole]
    API_KEY_ROLE_ROOT: _ClassVar[ApiKeyRole]
DIMENSION_UNSPECIFIED: Dimension
DIMENSION_REQUESTS: Dimension
DIMENSION_LOAD: Dimension
API_KEY_ROLE_UNSPECIFIED: ApiKeyRole
API_KEY_ROLE_WORKER: ApiKeyRole
API_KEY_ROLE_ADMIN: ApiKeyRole
API_KEY_ROLE_ROOT: ApiKeyRole

class Limit(_message.Message):
    __slots__ = ("dimension", "amount", "period", "burst", "unit")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    dimension: Dimension
    amount: float
    period: _duration_pb2.Duration
    burst: float
    unit: str
    def __init__(self, dimension: _Optional[_Union[Dimension, str]] = ..., amount: _Optional[float] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., burst: _Optional[float] = ..., unit: _Optional[str] = ...) -> None: ...

class Lane(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("name", "limits", "concurrency", "lanes", "default_lane", "lease_ttl", "max_queue", "cooldown", "learn_limits", "parent", "share", "per_key", "per_key_idle", "children_from", "keyed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LANE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_FIELD_NUMBER: _ClassVar[int]
    LEARN_LIMITS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_IDLE_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FROM_FIELD_NUMBER: _ClassVar[int]
    KEYED_FIELD_NUMBER: _ClassVar[int]
    name: str
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    concurrency: int
    lanes: _containers.RepeatedCompositeFieldContainer[Lane]
    default_lane: str
    lease_ttl: _duration_pb2.Duration
    max_queue: int
    cooldown: _duration_pb2.Duration
    learn_limits: bool
    parent: str
    share: int
    per_key: KeyedChildTemplate
    per_key_idle: _duration_pb2.Duration
    children_from: _containers.RepeatedScalarFieldContainer[str]
    keyed: bool
    def __init__(self, name: _Optional[str] = ..., limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ..., concurrency: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[Lane, _Mapping]]] = ..., default_lane: _Optional[str] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_queue: _Optional[int] = ..., cooldown: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., learn_limits: bool = ..., parent: _Optional[str] = ..., share: _Optional[int] = ..., per_key: _Optional[_Union[KeyedChildTemplate, _Mapping]] = ..., per_key_idle: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., children_from: _Optional[_Iterable[str]] = ..., keyed: bool = ...) -> None: ...

class KeyedChildTemplate(_message.Message):
    __slots__ = ("limits", "concurrency", "share")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    concurrency: int
    share: int
    def __init__(self, limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ..., concurrency: _Optional[int] = ..., share: _Optional[int] = ...) -> None: ...

class PutResourceRequest(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class PutResourceResponse(_message.Message):
    __slots__ = ("resource", "created")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    created: bool
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., created: bool = ...) -> None: ...

class PutResourcesRequest(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class PutResourcesResponse(_message.Message):
    __slots__ = ("created", "replaced")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    created: int
    replaced: int
    def __init__(self, created: _Optional[int] = ..., replaced: _Optional[int] = ...) -> None: ...

class GetResourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetResourceResponse(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class ListResourcesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "parent")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    parent: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., parent: _Optional[str] = ...) -> None: ...

class ListResourcesResponse(_message.Message):
    __slots__ = ("resources", "next_page_token")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    next_page_token: str
    def __init__(self, resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteResourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteResourceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResourceStatsRequest(_message.Message):
    __slots__ = ("name", "children_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    children_limit: int
    def __init__(self, name: _Optional[str] = ..., children_limit: _Optional[int] = ...) -> None: ...

class LaneStats(_message.Message):
    __slots__ = ("name", "weight", "queue_depth", "grants", "load_granted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_GRANTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    queue_depth: int
    grants: int
    load_granted: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ..., queue_depth: _Optional[int] = ..., grants: _Optional[int] = ..., load_granted: _Optional[float] = ...) -> None: ...

class LimitStats(_message.Message):
    __slots__ = ("limit", "available", "utilisation", "used_last_period", "learned_amount")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UTILISATION_FIELD_NUMBER: _ClassVar[int]
    USED_LAST_PERIOD_FIELD_NUMBER: _ClassVar[int]
    LEARNED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    available: float
    utilisation: float
    used_last_period: float
    learned_amount: float
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ..., available: _Optional[float] = ..., utilisation: _Optional[float] = ..., used_last_period: _Optional[float] = ..., learned_amount: _Optional[float] = ...) -> None: ...

class ResourceStats(_message.Message):
    __slots__ = ("name", "leases_in_flight", "lanes", "limits", "grants", "rejections", "timeouts", "cancellations", "expirations", "wait_p50", "wait_p90", "wait_p99", "wait_max", "paused_until", "throttles", "children", "children_count", "parent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEASES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONS_FIELD_NUMBER: _ClassVar[int]
    WAIT_P50_FIELD_NUMBER: _ClassVar[int]
    WAIT_P90_FIELD_NUMBER: _ClassVar[int]
    WAIT_P99_FIELD_NUMBER: _ClassVar[int]
    WAIT_MAX_FIELD_NUMBER: _ClassVar[int]
    PAUSED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    THROTTLES_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    leases_in_flight: int
    lanes: _containers.RepeatedCompositeFieldContainer[LaneStats]
    limits: _containers.RepeatedCompositeFieldContainer[LimitStats]
    grants: int
    rejections: int
    timeouts: int
    cancellations: int
    expirations: int
    wait_p50: _duration_pb2.Duration
    wait_p90: _duration_pb2.Duration
    wait_p99: _duration_pb2.Duration
    wait_max: _duration_pb2.Duration
    paused_until: _timestamp_pb2.Timestamp
    throttles: int
    children: _containers.RepeatedCompositeFieldContainer[ChildStats]
    children_count: int
    parent: ParentStats
    def __init__(self, name: _Optional[str] = ..., leases_in_flight: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[LaneStats, _Mapping]]] = ..., limits: _Optional[_Iterable[_Union[LimitStats, _Mapping]]] = ..., grants: _Optional[int] = ..., rejections: _Optional[int] = ..., timeouts: _Optional[int] = ..., cancellations: _Optional[int] = ..., expirations: _Optional[int] = ..., wait_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait_p90: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait_max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., paused_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., throttles: _Optional[int] = ..., children: _Optional[_Iterable[_Union[ChildStats, _Mapping]]] = ..., children_count: _Optional[int] = ..., parent: _Optional[_Union[ParentStats, _Mapping]] = ...) -> None: ...

class ChildStats(_message.Message):
    __slots__ = ("name", "share", "keyed", "leases_in_flight", "queue_depth", "grants", "load_granted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    KEYED_FIELD_NUMBER: _ClassVar[int]
    LEASES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_GRANTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    share: int
    keyed: bool
    leases_in_flight: int
    queue_depth: int
    grants: int
    load_granted: float
    def __init__(self, name: _Optional[str] = ..., share: _Optional[int] = ..., keyed: bool = ..., leases_in_flight: _Optional[int] = ..., queue_depth: _Optional[int] = ..., grants: _Optional[int] = ..., load_granted: _Optional[float] = ...) -> None: ...

class ParentStats(_message.Message):
    __slots__ = ("name", "leases_in_flight", "queue_depth", "limits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEASES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    leases_in_flight: int
    queue_depth: int
    limits: _containers.RepeatedCompositeFieldContainer[LimitStats]
    def __init__(self, name: _Optional[str] = ..., leases_in_flight: _Optional[int] = ..., queue_depth: _Optional[int] = ..., limits: _Optional[_Iterable[_Union[LimitStats, _Mapping]]] = ...) -> None: ...

class GetResourceStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ResourceStats
    def __init__(self, stats: _Optional[_Union[ResourceStats, _Mapping]] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateNamespaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateNamespaceResponse(_message.Message):
    __slots__ = ("namespace", "created")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    namespace: Namespace
    created: bool
    def __init__(self, namespace: _Optional[_Union[Namespace, _Mapping]] = ..., created: bool = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ...) -> None: ...

class DeleteNamespaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteNamespaceResponse(_message.Message):
    __slots__ = ("revoked_keys",)
    REVOKED_KEYS_FIELD_NUMBER: _ClassVar[int]
    revoked_keys: int
    def __init__(self, revoked_keys: _Optional[int] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "namespace", "role", "description", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    role: ApiKeyRole
    description: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., role: _Optional[_Union[ApiKeyRole, str]] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("namespace", "role", "description")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    role: ApiKeyRole
    description: str
    def __init__(self, namespace: _Optional[str] = ..., role: _Optional[_Union[ApiKeyRole, str]] = ..., description: _Optional[str] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("api_key", "key")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: ApiKey
    key: str
    def __init__(self, api_key: _Optional[_Union[ApiKey, _Mapping]] = ..., key: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("api_keys",)
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
