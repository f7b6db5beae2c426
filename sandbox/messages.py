"""Every message between the daemon, its zygotes and its sandboxes: typed, in one place.

Two links (see docs/architecture.md):

* **control link**, daemon <-> zygote: ``SOCK_SEQPACKET``, one msgpack map per datagram, fds as
  SCM_RIGHTS (``spawned`` carries the sandbox's socket and log pipe).
* **sandbox link**, daemon <-> sandbox: ``SOCK_STREAM`` socketpair, a stream of msgpack maps
  (payloads can be 6 MB, more than a datagram carries); ``init`` carries the code mount fd.

Each message is a frozen dataclass; on the wire it is a map whose kind is under ``"t"``
(:data:`KIND`). :func:`encode` and :func:`decode` are the only translation, like
:mod:`lambdad.protocol` for the client socket. ``decode`` validates: the sandbox runs untrusted
code, so anything it sends that is not exactly one of these shapes raises :class:`MessageError`
(and costs the sandbox). Besides the messages, the blocking helpers the zygote and the sandbox
use to send and receive them (the daemon drives the same framing from its event loop).
"""

from __future__ import annotations

import array
import math
import mmap
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgpack

MAX_FDS: Final = 8
RECV_SIZE: Final = 256 * 1024
MAX_MESSAGE: Final = 64 * 1024 * 1024
# Bounds on the error object a sandbox reports (it is shown to the caller and logged).
MAX_ERROR_MESSAGE: Final = 64 * 1024
MAX_ERROR_TYPE: Final = 256
MAX_FRAMES: Final = 256
MAX_FRAME_CHARS: Final = 4096
MAX_PHASES: Final = 64
# Lambda's limits: a ClientContext of up to 3,583 bytes (base64); an X-Ray trace header is
# three short fields (a few more with Lineage): 256 characters is ample.
MAX_CLIENT_CONTEXT: Final = 3583
MAX_TRACE_ID: Final = 256
# An alias ([A-Za-z0-9_-], not all digits, up to 128), a version number or $LATEST.
MAX_QUALIFIER: Final = 128
QUALIFIER_RE: Final = re.compile(r"\$LATEST|[0-9]+|[A-Za-z0-9_-]+")
# AWS_LAMBDA_INITIALIZATION_TYPE's values: on demand, provisioned concurrency (min_warm) and
# SnapStart's (a sandbox forked from an initialized template).
INITIALIZATION_TYPES: Final = ("on-demand", "provisioned-concurrency", "snap-start")
MAX_LAYERS: Final = 5  # Lambda's limit per function


class MessageError(ValueError):
    """A message that is not one of this module's shapes (unknown kind, wrong field types)."""


# -- control link ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZygoteConfig:
    """daemon -> zygote, the first datagram: what to be."""

    runtime: str
    rootfs: str
    cgroup_parent: str
    disable: tuple[str, ...] = ()
    # Mark the zygote's memory mergeable by KSM (its sandboxes inherit it): the daemon's
    # opt-in ``memory_merge`` (docs/security.md, "Memory merging").
    memory_merge: bool = False


@dataclass(frozen=True, slots=True)
class ZygoteReady:
    """zygote -> daemon: booted; which protections this host lacks."""

    pid: int
    missing: tuple[str, ...]
    cgroup_version: int | None


@dataclass(frozen=True, slots=True)
class Spawn:
    """daemon -> zygote: fork ``count`` sandboxes (``source``: "pool" or "fork")."""

    count: int
    source: str = "pool"


@dataclass(frozen=True, slots=True)
class Spawned:
    """zygote -> daemon, with two fds: the sandbox's socket and its log pipe's read end."""

    id: str
    pid: int
    uid: int
    cgroup: str | None
    source: str


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    """zygote -> daemon: a spawn could not be done (cgroup, fork)."""

    message: str


@dataclass(frozen=True, slots=True)
class Exited:
    """zygote -> daemon: a sandbox was reaped."""

    id: str
    pid: int
    status: int  # waitpid status
    memory_peak: int  # bytes, from its cgroup
    oom_kills: int


