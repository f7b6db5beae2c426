"""The zygote: a loop-free, single-threaded process per runtime that forks sandboxes.

The daemon starts it (fork+exec, before or outside its event loop) with one end of a
``SOCK_SEQPACKET`` socketpair as its control link. The zygote has the runtime pre-imported and
the seccomp filter pre-compiled, so a sandbox is a ``fork()`` away from being ready. For each
``spawn`` request it creates the sandbox's cgroup, forks a child that is PID 1 of a fresh pid
namespace, and hands the daemon the child's socket and log pipe (SCM_RIGHTS). The child sets
itself up (see :mod:`sandbox.contain`) in parallel with the next fork, then tells the daemon it
is ready over its own socket — so several sandboxes are in flight at once.

The zygote is the sandboxes' parent: it reaps them, reads their cgroup's peak memory and OOM
count, removes the cgroup and reports ``exited`` with the wait status. It exits when the
control link closes (the daemon is gone); its sandboxes die with it (parent-death signal).

Like CPython's forkserver: preload, fork on request, report pids and exit statuses.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from sandbox import _libc, agent, contain, fds, host, messages, mounts, runtimes
from sandbox.cgroups import Cgroup, CgroupBackend
from sandbox.defaults import POOL_LIMITS, POOL_REFILL_LIMITS, ZYGOTE_BOOT_ERROR
from sandbox.namespaces import PidNamespaceForker

UID_BASE = 200_000  # sandbox uids are UID_BASE + n: distinct per sandbox, never a host user
UID_SPAN = 60_000
POOL_NICE = 10


@dataclass
class _Child:
    id: str
    cgroup: Cgroup | None


class Zygote:
    def __init__(self, control: socket.socket, config: messages.ZygoteConfig) -> None:
        self.control = control
        self.runtime = config.runtime
        self.support = host.probe(config.cgroup_parent, config.disable)
        self.cgroups: CgroupBackend | None = self.support.cgroups
        self.isolation = self.support.isolation
        self.runtime_module = importlib.import_module(runtimes.spec(self.runtime).module)
        # The runtime decides what of the host its sandboxes see (python: /var/lang, /var/runtime).
        layout = self.runtime_module.sandbox_layout()
        for line in layout.warnings:
            print(f"zygote: {line}", file=sys.stderr, flush=True)
        self.path_map = dict(layout.path_map)
        self.root = mounts.RootSpec(
            mountpoint=config.rootfs,
            runtime_binds=layout.binds,
            masks=layout.masks,
        )
        os.makedirs(self.root.mountpoint, exist_ok=True)
        self.forker = PidNamespaceForker() if self.isolation.namespaces else None
        self.children: dict[int, _Child] = {}
        self.counter = 0
        self.memory_merge = config.memory_merge
        for name in self.runtime_module.PRELOAD:
            importlib.import_module(name)
        prepare = getattr(self.runtime_module, "prepare_zygote", None)
        if prepare is not None and self.isolation.namespaces:
            prepare(self.path_map)  # once here, on pages every sandbox shares

    # -- life --------------------------------------------------------------------------

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._send(
            messages.ZygoteReady(
                pid=os.getpid(),
                missing=tuple(self.support.missing),
                cgroup_version=self.cgroups.version if self.cgroups else None,
            ),
            [],
        )
        # Everything imported so far is shared with every sandbox: keep the collector from
        # touching (and so copying) those pages in the children.
        gc.collect()
        gc.freeze()
        if self.memory_merge:
            # Every sandbox inherits it: the copy-on-write copies idle sandboxes make of the
            # same interpreter pages are identical, and ksmd merges them (opt-in: a merged
            # page is a side channel between functions, docs/security.md).
            try:
                _libc.prctl(_libc.PR_SET_MEMORY_MERGE, 1)
            except OSError as exc:
                print(f"zygote: memory_merge unavailable: {exc}", file=sys.stderr, flush=True)
        sel = selectors.DefaultSelector()
        sel.register(self.control, selectors.EVENT_READ, "control")
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in sel.select():
                if key.data == "signal":
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                    continue
                try:
                    msg, passed = messages.recv_datagram(self.control)
                except messages.MessageError as exc:
                    print(f"zygote: {exc}", file=sys.stderr, flush=True)
                    continue
                for fd in passed:
                    os.close(fd)
                if msg is None:
                    self.shutdown()
                    return
                if isinstance(msg, messages.Spawn):
                    for _ in range(msg.count):
                        self.spawn(msg.source)
            self.reap()

    def shutdown(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while self.children and time.monotonic() < deadline:
            self.reap(block=True)

    # -- sandboxes -------------------------------------------------------------------------

    def spawn(self, source: str) -> None:
        self.counter += 1
        sandbox_id = f"{self.runtime}-{os.getpid()}-{self.counter}"
        uid = UID_BASE + (self.counter % UID_SPAN) if self.isolation.credentials else os.getuid()
        gid = uid if self.isolation.credentials else os.getgid()
        try:
            cgroup = self.cgroups.create(sandbox_id) if self.cgroups else None
            if cgroup is not None:
                # The common case's limits, now: specializing a function that uses the
                # defaults then writes no cgroup file on the request path but the CPU
                # weight of a refill (see POOL_REFILL_LIMITS).
                cgroup.set_limits(POOL_REFILL_LIMITS if source == "pool" else POOL_LIMITS)
        except OSError as exc:
            self._send(messages.SpawnFailed(f"cgroup: {exc}"), [])
            return
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        forked_at = time.monotonic_ns()
        try:
            pid = self.forker.fork() if self.forker else os.fork()
        except OSError as exc:
            for fd in (log_r, log_w):
                os.close(fd)
            parent_sock.close()
            child_sock.close()
            if cgroup:
                cgroup.destroy()
            self._send(messages.SpawnFailed(f"fork: {exc}"), [])
            return
        if pid == 0:
            self._child(child_sock, log_w, cgroup, uid, gid, forked_at, source)
        child_sock.close()
        os.close(log_w)
        self.children[pid] = _Child(sandbox_id, cgroup)
        msg = messages.Spawned(
            id=sandbox_id, pid=pid, uid=uid, cgroup=sandbox_id if cgroup else None, source=source
        )
        self._send(msg, [parent_sock.fileno(), log_r])
        parent_sock.close()
        os.close(log_r)

    def _child(
        self,
        sock: socket.socket,
        log_w: int,
        cgroup: Cgroup | None,
        uid: int,
        gid: int,
        forked_at: int,
        source: str,
    ) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            chan_fd = fds.keep_only(sock.fileno(), log_w)
            chan = messages.StreamChannel(socket.socket(fileno=chan_fd))
            gc.enable()
            if source == "pool" and self.isolation.credentials:
                # Refilling the pool must not compete with cold starts in progress; the
                # sandbox returns to normal priority when it is specialized.
                os.setpriority(os.PRIO_PROCESS, 0, POOL_NICE)
            phases = contain.prepare_generic(
                self.isolation, self.root, cgroup, uid, gid, forked_at
            )
            runtime: agent.Runtime = self.runtime_module.RUNTIME
            agent.serve(
                chan, runtime, self.isolation, uid, gid, self.path_map, phases,
                warm_up=source == "pool",
            )  # fmt: skip
        except SystemExit as exc:  # sys.exit() in a handler: its status, as a process would
            sys.stderr.flush()
            code = exc.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(status)

    def reap(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            peak = oom = 0
            if child.cgroup is not None:
                peak = child.cgroup.memory_peak_bytes()
                oom = child.cgroup.oom_kills()
                try:
                    child.cgroup.destroy()
                except OSError as exc:
                    print(f"zygote: {exc}", file=sys.stderr, flush=True)
            self._send(messages.Exited(child.id, pid, status, peak, oom), [])
            if block:
                return

    def _send(self, msg: messages.ControlMessage, passed: list[int]) -> None:
        try:
            messages.send_with_fds(self.control, msg, passed)
        except OSError:
            # The daemon is gone: nothing to report to; the control loop sees EOF next.
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.zygote")
    parser.add_argument(
        "--control-fd",
        type=int,
        required=True,
        help="SOCK_SEQPACKET link to the daemon; its first message is the configuration",
    )
    args = parser.parse_args(argv)
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    control = socket.socket(fileno=args.control_fd)
    try:
        config, _ = messages.recv_datagram(control)
        if not isinstance(config, messages.ZygoteConfig):
            raise ValueError(f"expected the configuration first, got {config!r:.200}")
        zygote = Zygote(control, config)
    except Exception:
        traceback.print_exc()
        sys.exit(ZYGOTE_BOOT_ERROR)
    zygote.run()


if __name__ == "__main__":
    main()
