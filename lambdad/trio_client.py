"""The trio client (``pip install lambdad[trio]``): same methods as the asyncio client, on the
same sans-IO core. Use it as an async context manager, which runs its reader task::

    async with TrioClient() as c:
        inv = await c.invoke("hello", {"name": "Ada"})
"""

from __future__ import annotations

from typing import Any

import trio

from lambdad.client import RECV_SIZE, AsyncOperations, ClientCore, _unreachable
from lambdad.config import default_socket_path
from lambdad.errors import ConnectionLost, LambdadError


class _Slot:
    """One pending request: an event and what it resolved to."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.outcome: dict[str, Any] | LambdadError | None = None


class TrioClient(AsyncOperations):
    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or default_socket_path()
        self._core = ClientCore()
        self._stream: trio.SocketStream | None = None
        self._nursery_cm: Any = None
        self._slots: dict[int, _Slot] = {}
        self._send_lock = trio.Lock()
        self.server_info: dict[str, Any] = {}

    async def __aenter__(self) -> TrioClient:
        try:
            self._stream = await trio.open_unix_socket(self.socket_path)
        except OSError as exc:
            raise _unreachable(self.socket_path, exc) from None
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        nursery.start_soon(self._read)
        hello_id, data = self._core.hello()
        self.server_info = await self._roundtrip(hello_id, data)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None
        self._fail_all(ConnectionLost("client closed"))
        await self._nursery_cm.__aexit__(None, None, None)

    async def _read(self) -> None:
        assert self._stream is not None
        try:
            while True:
                data = await self._stream.receive_some(RECV_SIZE)
                for rid, outcome in self._core.feed(data):
                    if rid is None and isinstance(outcome, LambdadError):
                        self._fail_all(outcome)
                        continue
                    slot = self._slots.pop(rid, None) if rid is not None else None
                    if slot is not None:
                        slot.outcome = outcome
                        slot.event.set()
                if not data:
                    break
        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            pass
        self._fail_all(ConnectionLost("lambdad closed the connection"))

    def _fail_all(self, exc: LambdadError) -> None:
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.outcome = exc
            slot.event.set()

    async def _roundtrip(self, request_id: int, data: bytes) -> dict[str, Any]:
        if self._stream is None:
            raise ConnectionLost("not connected: use `async with TrioClient() as c`")
        slot = _Slot()
        self._slots[request_id] = slot
        async with self._send_lock:
            await self._stream.send_all(data)
        await slot.event.wait()
        if isinstance(slot.outcome, LambdadError):
            raise slot.outcome
        assert slot.outcome is not None
        return slot.outcome

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        request_id, data = self._core.request(op, args)
        return await self._roundtrip(request_id, data)