# -- sandbox link ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """sandbox -> daemon: generic (pool-time) set-up done, with its phase timings (us)."""

    phases: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Init:
    """daemon -> sandbox, with the code mount fd when there is one: specialize for this
    function version and import its handler."""

    function: Mapping[str, Any]  # FunctionConfig.to_dict() + "version"
    code_path: str  # the code on the host (used when there is no mount namespace)
    log_stream: str
    pids_max: int = 64
    egress: Mapping[str, str] | None = None  # the veth end's addresses, network = "egress"
    region: str = "us-east-1"  # AWS_REGION, and the region of the function's ARN
    initialization_type: str = "on-demand"  # AWS_LAMBDA_INITIALIZATION_TYPE
    # The function's layer directories on the host, in order (later wins); their detached
    # mounts travel as the last len(layers) fds, after the code's.
    layers: tuple[str, ...] = ()
    # Become a function template (sandbox.template): Init, then fork copies, never invoke.
    template: bool = False


@dataclass(frozen=True, slots=True)
class InitDone:
    """sandbox -> daemon: Init succeeded."""

    phases: Mapping[str, int]
    init_us: int


@dataclass(frozen=True, slots=True)
class InitError:
    """sandbox -> daemon: Init failed (set-up, import); the sandbox exits."""

    error: Mapping[str, Any]
    phases: Mapping[str, int]
    init_us: int


@dataclass(frozen=True, slots=True)
class Invoke:
    """daemon -> sandbox: run one invocation."""

    request_id: str
    payload: bytes
    timeout_ms: int
    trace_id: str | None = None  # _X_AMZN_TRACE_ID for this invocation (X-Ray header form)
    client_context: str | None = None  # Lambda's ClientContext, base64 JSON as the caller sent it
    qualifier: str | None = None  # the alias or version the caller named (the invoked ARN's tail)


@dataclass(frozen=True, slots=True)
class Result:
    """sandbox -> daemon: how the invocation went. Exactly one of ``result``, ``error`` and
    ``bad_payload`` is set."""

    result: bytes | None = None  # the handler's return value as JSON text
    error: Mapping[str, Any] | None = None  # errorMessage, errorType, stackTrace
    bad_payload: str | None = None  # the event was not JSON: the caller's fault
    duration_us: float = 0.0
    maxrss_kb: int = 0


@dataclass(frozen=True, slots=True)
class Retire:
    """daemon -> sandbox: exit now."""


# -- template link (sandbox.template): daemon <-> template, daemon <-> copy --------------------


@dataclass(frozen=True, slots=True)
class Fork:
    """daemon -> template, with two fds (the copy's socket end, its log pipe's write end):
    fork one copy. The copy waits for :class:`Restore` before it sets itself up."""

    id: str
    tmp_mb: int = 512
    pids_max: int = 64  # the copy's RLIMIT_NPROC (its cgroup's pids.max is the daemon's)


@dataclass(frozen=True, slots=True)
class Forked:
    """template -> daemon: the copy's first process (pid in the template's pid namespace; 0
    when the fork failed, ``error`` saying why)."""

    id: str
    pid: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CopyExited:
    """template -> daemon: it reaped a copy (pid in the template's pid namespace)."""

    pid: int
    status: int


@dataclass(frozen=True, slots=True)
class Restore:
    """daemon -> copy: it is in its own cgroup now; make its namespaces and serve."""


@dataclass(frozen=True, slots=True)
class Restored:
    """copy -> daemon: isolated and re-seeded, after-restore hooks run; ready to invoke."""

    phases: Mapping[str, int]
    restore_us: int


ControlMessage = ZygoteConfig | ZygoteReady | Spawn | Spawned | SpawnFailed | Exited
SandboxMessage = (
    Ready | Init | InitDone | InitError | Invoke | Result | Retire
    | Fork | Forked | CopyExited | Restore | Restored
)  # fmt: skip
Message = ControlMessage | SandboxMessage

KIND: Final[dict[type[Any], str]] = {
    ZygoteConfig: "config",
    ZygoteReady: "zygote-ready",
    Spawn: "spawn",
    Spawned: "spawned",
    SpawnFailed: "spawn-failed",
    Exited: "exited",
    Ready: "ready",
    Init: "init",
    InitDone: "init-done",
    InitError: "init-error",
    Invoke: "invoke",
    Result: "result",
    Retire: "retire",
    Fork: "fork",
    Forked: "forked",
    CopyExited: "copy-exited",
    Restore: "restore",
    Restored: "restored",
}


# -- encoding -------------------------------------------------------------------------------

_pack = msgpack.Packer(use_bin_type=True).pack


