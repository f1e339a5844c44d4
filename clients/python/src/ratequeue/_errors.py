"""Exceptions. Every gRPC failure becomes one of these, with its status kept."""

from __future__ import annotations

from typing import Dict, Optional, Type, Union

import grpc


class RateQueueError(Exception):
    """Base class of every error the client raises.

    ``code`` is the gRPC status (a :class:`grpc.StatusCode`) the server or the
    transport reported, and ``message`` is the server's explanation.
    """

    #: The status this class stands for; instances carry the real one.
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code if code is not None else self.default_code

    def __str__(self) -> str:
        return f"{self.message} ({self.code.name})"

    def __reduce__(self):  # keep the code across pickling (Celery results, multiprocessing)
        return (_rebuild, (type(self), self.message, self.code.name))


def _rebuild(cls: Type[RateQueueError], message: str, code_name: str) -> RateQueueError:
    return cls(message, code=grpc.StatusCode[code_name])


class AcquireTimeout(RateQueueError):
    """No slot was granted within the acquire's timeout (DEADLINE_EXCEEDED)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceNotFound(RateQueueError):
    """The server knows no resource by that name (NOT_FOUND)."""

    default_code = grpc.StatusCode.NOT_FOUND


class InvalidRequest(RateQueueError):
    """The server refused a field of the request, e.g. an unknown lane or a
    load that exceeds a limit's burst and so can never be granted; or the
    client did, for a field it cannot even encode (INVALID_ARGUMENT). The
    message starts with the field's name."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(RateQueueError):
    """No API key, or an unknown or revoked one (UNAUTHENTICATED)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RateQueueError):
    """The API key may not use this resource or call (PERMISSION_DENIED)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(RateQueueError):
    """No working stream to a server within the client's reconnect timeout,
    or the client was closed (UNAVAILABLE)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class QueueFull(RateQueueError):
    """A server limit is reached (RESOURCE_EXHAUSTED): the resource's queue is
    full, or a per-client quota (open sessions per key, acquires waiting or
    leases held per session)."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


_BY_CODE: Dict[grpc.StatusCode, Type[RateQueueError]] = {
    cls.default_code: cls
    for cls in (
        AcquireTimeout,
        ResourceNotFound,
        InvalidRequest,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        QueueFull,
    )
}
_BY_VALUE: Dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def status_code(code: Union[int, grpc.StatusCode]) -> grpc.StatusCode:
    """Turns a google.rpc.Code number (as in ``Failure.code``) into a StatusCode."""
    if isinstance(code, grpc.StatusCode):
        return code
    return _BY_VALUE.get(int(code), grpc.StatusCode.UNKNOWN)


def error_for(code: Union[int, grpc.StatusCode], message: str) -> RateQueueError:
    """Returns the exception for a status; unknown statuses give RateQueueError."""
    sc = status_code(code)
    return _BY_CODE.get(sc, RateQueueError)(message or sc.name, code=sc)


def error_from_rpc(err: grpc.RpcError) -> RateQueueError:
    """Wraps a failed gRPC call."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "")
