"""Function templates: an initialized sandbox that forks isolated copies of itself.

SnapStart's idea (and Catalyzer's) on one host: after a function version's Init, the sandbox
that ran it becomes its *template*. It never serves an invocation; it forks *copies*, each of
which skips interpreter start and Init and serves like any sandbox.

The hard part is that the template is unprivileged and seccomp'd (it ran the function's Init)
while each copy needs namespaces of its own. The design (threat analysis: docs/security.md,
"Function templates"):

* the template's filter is the full one minus ``unshare``, ``mount`` and ``clone``'s namespace
  flags (:data:`sandbox.seccomp.TEMPLATE_ALLOWED`), so a process of the template may create a
  **user namespace** and, inside it, the rest. No capability it gets there is one over
  anything of the host: the user namespace maps one uid, its own.
* per copy (``fork`` from the daemon, with the copy's socket and log pipe) the template forks
  an *intermediate* and answers ``forked``; the daemon moves that process into the copy's own
  cgroup and says ``restore`` on the copy's socket. The intermediate unshares user, pid,
  mount, network, uts, ipc and cgroup namespaces, maps its uid to itself, and forks the copy,
  PID 1 of the new pid namespace (and exits: the template reaps).
* the copy mounts its own /tmp, /dev/shm and /proc (masked), brings its loopback up, drops
  every capability (bounding set too), becomes non-dumpable and loads the **full** filter on
  top of the template's; then re-seeds what fork copied (``random``, tempfile's names) and runs
  the function's after-restore hooks, and says ``restored``. The daemon checks from outside
  (``/proc/PID/status`` and ``ns/*``) that this is so before it gives the copy an invocation.

Everything the template and its copies run is untrusted (their memory is the function's
after Init): the daemon's checks, not this code, are what a copy is trusted for.
"""

from __future__ import annotations

import gc
import os
import random
import selectors
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from sandbox import _libc, contain, credentials, fds, messages, mounts, netns, rlimits, seccomp

COPY_NAMESPACES = (
    _libc.CLONE_NEWUSER
    | _libc.CLONE_NEWPID
    | _libc.CLONE_NEWNS
    | _libc.CLONE_NEWNET
    | _libc.CLONE_NEWUTS
    | _libc.CLONE_NEWIPC
    | _libc.CLONE_NEWCGROUP
)
PR_SET_DUMPABLE = 4

AfterRestore = Callable[[], None]


def serve(
    chan: messages.StreamChannel,
    isolation: contain.Isolation,
    uid: int,
    gid: int,
    invocation_loop: Callable[[messages.StreamChannel], NoReturn],
    after_restore: AfterRestore,
) -> NoReturn:
    """The template's life after Init: fork a copy per ``fork`` until EOF or ``retire``.

    Reaps what it forked (it is PID 1: copies are reparented to it when their intermediate
    exits) and reports each copy's exit status with ``copy-exited``. The daemon sends one
    ``fork`` at a time and waits for its ``forked``, so at most one message is ever buffered.
    """
    # What Init built is shared with every copy: keep the collector from walking (and so
    # copying) it in each of them. Without this a copy's first collection writes every
    # object's header: 6-11 ms of page faults in its first invocation (measured).
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    intermediates: set[int] = set()
    sel = selectors.DefaultSelector()
    sel.register(chan.sock, selectors.EVENT_READ, "chan")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    while True:
        for key, _ in sel.select():
            if key.data == "signal":
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            try:
                msg, passed = chan.recv()
            except messages.MessageError:
                os._exit(1)
            if not isinstance(msg, messages.Fork) or len(passed) != 2:
                os._exit(0)  # EOF, retire, or anything else: the copies die with us
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                pid = os.fork()
            except OSError as exc:  # pids.max, memory: this copy fails, not the template
                for fd in passed:
                    os.close(fd)
                chan.send(messages.Forked(msg.id, 0, f"fork: {exc.strerror}"))
                continue
            if pid == 0:
                limits = rlimits.Rlimits(
                    fsize_bytes=msg.tmp_mb * 1024 * 1024, nproc=msg.pids_max
                )
                _intermediate(
                    chan, passed[0], passed[1], msg.tmp_mb, limits, isolation, uid, gid,
                    invocation_loop, after_restore,
                )  # fmt: skip
            for fd in passed:
                os.close(fd)
            intermediates.add(pid)
            chan.send(messages.Forked(msg.id, pid))
        _reap(chan, intermediates)


