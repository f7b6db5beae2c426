"""systemd's service notification protocol (``sd_notify(3)``), in plain datagrams.

A unit with ``Type=notify`` starts the daemon with ``$NOTIFY_SOCKET`` set to a ``SOCK_DGRAM``
Unix socket: a file system path, or ``@name`` for a name in the abstract namespace (sent as a
leading NUL byte). The daemon sends newline-separated ``KEY=VALUE`` assignments to it:

* ``READY=1`` once clients can connect (start-up is complete; systemd's watchdog starts now);
* ``STATUS=...`` a line ``systemctl status`` shows: functions, sandboxes, invocations in flight;
* ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` (``WatchdogSec=``), from the event loop, so a
  wedged loop stops the pings and systemd restarts the service;
* ``RELOADING=1`` (with ``MONOTONIC_USEC=``) when SIGHUP re-reads the configuration, ``READY=1``
  when done;
* ``STOPPING=1`` when the drain begins.

Without ``$NOTIFY_SOCKET`` (not run by systemd) every call does nothing. The variables are taken
out of the environment when read, so no child process (zygote, sandbox) ever sees them. Sending
never blocks and never raises: the service manager's absence must not stop the daemon; the
first failure is printed once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Final

STATUS_INTERVAL_S: Final = 1.0  # how often STATUS= is refreshed (sent only when it changed)


class Notifier:
    """Sends notifications to the service manager at ``address`` (None: nowhere)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """``address``: ``$NOTIFY_SOCKET``'s value (``@`` = abstract namespace).
        ``watchdog_usec``: the watchdog timeout (``$WATCHDOG_USEC``), None for no watchdog."""
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read (and remove) ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``. The
        watchdog applies only if ``WATCHDOG_PID`` is unset or names this process."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None)
        usec_text = env.pop("WATCHDOG_USEC", None)
        pid_text = env.pop("WATCHDOG_PID", None)
        usec: int | None = None
        if usec_text and (not pid_text or pid_text == str(os.getpid())):
            try:
                usec = int(usec_text)
            except ValueError:
                print(f"lambdad: ignoring WATCHDOG_USEC={usec_text!r}", file=sys.stderr)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the timeout, as ``sd_watchdog_enabled(3)``
        recommends. None without a watchdog."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram. True if it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                print(f"lambdad: cannot notify {self.address!r}: {exc}", file=sys.stderr)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeat:
    """``WATCHDOG=1`` (when a watchdog is set) and a changed ``STATUS=`` line, sent from the
    event loop itself on a timer: they stop when the loop stops turning."""

    def __init__(
        self, notifier: Notifier, loop: asyncio.AbstractEventLoop, status: Callable[[], str]
    ) -> None:
        self.notifier = notifier
        self.loop = loop
        self.status = status
        watchdog = notifier.watchdog_interval_s
        self.interval_s = min(watchdog or STATUS_INTERVAL_S, STATUS_INTERVAL_S)
        self._last_status = ""
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Send ``READY=1`` with the current status, then keep the heartbeat going."""
        if not self.notifier.enabled or self._handle is not None:
            return
        self._last_status = self.status()
        self.notifier.ready(self._last_status)
        self._handle = self.loop.call_later(self.interval_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        if self.notifier.watchdog_usec is not None:
            self.notifier.watchdog()
        text = self.status()
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)
        self._handle = self.loop.call_later(self.interval_s, self._tick)


def status_line(functions: int, generic: int, warm: int, in_flight: int) -> str:
    """The ``STATUS=`` text: what ``systemctl status lambdad`` shows."""
    return (
        f"{functions} function{'s' if functions != 1 else ''}, "
        f"{generic + warm} sandboxes ({generic} generic, {warm} warm), {in_flight} in flight"
    )


__all__ = ["Heartbeat", "Notifier", "status_line"]
