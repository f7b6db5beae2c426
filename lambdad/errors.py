"""The one error hierarchy of lambdad, shared by the daemon, the wire and every client.

Every platform refusal is a :class:`LambdadError` subclass with a stable ``type`` name. The
daemon turns it into ``{"type": ..., "message": ..., **details}`` with :meth:`to_wire`; clients
turn that back into the same class with :func:`from_wire`, so ``except TooManyRequests`` works
the same on both sides of the socket.

Function errors (a handler that raised, timed out or crashed) are *not* exceptions here: they
are data in an invocation's result, as on Lambda.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LambdadError(Exception):
    """Base of every error that can cross the wire."""

    type: ClassVar[str] = "ServiceError"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        """Return the msgpack-ready error map: ``type``, ``message`` and the details."""
        return {**self.details, "type": self.type, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ServiceError(LambdadError):
    """The daemon failed in a way that is not the caller's fault."""

    type = "ServiceError"


class ProtocolError(LambdadError):
    """The peer broke the wire protocol (bad frame, wrong field type, unknown op)."""

    type = "ProtocolError"


class FrameTooLarge(ProtocolError):
    """A frame exceeded the connection's size limit; the connection is closed after this."""

    type = "FrameTooLarge"


class UnsupportedVersion(ProtocolError):
    """The client's ``hello`` named a protocol version this daemon does not speak."""

    type = "UnsupportedVersion"


class InvalidRequest(LambdadError):
    """A well-formed request whose content is wrong (e.g. a payload that is not JSON)."""

    type = "InvalidRequest"


class InvalidParameterValue(InvalidRequest):
    """A deploy or invoke field is out of range or malformed; ``field`` names it."""

    type = "InvalidParameterValue"


class ResourceNotFound(LambdadError):
    """No function (or version, or event) by that name."""

    type = "ResourceNotFound"


class ResourceConflict(LambdadError):
    """The resource exists already, or is in use (an alias still points at that version)."""

    type = "ResourceConflict"


class PreconditionFailed(LambdadError):
    """A ``revision_id`` (optimistic lock) no longer matches: someone changed it meanwhile."""

    type = "PreconditionFailed"


class RequestTooLarge(LambdadError):
    """The invocation payload is over the limit for its type (6 MB sync, 256 KB async)."""

    type = "RequestTooLarge"


class TooManyRequests(LambdadError):
    """Throttled: the function's or the host's concurrency limit is reached.

    ``reason`` is Lambda's: ``ReservedFunctionConcurrentInvocationLimitExceeded`` or
    ``ConcurrentInvocationLimitExceeded``.
    """

    type = "TooManyRequests"


class CodeStorageExceeded(LambdadError):
    """No room for more code: the state directory's disk is below its free-space watermark
    (Lambda's ``CodeStorageExceededException``)."""

    type = "CodeStorageExceeded"


class AccessDenied(LambdadError):
    """The peer's credentials do not allow this operation (deploy/delete are admin-only)."""

    type = "AccessDenied"


class ShuttingDown(LambdadError):
    """The daemon is draining and accepts no new invocations."""

    type = "ShuttingDown"


class DaemonUnreachable(LambdadError):
    """Client side only: nothing is listening on the socket the client tried."""

    type = "DaemonUnreachable"


class ConnectionLost(LambdadError):
    """Client side only: the daemon closed the connection with requests in flight."""

    type = "ConnectionLost"


def _all_subclasses(cls: type[LambdadError]) -> list[type[LambdadError]]:
    out: list[type[LambdadError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_CLASSES: list[type[LambdadError]] = [LambdadError, *_all_subclasses(LambdadError)]
ERROR_TYPES: dict[str, type[LambdadError]] = {cls.type: cls for cls in _CLASSES}


def from_wire(error: Any) -> LambdadError:
    """Rebuild the exception that :meth:`LambdadError.to_wire` described.

    Unknown types (a newer daemon) become a plain :class:`LambdadError` that keeps the type name.
    """
    if not isinstance(error, dict):
        return ProtocolError(f"malformed error object: {error!r}")
    details = {
        k: v for k, v in error.items() if isinstance(k, str) and k not in ("type", "message")
    }
    type_name = str(error.get("type", "ServiceError"))
    message = str(error.get("message", ""))
    cls = ERROR_TYPES.get(type_name)
    if cls is None:
        exc = LambdadError(message, **details)
        exc.type = type_name  # type: ignore[misc]
        return exc
    return cls(message, **details)
