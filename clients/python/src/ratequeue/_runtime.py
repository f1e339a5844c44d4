"""The process's ratequeue event loop, and the bridge to it.

Every session of a process runs on one event loop in a daemon thread. The
sync API blocks on it; the async API awaits it from any other loop (so
``asyncio.run`` may be called many times, as Celery tasks often do, and the
process still keeps one stream). Nothing here survives a fork: the child
starts its own thread, loop and channels on first use (gRPC channels must
not cross a fork), and the parent's objects are left untouched.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import concurrent.futures
import os
import threading
import time
import weakref
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from ._config import ClientConfig
from ._session import Session

_lock = threading.Lock()
_pid: Optional[int] = None
_loop: Optional[asyncio.AbstractEventLoop] = None
_sessions: Dict[Tuple, Session] = {}
# Objects inherited over a fork: never used, never closed, never collected
# (closing or collecting a gRPC channel that crossed a fork is unsafe).
_inherited: list = []
# Other owners of channels on the loop (admin clients): before a fork, their
# ``async suspend() -> bool`` closes their channels; they reopen on next use.
_channel_owners: "weakref.WeakSet[Any]" = weakref.WeakSet()
# Measured: 0.1 s was always enough in 24 runs; 0.25 s leaves a margin.
_FORK_SETTLE_SECONDS = 0.25


def _after_fork_in_child() -> None:
    global _lock, _pid, _loop, _sessions, _hops
    _lock = threading.Lock()
    _hops = weakref.WeakKeyDictionary()  # a hop under way at the fork never runs here
    if _pid is not None:
        _inherited.append((_loop, _sessions))
    _pid, _loop, _sessions = None, None, {}


def _before_fork() -> None:
    """Closes this process's channels (keeping waits and leases) so that the
    child can use gRPC; the parent reconnects right after the fork."""
    if _pid != os.getpid() or _loop is None or not (_sessions or _channel_owners):
        return
    if threading.current_thread().name == "ratequeue-loop":
        return

    async def suspend() -> bool:
        owners = [*_sessions.values(), *_channel_owners]
        closed = await asyncio.gather(*(o.suspend() for o in owners), return_exceptions=True)
        return any(c is True for c in closed)

    try:
        if asyncio.run_coroutine_threadsafe(suspend(), _loop).result(timeout=5):
            # gRPC's async engine shuts down when its last channel is
            # collected (not closed), and finishes shutting down shortly
            # after: collect now, and give it that moment before the fork.
            gc.collect()
            time.sleep(_FORK_SETTLE_SECONDS)
    except BaseException:  # noqa: BLE001 - never break the fork
        pass


def _after_fork_in_parent() -> None:
    if _pid != os.getpid() or _loop is None:
        return
    for s in list(_sessions.values()):
        _loop.call_soon_threadsafe(s.resume)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _ensure_loop() -> asyncio.AbstractEventLoop:
    """Returns this process's ratequeue loop, starting it on first use."""
    global _pid, _loop, _sessions
    pid = os.getpid()
    if _pid == pid and _loop is not None:
        return _loop
    with _lock:
        if _pid != pid or _loop is None:
            if _pid is not None:  # forked without the at-fork hook
                _inherited.append((_loop, _sessions))
                _sessions = {}
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="ratequeue-loop", daemon=True).start()
            ready.wait()
            _loop, _pid = loop, pid
        return _loop


def session_for(config: ClientConfig) -> Session:
    """The process's session for a configuration (one stream per config)."""
    _ensure_loop()
    key = config  # a frozen dataclass: equal configurations share a session
    with _lock:
        s = _sessions.get(key)
        if s is None or s._closed:
            s = _sessions[key] = Session(config)
        return s


def track_channels(owner: Any) -> None:
    """Has ``await owner.suspend()`` close ``owner``'s channels before this
    process forks (see :func:`_before_fork`)."""
    _channel_owners.add(owner)


def inherited(obj: Any) -> None:
    """Keeps ``obj`` (channels that crossed a fork) alive and untouched forever."""
    _inherited.append(obj)


def forget_session(session: Session) -> None:
    with _lock:
        for k, v in list(_sessions.items()):
            if v is session:
                del _sessions[k]


class _Hops:
    """Callbacks sent to one loop from other threads, run in order, with one
    wakeup for each burst: ``call_soon_threadsafe`` wakes the loop through
    its self-pipe each time, and operations come in bursts (a batch of
    answers resolves many waiters at once)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: "collections.deque" = collections.deque()
        self.scheduled = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Runs ``fn(*args)`` on the loop; raises RuntimeError if it is closed."""
        self.pending.append((fn, args))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._run)
            except RuntimeError:
                self.scheduled = False
                raise

    def _run(self) -> None:
        # Reset first: what is posted from now on is run here, or by the
        # run it schedules.
        self.scheduled = False
        pending = self.pending
        while pending:
            fn, args = pending.popleft()
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - the others must run
                self.loop.call_exception_handler({"message": "ratequeue: a callback failed", "exception": e})


# The hops to each loop that awaits operations (and to the ratequeue loop).
_hops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hops]" = weakref.WeakKeyDictionary()


def _hops_to(loop: asyncio.AbstractEventLoop) -> _Hops:
    """The hops to ``loop``. Made under ``_lock`` for the ratequeue loop,
    and for any other loop on its own thread, so one exists per loop."""
    hops = _hops.get(loop)
    if hops is None:
        with _lock:
            hops = _hops.get(loop)
            if hops is None:
                hops = _hops[loop] = _Hops(loop)
    return hops


