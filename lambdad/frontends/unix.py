"""The socket front: msgpack over a Unix socket, the ops table, peer credentials, admin check.

The ops translate the protocol's maps into :mod:`lambdad.model` values, call the
:class:`~lambdad.service.Service`, and translate back: the core never sees a wire-shaped
request. Who may call which op, and what a caller who is not an admin sees of the answer, is
decided here and only here (:data:`ACCESS`, :data:`REDACT`, :meth:`UnixFront.dispatch`), from
``SO_PEERCRED``: admins are root, the daemon's own uid and the admin group; everyone else who
can open the socket (mode 0660, group ``lambdad``) may invoke and see names and metadata, never
environment values, logs or dead letters (docs/security.md, "The control plane").

The connection side is a thin asyncio protocol that feeds :mod:`lambdad.protocol`.

Like uvicorn's h11 implementation: ``data_received`` hands the bytes to the sans-IO connection
and dispatches whatever events come out. Each request runs as its own task, so a connection can
have many requests in flight; responses go out in completion order with their ids.

Backpressure: a client that does not read its responses gets its reading paused, so a slow or
malicious client cannot make the daemon buffer without bound.

Closing (docs/protocol.md, "Closing"): at the client's EOF, the requests already read are
answered, then the daemon closes. After a fatal error (bytes that are not msgpack, a frame over
the limit, no hello in time) the daemon sends the error frame at once, reads no further
requests, still answers every request it had read before, then half-closes and discards input
until the client's EOF or LINGER_S.
"""

from __future__ import annotations

import asyncio
import enum
import grp
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from lambdad.buckets import wire as bucket_wire
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.diskspace import Watermark
from lambdad.errors import (
    AccessDenied,
    InvalidParameterValue,
    LambdadError,
    ProtocolError,
    ResourceNotFound,
    ServiceError,
)
from lambdad.frontends.unix_queues import QUEUE_OPS
from lambdad.functions import validate
from lambdad.layers import PublishRequest, parse_layer_name
from lambdad.logs import render
from lambdad.model import Caller, InvokeRequest, wire_name
from lambdad.protocol import (
    BadRequest,
    Connection,
    ErrorResponse,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
    _Sentinel,
)
from lambdad.service import Service
from lambdad.triggers import wire as trigger_wire
from lambdad.uploads import UploadLimits, Uploads

log = logging.getLogger("lambdad")

MAX_IN_FLIGHT = 1024  # requests per connection before reading pauses
LINGER_S = 2.0  # after a fatal protocol error: how long to swallow input before closing
# Room for an upload_chunk frame's other fields (id, op, upload id, offset, the bin header).
CHUNK_FRAME_OVERHEAD = 64 * 1024


class Access(enum.Enum):
    """Who may call an op."""

    ANYONE = "anyone"  # whoever can open the socket; answers redacted (REDACT) for non-admins
    ADMIN = "admin"  # root, the daemon's own uid, members of the admin group


