"""The daemon's side of sandboxes and zygotes: handles, lifecycle, the generic pool.

A :class:`Sandbox` is the daemon's handle on one sandbox process: its socket (an asyncio
transport), its log pipe, its cgroup and its place in the lifecycle. The lifecycle is one
explicit table (:data:`TRANSITIONS`); an illegal move raises, and a dead sandbox stays dead.

A :class:`Zygote` is the handle on one runtime's zygote process: it asks for sandboxes, receives
them (fds over SCM_RIGHTS), learns how they exited, and is restarted if it dies. A
:class:`GenericPool` keeps pre-forked, unspecialized sandboxes of a runtime ready ahead of demand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgpack

from lambdad.errors import ServiceError
from lambdad.logs import LogStream
from sandbox import messages, runtimes
from sandbox.cgroups import Cgroup, CgroupBackend, CgroupLimits
from sandbox.defaults import POOL_LIMITS

log = logging.getLogger("lambdad")

READY_TIMEOUT_S: Final = 30.0  # a sandbox that is not ready by then is broken
REFILL_DELAY_S: Final = 0.02  # after taking from the pool, refill this much later
# A result is at most 6 MB of JSON (Lambda's response limit) plus its envelope; nothing a
# sandbox legitimately sends is bigger.
MAX_SANDBOX_MESSAGE: Final = 7 * 1024 * 1024
ZYGOTE_ENV: Final = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class State(enum.Enum):
    STARTING = "starting"  # forked, setting itself up
    GENERIC = "generic"  # isolated, idle, no function yet: in the runtime's pool
    SPECIALIZING = "specializing"  # mounting a function's code, dropping privileges, importing
    IDLE = "idle"  # warm: initialized for one function version, waiting
    BUSY = "busy"  # running one invocation
    FROZEN = "frozen"  # warm and idle, its cgroup frozen
    DEAD = "dead"  # gone, or condemned; every later use fails


# Rule: every lifecycle move is listed here, and only here.
TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.STARTING: frozenset({State.GENERIC, State.DEAD}),
    State.GENERIC: frozenset({State.SPECIALIZING, State.DEAD}),
    State.SPECIALIZING: frozenset({State.BUSY, State.IDLE, State.DEAD}),
    State.IDLE: frozenset({State.BUSY, State.FROZEN, State.DEAD}),
    State.BUSY: frozenset({State.IDLE, State.DEAD}),
    State.FROZEN: frozenset({State.BUSY, State.IDLE, State.DEAD}),
    State.DEAD: frozenset(),
}


class IllegalTransition(ServiceError):
    """A sandbox was asked to move where the lifecycle table does not allow."""


class SandboxDied(Exception):
    """The sandbox went away while we were talking to it."""


M = TypeVar("M", bound=messages.SandboxMessage)


@dataclass(frozen=True)
class ExitInfo:
    status: int  # waitpid status
    memory_peak: int  # bytes, from the cgroup
    oom_kills: int

    def describe(self) -> str:
        """Lambda's wording: "signal: killed", "exit status 1"."""
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            name = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault"}.get(
                signal.Signals(sig), signal.Signals(sig).name.lower().removeprefix("sig")
            )
            return f"signal: {name}"
        return f"exit status {os.WEXITSTATUS(self.status)}"


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _SandboxProtocol(asyncio.Protocol):
    """Reads a sandbox's messages. The sandbox runs untrusted code: anything it sends that is
    not the one message the daemon is waiting for condemns it (see Sandbox._deliver)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.unpacker = msgpack.Unpacker(
            raw=False, max_buffer_size=MAX_SANDBOX_MESSAGE, read_size=4096
        )

    def data_received(self, data: bytes) -> None:
        if not self.sandbox.alive:
            return
        try:
            self.unpacker.feed(data)
            for msg in self.unpacker:
                self.sandbox._deliver(msg)
                if not self.sandbox.alive:
                    return
        except (ValueError, msgpack.BufferFull) as exc:  # garbage, or more than any result
            self.sandbox.violation(f"unreadable message ({exc})")

    def connection_lost(self, exc: Exception | None) -> None:
        self.sandbox._lost()


class Sandbox:
    """The daemon's handle on one sandbox process."""

    def __init__(
        self,
        zygote: Zygote,
        id: str,
        pid: int,
        uid: int,
        cgroup: Cgroup | None,
        sock: socket.socket,
        log_fd: int,
    ) -> None:
        self.zygote = zygote
        self.id = id
        self.pid = pid
        self.uid = uid
        self.cgroup = cgroup
        self.state = State.STARTING
        self.function: str | None = None
        self.version: str | None = None  # the Version.key it is specialized for
        self.memory_mb = 128  # what it is charged against the memory budget
        self.pids_max = 64  # what it is charged against the host's task budget
        self.generic_phases: dict[str, int] = {}
        # A pool refill's cgroup starts at the lowest CPU weight (sandbox.defaults,
        # POOL_REFILL_LIMITS) until a caller needs it: see raise_cpu_weight().
        self.cpu_lowered = False
        self.last_used = time.monotonic()
        self.log_stream: LogStream | None = None
        # The daemon's clock when the last awaited message arrived: the end of the round trip
        # that bounds what the sandbox claims about its own timing (lambdad.metering).
        self.received_ns = 0
        self.exit_info: asyncio.Future[ExitInfo] = zygote.loop.create_future()
        self.on_close: Callable[[], object] | None = None  # e.g. release its egress wiring
        self._sock = sock  # used only for sendmsg with fds; the transport owns reading
        self._transport: asyncio.Transport | None = None
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._waiter: asyncio.Future[Any] | None = None
        self._closed = False
        self._log_fd = log_fd
        os.set_blocking(log_fd, False)
        zygote.loop.add_reader(log_fd, self.drain_log)

    async def attach(self) -> None:
        loop = self.zygote.loop
        transport, _ = await loop.create_unix_connection(
            lambda: _SandboxProtocol(self), sock=self._sock.dup()
        )
        self._transport = transport

    # -- lifecycle ---------------------------------------------------------------------

    def move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"sandbox {self.id}: {self.state.value} -> {new.value}")
        self.state = new

    @property
    def alive(self) -> bool:
        return self.state is not State.DEAD

    def kill(self) -> None:
        """Condemn the sandbox: SIGKILL its PID 1 (the kernel kills the rest of its pid
        namespace) and everything left in its cgroup."""
        frozen = self.state is State.FROZEN
        self.state = State.DEAD
        # Once the zygote has reaped it (exit_info is set), the pid may belong to another
        # process: never signal it then.
        if not self.exit_info.done():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if frozen:
            self._thaw()  # a frozen task cannot act on its SIGKILL
        self._close()

    def _thaw(self) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.thaw()
            except OSError:
                pass

    def freeze(self) -> bool:
        """Freeze its cgroup (an idle sandbox); False if it has none or the write failed.
        The caller moves it to FROZEN."""
        if self.cgroup is None:
            return False
        try:
            self.cgroup.freeze()
        except OSError:
            return False
        return True

    def thaw(self) -> bool:
        """Thaw its cgroup; False if that failed (the caller kills it)."""
        if self.cgroup is None:
            return True
        try:
            self.cgroup.thaw()
        except OSError:
            return False
        return True

    def retire(self) -> None:
        """Ask an idle sandbox to exit (graceful) and forget it."""
        if self.state is State.DEAD:
            return
        frozen = self.state is State.FROZEN
        self.state = State.DEAD
        if frozen:
            self._thaw()  # it must run to read the retire message and exit
        try:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(messages.encode(messages.Retire()))
        finally:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.cgroup is not None:
            self.cgroup.close()
        if self._transport is not None:
            self._transport.close()
        self._sock.close()
        self.drain_log()
        self.zygote.loop.remove_reader(self._log_fd)
        os.close(self._log_fd)
        self._log_fd = -1
        if self.log_stream is not None:
            self.log_stream.close_later()
            self.log_stream = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(SandboxDied(self.id))
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    # -- messages ----------------------------------------------------------------------

    def _deliver(self, msg: Any) -> None:
        # One message at a time, and only when one is expected: the "ready" that may arrive
        # before the daemon starts listening for it, or the answer to the daemon's last
        # request. Anything else (a flood, a stray frame) is a protocol violation.
        if not isinstance(msg, dict):
            self.violation(f"message is a {type(msg).__name__}, not a map")
        elif self._waiter is not None and not self._waiter.done():
            self.received_ns = time.monotonic_ns()
            self._waiter.set_result(msg)
        elif self.state is State.STARTING and not self._inbox:
            self._inbox.append(msg)
        else:
            self.violation(f"unexpected message {messages.kind_of(msg)}")

    def violation(self, what: str) -> None:
        """The sandbox broke the daemon<->sandbox protocol: kill it; the waiter gets
        SandboxDied, so an invocation in progress fails as Unhandled."""
        log.info("sandbox %s: %s; killing it", self.id, what)
        self.kill()

    def _lost(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(SandboxDied(self.id))
        if self.state is not State.DEAD:
            self.state = State.DEAD
            self._close()

    async def receive(self, kind: type[M], timeout: float) -> M:
        """The sandbox's next message, which must be a ``kind``.

        Raises:
            SandboxDied: it went away. TimeoutError: nothing came in time.
            messages.MessageError: what came is not a ``kind`` (the caller decides what
                that costs the sandbox).
        """
        return messages.expect(await self._raw(timeout), kind)

    async def receive_any(self, timeout: float) -> messages.Message:
        """The sandbox's next message, whatever kind. Raises like :meth:`receive`."""
        return messages.decode(await self._raw(timeout))

    async def _raw(self, timeout: float) -> Any:
        # A bare timer handle rather than ``asyncio.wait_for``: this is on every invocation's
        # path and wait_for costs a task and two callbacks more.
        if self._inbox:
            return self._inbox.popleft()
        if self._closed:
            raise SandboxDied(self.id)
        loop = self.zygote.loop
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def raise_cpu_weight(self, limits: CgroupLimits = POOL_LIMITS) -> None:
        """A refill's cgroup gets ``limits``' CPU weight: a caller waits for this sandbox."""
        if self.cpu_lowered and self.cgroup is not None:
            self.cpu_lowered = False
            self.cgroup.set_cpu_weight(limits)

    def send_invoke(
        self,
        request_id: str,
        payload: bytes,
        timeout_ms: int,
        trace_id: str | None = None,
        client_context: str | None = None,
        qualifier: str | None = None,
    ) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SandboxDied(self.id)
        self._transport.write(
            messages.encode_invoke(
                request_id, payload, timeout_ms, trace_id, client_context, qualifier
            )
        )

    def send_init(self, msg: messages.Init, fds: list[int]) -> None:
        # asyncio transports cannot carry SCM_RIGHTS; the socket is idle (we are the only
        # writer and no invocation is in flight), so a direct sendmsg cannot interleave.
        try:
            messages.send_with_fds(self._sock, msg, fds)
        except OSError as exc:
            raise SandboxDied(f"{self.id}: {exc}") from exc

    # -- logs --------------------------------------------------------------------------

    def drain_log(self) -> None:
        """Move whatever the sandbox printed into its log stream (non-blocking)."""
        if self._log_fd < 0:
            return
        while True:
            try:
                data = os.read(self._log_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not data:
                self.zygote.loop.remove_reader(self._log_fd)
                return
            if self.log_stream is not None:
                self.log_stream.write(data)
            else:
                sys.stderr.buffer.write(b"[sandbox " + self.id.encode() + b"] " + data)
                sys.stderr.flush()

    def memory_peak_mb(self, fallback_kb: int = 0) -> int:
        peak = self.cgroup.memory_peak_bytes() if self.cgroup is not None else 0
        if not peak:
            peak = fallback_kb * 1024
        return max(1, round(peak / 2**20))


class Zygote:
    """Handle on one runtime's zygote process."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        runtime: str,
        rootfs: str,
        cgroups: CgroupBackend | None,
        cgroup_parent: str,
        disable: tuple[str, ...],
        on_sandbox: Callable[[Sandbox, str], None],
        on_down: Callable[[Zygote], None],
        memory_merge: bool = False,
    ) -> None:
        self.loop = loop
        self.runtime = runtime
        self.memory_merge = memory_merge
        self.rootfs = rootfs
        self.cgroups = cgroups
        self.cgroup_parent = cgroup_parent
        self.disable = disable
        self.on_sandbox = on_sandbox
        self.on_down = on_down
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self.sandboxes: dict[str, Sandbox] = {}
        self.missing: list[str] = []
        self.cgroup_version: int | None = None
        self.up = False
        self._ready: asyncio.Future[None] | None = None
        self._unsent: dict[str, int] = {}  # spawn requests not yet written, by source
        self._flush_scheduled = False

    async def start(self, timeout: float = 60.0) -> None:
        """Fork+exec the zygote and wait for its hello.

        ``subprocess.Popen`` forks and execs in C (no Python runs in the child), which is the
        one kind of process creation that is safe with a running event loop.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = messages.ZygoteConfig(
            self.runtime, self.rootfs, self.cgroup_parent, tuple(self.disable), self.memory_merge
        )
        # Every sandbox is a fork of the zygote: its command line and the environment block
        # it was exec'd with stay readable from inside (/proc/self/cmdline, and environ once
        # a handler makes itself dumpable). So: no configuration on the command line (it goes
        # over the control link), and a minimal environment, never the daemon's.
        ours.send(messages.encode(config))
        # Another Python version's zygote runs on that interpreter (sandbox.runtimes).
        interpreter, extra_env = runtimes.zygote_command(self.runtime)
        self.proc = subprocess.Popen(
            [interpreter, "-m", "sandbox.zygote", "--control-fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**ZYGOTE_ENV, **extra_env},
            cwd="/",
            umask=0o022,  # the sandboxes' root file system is read by other uids
            # Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group)
            # reaches only the daemon, which drains and then stops the zygote itself.
            process_group=0,
        )
        theirs.close()
        ours.setblocking(False)
        self.control = ours
        self._ready = self.loop.create_future()
        self.loop.add_reader(ours.fileno(), self._on_control)
        try:
            await asyncio.wait_for(self._ready, timeout)
        except TimeoutError:
            self.stop()
            raise ServiceError(
                f"zygote for {self.runtime} did not start within {timeout:.0f} s"
            ) from None
        self.up = True

    def spawn(self, count: int, source: str) -> bool:
        """Ask for ``count`` sandboxes; False when the zygote is down (nothing was asked).

        Requests are coalesced and sent from the loop: a burst of a thousand cold starts is
        one ``spawn`` message, not a thousand (which filled the control socket: EAGAIN).
        """
        if not self.up or self.control is None or count <= 0:
            return False
        self._unsent[source] = self._unsent.get(source, 0) + count
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_spawns)
        return True

    def _flush_spawns(self) -> None:
        self._flush_scheduled = False
        if self.control is None:
            self._unsent.clear()
            return
        while self._unsent:
            source, count = next(iter(self._unsent.items()))
            try:
                self.control.send(messages.encode(messages.Spawn(count, source)))
            except BlockingIOError:
                # The zygote is busy forking; it reads again soon. Retry when writable.
                self.loop.add_writer(self.control.fileno(), self._writable)
                return
            except OSError:
                self._down()
                return
            del self._unsent[source]

    def _writable(self) -> None:
        if self.control is not None:
            self.loop.remove_writer(self.control.fileno())
        self._flush_spawns()

    def _on_control(self) -> None:
        assert self.control is not None
        while True:
            try:
                msg, fds = messages.recv_datagram(self.control)
            except (BlockingIOError, InterruptedError):
                return
            except messages.MessageError as exc:
                log.info("zygote %s: %s", self.runtime, exc)
                continue
            except OSError:
                msg, fds = None, []
            if msg is None:
                self._down()
                return
            if isinstance(msg, messages.Spawned) and len(fds) == 2:
                self._spawned(msg, fds)
                continue
            for fd in fds:
                os.close(fd)
            if isinstance(msg, messages.Exited):
                sandbox = self.sandboxes.pop(msg.id, None)
                if sandbox is not None and not sandbox.exit_info.done():
                    sandbox.exit_info.set_result(
                        ExitInfo(msg.status, msg.memory_peak, msg.oom_kills)
                    )
                    if sandbox.alive:
                        sandbox.kill()
            elif isinstance(msg, messages.ZygoteReady):
                self.missing = list(msg.missing)
                self.cgroup_version = msg.cgroup_version
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif isinstance(msg, messages.SpawnFailed):
                log.info("zygote %s: %s", self.runtime, msg.message)

    def _spawned(self, msg: messages.Spawned, fds: list[int]) -> None:
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        cgroup = self.cgroups.open(msg.cgroup) if msg.cgroup and self.cgroups else None
        sandbox = Sandbox(self, msg.id, msg.pid, msg.uid, cgroup, sock, fds[1])
        sandbox.cpu_lowered = cgroup is not None and msg.source == "pool"
        self.sandboxes[sandbox.id] = sandbox
        self.on_sandbox(sandbox, msg.source)

    def _down(self) -> None:
        if self.control is None:
            return
        self.up = False
        self.loop.remove_reader(self.control.fileno())
        self.loop.remove_writer(self.control.fileno())
        self._unsent.clear()
        self.control.close()
        self.control = None
        for sandbox in list(self.sandboxes.values()):
            sandbox.kill()  # they die with the zygote anyway (parent-death signal)
            if not sandbox.exit_info.done():
                sandbox.exit_info.set_result(ExitInfo(signal.SIGKILL, 0, 0))
        self.sandboxes.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ServiceError(f"zygote for {self.runtime} exited at start"))
        self.on_down(self)

    def exit_status(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def stop(self) -> None:
        """Close the control link (the zygote kills its sandboxes and exits) and reap it.

        Blocking: run it in a worker thread, after :meth:`close_link` in the loop's thread."""
        self.close_link()
        self.reap()

    def close_link(self) -> None:
        """Loop thread: forget the sandboxes and close the control link; the zygote sees EOF,
        kills its sandboxes and exits."""
        self._down_quietly()

    def reap(self) -> None:
        """Wait for the zygote process to exit (blocking, bounded)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _down_quietly(self) -> None:
        self.on_down = lambda _z: None
        self._down()


class GenericPool:
    """Pre-forked, unspecialized sandboxes of one runtime, kept ready ahead of demand.

    The target size adapts to demand: it is at least ``base`` and grows with the number of
    sandboxes taken in the last second (OpenWhisk's prewarm idea), up to ``ceiling``.
    """

    def __init__(self, zygote: Zygote, base: int, ceiling: int) -> None:
        self.zygote = zygote
        self.base = base
        self.ceiling = ceiling
        self.ready: collections.deque[Sandbox] = collections.deque()
        self.starting = 0  # spawns asked for and not yet ready
        self.waiters: collections.deque[asyncio.Future[Sandbox]] = collections.deque()
        self._taken: collections.deque[float] = collections.deque()
        self.failures = 0  # consecutive sandboxes that died before ready
        self._refill: asyncio.TimerHandle | None = None
        # Refills still setting up at the lowest CPU weight: a new waiter raises one's weight,
        # or a burst's last callers would wait for the refills every other sandbox starves.
        self._lowered: collections.deque[Sandbox] = collections.deque()

    @property
    def target(self) -> int:
        now = time.monotonic()
        while self._taken and self._taken[0] < now - 1.0:
            self._taken.popleft()
        return min(self.ceiling, max(self.base, len(self._taken)))

    def replenish(self) -> None:
        want = self.target + len(self.waiters) - len(self.ready) - self.starting
        if want <= 0:
            return
        # While callers wait, new forks are on their request path (normal CPU weight, no
        # pool-time warm-up): in a burst every sandbox in flight goes to a waiter, whatever it
        # was spawned for. The rest refill the pool.
        on_demand = min(want, len(self.waiters))
        for count, source in ((on_demand, "fork"), (want - on_demand, "pool")):
            if count > 0 and self.zygote.spawn(count, source):
                self.starting += count

    async def acquire(self, timeout: float = READY_TIMEOUT_S) -> tuple[Sandbox, str]:
        """A generic sandbox and where it came from: "pool" (was ready) or "fork" (waited)."""
        self._taken.append(time.monotonic())
        while self.ready:
            sandbox = self.ready.popleft()
            if sandbox.alive:
                # Refill a moment later: forking now (~1-2 ms of the zygote's CPU, on a
                # 2-core host) would compete with the cold start this sandbox is for.
                # An empty pool with waiters refills at once (below).
                self._schedule_refill()
                return sandbox, "pool"
        waiter: asyncio.Future[Sandbox] = self.zygote.loop.create_future()
        self.waiters.append(waiter)
        self._raise_one()
        self.replenish()
        try:
            return await asyncio.wait_for(waiter, timeout), "fork"
        except TimeoutError:
            raise ServiceError(
                f"no {self.zygote.runtime} sandbox became ready within {timeout:.0f} s"
            ) from None
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def _schedule_refill(self) -> None:
        if self._refill is None:
            self._refill = self.zygote.loop.call_later(REFILL_DELAY_S, self._delayed_refill)

    def _delayed_refill(self) -> None:
        self._refill = None
        self.replenish()

    def started(self, sandbox: Sandbox) -> None:
        """A sandbox the zygote forked is setting up (it is offered once ready)."""
        if not sandbox.cpu_lowered:
            return
        if len(self._lowered) > 2 * self.ceiling:  # refills that died in set-up
            self._lowered = collections.deque(s for s in self._lowered if s.alive)
        self._lowered.append(sandbox)
        if len(self.waiters) > 0:
            self._raise_one()

    def _raise_one(self) -> None:
        while self._lowered:
            sandbox = self._lowered.popleft()
            if sandbox.alive and sandbox.cpu_lowered:
                try:
                    sandbox.raise_cpu_weight()
                except OSError as exc:  # gone meanwhile: its bring-up fails on its own
                    log.debug("sandbox %s: %s", sandbox.id, exc)
                    continue
                return

    def offer(self, sandbox: Sandbox) -> None:
        """A freshly started sandbox finished its generic set-up."""
        if sandbox.cpu_lowered:
            with contextlib.suppress(ValueError):
                self._lowered.remove(sandbox)
        self.starting = max(0, self.starting - 1)
        self.failures = 0
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(sandbox)
                return
        self.ready.append(sandbox)

    def failed(self) -> None:
        """A sandbox died before it was ready. Retry with exponential backoff, so that a
        broken runtime does not become a fork loop."""
        self.starting = max(0, self.starting - 1)
        self.failures += 1
        delay = min(5.0, 0.01 * 2**self.failures)
        self.zygote.loop.call_later(delay, self.replenish)

    def reset(self) -> None:
        """The zygote went down: its sandboxes are gone."""
        self.ready.clear()
        self.starting = 0

    def fail_waiters(self, exc: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
