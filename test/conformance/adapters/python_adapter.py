"""The Python client's conformance adapter (see test/conformance/README.md).

Reads one JSON command per line on stdin and answers each with one JSON line
on stdout carrying the same id, in whatever order the commands are decided;
a waiting acquire never holds up the next command. Drives ``ratequeue.aio``.
When stdin closes, it closes its clients and exits 0. Logs go to stderr.

    .tools/venv/bin/python test/conformance/adapters/python_adapter.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

import grpc

import ratequeue.aio as rq
from ratequeue import _protocol as protocol

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def defaults() -> Dict[str, Any]:
    """The library's own constants, in the adapter protocol's units."""
    return {
        "url": protocol.DEFAULT_URL,
        "keepaliveTimeMs": _ms(protocol.KEEPALIVE_TIME),
        "keepaliveTimeoutMs": _ms(protocol.KEEPALIVE_TIMEOUT),
        "reconnectTimeoutMs": _ms(protocol.RECONNECT_TIMEOUT),
        "initialBackoffMs": _ms(protocol.INITIAL_BACKOFF),
        "maxBackoffMs": _ms(protocol.MAX_BACKOFF),
        "timeoutSlackMs": _ms(protocol.TIMEOUT_SLACK),
        "maxLeaseIdsPerHeartbeat": protocol.MAX_LEASE_IDS_PER_HEARTBEAT,
        "leaderMetadataKey": protocol.LEADER_METADATA_KEY,
        "namespaceMetadataKey": protocol.NAMESPACE_METADATA_KEY,
    }


class CommandError(Exception):
    """A command the adapter cannot run (unknown client, lease or command)."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _failure(err: BaseException) -> Dict[str, Any]:
    if isinstance(err, rq.RateQueueError):
        return {"ok": False, "code": err.code.name, "message": err.message}
    if isinstance(err, CommandError):
        return {"ok": False, "code": err.code.name, "message": err.message}
    if isinstance(err, asyncio.CancelledError):
        return {"ok": False, "code": grpc.StatusCode.CANCELLED.name, "message": "the acquire was cancelled"}
    return {"ok": False, "code": grpc.StatusCode.UNKNOWN.name, "message": f"{type(err).__name__}: {err}"}


