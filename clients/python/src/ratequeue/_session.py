"""The one implementation: a process's session stream to the server.

A ``Session`` runs on a single event loop (the process's ratequeue loop, see
``_runtime``). It multiplexes every acquire, release and heartbeat of the
process on one ``RateQueueService.Session`` stream and keeps that stream up,
following the "Session protocol" rules in ``proto/ratequeue/v1/ratequeue.proto``
(constants in ``_protocol``):

- request ids are the session's own, so answers find their waiter;
- what one turn of the loop sends goes out as one ``SessionRequestBatch``
  (a single message alone; at most ``MAX_BATCH_MESSAGES`` messages and
  ``MAX_BATCH_BYTES`` bytes each), and a ``SessionResponseBatch`` is handled
  as if each of its answers came alone, in order;
- held leases are heartbeated about every third of their TTL, at most
  ``MAX_LEASE_IDS_PER_HEARTBEAT`` ids per message;
- between connection attempts it pauses with backoff (following a standby's
  ``ratequeue-leader`` hint first, else the next server of the list); on a
  new stream it re-sends the waiting acquires with what is left of their
  timeouts, then the unanswered releases, then the unanswered reports, then
  heartbeats every held lease to re-attach it;
- how a stream's end is handled depends on its status (``RETRIED_CODES``,
  ``KEY_REFUSED_CODES``, any other); a key refusal is remembered until a
  stream answers, and wins over a timeout;
- an operation answered UNAVAILABLE comes from a node that is going away (it
  is shutting down, or lost the leadership): the operation is kept, the
  stream dropped, and the operation sent again to whoever serves next;
- an acquire's timeout is the server's to enforce: the client gives up by
  itself only ``TIMEOUT_SLACK`` later, or after ``reconnect_timeout`` without
  a working stream;
- a cancelled waiter sends a cancel, and a grant that arrives for a waiter
  that has gone is released at once;
- a release carries the lease's provider feedback; a report (feedback
  without a lease) waits for its answer and is sent again after a reconnect,
  but only once (it is news about a moment that has passed): one that two
  working streams carried without an answer fails UNAVAILABLE (a connection
  attempt that never worked does not count); without a working stream it
  fails after the reconnect timeout, as an acquire does.

Nothing here may block: it runs on an event loop shared by the whole process.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Type, Union

import grpc
import grpc.aio

from . import _protocol as protocol
from ._config import ClientConfig, Endpoint
from ._errors import AcquireTimeout, InvalidRequest, RateQueueError, Unavailable, error_for, error_from_rpc
from .feedback import DimensionFeedback, Headers, ProviderFeedback, Seconds, _to_proto, parse_headers
from ._proto.ratequeue.v1 import ratequeue_pb2 as pb
from ._proto.ratequeue.v1 import ratequeue_pb2_grpc as pb_grpc

log = logging.getLogger("ratequeue")

_TICK = 0.05  # seconds between housekeeping rounds (heartbeats, local timeouts)
_RESENT_ORDER = {"acquire": 0, "release": 1, "report": 2}


LEASE_ATTRIBUTES = """

    Attributes:
        lease_id: The server's id of the lease.
        resource: The resource the lease is on: ``"RESOURCE/KEY"``, the
            keyed child, for an acquire with a key.
        load: The load charged at acquire.
        ttl: The resource's lease TTL, seconds: the lease expires unless it
            is heartbeated within it (the client does that by itself).
        expire_time: When the lease expires unless heartbeated, as of the
            last answer from the server (server clock).
        wait_time: How long the acquire waited in the queue, seconds.
        grant_time: When the server granted the lease (server clock, UTC).
        actual_load: Set it before the lease is released to reconcile the
            estimate given at acquire (for example with the tokens really
            used).
        feedback: What the provider said about the call
            (:class:`ratequeue.ProviderFeedback`), recorded by
            :meth:`observe` and :meth:`report` and sent with the release;
            None until then.
        released: True once the lease was released.
        lost: True when the lease can no longer be held: the server reported
            it expired (it was not heartbeated in time, for example while the
            process was frozen), a heartbeat found it no longer held (a server
            restarted without it), or the server refused the API key (it was
            revoked), so it cannot be heartbeated. A lost lease no longer
            counts as held; releasing it is harmless.