# Who may call each op: the one place this is decided (docs/security.md has the same table;
# tests/security/test_control_plane.py checks both). An op missing here is admin-only, so a
# new op is closed until someone decides it may be open.
ACCESS: Final[dict[str, Access]] = {
    "hello": Access.ANYONE,
    "ping": Access.ANYONE,
    "invoke": Access.ANYONE,
    "get": Access.ANYONE,
    "list": Access.ANYONE,
    "stats": Access.ANYONE,
    "deploy": Access.ADMIN,
    "delete": Access.ADMIN,
    "logs": Access.ADMIN,  # what handlers print: secrets, other tenants' data
    "dead_letters": Access.ADMIN,  # failed events' errors
    "redrive": Access.ADMIN,
    "publish": Access.ADMIN,
    "aliases": Access.ANYONE,  # names and weights, no configuration
    "alias_create": Access.ADMIN,
    "alias_update": Access.ADMIN,
    "alias_delete": Access.ADMIN,
    "keys_create": Access.ADMIN,
    "keys_list": Access.ADMIN,  # who holds keys is the operator's business
    "keys_remove": Access.ADMIN,
    "layer_publish": Access.ADMIN,
    "layer_list": Access.ANYONE,  # names, sizes and hashes, no content
    "layer_delete": Access.ADMIN,
    # Staged uploads (lambdad/uploads.py): code for deploy and layer_publish, which are admin's.
    "upload_begin": Access.ADMIN,
    "upload_chunk": Access.ADMIN,
    "upload_abort": Access.ADMIN,
    "trigger_add": Access.ADMIN,
    "trigger_list": Access.ADMIN,  # a schedule's constant input may be a secret
    "trigger_delete": Access.ADMIN,
    "trigger_enable": Access.ADMIN,
    "trigger_disable": Access.ADMIN,
    "bucket_create": Access.ADMIN,  # names a host directory
    "bucket_list": Access.ADMIN,  # host paths: like trigger_list, the operator's business
    "bucket_delete": Access.ADMIN,
    "queue_create": Access.ADMIN,
    "queue_delete": Access.ADMIN,
    "queue_send": Access.ANYONE,  # like invoke: what a mapping then runs
    "queue_list": Access.ANYONE,  # names, settings and counts
    "queue_purge": Access.ADMIN,
    "queue_receive": Access.ADMIN,  # reads and deletes: message bodies
    "mapping_create": Access.ADMIN,
    "mapping_get": Access.ANYONE,
    "mapping_list": Access.ANYONE,
    "mapping_update": Access.ADMIN,
    "mapping_delete": Access.ADMIN,
    "destination_set": Access.ADMIN,
    "destination_get": Access.ANYONE,
    "destination_delete": Access.ADMIN,
}
ADMIN_OPS: Final = frozenset(op for op, access in ACCESS.items() if access is Access.ADMIN)
# Arguments that make an open op an admin's: force_cold turns every call into a cold start
# (a fresh sandbox, retired afterwards), a knob for benchmarks, not a tenant's.
ADMIN_ARGS: Final[dict[str, frozenset[str]]] = {"invoke": frozenset({"force_cold"})}


def _redact_function(function: dict[str, Any]) -> dict[str, Any]:
    """A function as a non-admin sees it: environment variable names, never their values."""
    env = function.get("env") or {}
    return {**function, "env": dict.fromkeys(env), "redacted": ["env"]}


# What a non-admin must not see in an op's answer, removed before it is sent.
REDACT: Final[dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "get": lambda body: {**body, "function": _redact_function(body["function"])},
    "list": lambda body: {**body, "functions": [_redact_function(f) for f in body["functions"]]},
}

UNKNOWN_PEER: Final = Caller("unix")  # SO_PEERCRED failed: not admin (uid None)


