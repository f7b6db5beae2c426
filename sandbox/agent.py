"""The sandbox's PID-1 agent: READY -> specialize (via :mod:`sandbox.contain`) -> serve.

It runs in every sandbox after pool-time set-up, single-threaded and blocking, and holds the
conversation with the daemon (:mod:`sandbox.messages`); what a function *is* — how its code is
loaded and called, Lambda's semantics — is the :class:`Runtime` it drives, chosen by the
runtime registry (:mod:`sandbox.runtimes`). ``python`` runs the handler in this process; a
process runtime (Node.js, ``provided``) would run it in a child and speak the Runtime API.

The sequence:

1. ``runtime.prepare()`` (pool time: paths, and for a refill a warm-up), then ``ready`` with
   the pool-time phases;
2. wait for ``init`` (with the code mount fd): ``contain.specialize`` (code mount, /tmp,
   egress, rlimits, credentials, seccomp last) — a failure is ``init-error``
   ``Sandbox.SetupError`` and exit 1;
3. ``runtime.init()`` (environment, handler import = Init): ``init-done`` or ``init-error``;
4. serve ``invoke`` after ``invoke`` with ``runtime.invoke()`` until EOF or ``retire``.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn, Protocol, runtime_checkable

from sandbox import contain, messages, rlimits, template

TASK_ROOT = "/var/task"


class InitFailure(Exception):
    """Init failed in a way the caller should see (``error`` is Lambda's error object)."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(str(error.get("errorMessage", "")))
        self.error = error


class Runtime(Protocol):
    """What the agent drives. Every method runs in the sandbox, blocking."""

    def prepare(
        self, isolation: contain.Isolation, path_map: Mapping[str, str], warm_up: bool
    ) -> None:
        """Before ``ready``: what every sandbox needs, and with ``warm_up`` (a pool refill, off
        any request path) what makes the first invocation cheaper by running it ahead."""

    def init(self, init: messages.Init, task_root: str, phases: dict[str, int]) -> None:
        """Load the function (Init), adding phase timings (us) to ``phases``.

        Raises:
            InitFailure: the function cannot be loaded (import error, missing handler).
        """

    def invoke(self, msg: messages.Invoke) -> messages.Result:
        """Run one invocation; never raises for anything the function does."""

    def after_invoke(self) -> None:
        """After the result is sent (off the caller's clock): e.g. reap orphans."""


@runtime_checkable
class Restorable(Protocol):
    """A runtime whose sandboxes can be function templates (:mod:`sandbox.template`)."""

    def after_restore(self) -> None:
        """In each copy, before its first invocation (SnapStart's after-restore hooks)."""


def serve(
    chan: messages.StreamChannel,
    runtime: Runtime,
    isolation: contain.Isolation,
    uid: int,
    gid: int,
    path_map: Mapping[str, str],
    generic_phases: dict[str, int],
    warm_up: bool = True,
) -> NoReturn:
    """The sandbox's life after pool-time set-up: wait, specialize, init, serve invocations."""
    # A process runtime starts children as the sandbox's uid (Node.js: already at pool time).
    credentials = getattr(runtime, "sandbox_credentials", None)
    if credentials is not None:
        credentials(uid, gid)
    # A sandbox forked for a waiting caller skips the warm-up: on its request path, running
    # the invocation machinery ahead costs more than the first invocation saves by it.
    runtime.prepare(isolation, path_map, warm_up)
    chan.send(messages.Ready(generic_phases))
    try:
        msg, fds = chan.recv()
    except messages.MessageError:
        os._exit(1)
    if not isinstance(msg, messages.Init):
        os._exit(0)
    function = msg.function
    t_init = time.monotonic_ns()
    if os.getpriority(os.PRIO_PROCESS, 0) > 0:  # a pool refill ran niced: back to normal
        # (with a process runtime's pre-started children: node started niced at pool time)
        for pid in (0, *getattr(runtime, "child_pids", ())):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, 0)
            except OSError:
                pass
    try:
        spec = contain.Specialization(
            tmp_mb=int(function["tmp_mb"]),
            uid=uid,
            gid=gid,
            limits=rlimits.Rlimits(
                fsize_bytes=int(function["tmp_mb"]) * 1024 * 1024,
                nproc=rlimits.TEMPLATE_NPROC if msg.template else msg.pids_max,
            ),
        )
        egress = dict(msg.egress) if msg.egress is not None else None
        # fds: the code's detached mount (when there is one), one per layer, one per /mnt.
        fs_mounts = list(function.get("mounts") or ())
        n_layers, n_mounts = len(msg.layers), len(fs_mounts)
        if isolation.namespaces and n_layers + n_mounts > len(fds):
            raise ValueError(f"{n_layers + n_mounts} mounts expected, {len(fds)} came")
        extra = n_layers + n_mounts if isolation.namespaces else 0
        tail = fds[len(fds) - extra :] if extra else []
        code_fd = fds[0] if len(fds) > extra else -1
        if msg.template and (egress is not None or not isinstance(runtime, Restorable)):
            raise ValueError("function templates need the python runtime and network = 'none'")
        phases = contain.specialize(
            isolation,
            spec,
            code_fd,
            egress,
            tail[:n_layers],
            tail[n_layers:],
            fs_mounts,
            template=msg.template,
        )
    except Exception as exc:
        chan.send(
            messages.InitError(
                error=_setup_error(exc),
                phases={},
                init_us=(time.monotonic_ns() - t_init) // 1000,
            )
        )
        os._exit(1)
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass

    task_root = TASK_ROOT if isolation.namespaces else msg.code_path
    try:
        runtime.init(msg, task_root, phases)
    except InitFailure as exc:
        chan.send(
            messages.InitError(
                error=exc.error, phases=phases, init_us=(time.monotonic_ns() - t_init) // 1000
            )
        )
        os._exit(0)
    chan.send(messages.InitDone(phases, (time.monotonic_ns() - t_init) // 1000))
    if msg.template:
        assert isinstance(runtime, Restorable)
        template.serve(
            chan,
            isolation,
            uid,
            gid,
            lambda copy_chan: _invocation_loop(copy_chan, runtime),
            runtime.after_restore,
        )
    _invocation_loop(chan, runtime)


def _invocation_loop(chan: messages.StreamChannel, runtime: Runtime) -> NoReturn:
    while True:
        try:
            msg, _ = chan.recv(with_fds=False)
        except messages.MessageError:
            os._exit(1)
        if not isinstance(msg, messages.Invoke):
            os._exit(0)
        chan.send(runtime.invoke(msg))
        runtime.after_invoke()


def _setup_error(exc: BaseException) -> dict[str, Any]:
    """Lambda's error shape for a failure of the sandbox's own set-up."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": "Sandbox.SetupError",
        "stackTrace": traceback.StackSummary.from_list(frames).format(),
    }