def encode(msg: Message) -> bytes:
    """The wire form of ``msg``: a msgpack map, its kind under ``"t"``, None fields left out."""
    body: dict[str, Any] = {"t": KIND[type(msg)]}
    for name in msg.__slots__:
        value = getattr(msg, name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        body[name] = value
    return _pack(body)  # type: ignore[no-any-return]


def encode_invoke(
    request_id: str,
    payload: bytes,
    timeout_ms: int,
    trace_id: str | None = None,
    client_context: str | None = None,
    qualifier: str | None = None,
) -> bytes:
    """:func:`encode` of an :class:`Invoke`, without building one: every warm invocation's path."""
    body = {"t": "invoke", "request_id": request_id, "payload": payload, "timeout_ms": timeout_ms}
    if trace_id is not None:
        body["trace_id"] = trace_id
    if client_context is not None:
        body["client_context"] = client_context
    if qualifier is not None:
        body["qualifier"] = qualifier
    return _pack(body)  # type: ignore[no-any-return]


# -- decoding and validation ----------------------------------------------------------------


def _str(m: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = m.get(key, default)
    if not isinstance(value, str):
        raise MessageError(f"{key} is not a string")
    return value


def _opt_str(m: Mapping[str, Any], key: str) -> str | None:
    value = m.get(key)
    if value is not None and not isinstance(value, str):
        raise MessageError(f"{key} is not a string")
    return value


def _bounded_str(m: Mapping[str, Any], key: str, limit: int) -> str | None:
    """An optional printable-ASCII string of at most ``limit`` characters (a header's value)."""
    value = _opt_str(m, key)
    if value is not None and (len(value) > limit or not (value.isascii() and value.isprintable())):
        raise MessageError(f"{key} is not printable ASCII of at most {limit} characters")
    return value


def _int(m: Mapping[str, Any], key: str, default: int | None = None, lo: int = 0) -> int:
    value = m.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise MessageError(f"{key} is not an integer >= {lo}")
    return value


def _phases(m: Mapping[str, Any]) -> dict[str, int]:
    raw = m.get("phases", {})
    if not isinstance(raw, dict) or len(raw) > MAX_PHASES:
        raise MessageError("phases is not a small map")
    phases = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, int | float) or isinstance(v, bool):
            raise MessageError("phases is not a map of names to numbers")
        if not math.isfinite(v):
            raise MessageError("a phase is not finite")
        phases[k[:64]] = int(v)
    return phases


def _map(m: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = m.get(key)
    if not isinstance(value, dict):
        raise MessageError(f"{key} is not a map")
    return value


def bounded_error(raw: Any) -> dict[str, Any]:
    """Lambda's error object from what a sandbox sent: the three fields, bounded.

    Raises:
        MessageError: not a map, or a stack trace that is not a list of strings.
    """
    if not isinstance(raw, dict):
        raise MessageError("error is not a map")
    trace = raw.get("stackTrace", [])
    if not isinstance(trace, list) or not all(isinstance(t, str) for t in trace):
        raise MessageError("stackTrace is not a list of strings")
    error = {
        "errorMessage": str(raw.get("errorMessage", ""))[:MAX_ERROR_MESSAGE],
        "errorType": str(raw.get("errorType", "Error"))[:MAX_ERROR_TYPE],
        "stackTrace": [t[:MAX_FRAME_CHARS] for t in trace[:MAX_FRAMES]],
    }
    # Node.js's shape names the stack ``trace`` (kept as well, bounded the same way).
    node_trace = raw.get("trace")
    if isinstance(node_trace, list) and all(isinstance(t, str) for t in node_trace):
        error["trace"] = [t[:MAX_FRAME_CHARS] for t in node_trace[:MAX_FRAMES]]
    return error


def _result(m: Mapping[str, Any]) -> Result:
    duration_us = m.get("duration_us", 0)
    if not isinstance(duration_us, int | float) or isinstance(duration_us, bool):
        raise MessageError("duration_us is not a number")
    if not 0 <= duration_us < 1e12 or duration_us != duration_us:
        raise MessageError(f"duration_us {duration_us!r} out of range")
    maxrss_kb = m.get("maxrss_kb", 0)
    if not isinstance(maxrss_kb, int) or isinstance(maxrss_kb, bool) or maxrss_kb < 0:
        raise MessageError("maxrss_kb is not a non-negative integer")
    if "bad_payload" in m:
        return Result(bad_payload=str(m["bad_payload"])[:1000])
    if m.get("error") is not None:
        return Result(error=bounded_error(m["error"]), duration_us=duration_us, maxrss_kb=maxrss_kb)
    result = m.get("result")
    if not isinstance(result, bytes):
        raise MessageError("result is not bytes")
    return Result(result=result, duration_us=duration_us, maxrss_kb=maxrss_kb)


def _init(m: Mapping[str, Any]) -> Init:
    if len(m.get("layers") or ()) > MAX_LAYERS:
        raise MessageError(f"more than {MAX_LAYERS} layers")
    egress = m.get("egress")
    if egress is not None and not isinstance(egress, dict):
        raise MessageError("egress is not a map")
    return Init(
        function=_map(m, "function"),
        code_path=_str(m, "code_path"),
        log_stream=_str(m, "log_stream"),
        pids_max=_int(m, "pids_max", 64, lo=1),
        egress=egress,
        region=_region(m),
        initialization_type=_choice(m, "initialization_type", INITIALIZATION_TYPES),
        layers=_strings(m, "layers"),
        template=m.get("template") is True,
    )


def _region(m: Mapping[str, Any]) -> str:
    region = _str(m, "region", "us-east-1")
    if not (0 < len(region) <= 32 and region.isascii() and region.replace("-", "").isalnum()):
        raise MessageError("region is not a region name")
    return region


def _choice(m: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _str(m, key, allowed[0])
    if value not in allowed:
        raise MessageError(f"{key} is not one of {', '.join(allowed)}")
    return value


def _invoke(m: Mapping[str, Any]) -> Invoke:
    payload = m.get("payload", b"")
    if not isinstance(payload, bytes):
        raise MessageError("payload is not bytes")
    return Invoke(
        _str(m, "request_id"),
        payload,
        _int(m, "timeout_ms"),
        _bounded_str(m, "trace_id", MAX_TRACE_ID),
        _bounded_str(m, "client_context", MAX_CLIENT_CONTEXT),
        _qualifier(m),
    )


def _qualifier(m: Mapping[str, Any]) -> str | None:
    value = _bounded_str(m, "qualifier", MAX_QUALIFIER)
    if value is not None and not QUALIFIER_RE.fullmatch(value):
        raise MessageError(f"qualifier {value!r:.80} is not a version or alias name")
    return value


def _strings(m: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = m.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageError(f"{key} is not a list of strings")
    return tuple(value)


def _zygote_ready(m: Mapping[str, Any]) -> ZygoteReady:
    version = m.get("cgroup_version")
    if version is not None and not isinstance(version, int):
        raise MessageError("cgroup_version is not an integer")
    return ZygoteReady(_int(m, "pid"), _strings(m, "missing"), version)


_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], Message]]] = {
    "config": lambda m: ZygoteConfig(
        _str(m, "runtime"),
        _str(m, "rootfs"),
        _str(m, "cgroup_parent", "lambdad"),
        _strings(m, "disable"),
        m.get("memory_merge") is True,
    ),
    "zygote-ready": _zygote_ready,
    "spawn": lambda m: Spawn(_int(m, "count", 1, lo=1), _str(m, "source", "pool")),
    "spawned": lambda m: Spawned(
        _str(m, "id"),
        _int(m, "pid"),
        _int(m, "uid"),
        _opt_str(m, "cgroup"),
        _str(m, "source", "pool"),
    ),
    "spawn-failed": lambda m: SpawnFailed(str(m.get("message", ""))[:1000]),
    "exited": lambda m: Exited(
        _str(m, "id"),
        _int(m, "pid"),
        _int(m, "status"),
        _int(m, "memory_peak", 0),
        _int(m, "oom_kills", 0),
    ),
    "ready": lambda m: Ready(_phases(m)),
    "init": _init,
    "init-done": lambda m: InitDone(_phases(m), _int(m, "init_us", 0)),
    "init-error": lambda m: InitError(
        bounded_error(m.get("error")), _phases(m), _int(m, "init_us", 0)
    ),
    "invoke": _invoke,
    "result": _result,
    "retire": lambda m: Retire(),
    "fork": lambda m: Fork(
        _str(m, "id"), _int(m, "tmp_mb", 512, lo=1), _int(m, "pids_max", 64, lo=1)
    ),
    "forked": lambda m: Forked(
        _str(m, "id"), _int(m, "pid"), _bounded_str(m, "error", MAX_ERROR_TYPE)
    ),
    "copy-exited": lambda m: CopyExited(_int(m, "pid", lo=1), _int(m, "status")),
    "restore": lambda m: Restore(),
    "restored": lambda m: Restored(_phases(m), _int(m, "restore_us", 0)),
}

