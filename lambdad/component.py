"""The lifecycle every long-lived part of the daemon shares.

The daemon holds its components in one list: it starts them in order, stops them in reverse
order, passes a reloaded configuration to each, and tells each about deploys and deletes. So
``start`` and ``stop`` are not hand-sequenced mirror images, and a new part (a front, an event
source) is one more entry. Every method has a do-nothing default.
"""

from __future__ import annotations

from lambdad.config import DaemonConfig


class Component:
    name: str = "component"

    async def start(self) -> None:
        """Acquire resources and begin work. Raising aborts the daemon's start."""

    async def stop(self) -> None:
        """Release everything ``start`` acquired. Must not raise for a half-started
        component (the daemon stops the ones that started when a later one fails)."""

    def reload(self, config: DaemonConfig) -> None:
        """SIGHUP: adopt what can change without a restart."""

    def on_deploy(self, function: str, version: int, created: bool) -> None:
        """A deploy finished (``created``: a new version, rather than the same again)."""

    def on_delete(self, function: str) -> None:
        """A function was deleted."""