def _begin(make: Callable[[], Awaitable[Any]], loop: asyncio.AbstractEventLoop) -> "asyncio.Future":
    """Calls ``make()`` on ``loop``, its own: a coroutine becomes a task, a
    future (an operation the session has already started) is taken as it
    is, and an exception raised at once becomes a failed future."""
    try:
        return asyncio.ensure_future(make(), loop=loop)
    except Exception as e:  # noqa: BLE001 - handed to the waiter
        fut = loop.create_future()
        fut.set_exception(e)
        return fut


def _submit(
    make: Callable[[], Awaitable[Any]], orphan: Optional[Callable[[Any], None]]
) -> Tuple[concurrent.futures.Future, asyncio.AbstractEventLoop]:
    """Starts ``make()`` on the ratequeue loop (see :func:`_begin`).

    The returned future gets the result unless it was cancelled first, in
    which case the task is cancelled, or, when it had already finished,
    ``orphan(result)`` disposes of the result (releases a lease nobody awaits).
    """
    loop = _ensure_loop()
    cf: concurrent.futures.Future = concurrent.futures.Future()
    box: Dict[str, asyncio.Future] = {}

    def deliver(task: "asyncio.Future") -> None:
        if task.cancelled():
            cf.cancel()
            return
        exc = task.exception()
        if not cf.set_running_or_notify_cancel():
            if exc is None and orphan is not None:
                orphan(task.result())
            return
        if exc is not None:
            cf.set_exception(exc)
        else:
            cf.set_result(task.result())

    def start() -> None:
        if cf.cancelled():
            return
        task = box["task"] = _begin(make, loop)
        task.add_done_callback(deliver)

    def on_cancel(f: concurrent.futures.Future) -> None:
        if f.cancelled():
            def cancel() -> None:
                t = box.get("task")
                if t is not None and not t.done():
                    t.cancel()
            loop.call_soon_threadsafe(cancel)

    cf.add_done_callback(on_cancel)
    loop.call_soon_threadsafe(start)
    return cf, loop


def _orphan_callback(orphan: Optional[Callable[[Any], None]]):
    def cb(f: concurrent.futures.Future) -> None:
        if orphan is not None and not f.cancelled() and f.exception() is None:
            orphan(f.result())
    return cb


def run_sync(make: Callable[[], Awaitable[Any]], orphan: Optional[Callable[[Any], None]] = None) -> Any:
    """Runs ``make()`` on the ratequeue loop and blocks for its result.

    If the waiting thread is interrupted (KeyboardInterrupt, a Celery time
    limit), the operation is cancelled or its result given to ``orphan``.
    """
    cf, _ = _submit(make, orphan)
    try:
        return cf.result()
    except BaseException:
        if not cf.cancel():
            cf.add_done_callback(_orphan_callback(orphan))
        raise


async def run_async(make: Callable[[], Awaitable[Any]], orphan: Optional[Callable[[Any], None]] = None, *,
                    shielded: bool = False) -> Any:
    """Awaits ``make()`` run on the ratequeue loop from any event loop (see
    :func:`_begin`).

    Cancelling the awaiting task cancels the operation (or orphans its
    result), unless ``shielded``: then the operation goes on (a release
    still goes out) and its outcome is dropped. One hop to the ratequeue
    loop and one back, each a plain callback (see :class:`_Hops`): this is
    every async operation's path, so it takes no
    ``concurrent.futures.Future`` (and its lock) on the way.
    """
    loop = _ensure_loop()
    there = _hops_to(loop)
    caller = asyncio.get_running_loop()
    back_here = _hops_to(caller)
    done = caller.create_future()
    box: Dict[str, asyncio.Future] = {}

    def result(task: "asyncio.Future") -> Any:
        """The task's result to give to ``orphan``, or None (its exception
        is marked as retrieved: nobody waits for it any more)."""
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def settle(task: "asyncio.Future") -> None:  # on the caller's loop
        if done.cancelled():
            result(task)  # shielded, or disposed of by cancel() below
        elif task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())
        else:
            done.set_result(task.result())

    def back(task: "asyncio.Future") -> None:  # on the ratequeue loop
        try:
            back_here.post(settle, task)
        except RuntimeError:  # the caller's loop has closed: nobody takes the result
            value = result(task)
            if orphan is not None and value is not None:
                orphan(value)

    def start() -> None:
        task = box["task"] = _begin(make, loop)
        task.add_done_callback(back)

    def cancel() -> None:
        # Runs after start(): both were sent from this thread, in order.
        task = box["task"]
        if not task.done():
            task.cancel()
            return
        value = result(task)
        if orphan is not None and value is not None:
            orphan(value)

    there.post(start)
    try:
        return await done
    except BaseException as e:
        if not shielded and not (done.done() and not done.cancelled() and done.exception() is e):
            there.post(cancel)  # not the operation's own failure: the caller gave up
        raise


def call_soon(fn: Callable[[], Any]) -> None:
    """Runs ``fn`` on the ratequeue loop (fire and forget)."""
    _ensure_loop().call_soon_threadsafe(fn)


def _close_all_at_exit() -> None:
    """Closes this process's streams so the server withdraws their waits."""
    if _pid != os.getpid() or _loop is None or not _sessions:
        return

    async def close() -> None:
        await asyncio.gather(*(s.close() for s in list(_sessions.values())), return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(close(), _loop).result(timeout=2)
    except BaseException:  # noqa: BLE001 - best effort at exit
        pass


atexit.register(_close_all_at_exit)
