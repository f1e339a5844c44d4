"""The admin clients: resources in the config file's shape (trees of
them included), their statistics, and API keys.

One implementation, ``_AdminCore``, runs on the process's ratequeue loop
(``_runtime``) over the generated AdminService stubs; ``Admin`` (sync) and
``AsyncAdmin`` (``ratequeue.aio.Admin``) drive it. Resources, limits, stats
and keys are documented dataclasses; ``put_resource`` also takes a plain
dict with the config file's keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
import grpc.aio
from google.protobuf import duration_pb2

from . import _runtime
from ._client import _check_thread
from ._config import ClientConfig, Endpoint
from ._errors import InvalidRequest, Unavailable, error_from_rpc
from ._proto.ratequeue.v1 import admin_pb2 as pb
from ._proto.ratequeue.v1 import admin_pb2_grpc as pb_grpc
from ._session import _leader_hint

#: A duration as the admin API accepts it: a :class:`datetime.timedelta`, a
#: number of seconds, or a string of a number and a unit as in the config
#: file (``"500ms"``, ``"60s"``, ``"1.5m"``, ``"1h"``, ``"1d"``).
DurationLike = Union[_dt.timedelta, float, int, str]
ResourceLike = Union["Resource", Mapping[str, Any]]
KeyedChildTemplateLike = Union["KeyedChildTemplate", Mapping[str, Any]]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UINT32_MAX = 2**32 - 1
_DIMENSIONS = {"requests": pb.DIMENSION_REQUESTS, "load": pb.DIMENSION_LOAD}
_ROLES = {"worker": pb.API_KEY_ROLE_WORKER, "admin": pb.API_KEY_ROLE_ADMIN, "root": pb.API_KEY_ROLE_ROOT}


# ------------------------------------------------------------- field checks
# The client checks only what it must to encode a field; the server checks
# the ranges, and both name the field the same way.

def _invalid(field_name: str, rule: str) -> InvalidRequest:
    return InvalidRequest(f"{field_name}: {rule}")


@contextlib.contextmanager
def _within(prefix: str) -> Iterator[None]:
    """Prefixes the field name of an InvalidRequest raised inside with ``prefix``."""
    try:
        yield
    except InvalidRequest as e:
        raise InvalidRequest(prefix + e.message) from None


def _timedelta(field_name: str, value: Any) -> _dt.timedelta:
    if isinstance(value, _dt.timedelta):
        return value
    seconds: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match[1]) * _UNITS[match[2]]
    if seconds is None:
        raise _invalid(field_name, f"{value!r} is not a duration; write e.g. '500ms', '60s', '1.5m', '1h', "
                                   "a number of seconds or a timedelta")
    try:
        return _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise _invalid(field_name, f"{value!r} is out of range") from None


def _number(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(field_name, f"must be a finite number, got {value!r}")
    return float(value)


def _count(field_name: str, value: Any) -> int:
    """An unsigned 32-bit integer, all its message field can hold."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise _invalid(field_name, f"must be an integer of at least 0, got {value!r}")
    return value