M = TypeVar("M", bound=Message)


def kind_of(raw: Any) -> str:
    """What a decoded msgpack object claims to be, for an error message: never the object's
    own ``str()``, which a hostile sender can make raise (a list nested 1,000 deep is a
    RecursionError) or make huge."""
    kind = raw.get("t") if isinstance(raw, dict) else None
    if isinstance(kind, str):
        return repr(kind[:40])
    return f"a {type(kind if isinstance(raw, dict) else raw).__name__}"


def decode(raw: Any) -> Message:
    """The message a decoded msgpack object is. Raises :class:`MessageError`, and nothing
    else, whatever ``raw`` is: what a sandbox sends is hostile input."""
    if not isinstance(raw, dict):
        raise MessageError(f"message is a {type(raw).__name__}, not a map")
    kind = raw.get("t")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise MessageError(f"unknown message kind {kind_of(raw)}")
    try:
        return decoder(raw)
    except MessageError:
        raise
    except Exception as exc:  # e.g. RecursionError from str() of a deeply nested field
        raise MessageError(f"malformed {kind_of(raw)} message ({type(exc).__name__})") from None


def expect(raw: Any, kind: type[M]) -> M:
    """:func:`decode`, and it must be a ``kind``. Raises :class:`MessageError`."""
    msg = decode(raw)
    if not isinstance(msg, kind):
        raise MessageError(f"expected {KIND[kind]!r}, got {KIND[type(msg)]!r}")
    return msg


