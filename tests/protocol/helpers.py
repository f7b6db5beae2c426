"""Two protocol endpoints joined by an in-memory link (the h11 ``tests/helpers.py`` idea).

No sockets: what one :class:`~lambdad.protocol.Connection` ``send``s is handed straight to the
other's ``receive_data``, so a test reads like a conversation and fails on the exact event.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack

from lambdad.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    Event,
    Role,
    hello_request,
)


def frame(obj: Any) -> bytes:
    """Raw msgpack bytes for ``obj``, for frames a well-behaved Connection would never send."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def drain(conn: Connection) -> list[Event]:
    """Every complete event buffered in ``conn``, stopping at NEED_DATA or CLOSED."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is CLOSED:
            return events
        events.append(event)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the byte offsets ``cuts`` (in any order, repeats allowed), no empties."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds) if end > start]


def feed_in_chunks(conn: Connection, data: bytes, cuts: list[int]) -> list[Event]:
    """Feed ``data`` split at the byte offsets ``cuts``, draining events after every chunk."""
    events = drain(conn)
    for chunk in split(data, cuts):
        conn.receive_data(chunk)
        events.extend(drain(conn))
    return events


class ConnectionPair:
    """A client and a server connection joined by a lossless, in-order fake link."""

    def __init__(self, max_frame_size: int = 1024 * 1024) -> None:
        self.client = Connection(Role.CLIENT, max_frame_size)
        self.server = Connection(Role.SERVER, max_frame_size)

    def peer(self, conn: Connection) -> Connection:
        return self.server if conn is self.client else self.client

    def send(self, conn: Connection, *events: Event) -> list[Event]:
        """``conn`` sends ``events``; return what the other end decodes from the bytes."""
        other = self.peer(conn)
        for event in events:
            other.receive_data(conn.send(event))
        return drain(other)

    def handshake(self) -> None:
        """Run the hello exchange, so both ends are READY."""
        [received] = self.send(self.client, hello_request(0))
        assert received == hello_request(0)

    def close(self, conn: Connection) -> object:
        """``conn`` half-closes; return what the other end's next_event says."""
        other = self.peer(conn)
        other.receive_data(b"")
        return other.next_event()