def _reap(chan: messages.StreamChannel, intermediates: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in intermediates:
            intermediates.discard(pid)
            continue
        chan.send(messages.CopyExited(pid, status))


def _intermediate(
    template_chan: messages.StreamChannel,
    sock_fd: int,
    log_fd: int,
    tmp_mb: int,
    limits: rlimits.Rlimits,
    isolation: contain.Isolation,
    uid: int,
    gid: int,
    invocation_loop: Callable[[messages.StreamChannel], NoReturn],
    after_restore: AfterRestore,
) -> NoReturn:
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        forked_at = time.monotonic_ns()
        # Nothing of the template's: its socket and every other fd are closed here.
        template_chan.sock.detach()
        chan_fd = fds.keep_only(sock_fd, log_fd)
        chan = messages.StreamChannel(socket.socket(fileno=chan_fd))
        msg, _ = chan.recv(with_fds=False)
        if not isinstance(msg, messages.Restore):
            os._exit(0)
        t_restore = time.monotonic_ns()
        # Credentials changed at specialization, so the kernel made us non-dumpable, and a
        # non-dumpable process cannot write its own uid_map.
        _libc.prctl(PR_SET_DUMPABLE, 1)
        _libc.unshare(COPY_NAMESPACES)
        _write_id_maps(uid, gid)
        t_ns = time.monotonic_ns()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid != 0:
            os._exit(0)
        phases = {
            "fork": (t_restore - forked_at) // 1000,
            "namespaces": (t_ns - t_restore) // 1000,
        }
        _copy(chan, tmp_mb, limits, isolation, uid, gid, phases, t_restore, after_restore)
        invocation_loop(chan)
    except SystemExit as exc:
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _write_id_maps(uid: int, gid: int) -> None:
    """Map our own uid and gid to themselves: the only mapping an unprivileged process may
    write, and the one that keeps every file's owner what it was."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _copy(
    chan: messages.StreamChannel,
    tmp_mb: int,
    limits: rlimits.Rlimits,
    isolation: contain.Isolation,
    uid: int,
    gid: int,
    phases: dict[str, int],
    t_restore: int,
    after_restore: AfterRestore,
) -> None:
    """PID 1 of the copy's namespaces, root of its user namespace until the end of this."""
    last = time.monotonic_ns()

    def lap(name: str) -> None:
        nonlocal last
        now = time.monotonic_ns()
        phases[name] = (now - last) // 1000
        last = now

    # No parent-death signal: the parent is the intermediate, which exits now. The copy dies
    # with its template instead (the template is PID 1 of a pid namespace the copy is in).
    mounts.mount_copy(tmp_mb, uid, gid)
    lap("mounts")
    netns.loopback_up()
    lap("network")
    rlimits.apply(limits)  # the template's RLIMIT_NPROC is unlimited (see rlimits)
    lap("rlimits")
    # A new user namespace gave us every capability in it (and a full bounding set): all go.
    credentials.drop_bounding()
    _libc.capset_empty()
    _libc.prctl(PR_SET_DUMPABLE, 0)
    lap("credentials")
    if isolation.seccomp_program is not None:
        seccomp.load(isolation.seccomp_program)
        lap("seccomp")
    reseed()
    lap("reseed")
    after_restore()
    lap("after_restore")
    chan.send(messages.Restored(phases, (time.monotonic_ns() - t_restore) // 1000))


def reseed() -> None:
    """What fork copied that must differ per copy. ``os.fork`` already re-seeds ``random``'s
    module-level generator (CPython's at-fork hook) and ``os.urandom``/``uuid.uuid4`` read the
    kernel; but tempfile's name generator re-seeds only when the pid changes, and a copy is
    PID 1 like its template."""
    random.seed()
    tempfile._name_sequence = None  # type: ignore[attr-defined]

