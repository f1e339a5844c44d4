"""The one implementation: a process's session stream to the server.

A ``Session`` runs on a single event loop (the process's ratequeue loop, see
``_runtime``). It multiplexes every acquire, release and heartbeat of the
process on one ``RateQueueService.Session`` stream and keeps that stream up:

- request ids are the session's own, so answers find their waiter;
- held leases are heartbeated at about a third of their TTL;
- when the stream drops, it reconnects with backoff (following a standby's
  ``ratequeue-leader`` hint first, else the next server of the list),
  re-sends the waiting acquires with their remaining timeouts and heartbeats
  every held lease to re-attach it;
- a request answered UNAVAILABLE comes from a node that is going away (it
  is shutting down, or lost the leadership): the request is kept, the stream
  dropped, and the request sent again to whoever serves next;
- a cancelled waiter sends a cancel, and a grant that arrives for a waiter
  that has gone is released at once.

Nothing here may block: it runs on an event loop shared by the whole process.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import grpc
import grpc.aio

from ._config import ClientConfig, Endpoint
from ._errors import AcquireTimeout, RateQueueError, Unavailable, error_for, error_from_rpc
from ._proto.ratequeue.v1 import ratequeue_pb2 as pb
from ._proto.ratequeue.v1 import ratequeue_pb2_grpc as pb_grpc

log = logging.getLogger("ratequeue")

LEADER_METADATA_KEY = "ratequeue-leader"
# Statuses of a failed stream that a reconnect cannot fix: the waiting
# operations fail with them instead of waiting for a reconnect.
_FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)
# Of those, the ones that refuse the key itself: held leases are lost.
_REFUSED_KEY = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_TICK = 0.05  # seconds between housekeeping rounds (heartbeats, local timeouts)
# After a node answered UNAVAILABLE (it is going away), how long to wait for
# it to end the stream itself, which may name the next leader in a trailer.
_DEPARTURE_GRACE = 0.25
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass(eq=False)
class Lease:
    """A granted slot on a resource.

    Set ``actual_load`` before the slot is released to reconcile the load
    estimate given at acquire (for example with the tokens really used).
    ``grant_time`` is when the server granted it, on the server's clock.
    ``lost`` turns true when the server reports the lease expired (it was not
    heartbeated in time, for example while the process was frozen), or when
    the server refuses the API key (it was revoked): the slot then stays
    taken at the server until its TTL, but cannot be heartbeated.
    """

    lease_id: str
    resource: str
    load: float
    ttl: float
    expire_time: Optional[_dt.datetime]
    wait_time: float
    grant_time: Optional[_dt.datetime] = None
    actual_load: Optional[float] = None
    released: bool = field(default=False, init=False)
    lost: bool = field(default=False, init=False)


@dataclass(eq=False)
class _Op:
    rid: int
    kind: str  # "acquire" | "release" | "heartbeat"
    payload: object
    future: "asyncio.Future"
    created: float
    deadline: Optional[float] = None  # acquire: its timeout; release: give up after


@dataclass(eq=False)
class _Held:
    lease: Lease
    next_beat: float


def _duration(seconds: float):
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


class Session:
    """A process's stream to the ratequeue servers. Use it from its own loop only."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._endpoints: List[Endpoint] = list(config.endpoints)
        metadata = []
        if config.api_key:
            metadata.append(("authorization", f"Bearer {config.api_key}"))
        if config.namespace:
            metadata.append(("ratequeue-namespace", config.namespace))
        self._metadata = tuple(metadata)
        # Read the certificate files now, in the caller's thread, so that a
        # missing file fails the first call instead of every reconnect.
        self._tls_credentials = (
            config.channel_credentials() if any(ep.tls for ep in self._endpoints) else None
        )
        self._ep_index = 0
        self._redirect: Optional[Endpoint] = None
        self._channels: Dict[Endpoint, grpc.aio.Channel] = {}
        self._queue: Optional[asyncio.Queue] = None  # set while a stream is open
        self._healthy = False  # the open stream has answered at least once
        self._disconnected_since: Optional[float] = None
        self._last_error = "not connected yet"
        self._next_id = 0
        self._ops: Dict[int, _Op] = {}
        self._leases: Dict[str, _Held] = {}
        self._tasks: List[asyncio.Task] = []
        self._demand: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._departing = False  # the open stream's node said it is going away

    # ------------------------------------------------------------------ API

    async def acquire(
        self,
        resource: str,
        *,
        load: float = 1,
        priority: int = 10,
        lane: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Lease:
        """Waits for a lease. Cancelling the waiting task withdraws the request."""
        self._start()
        req = pb.AcquireRequest(resource=resource, load=float(load), priority=int(priority), lane=lane or "")
        now = self._loop.time()
        deadline = None
        if timeout is not None:
            timeout = float(timeout)
            req.timeout.CopyFrom(_duration(max(timeout, 0.0)))
            deadline = now + max(timeout, 0.0)
        op = self._add_op("acquire", req, deadline=deadline)
        try:
            return await op.future
        except asyncio.CancelledError:
            self._withdraw(op)
            raise

    async def release(self, lease: Lease, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases a lease; returns the outcome name (``"RELEASED"``, ...).

        Returns None without waiting when no stream is up: the release is
        re-sent after a reconnect, and the server expires the lease at its TTL
        anyway. Releasing twice is harmless.
        """
        if lease.released:
            return None
        lease.released = True
        self._leases.pop(lease.lease_id, None)
        self._start()
        req = pb.ReleaseRequest(lease_id=lease.lease_id)
        if actual_load is None:
            actual_load = lease.actual_load
        if actual_load is not None:
            req.actual_load = float(actual_load)
        op = self._add_op("release", req, deadline=self._loop.time() + max(lease.ttl, 1.0))
        if not self._healthy:
            return None
        resp = await asyncio.shield(op.future)
        return pb.ReleaseOutcome.Name(resp.outcome).replace("RELEASE_OUTCOME_", "") if resp is not None else None

    @property
    def held_leases(self) -> List[Lease]:
        """The leases this session holds and heartbeats."""
        return [h.lease for h in self._leases.values()]

    async def close(self) -> None:
        """Closes the stream: waiting acquires are withdrawn, held leases
        live on at the server until their TTL."""
        if self._closed:
            return
        self._closed = True
        for op in list(self._ops.values()):
            self._fail(op, Unavailable("the ratequeue client was closed"))
        self._ops.clear()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except BaseException:  # noqa: BLE001 - shutting down
                pass
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def suspend(self) -> bool:
        """Drops the stream and closes the channels, keeping waiting
        operations and held leases; :meth:`resume` reconnects and re-attaches.

        Called in a parent process just before it forks: gRPC's async engine
        only works in a child if the parent has no channel open at the fork.
        Returns True when it closed a channel.
        """
        if self._loop is None or self._closed:
            return False
        runner = self._tasks[0]
        runner.cancel()
        try:
            await runner
        except BaseException:  # noqa: BLE001 - we cancelled it
            pass
        # Keep no reference to the cancelled task: its exception's traceback
        # holds frames that hold the channel.
        self._tasks[0] = self._loop.create_future()
        self._tasks[0].set_result(None)
        del runner
        self._disconnect()
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()
        return bool(channels)

    def resume(self) -> None:
        """Reconnects after :meth:`suspend`."""
        if self._loop is None or self._closed or not self._tasks[0].done():
            return
        self._tasks[0] = self._loop.create_task(self._run(), name="ratequeue-session")

    # ------------------------------------------------------------ internals

    def _start(self) -> None:
        if self._closed:
            raise RateQueueError("the ratequeue client is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._demand = asyncio.Event()
        self._disconnected_since = self._loop.time()
        self._tasks = [
            self._loop.create_task(self._run(), name="ratequeue-session"),
            self._loop.create_task(self._tick(), name="ratequeue-housekeeping"),
        ]

    def _add_op(self, kind: str, payload, *, deadline: Optional[float] = None) -> _Op:
        self._next_id += 1
        op = _Op(self._next_id, kind, payload, self._loop.create_future(), self._loop.time(), deadline)
        self._ops[op.rid] = op
        self._send_op(op)
        self._demand.set()
        return op

    def _send_op(self, op: _Op) -> None:
        if self._queue is None:
            return  # sent when the stream is up again
        msg = pb.SessionRequest(request_id=op.rid)
        if op.kind == "acquire":
            req = op.payload
            if op.deadline is not None:  # re-sends carry what is left of the timeout
                req = pb.AcquireRequest()
                req.CopyFrom(op.payload)
                req.timeout.CopyFrom(_duration(max(op.deadline - self._loop.time(), 0.0)))
            msg.acquire.CopyFrom(req)
        elif op.kind == "release":
            msg.release.CopyFrom(op.payload)
        else:
            msg.heartbeat.CopyFrom(op.payload)
        self._queue.put_nowait(msg)

    def _send_cancel(self, rid: int) -> None:
        if self._queue is not None:
            self._queue.put_nowait(pb.SessionRequest(request_id=self._new_id(), cancel=pb.SessionCancel(acquire_request_id=rid)))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _withdraw(self, op: _Op) -> None:
        """The acquire's waiter is gone: withdraw it or give back its grant."""
        if self._ops.get(op.rid) is op:
            del self._ops[op.rid]
            self._send_cancel(op.rid)
        elif op.future.done() and not op.future.cancelled() and op.future.exception() is None:
            self._give_back(op.future.result())

    def _give_back(self, lease: Lease) -> None:
        """Releases a lease nobody will use."""
        self._loop.create_task(self._release_quietly(lease))

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.release(lease)
        except Exception as e:  # noqa: BLE001 - nobody to tell but the log
            log.warning("ratequeue: releasing unused lease %s failed: %s", lease.lease_id, e)

    @staticmethod
    def _fail(op: _Op, err: BaseException) -> None:
        if not op.future.done():
            op.future.set_exception(err)
            op.future.exception()  # mark retrieved: a waiter may have gone

    def _resolve(self, op: _Op, value) -> bool:
        if op.future.done():
            return False
        op.future.set_result(value)
        return True

    # -------------------------------------------------------- the stream

    def _channel(self, ep: Endpoint) -> grpc.aio.Channel:
        ch = self._channels.get(ep)
        if ch is None:
            if ep.tls:
                if self._tls_credentials is None:  # a leader hint may name a TLS node
                    self._tls_credentials = self.config.channel_credentials()
                ch = grpc.aio.secure_channel(ep.target, self._tls_credentials, options=_CHANNEL_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(ep.target, options=_CHANNEL_OPTIONS)
            self._channels[ep] = ch
        return ch

    async def _run(self) -> None:
        backoff = self.config.initial_backoff
        while not self._closed:
            if not self._ops and not self._leases:
                self._demand.clear()
                await self._demand.wait()
            ep = self._redirect or self._endpoints[self._ep_index % len(self._endpoints)]
            err: Optional[grpc.aio.AioRpcError] = None
            self._departing = False
            try:
                await self._serve(ep)
                self._last_error = f"{ep}: the server ended the session"
            except grpc.aio.AioRpcError as e:
                err = e
                self._last_error = f"{ep}: {e.code().name}: {e.details()}"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep the session alive
                log.exception("ratequeue: session stream to %s failed", ep)
                self._last_error = f"{ep}: {e!r}"
            # The node answered a request UNAVAILABLE: it is shutting down or
            # handing over, and the request was kept to be sent again.
            departing = self._departing
            was_healthy = self._healthy and not departing
            self._disconnect()
            if was_healthy:
                backoff = self.config.initial_backoff
            leader = _leader_hint(err)
            if leader is not None and Endpoint(leader, ep.tls) != ep:
                log.info("ratequeue: %s is a standby; following the leader at %s", ep, leader)
                self._redirect = Endpoint(leader, ep.tls)
                if not was_healthy:
                    await asyncio.sleep(min(backoff, 0.05))
                continue
            if departing:
                # The node is going away: keep what waits, try the next
                # server (or this one again once it is back) after a pause.
                # The pause stays short so that a node taking over is found
                # within about a second.
                self._redirect = None
                self._ep_index += 1
                log.info("ratequeue: %s is going away (%s); reconnecting", ep, self._last_error)
                await asyncio.sleep(self._pause(backoff))
                backoff = min(backoff * 2, self.config.max_backoff)
                continue
            if err is not None and err.code() in _FATAL:
                failure = error_from_rpc(err)
                for op in list(self._ops.values()):
                    if op.kind == "acquire":
                        del self._ops[op.rid]
                        self._fail(op, failure)
                if err.code() in _REFUSED_KEY:
                    # The key was revoked (or is not allowed here): its leases
                    # can never be heartbeated again; the server expires them
                    # at their TTL. Stop re-attaching them.
                    for lease_id in list(self._leases):
                        self._lost(lease_id, f"the API key was refused ({err.code().name})")
            if not was_healthy:
                # This server did not answer: try the next one after a pause.
                if self._redirect is not None:
                    self._redirect = None
                else:
                    self._ep_index += 1
                pause = self._pause(backoff)
                log.debug("ratequeue: %s; retrying in %.2fs", self._last_error, pause)
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, self.config.max_backoff)

    def _pause(self, backoff: float) -> float:
        """A reconnect pause: the backoff, capped, with jitter (0.5 to 1 times)."""
        return min(backoff, self.config.max_backoff) * random.uniform(0.5, 1.0)

    async def _serve(self, ep: Endpoint) -> None:
        """Runs one stream until it ends. Sets ``_departing`` when the node
        answered a request UNAVAILABLE (it is going away) and drops the
        stream shortly after."""
        stub = pb_grpc.RateQueueServiceStub(self._channel(ep))
        call = stub.Session(metadata=self._metadata)
        queue: asyncio.Queue = asyncio.Queue()
        writer = self._loop.create_task(self._write(call, queue))
        try:
            self._queue = queue
            self._healthy = False
            # Re-send what is waiting, in order, then re-attach held leases;
            # the heartbeat also proves the stream works, even when idle.
            for op in sorted(self._ops.values(), key=lambda o: o.rid):
                if op.kind == "heartbeat":
                    del self._ops[op.rid]
                else:
                    self._send_op(op)
            self._heartbeat(list(self._leases.values()))
            departing_at: Optional[float] = None
            while True:
                if departing_at is None:
                    resp = await call.read()
                else:
                    # Give the node a moment to end the stream itself (its
                    # status may name the next leader), then drop it.
                    left = departing_at + _DEPARTURE_GRACE - self._loop.time()
                    if left <= 0:
                        return
                    try:
                        resp = await asyncio.wait_for(call.read(), left)
                    except asyncio.TimeoutError:
                        return
                if resp is grpc.aio.EOF:
                    return
                if not self._healthy:
                    self._healthy = True
                    self._disconnected_since = None
                if not self._dispatch(resp) and departing_at is None:
                    self._departing = True
                    departing_at = self._loop.time()
        finally:
            self._queue = None
            writer.cancel()
            call.cancel()
            # A traceback may keep this frame alive: let go of the channel so
            # that it can be collected (see suspend).
            call = stub = writer = None  # noqa: F841

    async def _write(self, call, queue: asyncio.Queue) -> None:
        try:
            while True:
                await call.write(await queue.get())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the reader sees the call's end
            log.debug("ratequeue: session write failed: %r", e)

    def _disconnect(self) -> None:
        self._queue = None
        if self._loop is None:
            return
        if self._healthy or self._disconnected_since is None:
            self._disconnected_since = self._loop.time()
        self._healthy = False
        for op in list(self._ops.values()):
            if op.kind == "heartbeat":
                del self._ops[op.rid]

    def _heartbeat(self, held: List[_Held]) -> None:
        now = self._loop.time()
        for h in held:
            h.next_beat = now + max(h.lease.ttl / 3.0, _TICK)
        self._add_op("heartbeat", pb.HeartbeatRequest(lease_ids=[h.lease.lease_id for h in held]))

    def _dispatch(self, resp) -> bool:
        """Hands an answer to its waiter. Returns False when the answer says
        the node is going away: the request stays, to be sent again."""
        kind = resp.WhichOneof("kind")
        if kind == "lease_expired":
            self._lost(resp.lease_expired.lease_id, "expired at the server")
            return True
        if (
            kind == "failure"
            and resp.failure.code == grpc.StatusCode.UNAVAILABLE.value[0]
            and resp.request_id in self._ops
        ):
            # This node is shutting down or no longer leads: keep the request
            # and reconnect, which sends it again to whoever serves next.
            self._last_error = f"UNAVAILABLE: {resp.failure.message}"
            return False
        op = self._ops.pop(resp.request_id, None)
        if op is None:
            if kind == "granted":  # its waiter left before the grant arrived
                self._give_back(self._lease_from(resp.granted))
            return True
        if kind == "failure":
            err = error_for(resp.failure.code, resp.failure.message)
            if op.kind == "acquire":
                self._fail(op, err)
            else:
                log.warning("ratequeue: %s failed: %s", op.kind, err)
                self._resolve(op, None)
        elif kind == "granted" and op.kind == "acquire":
            lease = self._lease_from(resp.granted)
            self._leases[lease.lease_id] = _Held(lease, self._loop.time() + max(lease.ttl / 3.0, _TICK))
            if not self._resolve(op, lease):
                self._give_back(lease)
        elif kind == "released":
            self._resolve(op, resp.released)
        elif kind == "heartbeat":
            for st in resp.heartbeat.leases:
                if not st.held:
                    self._lost(st.lease_id, "not held at the server")
            self._resolve(op, resp.heartbeat)
        else:
            log.warning("ratequeue: unexpected %s answer to a %s", kind, op.kind)
            self._resolve(op, None)
        return True

    @staticmethod
    def _lease_from(granted) -> Lease:
        l = granted.lease
        ttl = l.ttl.ToNanoseconds() / 1e9 if l.HasField("ttl") else 30.0
        expire = l.expire_time.ToDatetime(tzinfo=_dt.timezone.utc) if l.HasField("expire_time") else None
        return Lease(
            lease_id=l.lease_id,
            resource=l.resource,
            load=l.load,
            ttl=ttl if ttl > 0 else 30.0,
            expire_time=expire,
            wait_time=granted.wait_time.ToNanoseconds() / 1e9,
            grant_time=l.grant_time.ToDatetime(tzinfo=_dt.timezone.utc) if l.HasField("grant_time") else None,
        )

    def _lost(self, lease_id: str, why: str) -> None:
        held = self._leases.pop(lease_id, None)
        if held is not None:
            held.lease.lost = True
            log.warning("ratequeue: lease %s on %s lost: %s", lease_id, held.lease.resource, why)

    # ------------------------------------------------------ housekeeping

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            try:
                self._housekeeping()
            except Exception:  # noqa: BLE001 - must never stop
                log.exception("ratequeue: housekeeping failed")

    def _housekeeping(self) -> None:
        now = self._loop.time()
        if self._healthy:
            due = [h for h in self._leases.values() if h.next_beat <= now]
            if due:
                self._heartbeat(due)
        down_since = self._disconnected_since
        for op in list(self._ops.values()):
            if op.kind == "release":
                if now > op.deadline:  # the server has expired it by now anyway
                    del self._ops[op.rid]
                    self._resolve(op, None)
                continue
            if op.kind != "acquire" or self._healthy:
                continue
            # No working stream: the server cannot answer, so time out here.
            if op.deadline is not None and now > op.deadline:
                del self._ops[op.rid]
                self._fail(op, AcquireTimeout(f"no slot within the timeout; {self._last_error}"))
            elif down_since is not None and now - max(down_since, op.created) > self.config.reconnect_timeout:
                del self._ops[op.rid]
                self._fail(op, Unavailable(f"no ratequeue server reachable: {self._last_error}"))


def _leader_hint(err: Optional[grpc.aio.AioRpcError]) -> Optional[str]:
    if err is None or err.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    for md in (err.trailing_metadata(), err.initial_metadata()):
        for key, value in md or ():
            if key.lower() == LEADER_METADATA_KEY and value:
                return value.decode() if isinstance(value, bytes) else str(value)
    return None