def _text(field_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid(field_name, f"must be a string, got {value!r}")
    return value


def _from_mapping(cls: type, value: Mapping[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in value:
        if key not in names:  # e.g. a camelCase key from the TypeScript docs
            raise _invalid(str(key), f"unknown key; expected one of {', '.join(names)}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _invalid(missing[0], "is required")
    return cls(**value)


# --------------------------------------------------------------- the shapes

@dataclass
class Limit:
    """One rate limit: at most ``burst + t * amount / period`` units in any
    interval of length t.

    Attributes:
        dimension: ``"requests"`` (every acquire counts 1) or ``"load"``
            (every acquire counts its load).
        amount: Units per period; must be positive.
        period: The period, 1 ms to 366 days. Given as a timedelta, a number
            of seconds or a string like ``"60s"``; held as a timedelta.
        burst: The most units that may be spent at once; 0 means
            ``amount``. A stored limit has it filled in.
        unit: What a load limit counts, for provider feedback: ``""`` or
            ``"tokens"`` (the provider's token budget applies),
            ``"input_tokens"`` or ``"output_tokens"`` (Anthropic's separate
            budgets), or another label. Empty on requests limits.
    """

    dimension: str
    amount: float
    period: _dt.timedelta
    burst: float = 0
    unit: str = ""

    def __post_init__(self) -> None:
        if self.dimension not in _DIMENSIONS:
            raise _invalid("dimension", f"must be 'requests' or 'load', got {self.dimension!r}")
        self.amount = _number("amount", self.amount)
        self.period = _timedelta("period", self.period)
        self.burst = _number("burst", self.burst)
        self.unit = _text("unit", self.unit)


@dataclass
class KeyedChildTemplate:
    """What each keyed child of a resource gets (its ``per_key``): an
    acquire with ``key=K`` on resource R is charged to the child ``"R/K"``,
    made from this template on first use, as well as to R.

    Attributes:
        limits: Each keyed child's own rate limits, its quota
            (:class:`Limit`, or dicts of its fields). At most 16.
        concurrency: The most leases each keyed child holds at once; 0
            means no cap.
        share: Each keyed child's share of the parent's grants while
            several children wait, relative to its siblings, 1 to 1000;
            0 means 1. A stored template has it filled in.
    """

    limits: List[Limit] = field(default_factory=list)
    concurrency: int = 0
    share: int = 0

    def __post_init__(self) -> None:
        self.limits = _limits("limits", self.limits)
        self.concurrency = _count("concurrency", self.concurrency)
        self.share = _count("share", self.share)


@dataclass
class Resource:
    """A shared budget and its limits, in the config file's shape.

    Only ``name`` is required; what is left out takes the server's default.
    A resource the server returns has every default filled in, so passing it
    back to ``put_resource`` stores the same resource. A dict with these keys
    works wherever a Resource does.

    Attributes:
        name: 1 to 128 letters, digits, ``.``, ``_``, ``-``, ``:`` or ``/``,
            starting with a letter or digit.
        limits: Rate limits (:class:`Limit`, or dicts of its fields); an
            acquire is granted only when all of them allow it. At most 16.
        concurrency: The most leases held at once; 0 means no cap.
        lanes: Lane name to weight (1 to 1000), in order, e.g.
            ``{"user-facing": 3, "batch": 1}``. Empty means one lane named
            ``"default"``.
        default_lane: The lane of acquires that name none; None means the
            first lane.
        lease_ttl: A lease not heartbeated for this long expires, 100 ms to
            24 h; None means 30 s. Given like ``Limit.period``; held as a
            timedelta.
        max_queue: The most waiting requests, beyond which acquires fail
            with ``QueueFull``; None means 10,000.
        cooldown: The first pause after the provider refused a call without
            saying how long to wait, doubling on further refusals, at most
            60 s; None means 1 s. Given like ``Limit.period``.
        learn_limits: Whether a provider limit lower than a configured one
            becomes the limit's effective amount until the resource is put
            again; None means True.
        parent: The resource this one is a child of: an acquire here is
            granted only when it and every ancestor allow it, and is charged
            at every level. ``"NAMESPACE@NAME"`` names a parent in another
            namespace (it must list this namespace in ``children_from``).
            None means a root. The parent must exist first; trees are at
            most 4 levels deep.
        share: This resource's share of its parent's grants while several
            children wait, relative to its siblings, 1 to 1000; None means
            1. A stored child has it filled in; a root has None.
        per_key: The template of keyed children (:class:`KeyedChildTemplate`
            or a dict of its fields): ``acquire(..., key=K)`` charges the
            child ``"NAME/K"``, made on first use. A resource declared as
            ``"NAME/K"`` with parent NAME overrides it for that key. None
            means acquires with a key are refused.
        per_key_idle: How long a keyed child back at full budget, with no
            leases and no waiters, lives on before it is dropped; None means
            10 minutes. Given like ``Limit.period``; filled in on a stored
            resource with ``per_key``.
        children_from: Namespaces whose admins may declare children of this
            resource in their own namespace.
        keyed: Output only (``put_resource`` ignores it): True on a child the
            server made from its parent's ``per_key`` template.
    """

    name: str
    limits: List[Limit] = field(default_factory=list)
    concurrency: int = 0
    lanes: Dict[str, int] = field(default_factory=dict)
    default_lane: Optional[str] = None
    lease_ttl: Optional[_dt.timedelta] = None
    max_queue: Optional[int] = None
    cooldown: Optional[_dt.timedelta] = None
    learn_limits: Optional[bool] = None
    parent: Optional[str] = None
    share: Optional[int] = None
    per_key: Optional[KeyedChildTemplate] = None
    per_key_idle: Optional[_dt.timedelta] = None
    children_from: List[str] = field(default_factory=list)
    keyed: bool = False

    def __post_init__(self) -> None:
        self.name = _text("name", self.name)
        self.limits = _limits("limits", self.limits)
        self.concurrency = _count("concurrency", self.concurrency)
        if not isinstance(self.lanes, Mapping):
            raise _invalid("lanes", f"must be a mapping of lane names to weights, got {self.lanes!r}")
        self.lanes = {_text("lanes", lane): _count(f"lanes.{lane}", weight) for lane, weight in self.lanes.items()}
        if self.default_lane is not None:
            self.default_lane = _text("default_lane", self.default_lane)
        if self.lease_ttl is not None:
            self.lease_ttl = _timedelta("lease_ttl", self.lease_ttl)
        if self.max_queue is not None:
            self.max_queue = _count("max_queue", self.max_queue)
        if self.cooldown is not None:
            self.cooldown = _timedelta("cooldown", self.cooldown)
        if self.learn_limits is not None and not isinstance(self.learn_limits, bool):
            raise _invalid("learn_limits", f"must be a bool, got {self.learn_limits!r}")
        if self.parent is not None:
            self.parent = _text("parent", self.parent)
        if self.share is not None:
            self.share = _count("share", self.share)
        if self.per_key is not None:
            self.per_key = _template(self.per_key)
        if self.per_key_idle is not None:
            self.per_key_idle = _timedelta("per_key_idle", self.per_key_idle)
        if isinstance(self.children_from, (str, bytes, Mapping)) or not isinstance(self.children_from, Sequence):
            raise _invalid("children_from", f"must be a list of namespaces, got {self.children_from!r}")
        self.children_from = [_text(f"children_from[{i}]", ns) for i, ns in enumerate(self.children_from)]
        if not isinstance(self.keyed, bool):
            raise _invalid("keyed", f"must be a bool, got {self.keyed!r}")


def _limits(field_name: str, value: Any) -> List[Limit]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise _invalid(field_name, f"must be a list, got {value!r}")
    return [_limit(f"{field_name}[{i}]", limit) for i, limit in enumerate(value)]


def _limit(field_name: str, value: Any) -> Limit:
    with _within(f"{field_name}."):
        if isinstance(value, Limit):
            return dataclasses.replace(value)  # checks it again: it may have been changed since
        if isinstance(value, Mapping):
            return _from_mapping(Limit, value)
    raise _invalid(field_name, f"must be a Limit or a mapping, got {value!r}")


def _template(value: Any) -> KeyedChildTemplate:
    with _within("per_key."):
        if isinstance(value, KeyedChildTemplate):
            return dataclasses.replace(value)
        if isinstance(value, Mapping):
            return _from_mapping(KeyedChildTemplate, value)
    raise _invalid("per_key", f"must be a KeyedChildTemplate or a mapping, got {value!r}")


def _resource(value: Any) -> Resource:
    """A checked Resource of a Resource (checked again) or a mapping."""
    with _within("resource."):
        if isinstance(value, Resource):
            return dataclasses.replace(value)
        if isinstance(value, Mapping):
            return _from_mapping(Resource, value)
    raise _invalid("resource", f"must be a ratequeue.Resource or a mapping, got {value!r}")


@dataclass(frozen=True)
class LaneStats:
    """One lane's live state and counters.

    Attributes:
        name: The lane's name.
        weight: The lane's weight.
        queue_depth: Requests waiting in the lane now.
        grants: Grants made to the lane since the resource was created.
        load_granted: Load granted to the lane since the resource was created.
    """

    name: str
    weight: int
    queue_depth: int
    grants: int
    load_granted: float


@dataclass(frozen=True)
class LimitStats:
    """One limit's current use.

    Attributes:
        limit: The limit, as stored.
        available: Units that could be granted at once now.
        utilisation: The share of the burst in use now, 0 to 1.
        used_last_period: Units charged over the period that ends now, refunds
            taken off (what ``ratequeue_limit_utilisation_ratio`` divides by the
            amount).
        learned_amount: The amount per period the provider's feedback
            taught, when lower than ``limit.amount``: the limit admits at
            this rate. None when nothing was learned.
    """

    limit: Limit
    available: float
    utilisation: float
    used_last_period: float
    learned_amount: Optional[float] = None


@dataclass(frozen=True)
class ChildStats:
    """One direct child's demand and grants, counted over its subtree.

    Attributes:
        name: The child's name (``"PARENT/KEY"`` for a keyed child).
        share: The child's share of its parent's grants.
        keyed: True for a child made from the parent's ``per_key`` template.
        leases_in_flight: Leases held now in the child and its descendants.
        queue_depth: Requests waiting now in the child and its descendants.
        grants: Grants made in the child and its descendants since it was
            created.
        load_granted: Load granted in the child and its descendants since it
            was created.
    """

    name: str
    share: int
    keyed: bool
    leases_in_flight: int
    queue_depth: int
    grants: int
    load_granted: float


@dataclass(frozen=True)
class ParentStats:
    """The state of a resource's parent, as numbers.

    Attributes:
        name: The parent's name (``"NAMESPACE@NAME"`` when in another
            namespace).
        leases_in_flight: Leases held now under the parent, every child's
            included.
        queue_depth: Requests waiting now under the parent, every child's
            included.
        limits: Per limit use of the parent, in its limit order.
    """

    name: str
    leases_in_flight: int
    queue_depth: int
    limits: Tuple[LimitStats, ...]


@dataclass(frozen=True)
class ResourceStats:
    """A resource's live state and counters.

    Attributes:
        name: The resource's name.
        leases_in_flight: Leases held now.
        lanes: Per lane state, in the resource's lane order.
        limits: Per limit use, in the resource's limit order.
        grants: Acquires granted.
        rejections: Acquires refused at once: queue full, or a load that can
            never fit.
        timeouts: Acquires that reached their deadline while waiting.
        cancellations: Acquires withdrawn while waiting.
        expirations: Leases that expired unheartbeated.
        wait_p50: Median wait of recent grants.
        wait_p90: 90th percentile wait of recent grants.
        wait_p99: 99th percentile wait of recent grants.
        wait_max: Longest wait of recent grants.
        paused_until: Until when the resource grants nothing after the
            provider refused a call (UTC); None when it is not paused.
        throttles: Calls the provider refused, as releases and reports said.
        children: The direct children with the most demand (waiting, then
            in flight, then granted), at most ``children_limit`` of them
            (see ``resource_stats``). A tenant admin sees only its own
            namespace's children.
        children_count: How many direct children the resource has now,
            keyed ones included.
        parent: The parent's state; None for a root.
    """

    name: str
    leases_in_flight: int
    lanes: Tuple[LaneStats, ...]
    limits: Tuple[LimitStats, ...]
    grants: int
    rejections: int
    timeouts: int
    cancellations: int
    expirations: int
    wait_p50: _dt.timedelta
    wait_p90: _dt.timedelta
    wait_p99: _dt.timedelta
    wait_max: _dt.timedelta
    paused_until: Optional[_dt.datetime] = None
    throttles: int = 0
    children: Tuple[ChildStats, ...] = ()
    children_count: int = 0
    parent: Optional[ParentStats] = None


class ResourcePage(List["Resource"]):
    """What ``list_resources`` returns: a list of resources ordered by name,
    plus ``next_page_token``, to pass as ``page_token`` for the next page:
    empty (false) on the last page. It compares equal to a plain list of the
    same resources."""

    def __init__(self, resources: Iterable["Resource"] = (), next_page_token: str = "") -> None:
        super().__init__(resources)
        self.next_page_token = next_page_token

    def __repr__(self) -> str:
        return f"ResourcePage({list.__repr__(self)}, next_page_token={self.next_page_token!r})"


@dataclass(frozen=True)
class ApiKey:
    """An API key.

    Attributes:
        id: The key's public id (the part after ``rq_``); revoke it by this.
        namespace: The namespace the key acts in.
        role: ``"worker"``, ``"admin"`` or ``"root"``.
        description: A note for people.
        create_time: When the key was created (UTC).
        key: The key itself, ``rq_<id>_<secret>``, to send as the API key.
            Only the ApiKey that ``create_key`` returns has it: it is shown
            that once, and never in ``repr``.
    """

    id: str
    namespace: str
    role: str
    description: str
    create_time: _dt.datetime
    key: Optional[str] = field(default=None, repr=False)


# ------------------------------------------------------------- conversions

def _duration(td: _dt.timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(td)
    return d


def _limit_message(l: Limit) -> pb.Limit:
    return pb.Limit(dimension=_DIMENSIONS[l.dimension], amount=l.amount, period=_duration(l.period), burst=l.burst,
                    unit=l.unit)


def _to_message(r: Resource) -> pb.Resource:
    """The message for a checked resource (``keyed``, output only, stays out)."""
    msg = pb.Resource(
        name=r.name,
        limits=[_limit_message(l) for l in r.limits],
        concurrency=r.concurrency,
        lanes=[pb.Lane(name=lane, weight=weight) for lane, weight in r.lanes.items()],
        default_lane=r.default_lane or "",
        max_queue=r.max_queue or 0,
    )
    if r.lease_ttl is not None:
        msg.lease_ttl.CopyFrom(_duration(r.lease_ttl))
    if r.cooldown is not None:
        msg.cooldown.CopyFrom(_duration(r.cooldown))
    if r.learn_limits is not None:
        msg.learn_limits = r.learn_limits
    msg.parent = r.parent or ""
    msg.share = r.share or 0
    if r.per_key is not None:
        msg.per_key.CopyFrom(pb.KeyedChildTemplate(limits=[_limit_message(l) for l in r.per_key.limits],
                                                   concurrency=r.per_key.concurrency, share=r.per_key.share))
    if r.per_key_idle is not None:
        msg.per_key_idle.CopyFrom(_duration(r.per_key_idle))
    msg.children_from.extend(r.children_from)
    return msg


def _limit_of(m: pb.Limit) -> Limit:
    return Limit("load" if m.dimension == pb.DIMENSION_LOAD else "requests", m.amount, m.period.ToTimedelta(), m.burst,
                 m.unit)


def _resource_of(m: pb.Resource) -> Resource:
    return Resource(
        name=m.name,
        limits=[_limit_of(l) for l in m.limits],
        concurrency=m.concurrency,
        lanes={lane.name: lane.weight for lane in m.lanes},
        default_lane=m.default_lane,
        # The server always sets it; unset means 30 s.
        lease_ttl=m.lease_ttl.ToTimedelta() if m.HasField("lease_ttl") else _dt.timedelta(seconds=30),
        max_queue=m.max_queue,
        # Unset means 1 s and true.
        cooldown=m.cooldown.ToTimedelta() if m.HasField("cooldown") else _dt.timedelta(seconds=1),
        learn_limits=m.learn_limits if m.HasField("learn_limits") else True,
        # The server fills share in on a child, and per_key_idle with per_key.
        parent=m.parent or None,
        share=m.share or None,
        per_key=KeyedChildTemplate([_limit_of(l) for l in m.per_key.limits], m.per_key.concurrency, m.per_key.share)
        if m.HasField("per_key") else None,
        per_key_idle=m.per_key_idle.ToTimedelta() if m.HasField("per_key_idle") else None,
        children_from=list(m.children_from),
        keyed=m.keyed,
    )


def _limit_stats_of(m: pb.LimitStats) -> LimitStats:
    return LimitStats(_limit_of(m.limit), m.available, m.utilisation, m.used_last_period,
                      m.learned_amount if m.HasField("learned_amount") else None)


def _stats_of(m: pb.ResourceStats) -> ResourceStats:
    return ResourceStats(
        name=m.name,
        leases_in_flight=m.leases_in_flight,
        lanes=tuple(LaneStats(l.name, l.weight, l.queue_depth, l.grants, l.load_granted) for l in m.lanes),
        limits=tuple(_limit_stats_of(l) for l in m.limits),
        grants=m.grants,
        rejections=m.rejections,
        timeouts=m.timeouts,
        cancellations=m.cancellations,
        expirations=m.expirations,
        wait_p50=m.wait_p50.ToTimedelta(),
        wait_p90=m.wait_p90.ToTimedelta(),
        wait_p99=m.wait_p99.ToTimedelta(),
        wait_max=m.wait_max.ToTimedelta(),
        paused_until=m.paused_until.ToDatetime(tzinfo=_dt.timezone.utc) if m.HasField("paused_until") else None,
        throttles=m.throttles,
        children=tuple(ChildStats(c.name, c.share, c.keyed, c.leases_in_flight, c.queue_depth, c.grants,
                                  c.load_granted) for c in m.children),
        children_count=m.children_count,
        parent=ParentStats(m.parent.name, m.parent.leases_in_flight, m.parent.queue_depth,
                           tuple(_limit_stats_of(l) for l in m.parent.limits)) if m.HasField("parent") else None,
    )


def _api_key_of(m: pb.ApiKey, key: Optional[str] = None) -> ApiKey:
    role = next((name for name, value in _ROLES.items() if value == m.role), "unspecified")
    return ApiKey(m.id, m.namespace, role, m.description, m.create_time.ToDatetime(tzinfo=_dt.timezone.utc), key)


# --------------------------------------------------- the one implementation

class _AdminCore:
    """The admin calls; runs on the ratequeue loop only.

    Keeps a channel per server. A call a standby refuses with a leader hint
    is sent once more, to that leader (the standby did nothing); after any
    other UNAVAILABLE the next call goes to the next server of the list.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._endpoints: List[Endpoint] = list(config.endpoints)
        self._current = self._endpoints[0]
        self._metadata = config.call_metadata()
        # Read the certificate files now, in the caller's thread, so that a
        # missing file fails here.
        self._tls = config.channel_credentials() if any(ep.tls for ep in self._endpoints) else None
        self._channels: Dict[Endpoint, grpc.aio.Channel] = {}
        self._pid = os.getpid()
        self._closed = False
        _runtime.track_channels(self)

    def _stub(self, ep: Endpoint) -> pb_grpc.AdminServiceStub:
        if self._pid != os.getpid():  # forked: the parent's channels are not ours
            _runtime.inherited(self._channels)
            self._channels, self._pid = {}, os.getpid()
        ch = self._channels.get(ep)
        if ch is None:
            if ep.tls and self._tls is None:  # a leader hint may name a TLS node
                self._tls = self.config.channel_credentials()
            ch = self._channels[ep] = self.config.open_channel(ep, self._tls)
        return pb_grpc.AdminServiceStub(ch)

    async def call(self, method: str, request: Any) -> Any:
        if self._closed:
            raise Unavailable("the ratequeue admin client is closed")
        for attempt in range(2):
            ep = self._current
            try:
                return await getattr(self._stub(ep), method)(request, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise error_from_rpc(err) from None
                leader = _leader_hint(err)
                if leader is not None and Endpoint(leader, ep.tls) != ep:
                    self._current = Endpoint(leader, ep.tls)
                    if attempt == 0:
                        continue
                elif ep in self._endpoints:
                    self._current = self._endpoints[(self._endpoints.index(ep) + 1) % len(self._endpoints)]
                else:
                    self._current = self._endpoints[0]
                raise error_from_rpc(err) from None
        raise AssertionError("unreachable")

    async def put_resource(self, resource: ResourceLike) -> Tuple[Resource, bool]:
        resp = await self.call("PutResource", pb.PutResourceRequest(resource=_to_message(_resource(resource))))
        return _resource_of(resp.resource), resp.created

    async def get_resource(self, name: str) -> Resource:
        return _resource_of((await self.call("GetResource", pb.GetResourceRequest(name=name))).resource)

    async def list_resources(self, page_size: Optional[int], page_token: Optional[str],
                             parent: Optional[str]) -> ResourcePage:
        req = pb.ListResourcesRequest(page_size=_count("page_size", page_size or 0),
                                      page_token=_text("page_token", page_token or ""),
                                      parent=_text("parent", parent or ""))
        resp = await self.call("ListResources", req)
        return ResourcePage([_resource_of(r) for r in resp.resources], resp.next_page_token)

    async def delete_resource(self, name: str) -> None:
        await self.call("DeleteResource", pb.DeleteResourceRequest(name=name))

    async def resource_stats(self, name: str, children_limit: Optional[int]) -> ResourceStats:
        req = pb.GetResourceStatsRequest(name=name, children_limit=_count("children_limit", children_limit or 0))
        return _stats_of((await self.call("GetResourceStats", req)).stats)

    async def create_key(self, role: str, namespace: Optional[str], description: str) -> ApiKey:
        if role not in _ROLES:
            raise _invalid("role", f"must be 'worker', 'admin' or 'root', got {role!r}")
        req = pb.CreateApiKeyRequest(role=_ROLES[role], namespace=_text("namespace", namespace or ""),
                                     description=_text("description", description))
        resp = await self.call("CreateApiKey", req)
        return _api_key_of(resp.api_key, resp.key)

    async def list_keys(self, namespace: Optional[str]) -> List[ApiKey]:
        resp = await self.call("ListApiKeys", pb.ListApiKeysRequest(namespace=namespace or ""))
        return [_api_key_of(k) for k in resp.api_keys]

    async def revoke_key(self, key_id: str) -> None:
        await self.call("RevokeApiKey", pb.RevokeApiKeyRequest(id=key_id))

    async def suspend(self) -> bool:
        """Closes the channels (before a fork); the next call reopens them."""
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()
        return bool(channels)

    async def close(self) -> None:
        self._closed = True
        await self.suspend()


# ----------------------------------------------------------------- facades

class AsyncAdmin:
    """The async admin client (``ratequeue.aio.Admin``): resources, their
    statistics and API keys.

    ``url`` and ``api_key`` default to ``RATEQUEUE_URL`` and
    ``RATEQUEUE_API_KEY``; further keyword options are the fields of
    :class:`ClientConfig` (``ca_file``, ``namespace``...). Every failure is
    one of the client's exceptions: a field the client cannot encode, or one
    the server refuses, is :class:`InvalidRequest` with a message that starts
    with the field's name (``resource.limits[0].period: ...``). Works from any
    event loop; ``async with`` closes it.
    """

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 config: Optional[ClientConfig] = None, **options: Any) -> None:
        self.config = ClientConfig.of(url, api_key, config, options)
        self._core = _AdminCore(self.config)

    async def put_resource(self, resource: ResourceLike) -> Tuple[Resource, bool]:
        """Creates a resource or replaces an existing one's definition.

        ``resource`` is a :class:`Resource` or a dict of its fields (the
        config file's keys, plus ``name``). Returns the resource as stored,
        with the server's defaults filled in, and whether it is new.
        """
        return await _runtime.run_async(lambda: self._core.put_resource(resource))

    async def get_resource(self, name: str) -> Resource:
        """One resource as stored; raises :class:`ResourceNotFound` if there is none."""
        return await _runtime.run_async(lambda: self._core.get_resource(name))

    async def list_resources(self, *, page_size: Optional[int] = None, page_token: Optional[str] = None,
                             parent: Optional[str] = None) -> ResourcePage:
        """Resources ordered by name, as a :class:`ResourcePage` (a list).

        Without arguments: every resource declared in the namespace, in one
        page (keyed children are listed only through their parent).
        ``parent`` lists that resource's direct children instead, keyed ones
        included, at most 1000 a page (a resource may have a great many
        keyed children). ``page_size`` (1 to 1000) asks for smaller pages.
        While a page's ``next_page_token`` is not empty, more follow: pass
        it as ``page_token``, with the same ``parent``::

            page = await admin.list_resources(parent="openai-gpt4", page_size=100)
            while True:
                ...  # use page
                if not page.next_page_token:
                    break
                page = await admin.list_resources(parent="openai-gpt4", page_size=100,
                                                  page_token=page.next_page_token)
        """
        return await _runtime.run_async(lambda: self._core.list_resources(page_size, page_token, parent))

    async def delete_resource(self, name: str) -> None:
        """Deletes a resource: its waiting acquires fail with
        :class:`ResourceNotFound` and its leases end."""
        await _runtime.run_async(lambda: self._core.delete_resource(name))

    async def resource_stats(self, name: str, *, children_limit: Optional[int] = None) -> ResourceStats:
        """A resource's live state and counters, with its busiest direct
        children (at most ``children_limit``, up to 1000; None means 20) and
        its parent's state."""
        return await _runtime.run_async(lambda: self._core.resource_stats(name, children_limit))

    async def create_key(self, *, role: str, namespace: Optional[str] = None, description: str = "") -> ApiKey:
        """Makes an API key (``role``: ``"worker"``, ``"admin"`` or
        ``"root"``) in ``namespace`` (None: the caller's). Its ``key`` is the
        secret, shown only this once."""
        return await _runtime.run_async(lambda: self._core.create_key(role, namespace, description))

    async def list_keys(self, *, namespace: Optional[str] = None) -> List[ApiKey]:
        """Keys without their secrets, ordered by namespace and id: those of
        ``namespace``, or (None) every key the caller may see."""
        return await _runtime.run_async(lambda: self._core.list_keys(namespace))

    async def revoke_key(self, key_id: str) -> None:
        """Revokes a key by its id; it stops working at once."""
        await _runtime.run_async(lambda: self._core.revoke_key(key_id))

    async def close(self) -> None:
        """Closes the client's channels."""
        await _runtime.run_async(self._core.close)

    async def __aenter__(self) -> "AsyncAdmin":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"ratequeue.aio.Admin(url={self.config.url!r})"


class Admin:
    """The sync admin client (``ratequeue.Admin``), for scripts, threads and
    Celery tasks. The same options and methods as
    :class:`ratequeue.aio.Admin`, which it shares its implementation with;
    each call blocks on the process's ratequeue loop thread. ``with`` closes
    it.
    """

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 config: Optional[ClientConfig] = None, **options: Any) -> None:
        self.config = ClientConfig.of(url, api_key, config, options)
        self._core = _AdminCore(self.config)

    def _run(self, make: Any) -> Any:
        _check_thread()
        return _runtime.run_sync(make)

    def put_resource(self, resource: ResourceLike) -> Tuple[Resource, bool]:
        """See :meth:`ratequeue.aio.Admin.put_resource`."""
        return self._run(lambda: self._core.put_resource(resource))

    def get_resource(self, name: str) -> Resource:
        """See :meth:`ratequeue.aio.Admin.get_resource`."""
        return self._run(lambda: self._core.get_resource(name))

    def list_resources(self, *, page_size: Optional[int] = None, page_token: Optional[str] = None,
                       parent: Optional[str] = None) -> ResourcePage:
        """See :meth:`ratequeue.aio.Admin.list_resources`."""
        return self._run(lambda: self._core.list_resources(page_size, page_token, parent))

    def delete_resource(self, name: str) -> None:
        """See :meth:`ratequeue.aio.Admin.delete_resource`."""
        self._run(lambda: self._core.delete_resource(name))

    def resource_stats(self, name: str, *, children_limit: Optional[int] = None) -> ResourceStats:
        """See :meth:`ratequeue.aio.Admin.resource_stats`."""
        return self._run(lambda: self._core.resource_stats(name, children_limit))

    def create_key(self, *, role: str, namespace: Optional[str] = None, description: str = "") -> ApiKey:
        """See :meth:`ratequeue.aio.Admin.create_key`."""
        return self._run(lambda: self._core.create_key(role, namespace, description))

    def list_keys(self, *, namespace: Optional[str] = None) -> List[ApiKey]:
        """See :meth:`ratequeue.aio.Admin.list_keys`."""
        return self._run(lambda: self._core.list_keys(namespace))

    def revoke_key(self, key_id: str) -> None:
        """See :meth:`ratequeue.aio.Admin.revoke_key`."""
        self._run(lambda: self._core.revoke_key(key_id))

    def close(self) -> None:
        """Closes the client's channels."""
        self._run(self._core.close)

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ratequeue.Admin(url={self.config.url!r})"