def peer_credentials(sock: socket.socket) -> Caller | None:
    """Who is at the other end of a Unix socket (SO_PEERCRED), as a :class:`Caller`."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller("unix", pid, uid, gid)


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


Op = Callable[["UnixFront", dict[str, Any], "Caller | None"], Awaitable[dict[str, Any]]]


class UnixFront(Component):
    """The socket: listens, dispatches each request to its op, answers."""

    name = "unix"

    def __init__(self, service: Service, config: DaemonConfig) -> None:
        self.service = service
        self.config = config
        self.server: asyncio.AbstractServer | None = None
        self._admin_gid = _group_id(config.admin_group)
        self._euid = os.geteuid()  # asked on every request: one syscall fewer each time
        self.uploads = Uploads(config.state_dir, _upload_limits(config), self._disk_shortfall)
        self._upload_sweeper: asyncio.Task[None] | None = None

    def _disk_shortfall(self) -> str | None:
        c = self.config
        return Watermark(c.disk_min_free_mb, c.disk_min_free_percent).shortfall(c.state_dir)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        path = self.config.socket_path
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale, from a daemon that died
            else:
                raise ServiceError(f"another lambdad is already serving on {path}")
            finally:
                probe.close()
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            self.server = await asyncio.get_running_loop().create_unix_server(
                lambda: ClientProtocol(self), path=path, backlog=4096
            )
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        group = _group_id("lambdad")
        if group is not None and os.geteuid() == 0:
            os.chown(path, 0, group)
        # Only once this daemon owns the socket: what is left is a previous run's.
        leftovers = self.uploads.open()
        if leftovers:
            log.info("removed %d staged upload(s) left by the previous run", leftovers)
        self._upload_sweeper = asyncio.ensure_future(self._sweep_uploads())

    async def stop(self) -> None:
        if self._upload_sweeper is not None:
            self._upload_sweeper.cancel()
            self._upload_sweeper = None
        self.uploads.close()
        if self.server is None:
            return
        self.server.close()
        self.server = None
        try:
            os.unlink(self.config.socket_path)
        except FileNotFoundError:
            pass

    def reload(self, config: DaemonConfig) -> None:
        # The socket's path is fixed for the daemon's life; the admin group may change.
        self.config = config
        self._admin_gid = _group_id(config.admin_group)
        self._euid = os.geteuid()  # asked on every request: one syscall fewer each time
        self.uploads.limits = _upload_limits(config)

    async def _sweep_uploads(self) -> None:
        """Remove abandoned uploads: a few checks per time-out, at most every 5 s."""
        while True:
            await asyncio.sleep(min(max(self.uploads.limits.timeout_s / 4, 0.05), 5.0))
            try:
                expired = self.uploads.expire()
            except OSError as exc:  # the sweeper must outlive a file it could not remove
                log.warning("removing expired staged uploads: %s", exc)
                continue
            for upload_id in expired:
                log.info("staged upload %s expired (no chunk for %g s)", upload_id,
                         self.uploads.limits.timeout_s)  # fmt: skip

    # -- requests ----------------------------------------------------------------------

    async def dispatch(self, op: str, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        """Run ``op`` for ``peer`` (None: an in-process caller, trusted like root), as
        :data:`ACCESS` and :data:`REDACT` say.

        Raises:
            ProtocolError: no such op. AccessDenied: ``op`` is for admins only.
        """
        handler = OPS.get(op)
        if handler is None:
            raise ProtocolError(f"unknown op {op!r}", ops=sorted(OPS))
        admin = self.is_admin(peer)
        if not admin:
            what = op
            if ACCESS.get(op, Access.ADMIN) is Access.ANYONE:
                what = next((f"{op} with {a}" for a in ADMIN_ARGS.get(op, ()) if args.get(a)), "")
            if what:
                raise AccessDenied(
                    f"{what} needs root or membership of group {self.config.admin_group!r}"
                )
        body = await handler(self, args, peer)
        redact = None if admin else REDACT.get(op)
        return redact(body) if redact is not None else body

    def is_admin(self, peer: Caller | None) -> bool:
        if peer is None:
            return True
        if peer.uid is None:
            return False
        if peer.uid == 0 or peer.uid == self._euid:
            return True
        if self._admin_gid is None:
            return False
        if peer.gid == self._admin_gid:
            return True
        try:
            return pwd.getpwuid(peer.uid).pw_name in grp.getgrgid(self._admin_gid).gr_mem
        except KeyError:
            return False

    async def op_hello(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        info = self.service.hello()
        return {
            "version": info.protocol,
            "server": info.server,
            "missing": list(info.missing),
            # What a client may send in one frame: bigger code goes as a staged upload.
            "max_frame_bytes": self.config.max_frame_bytes,
        }

    async def op_ping(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        return {}

    async def op_deploy(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        if self.service.components.get("buckets") is not None:  # --mount bucket:NAME:/mnt/X
            args = bucket_wire.with_bucket_mounts(self.service, args)
        config = validate(args)
        code = await self._code(args, peer)
        if not isinstance(code, bytes) or not code:
            raise InvalidParameterValue("code must be the bytes of a zip file", field="code")
        deployment = await self.service.deploy(config, code)
        return {"function": deployment.function.to_wire(), "created": deployment.created}

    async def op_get(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        return {"function": self.service.get(wire_name(args)).to_wire()}

    async def op_list(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        return {"functions": [info.to_wire() for info in self.service.list()]}

    async def op_delete(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        name = wire_name(args)
        await self.service.delete(name)
        return {"deleted": name}

    async def op_stats(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        if args.get("since") is not None:  # the persisted per-minute history
            name = wire_name(args) if args.get("name") is not None else None
            return {"history": await self.service.stats_since(args["since"], name)}
        if args.get("name") is not None:
            return self.service.function_stats(wire_name(args)).to_wire()
        body = (await self.service.stats()).to_wire()
        body["stats"]["triggers"] = trigger_wire.counters(self.service)
        body["stats"]["gateway_address"] = self.service.addresses.get("gateway")
        return body

    async def op_logs(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        page = await self.service.logs(
            wire_name(args),
            args.get("cursor"),
            since_ms=_optional(args, "since", int),
            until_ms=_optional(args, "until", int),
            request_id=_optional(args, "request_id", str),
            pattern=_optional(args, "filter", str),
            limit=_optional(args, "limit", int),
        )
        body: dict[str, Any] = {
            "data": render(page.events).encode(),
            "cursor": page.cursor,
            "truncated": page.truncated,
        }
        if args.get("events"):
            body["events"] = [e.to_wire() for e in page.events]
        return body

    async def op_invoke(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        request = InvokeRequest.from_wire(args, peer or UNKNOWN_PEER)
        return (await self.service.invoke(request)).to_wire()

    async def op_dead_letters(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        name = wire_name(args) if args.get("name") is not None else None
        return {"events": await self.service.dead_letters(name)}

    async def op_redrive(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        event_id = args.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise InvalidParameterValue("event_id must be a string", field="event_id")
        name = None if event_id is not None else wire_name(args)
        return {"redriven": await self.service.redrive(name, event_id)}

    # -- layers (lambdad/layers.py) --------------------------------------------------------

    async def op_layer_publish(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        fields = dict(args)
        if "upload" in args:  # check the other fields before the upload is used up
            _layer_request({**fields, "code": b"PK"})
        fields["code"] = await self._code(args, peer)
        request = _layer_request(fields)
        return {"layer": (await self.service.layers.publish(request)).to_wire()}

    # -- staged uploads (lambdad/uploads.py; docs/protocol.md, "Staged uploads") --------------

    async def op_upload_begin(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        upload = self.uploads.begin(_connection(peer), args.get("size"))
        return {
            "upload": upload.id,
            "size": upload.size,
            "max_chunk_bytes": self.config.max_frame_bytes - CHUNK_FRAME_OVERHEAD,
            "timeout_s": self.uploads.limits.timeout_s,
        }

    async def op_upload_chunk(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        received = await self.uploads.chunk(
            _connection(peer), args.get("upload"), args.get("offset"), args.get("data")
        )
        return {"received": received}

    async def op_upload_abort(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        upload = self.uploads.abort(_connection(peer), args.get("upload"))
        return {"aborted": upload.id}

    async def _code(self, args: dict[str, Any], peer: Caller | None) -> object:
        """The zip of a deploy or layer_publish: a staged ``upload`` (used up here), else the
        inline ``code`` as sent (each op checks it)."""
        if "upload" not in args:
            return args.get("code")
        if args.get("code") is not None:
            raise InvalidParameterValue(
                "give the zip as code or as upload, not both", field="upload"
            )
        return await self.uploads.take(_connection(peer), args["upload"])

    async def op_layer_list(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        """Every layer's newest version, or (``name``) every version of one, newest first."""
        name = args.get("name")
        if name is None:
            versions = self.service.layers.list_layers()
        else:
            versions = self.service.layers.list_versions(_layer_name(name))
        return {"layers": [v.to_wire() for v in versions]}

    async def op_layer_delete(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        name = _layer_name(args.get("name"))
        number = args.get("version")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InvalidParameterValue(
                f"version must be a positive integer, got {number!r}", field="version"
            )
        if await self.service.layers.delete(name, number) is None:
            raise ResourceNotFound(
                f"Layer version {name}:{number} does not exist", name=name, version=number
            )
        return {"deleted": f"{name}:{number}"}


    # -- versions, aliases and API keys ---------------------------------------------------

    async def op_publish(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        description = args.get("description") or ""
        if not isinstance(description, str):
            raise InvalidParameterValue("description must be a string", field="description")
        version, created = await self.service.publish(wire_name(args), description=description)
        return {"version": str(version.number), "created": created}

    async def op_aliases(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        fn = self.service.registry.get(wire_name(args))
        return {"aliases": [a.to_dict() for _, a in sorted(fn.aliases.items())]}

    async def op_alias_create(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        alias = await self.service.create_alias(
            wire_name(args),
            _text(args, "alias", required=True) or "",
            _text(args, "version", required=True) or "",
            description=_text(args, "description") or "",
            weights=_weights(args),
        )
        return {"alias": alias.to_dict()}

    async def op_alias_update(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        alias = await self.service.update_alias(
            wire_name(args),
            _text(args, "alias", required=True) or "",
            version=_text(args, "version"),
            description=_text(args, "description"),
            weights=_weights(args),
        )
        return {"alias": alias.to_dict()}

    async def op_alias_delete(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        name, alias = wire_name(args), _text(args, "alias", required=True) or ""
        await self.service.delete_alias(name, alias)
        return {"deleted": alias}

    async def op_keys_create(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        admin = args.get("admin", False)
        if not isinstance(admin, bool):
            raise InvalidParameterValue("admin must be true or false", field="admin")
        new = await self.service.create_key(_text(args, "key_name"), admin)
        return {"key": new.credentials()}

    async def op_keys_list(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        return {"keys": [key.describe() for key in self.service.keys.list()]}

    async def op_keys_remove(self, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
        key = await self.service.remove_key(_text(args, "key", required=True) or "")
        return {"removed": key.describe()}


def _layer_request(args: dict[str, Any]) -> PublishRequest:
    return PublishRequest.make(
        args.get("name"),
        args.get("code"),
        description=args.get("description", ""),
        license_info=args.get("license_info", ""),
        compatible_runtimes=args.get("compatible_runtimes") or (),
        compatible_architectures=args.get("compatible_architectures") or (),
    )


def _connection(peer: Caller | None) -> Caller:
    """The Caller that stands for one socket connection (the owner of its uploads)."""
    if peer is None:
        raise ProtocolError("staged uploads belong to a socket connection; in-process callers "
                            "pass the zip's bytes")  # fmt: skip
    return peer


def _upload_limits(config: DaemonConfig) -> UploadLimits:
    return UploadLimits(config.upload_max_open, config.upload_max_bytes, config.upload_timeout_s)


def _layer_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidParameterValue(f"name must be a layer name, got {value!r}", field="name")
    return parse_layer_name(value)

def _text(args: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParameterValue(f"{key} must be a non-empty string", field=key)
    return value


def _weights(args: dict[str, Any]) -> dict[str, float] | None:
    weights = args.get("weights")
    if weights is None:
        return None
    if not isinstance(weights, dict):
        raise InvalidParameterValue("weights must map a version to a weight", field="weights")
    return weights


def _optional(args: dict[str, Any], key: str, kind: type[Any]) -> Any:
    """``args[key]`` if present and not None, checked to be a ``kind`` (an int for int,
    never a bool)."""
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidParameterValue(f"{key} must be a {kind.__name__}", field=key)
    return value


OPS: Final[dict[str, Op]] = {
    "hello": UnixFront.op_hello,
    "ping": UnixFront.op_ping,
    "deploy": UnixFront.op_deploy,
    "get": UnixFront.op_get,
    "list": UnixFront.op_list,
    "delete": UnixFront.op_delete,
    "invoke": UnixFront.op_invoke,
    "stats": UnixFront.op_stats,
    "logs": UnixFront.op_logs,
    "dead_letters": UnixFront.op_dead_letters,
    "redrive": UnixFront.op_redrive,
    "layer_publish": UnixFront.op_layer_publish,
    "layer_list": UnixFront.op_layer_list,
    "layer_delete": UnixFront.op_layer_delete,
    "upload_begin": UnixFront.op_upload_begin,
    "upload_chunk": UnixFront.op_upload_chunk,
    "upload_abort": UnixFront.op_upload_abort,
    "publish": UnixFront.op_publish,
    "aliases": UnixFront.op_aliases,
    "alias_create": UnixFront.op_alias_create,
    "alias_update": UnixFront.op_alias_update,
    "alias_delete": UnixFront.op_alias_delete,
    "keys_create": UnixFront.op_keys_create,
    "keys_list": UnixFront.op_keys_list,
    "keys_remove": UnixFront.op_keys_remove,
    **cast(dict[str, Op], trigger_wire.OPS),
    **cast(dict[str, Op], bucket_wire.OPS),  # buckets (lambdad/buckets/wire.py)
    **QUEUE_OPS,  # queues, event-source mappings, destinations (lambdad/frontends/unix_queues.py)
}


def create(service: Service, config: DaemonConfig) -> UnixFront:
    return UnixFront(service, config)


class ClientProtocol(asyncio.Protocol):
    def __init__(self, front: UnixFront) -> None:
        self.front = front
        self.conn = Connection(Role.SERVER, front.config.max_frame_bytes)
        # Made by the server inside its loop. Tasks are made on it directly: asyncio's
        # ensure_future asks for the running loop, on Python 3.11 a getpid() per request.
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Caller | None = None
        self.in_flight = 0
        self._paused_reading = False
        self._write_paused = False
        self._closing = False
        self._discarding = False  # a fatal error was sent: input is read and thrown away
        self._peer_eof = False
        self._eof_sent = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self._joined: list[bytes] | None = None  # responses to write at this turn's end
        self._linger_timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Future[None]] = set()  # strong references: see asyncio docs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        # Fail closed: a peer whose credentials cannot be read is nobody in particular.
        self.peer = (peer_credentials(sock) if sock is not None else None) or UNKNOWN_PEER
        timeout = self.front.config.hello_timeout_s
        if timeout > 0:
            self._hello_timer = self._loop.call_later(timeout, self._no_hello)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self._discarding:
            if self._eof_sent:  # nothing left to answer
                self._close()
                return False
            return True  # _linger_close finishes once the requests in flight are answered
        self.conn.receive_data(b"")
        self._process()
        # Keep our side open until in-flight responses are written (half-close).
        return self.in_flight > 0

    def connection_lost(self, exc: Exception | None) -> None:
        # In-flight invocations run to completion (a sandbox must not be left mid-call);
        # their responses are dropped.
        self._closing = True
        for timer in (self._hello_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if self.peer is not None and self.peer is not UNKNOWN_PEER:
            # A deploy under way has taken its upload already and runs to its end.
            dropped = self.front.uploads.drop_owner(self.peer)
            if dropped:
                log.info("removed %d staged upload(s) of a closed connection", dropped)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self._closing:
            return
        # Discarded input needs no room: keep reading it, or closing would reset the
        # connection (unread input) and lose the answers still to come.
        should_pause = not self._discarding and (
            self._write_paused or self.in_flight >= MAX_IN_FLIGHT
        )
        if should_pause and not self._paused_reading:
            self.transport.pause_reading()
            self._paused_reading = True
        elif not should_pause and self._paused_reading:
            self._paused_reading = False
            self.transport.resume_reading()
            self._process()

    def _process(self) -> None:
        while not self._closing and not self._paused_reading and not self._discarding:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self._write(ErrorResponse.of(None, exc.error))
                self._linger_close()
                return
            if isinstance(event, _Sentinel):
                if event.value == "CLOSED" and self.in_flight == 0:
                    self._close()
                return
            if isinstance(event, BadRequest):
                self._write(ErrorResponse.of(event.id, event.error))
            elif isinstance(event, Request):
                if self._hello_timer is not None and self.conn.state is State.READY:
                    self._hello_timer.cancel()
                    self._hello_timer = None
                self.in_flight += 1
                task = self._loop.create_task(self._handle(event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                self._update_reading()

    async def _handle(self, request: Request) -> None:
        try:
            body = await self.front.dispatch(request.op, dict(request.args), self.peer)
            self._write(Response(request.id, body))
        except LambdadError as exc:
            self._write(ErrorResponse.of(request.id, exc))
        except Exception as exc:
            log.exception("internal error in %s", request.op)
            self._write(ErrorResponse.of(request.id, ServiceError(f"internal error: {exc!r}")))
        finally:
            self.in_flight -= 1
            if self._discarding:
                if self.in_flight == 0:
                    self._linger_close()
            elif self.conn.state is State.CLOSED and self.in_flight == 0:
                self._close()
            else:
                self._update_reading()

    def _write(self, event: Any) -> None:
        if self.transport is None or self.transport.is_closing() or self._eof_sent:
            return
        data = self.conn.send(event)
        if self._joined is not None:
            # A response went out earlier in this turn of the loop: the ones after it join
            # into one write() at the turn's end (under load, many sandboxes answer in the
            # same turn; a write() per response was a fifth of the daemon's CPU).
            self._joined.append(data)
            return
        # The first goes out at once: a lone response (the warm path) waits for nothing, and
        # with no other request in flight on this connection none can join it.
        self.transport.write(data)
        if self.in_flight > 1:
            self._joined = []
            self._loop.call_soon(self._write_joined)

    def _write_joined(self) -> None:
        joined, self._joined = self._joined, None
        if joined and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(joined))

    def _no_hello(self) -> None:
        """The hello timer fired: a connection that never said hello is closed (fatal)."""
        self._hello_timer = None
        if self._closing or self._discarding or self.conn.state is not State.AWAIT_HELLO:
            return
        timeout = self.front.config.hello_timeout_s
        error = ProtocolError(f"no hello within {timeout:g} s", fatal=True)
        self._write(ErrorResponse.of(None, error))
        self._linger_close()

    def _linger_close(self) -> None:
        """Close after a fatal error without losing a frame.

        Requests read before the fatal bytes still run, and each gets its answer; only then
        does the daemon send EOF. Closing a Unix socket that still has unread input resets
        the connection and the peer never sees our last frames; so: swallow whatever still
        arrives, and close at the peer's EOF or LINGER_S after ours.
        """
        if not self._discarding:
            self._discarding = True
            if self._hello_timer is not None:
                self._hello_timer.cancel()
                self._hello_timer = None
            self._update_reading()  # discarded input is read even if reading was paused
        if self.transport is None or self._closing or self.in_flight > 0 or self._eof_sent:
            return
        if self._peer_eof:  # everything it sent has been read: closing cannot reset
            self._close()
            return
        self._write_joined()  # every answer before the EOF
        self._eof_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        self._write_joined()  # close() still writes what is buffered; nothing is left behind
        self._closing = True
        if self.transport is not None:
            self.transport.close()