"""


@dataclass(eq=False)
class BaseLease:
    """The data of a granted slot; ``ratequeue.Lease`` and
    ``ratequeue.aio.Lease`` add ``release()``."""

    lease_id: str
    resource: str
    load: float
    ttl: float
    expire_time: Optional[_dt.datetime]
    wait_time: float
    grant_time: Optional[_dt.datetime] = None
    actual_load: Optional[float] = None
    feedback: Optional[ProviderFeedback] = field(default=None, init=False)
    released: bool = field(default=False, init=False)
    lost: bool = field(default=False, init=False)
    # The configuration whose session granted the lease; release() finds
    # the process's session for it (a fresh one after a fork or a close).
    _config: Optional[ClientConfig] = field(default=None, repr=False, compare=False)

    def observe(self, headers: Optional[Headers], status: Optional[int] = None) -> None:
        """Records what the provider's answer says: ``status`` 429, 503 or
        529 means it refused the call; its rate-limit headers (OpenAI's
        ``x-ratelimit-*``, Anthropic's ``anthropic-ratelimit-*``,
        ``retry-after``) tell its budget. Sent with the release; see
        :func:`ratequeue.feedback.parse_headers`."""
        self._record(parse_headers(headers, status))

    def report(self, *, throttled: bool = False, retry_after: Optional[Seconds] = None,
               requests: Union[DimensionFeedback, Mapping[str, Any], None] = None,
               load: Union[DimensionFeedback, Mapping[str, Any], None] = None,
               input_tokens: Union[DimensionFeedback, Mapping[str, Any], None] = None,
               output_tokens: Union[DimensionFeedback, Mapping[str, Any], None] = None) -> None:
        """Records what the provider said about the call, sent with the
        release: ``throttled=True`` when it refused the call (the whole
        resource pauses for ``retry_after`` seconds or a timedelta, fleet-wide,
        and a release without ``actual_load`` refunds the load); the
        dimensions (:class:`ratequeue.DimensionFeedback` or dicts with
        ``limit``, ``remaining``, ``reset``) lower what the resource admits.

        Throttled stays true once recorded; later values replace earlier
        ones. Raises :class:`ratequeue.InvalidRequest` for a value that
        cannot be sent.
        """
        self._record(ProviderFeedback.of(dict(
            throttled=throttled, retry_after=retry_after, requests=requests, load=load,
            input_tokens=input_tokens, output_tokens=output_tokens), ""))

    def _record(self, feedback: ProviderFeedback) -> None:
        if self.released:
            raise RuntimeError(f"lease {self.lease_id} is released: report later feedback with client.report()")
        if self.feedback is None:
            self.feedback = ProviderFeedback()
        self.feedback.merge(feedback)


BaseLease.__doc__ += LEASE_ATTRIBUTES

@dataclass(eq=False)
class _Op:
    rid: int
    kind: str  # "acquire" | "release" | "report" | "heartbeat"
    payload: object
    future: "asyncio.Future"
    created: float
    # acquire: when its timeout ends; release: when to stop re-sending it.
    deadline: Optional[float] = None
    lease_type: Type[BaseLease] = BaseLease  # acquire: the class of the lease it makes
    sends: int = 0  # report: the working streams that carried it and broke before its answer


@dataclass(eq=False)
class _Held:
    lease: BaseLease
    next_beat: float


def _duration(seconds: float):
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def _utc(ts) -> _dt.datetime:
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


class Session:
    """A process's stream to the ratequeue servers. Use it from its own loop only."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._endpoints: List[Endpoint] = list(config.endpoints)
        self._metadata = config.call_metadata()
        # Read the certificate files now, in the caller's thread, so that a
        # missing file fails the first call instead of every reconnect.
        self._tls_credentials = (
            config.channel_credentials() if any(ep.tls for ep in self._endpoints) else None
        )
        self._ep_index = 0
        self._redirect: Optional[Endpoint] = None
        self._channels: Dict[Endpoint, grpc.aio.Channel] = {}
        # The messages the open stream's writer has yet to send; None while
        # no stream is open. _put wakes the writer through _wake.
        self._outbox: Optional[List[Any]] = None
        self._wake: Optional[asyncio.Future] = None
        self._healthy = False  # the open stream has answered at least once
        self._disconnected_since: Optional[float] = None
        self._last_error = "not connected yet"
        # The key refusal (UNAUTHENTICATED, PERMISSION_DENIED) that ended the
        # last stream, until a stream answers: it wins over a timeout.
        self._refusal: Optional[RateQueueError] = None
        self._next_id = 0
        self._ops: Dict[int, _Op] = {}
        self._leases: Dict[str, _Held] = {}
        self._tasks: List[asyncio.Task] = []
        self._demand: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._departing = False  # the open stream's node said it is going away

    # ------------------------------------------------------------------ API

    def acquire(
        self,
        resource: str,
        *,
        load: float = 1,
        priority: int = 10,
        lane: Optional[str] = None,
        timeout: Optional[float] = None,
        key: Optional[str] = None,
        lease_type: Type[BaseLease] = BaseLease,
    ) -> "asyncio.Future":
        """Asks for a lease: returns the future of it (no task: this is the
        hot path). Cancelling the future withdraws the request."""
        self._start()
        req = pb.AcquireRequest(resource=resource, load=float(load), priority=int(priority), lane=lane or "",
                                key=_checked_key(key))
        deadline = None
        if timeout is not None:
            timeout = max(float(timeout), 0.0)
            req.timeout.CopyFrom(_duration(timeout))
            deadline = self._loop.time() + timeout
        op = self._add_op("acquire", req, deadline=deadline, lease_type=lease_type)
        op.future.add_done_callback(lambda f: f.cancelled() and self._withdraw(op))
        return op.future

    async def release(self, lease: BaseLease, actual_load: Optional[float] = None) -> Optional[str]:
        """Releases a lease; returns the outcome name (``"RELEASED"``, ...).

        Returns None without waiting when no stream is up (or when it drops
        before the answer): the release is sent again after each reconnect
        until the lease's TTL has passed, after which the server has freed
        the slot anyway. Releasing twice is harmless.
        """
        if lease.released:
            return None
        lease.released = True
        self._leases.pop(lease.lease_id, None)
        if lease.lost and self._refusal is not None:
            return None  # the key is refused: nothing can release it; the server frees it at its TTL
        self._start()
        req = pb.ReleaseRequest(lease_id=lease.lease_id)
        if actual_load is None:
            actual_load = lease.actual_load
        if actual_load is not None:
            req.actual_load = float(actual_load)
        if lease.feedback is not None and not lease.feedback.empty:
            req.feedback.CopyFrom(_to_proto(lease.feedback))
        op = self._add_op("release", req, deadline=self._loop.time() + lease.ttl)
        if not self._healthy:
            return None
        # A cancelled waiter cancels op.future, which is harmless: the
        # release stays registered and its answer finds nobody waiting.
        resp = await op.future
        return pb.ReleaseOutcome.Name(resp.outcome).replace("RELEASE_OUTCOME_", "") if resp is not None else None

    async def report(self, resource: str, feedback: ProviderFeedback):
        """Gives provider feedback without a lease; returns the server's
        ReportResponse. Fails UNAVAILABLE when two streams broke before an
        answer, or after the reconnect timeout without a working stream."""
        self._start()
        op = self._add_op("report", pb.ReportRequest(resource=resource, feedback=_to_proto(feedback)))
        return await asyncio.shield(op.future)

    @property
    def held_leases(self) -> List[BaseLease]:
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

    def _add_op(self, kind: str, payload, *, deadline: Optional[float] = None,
                lease_type: Type[BaseLease] = BaseLease) -> _Op:
        op = _Op(self._new_id(), kind, payload, self._loop.create_future(), self._loop.time(), deadline, lease_type)
        self._ops[op.rid] = op
        self._send_op(op)
        self._demand.set()
        return op

    def _send_op(self, op: _Op) -> None:
        if self._outbox is None:
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
        elif op.kind == "report":
            msg.report.CopyFrom(op.payload)
        else:
            msg.heartbeat.CopyFrom(op.payload)
        self._put(msg)

    def _send_cancel(self, rid: int) -> None:
        if self._outbox is not None:
            self._put(pb.SessionRequest(request_id=self._new_id(), cancel=pb.SessionCancel(acquire_request_id=rid)))

    def _put(self, msg) -> None:
        """Queues a message for the open stream. Waking the writer takes a
        turn of the loop, so everything queued in this turn goes together."""
        self._outbox.append(msg)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _withdraw(self, op: _Op) -> None:
        """The acquire's future was cancelled: withdraw the request from the
        server's queue (a grant that crosses the cancel finds no waiter in
        _dispatch and is given back)."""
        if self._ops.get(op.rid) is op:
            del self._ops[op.rid]
            self._send_cancel(op.rid)

    def _give_up(self, op: _Op, err: RateQueueError) -> None:
        """Fails a waiting acquire here, withdrawing it from the server if
        the stream is up (a grant that still comes is given back)."""
        if self._ops.pop(op.rid, None) is op:
            self._send_cancel(op.rid)
        self._fail(op, err)

    def _give_up_report(self, op: _Op) -> None:
        del self._ops[op.rid]
        self._fail(op, self._refusal or Unavailable(
            f"no ratequeue server reachable for {self.config.reconnect_timeout:g}s: {self._last_error}"))

    def _give_back(self, lease: BaseLease) -> None:
        """Releases a lease nobody will use."""
        self._loop.create_task(self._release_quietly(lease))

    async def _release_quietly(self, lease: BaseLease) -> None:
        try:
            await self.release(lease)
        except Exception as e:  # noqa: BLE001 - nobody to tell but the log
            log.warning("ratequeue: releasing unused lease %s failed: %s", lease.lease_id, e)

    @staticmethod
    def _fail(op: _Op, err: BaseException) -> None:
        if not op.future.done():
            op.future.set_exception(err)
            op.future.exception()  # mark retrieved: a waiter may have gone

    @staticmethod
    def _resolve(op: _Op, value) -> bool:
        if op.future.done():
            return False
        op.future.set_result(value)
        return True

    # -------------------------------------------------------- the stream

    def _channel(self, ep: Endpoint) -> grpc.aio.Channel:
        ch = self._channels.get(ep)
        if ch is None:
            if ep.tls and self._tls_credentials is None:  # a leader hint may name a TLS node
                self._tls_credentials = self.config.channel_credentials()
            ch = self._channels[ep] = self.config.open_channel(ep, self._tls_credentials)
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
            # A node that answered a request UNAVAILABLE is going away: it
            # does not count as a stream that answered.
            if self._healthy and not self._departing:
                backoff = self.config.initial_backoff
            self._disconnect()
            if self._stream_ended(err):
                continue  # the key is refused: connect again only for a new operation, then at once
            # Next: the leader a standby named, else the next server of the list.
            leader = _leader_hint(err)
            if leader is not None and Endpoint(leader, ep.tls) != ep:
                log.info("ratequeue: %s is a standby; following the leader at %s", ep, leader)
                self._redirect = Endpoint(leader, ep.tls)
            elif self._redirect is not None:
                self._redirect = None
            else:
                self._ep_index += 1
            pause = self._pause(backoff)
            log.debug("ratequeue: %s; reconnecting in %.2fs", self._last_error, pause)
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, self.config.max_backoff)

    def _stream_ended(self, err: Optional[grpc.aio.AioRpcError]) -> bool:
        """Applies "The stream ending" to what waits and what is held.
        Returns True when the key was refused."""
        code = err.code() if err is not None else None
        if code is None or code in protocol.RETRIED_CODES:
            return False  # kept: re-sent and re-attached on the next stream
        failure = error_from_rpc(err)
        refused = code in protocol.KEY_REFUSED_CODES
        for op in list(self._ops.values()):
            # Nobody waits for a release once its stream is gone (see
            # _disconnect): it is sent again, unless the key is refused.
            if op.kind == "acquire" or refused:
                del self._ops[op.rid]
                self._fail(op, failure)
        if refused:
            # Nobody can heartbeat these leases with this key; the server
            # frees them at their TTL. Connect again only for a new operation.
            self._refusal = failure
            for lease_id in list(self._leases):
                self._lost(lease_id, f"the API key was refused ({code.name})")
        return refused

    def _pause(self, backoff: float) -> float:
        """A reconnect pause: the backoff, capped, with jitter."""
        return min(backoff, self.config.max_backoff) * random.uniform(*protocol.BACKOFF_JITTER)

    async def _serve(self, ep: Endpoint) -> None:
        """Runs one stream until it ends. Sets ``_departing`` when the node
        answered a request UNAVAILABLE (it is going away) and drops the
        stream shortly after."""
        stub = pb_grpc.RateQueueServiceStub(self._channel(ep))
        call = stub.Session(metadata=self._metadata)
        outbox: List[Any] = []
        writer = self._loop.create_task(self._write(call, outbox))
        try:
            self._outbox = outbox
            self._healthy = False
            # Re-send what waits, in request-id order (acquires first, then
            # releases, then reports: a report only once), then re-attach
            # held leases; that heartbeat also proves the stream works, even
            # when nothing is held.
            for op in [op for op in self._ops.values() if op.kind == "report" and op.sends >= 2]:
                del self._ops[op.rid]
                self._fail(op, Unavailable(f"the report was sent twice and no server answered it: {self._last_error}"))
            waiting = sorted(self._ops.values(), key=lambda o: (_RESENT_ORDER.get(o.kind, 3), o.rid))
            for op in waiting:
                self._send_op(op)
            self._heartbeat(list(self._leases.values()), probe=True)
            departing_at: Optional[float] = None
            while True:
                if departing_at is None:
                    resp = await call.read()
                else:
                    # Give the node a moment to end the stream itself (its
                    # status may name the next leader), then drop it.
                    left = departing_at + protocol.DEPARTURE_GRACE - self._loop.time()
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
                    self._refusal = None
                if not self._dispatch(resp) and departing_at is None:
                    self._departing = True
                    departing_at = self._loop.time()
        finally:
            self._outbox = None
            writer.cancel()
            call.cancel()
            # A traceback may keep this frame alive: let go of the channel so
            # that it can be collected (see suspend).
            call = stub = writer = None  # noqa: F841

    async def _write(self, call, outbox: List[Any]) -> None:
        """Sends what is queued in ``outbox``: what one turn of the loop
        queued, or what was queued while the last write was under way, as
        few messages as the batch bounds allow."""
        try:
            while True:
                if not outbox:
                    self._wake = self._loop.create_future()
                    await self._wake
                msgs = outbox[:]
                del outbox[:]
                for msg in _batched(msgs):
                    await call.write(msg)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the reader sees the call's end
            log.debug("ratequeue: session write failed: %r", e)

    def _disconnect(self) -> None:
        self._outbox = None
        if self._loop is None:
            return
        worked = self._healthy
        if self._healthy or self._disconnected_since is None:
            self._disconnected_since = self._loop.time()
        self._healthy = False
        for op in list(self._ops.values()):
            if op.kind == "heartbeat":  # the next stream heartbeats every lease anew
                del self._ops[op.rid]
            elif op.kind == "release":  # nobody waits for a stream: it is re-sent on the next one
                self._resolve(op, None)
            elif op.kind == "report" and worked:  # it went out on a stream that worked, unanswered
                op.sends += 1

    def _heartbeat(self, held: List[_Held], *, probe: bool = False) -> None:
        """Heartbeats these leases, MAX_LEASE_IDS_PER_HEARTBEAT per message;
        ``probe`` sends one even for none."""
        now = self._loop.time()
        for h in held:
            h.next_beat = now + max(h.lease.ttl / protocol.HEARTBEATS_PER_TTL, _TICK)
        ids = [h.lease.lease_id for h in held]
        step = protocol.MAX_LEASE_IDS_PER_HEARTBEAT
        chunks = [ids[i:i + step] for i in range(0, len(ids), step)] or ([[]] if probe else [])
        for chunk in chunks:
            self._add_op("heartbeat", pb.HeartbeatRequest(lease_ids=chunk))

    def _dispatch(self, resp) -> bool:
        """Hands an answer to its waiter. Returns False when the answer says
        the node is going away: the request stays, to be sent again."""
        kind = resp.WhichOneof("kind")
        if kind == "batch":
            # Each answer as if it came alone, in order; every one is
            # handled even after one says the node is going away.
            results = [self._dispatch(r) for r in resp.batch.responses]
            return all(results)
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
                self._give_back(self._lease_from(resp.granted, BaseLease))
            return True
        if kind == "failure":
            err = error_for(resp.failure.code, resp.failure.message)
            if op.kind in ("acquire", "report"):
                self._fail(op, err)
            else:
                log.warning("ratequeue: %s failed: %s", op.kind, err)
                self._resolve(op, None)
        elif kind == "granted" and op.kind == "acquire":
            lease = self._lease_from(resp.granted, op.lease_type)
            beat = max(lease.ttl / protocol.HEARTBEATS_PER_TTL, _TICK)
            self._leases[lease.lease_id] = _Held(lease, self._loop.time() + beat)
            if not self._resolve(op, lease):
                self._give_back(lease)
        elif kind == "released":
            self._resolve(op, resp.released)
        elif kind == "reported":
            self._resolve(op, resp.reported)
        elif kind == "heartbeat":
            for st in resp.heartbeat.leases:
                if not st.held:
                    self._lost(st.lease_id, "not held at the server")
                elif st.HasField("expire_time") and st.lease_id in self._leases:
                    self._leases[st.lease_id].lease.expire_time = _utc(st.expire_time)
            self._resolve(op, resp.heartbeat)
        else:
            log.warning("ratequeue: unexpected %s answer to a %s", kind, op.kind)
            self._resolve(op, None)
        return True

    def _lease_from(self, granted, lease_type: Type[BaseLease]) -> BaseLease:
        l = granted.lease
        ttl = l.ttl.ToNanoseconds() / 1e9 if l.HasField("ttl") else 30.0
        return lease_type(
            lease_id=l.lease_id,
            resource=l.resource,
            load=l.load,
            ttl=ttl if ttl > 0 else 30.0,
            expire_time=_utc(l.expire_time) if l.HasField("expire_time") else None,
            wait_time=granted.wait_time.ToNanoseconds() / 1e9,
            grant_time=_utc(l.grant_time) if l.HasField("grant_time") else None,
            _config=self.config,
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
                if now > op.deadline:  # the server has freed the slot by now anyway
                    del self._ops[op.rid]
                    self._resolve(op, None)
            elif op.kind == "report":
                if (not self._healthy and down_since is not None
                        and now - max(down_since, op.created) >= self.config.reconnect_timeout):
                    self._give_up_report(op)
            elif op.kind == "acquire":
                # The server answers a timeout itself; past the slack, it
                # could not be reached. A key refusal is the better reason.
                if op.deadline is not None and now >= op.deadline + protocol.TIMEOUT_SLACK:
                    self._give_up(op, self._refusal or AcquireTimeout(
                        f"no answer within the timeout: the server could not be reached ({self._last_error})"))
                elif (not self._healthy and down_since is not None
                      and now - max(down_since, op.created) >= self.config.reconnect_timeout):
                    self._give_up(op, self._refusal or Unavailable(
                        f"no ratequeue server reachable for {self.config.reconnect_timeout:g}s: {self._last_error}"))


def _batched(msgs: List[Any]) -> Iterator[Any]:
    """The messages to write for ``msgs``, in order: runs of them joined
    within the protocol's batch bounds (a message too large to share a
    batch goes alone)."""
    run: List[Any] = []
    size = 0
    for msg in msgs:
        n = msg.ByteSize()
        if run and (len(run) == protocol.MAX_BATCH_MESSAGES or size + n > protocol.MAX_BATCH_BYTES):
            yield _joined(run)
            run, size = [], 0
        run.append(msg)
        size += n
    if run:
        yield _joined(run)


def _joined(run: List[Any]) -> Any:
    """One message for a run: itself when alone, else a batch of them."""
    return run[0] if len(run) == 1 else pb.SessionRequest(batch=pb.SessionRequestBatch(requests=run))


def _checked_key(key: Optional[str]) -> str:
    """The acquire's key as sent: "" for None. The server checks the rest
    (length, characters); an empty key is refused here, since the server
    would read it as no key and charge the resource itself."""
    if key is None:
        return ""
    if not isinstance(key, str):
        raise InvalidRequest(f"key: must be a string, got {key!r}")
    if not key:
        raise InvalidRequest("key: must not be empty (None means no key)")
    return key


def _leader_hint(err: Optional[grpc.aio.AioRpcError]) -> Optional[str]:
    if err is None or err.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    for md in (err.trailing_metadata(), err.initial_metadata()):
        for key, value in md or ():
            if key.lower() == protocol.LEADER_METADATA_KEY and value:
                return value.decode() if isinstance(value, bytes) else str(value)
    return None