class Adapter:
    def __init__(self) -> None:
        self.clients: Dict[str, rq.Client] = {}
        # Every lease acquired here: id -> (client name, lease).
        self.leases: Dict[str, Tuple[str, rq.Lease]] = {}
        self.acquires: Dict[int, asyncio.Task] = {}  # acquire command id -> its task
        self.tasks: set = set()

    @staticmethod
    def send(answer: Dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    def handle(self, line: str) -> None:
        """Starts one command; its answer is sent when it is decided."""
        try:
            cmd = json.loads(line)
            cid = cmd["id"]
        except (ValueError, KeyError, TypeError) as e:
            print(f"python adapter: unreadable command {line!r}: {e}", file=sys.stderr)
            return
        task = asyncio.ensure_future(self.run(cid, cmd))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if cmd.get("cmd") in ("acquire", "acquireMany"):
            self.acquires[cid] = task

    async def run(self, cid: int, cmd: Dict[str, Any]) -> None:
        started = time.monotonic()
        kind = cmd.get("cmd")
        timed = kind == "acquire"
        try:
            fields = await self.execute(kind, cmd)
            answer = {"id": cid, "ok": True, **fields}
        except BaseException as e:  # noqa: BLE001 - every outcome is an answer
            answer = {"id": cid, **_failure(e)}
        finally:
            self.acquires.pop(cid, None)
        if timed:
            answer["elapsedMs"] = _ms(time.monotonic() - started)
        self.send(answer)

    def client(self, cmd: Dict[str, Any]) -> rq.Client:
        name = cmd.get("client")
        if name not in self.clients:
            raise CommandError(f"no open client {name!r}")
        return self.clients[name]

    def lease(self, lease_id: str) -> rq.Lease:
        if lease_id not in self.leases:
            raise CommandError(f"no lease {lease_id!r} was acquired here")
        return self.leases[lease_id][1]

    def hold(self, name: str, lease: rq.Lease) -> Dict[str, Any]:
        self.leases[lease.lease_id] = (name, lease)
        grant_ms = (lease.grant_time - _EPOCH) // dt.timedelta(milliseconds=1)
        return {"lease": lease.lease_id, "grantTimeMs": grant_ms, "load": lease.load, "resource": lease.resource}

    async def release(self, lease_id: str, actual_load: Optional[float],
                      throttle: Optional[Dict[str, Any]] = None) -> Optional[str]:
        lease = self.lease(lease_id)
        if throttle is not None:
            # The provider refused the call: the release carries it.
            lease.report(throttled=True, retry_after=throttle["retryAfterMs"] / 1000)
        outcome = await lease.release(actual_load=actual_load)
        return outcome.lower() if outcome is not None else None

    async def execute(self, kind: Optional[str], cmd: Dict[str, Any]) -> Dict[str, Any]:
        if kind == "defaults":
            return {"defaults": defaults()}
        if kind == "open":
            options: Dict[str, Any] = {}
            if cmd.get("apiKey") is not None:
                options["api_key"] = cmd["apiKey"]
            if cmd.get("namespace") is not None:
                options["namespace"] = cmd["namespace"]
            if cmd.get("reconnectTimeoutMs") is not None:
                options["reconnect_timeout"] = cmd["reconnectTimeoutMs"] / 1000
            # Each client of the suite is its own session, as in the other
            # languages (equal configurations would share one).
            self.clients[cmd["client"]] = rq.Client(cmd["url"], session_name=cmd["client"], **options)
            return {}
        if kind == "acquire":
            client = self.client(cmd)
            timeout = cmd.get("timeoutMs")
            lease = await client.acquire_lease(
                cmd["resource"], load=cmd.get("load", 1), priority=cmd.get("priority", 10), lane=cmd.get("lane"),
                timeout=None if timeout is None else timeout / 1000, key=cmd.get("key"))
            return self.hold(cmd["client"], lease)
        if kind == "cancel":
            target = self.acquires.get(cmd.get("target"))
            if target is not None:
                target.cancel()  # the target answers CANCELLED, or its grant if that came first
            return {}
        if kind == "acquireMany":
            client = self.client(cmd)
            tasks = [asyncio.ensure_future(client.acquire_lease(cmd["resource"], load=cmd.get("load", 1)))
                     for _ in range(int(cmd["count"]))]
            try:
                leases = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                raise
            finally:
                # Leases granted before a failure stay held, and listed.
                for t in tasks:
                    if t.done() and not t.cancelled() and t.exception() is None:
                        self.hold(cmd["client"], t.result())
            return {"leases": [lease.lease_id for lease in leases]}
        if kind == "release":
            return {"outcome": await self.release(cmd["lease"], cmd.get("actualLoad"), cmd.get("throttle"))}
        if kind == "releaseMany":
            ids = list(cmd["leases"])
            return {"outcomes": list(await asyncio.gather(*(self.release(i, None) for i in ids)))}
        if kind == "leases":
            mine = [lease for name, lease in self.leases.values() if name == cmd.get("client") and not lease.released]
            return {"held": [l.lease_id for l in mine if not l.lost], "lost": [l.lease_id for l in mine if l.lost]}
        if kind == "close":
            client = self.clients.pop(cmd.get("client"), None)
            if client is None:
                raise CommandError(f"no open client {cmd.get('client')!r}")
            await client.close()
            return {}
        raise CommandError(f"unknown command {kind!r}")

    async def close(self) -> None:
        for client in list(self.clients.values()):
            try:
                await client.close()
            except Exception as e:  # noqa: BLE001 - closing anyway
                print(f"python adapter: closing a client failed: {e!r}", file=sys.stderr)
        self.clients.clear()
        if self.tasks:  # what still waited answers now (the clients are closed)
            await asyncio.wait(list(self.tasks), timeout=5)


async def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    loop = asyncio.get_running_loop()
    lines: "asyncio.Queue[Optional[str]]" = asyncio.Queue()

    def read() -> None:  # a thread, so that reading never waits on a command
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    adapter = Adapter()
    adapter.send({"ready": True})
    while True:
        line = await lines.get()
        if line is None:
            break
        if line.strip():
            adapter.handle(line)
    await adapter.close()


if __name__ == "__main__":
    asyncio.run(main())