# -- blocking helpers (zygote and sandbox) --------------------------------------------------


def send_with_fds(sock: socket.socket, msg: Message, fds: list[int]) -> None:
    data = encode(msg)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_datagram(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """One SEQPACKET message and its fds; ``(None, [])`` on EOF.

    Raises:
        MessageError: not one of the messages (any fds that came with it are closed).
    """
    data, fds, _flags, _addr = socket.recv_fds(sock, RECV_SIZE, MAX_FDS)
    if not data:
        _close_all(fds)
        return None, []
    try:
        return decode(msgpack.unpackb(data, raw=False)), list(fds)
    except (ValueError, msgpack.ExtraData) as exc:
        _close_all(fds)
        raise MessageError(f"unreadable control message: {exc}") from None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass
class StreamChannel:
    """Blocking message stream over a connected socket (the sandbox's end)."""

    sock: socket.socket
    _unpacker: Any = field(init=False)
    _fds: list[int] = field(init=False, default_factory=list)
    # recv_into one buffer: recv(256 KiB) allocates (mmaps) 256 KiB per call: 14 us against
    # 2 us (measured), on every invocation. An anonymous mapping, not a bytearray: its pages
    # exist once a message reaches them (a bytearray is zero-filled: 64 pages written in
    # every sandbox at fork, 256 KiB of its memory, most never used).
    _buf: mmap.mmap = field(init=False)
    _view: memoryview = field(init=False)

    def __post_init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE)
        self._buf = mmap.mmap(-1, RECV_SIZE)
        self._view = memoryview(self._buf)

    def send(self, msg: Message) -> None:
        self.sock.sendall(encode(msg))

    def recv(self, with_fds: bool = True) -> tuple[Message | None, list[int]]:
        """The next message and any fds that arrived with it; ``(None, [])`` on EOF.

        ``with_fds=False`` (the invocation loop: fds only ever come with ``init``) uses a plain
        ``recv``, cheaper than ``recvmsg`` with an ancillary buffer.

        Raises:
            MessageError: what arrived is not one of the messages.
        """
        while True:
            try:
                raw = self._unpacker.unpack()
            except msgpack.OutOfData:
                pass
            else:
                fds, self._fds = self._fds, []
                return decode(raw), fds
            if with_fds:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, RECV_SIZE, MAX_FDS)
                self._fds.extend(fds)
                if not data:
                    return None, []
                self._unpacker.feed(data)
            else:
                n = self.sock.recv_into(self._buf)
                if not n:
                    return None, []
                self._unpacker.feed(self._view[:n])
