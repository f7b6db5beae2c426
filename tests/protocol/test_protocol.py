"""The sans-IO wire protocol, in memory: handshake, framing, limits, bad input, errors."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdad.errors import (
    FrameTooLarge,
    InvalidParameterValue,
    LambdadError,
    ProtocolError,
    TooManyRequests,
    UnsupportedVersion,
)
from lambdad.protocol import (
    CLOSED,
    MAX_ID,
    NEED_DATA,
    OPERATION_ARGS,
    PROTOCOL_VERSION,
    TRANSITIONS,
    BadRequest,
    Connection,
    ErrorResponse,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
    hello_request,
)
from tests.protocol.helpers import ConnectionPair, drain, feed_in_chunks, frame, split

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ready_server(max_frame_size: int = 1024 * 1024) -> Connection:
    """A server connection that has accepted a hello."""
    server = Connection(Role.SERVER, max_frame_size)
    server.receive_data(frame({"id": 0, "op": "hello", "args": {"version": PROTOCOL_VERSION}}))
    assert drain(server) == [Request(0, "hello", {"version": PROTOCOL_VERSION})]
    assert server.state is State.READY
    return server


# ---------------------------------------------------------------------------------------------
# Handshake and roles


def test_hello_moves_both_ends_to_ready() -> None:
    pair = ConnectionPair()
    assert pair.client.state is State.AWAIT_HELLO
    assert pair.server.state is State.AWAIT_HELLO

    received = pair.send(pair.client, hello_request(7, client="test-suite"))

    assert received == [Request(7, "hello", {"version": PROTOCOL_VERSION, "client": "test-suite"})]
    assert pair.client.state is State.READY
    assert pair.server.state is State.READY
    assert pair.server.peer_version == PROTOCOL_VERSION


def test_request_before_hello_is_refused_and_the_connection_still_works() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(frame({"id": 1, "op": "invoke", "args": {"name": "f"}}))

    [event] = drain(server)

    assert isinstance(event, BadRequest)
    assert event.id == 1
    assert type(event.error) is ProtocolError
    assert event.error.message == "the first request must be 'hello'"
    assert server.state is State.AWAIT_HELLO

    server.receive_data(frame({"id": 2, "op": "hello", "args": {"version": 1}}))
    server.receive_data(frame({"id": 3, "op": "invoke", "args": {"name": "f"}}))
    assert drain(server) == [
        Request(2, "hello", {"version": 1}),
        Request(3, "invoke", {"name": "f"}),
    ]
    assert server.state is State.READY


@pytest.mark.parametrize(
    "args",
    [
        {"version": 2},
        {"version": 0},
        {"version": "1"},
        {"version": True},  # a bool is not a version, even though True == 1
        {"version": 1.0},
        {"version": [1]},  # unhashable: used to escape as a TypeError
        {"version": {"v": 1}},
        {"version": None},
    ],
    ids=repr,
)
def test_unsupported_version_is_refused_with_the_supported_list(args: dict[str, Any]) -> None:
    server = Connection(Role.SERVER)
    server.receive_data(frame({"id": 5, "op": "hello", "args": args}))

    [event] = drain(server)

    assert isinstance(event, BadRequest)
    assert event.id == 5
    assert isinstance(event.error, UnsupportedVersion)
    assert event.error.details == {"supported": [1]}
    assert "is not supported; this daemon speaks [1]" in event.error.message
    assert server.state is State.AWAIT_HELLO
    assert server.peer_version is None

    # A good hello after a bad one is still accepted.
    server.receive_data(frame({"id": 6, "op": "hello", "args": {"version": 1}}))
    assert drain(server) == [Request(6, "hello", {"version": 1})]
    assert server.state is State.READY


def test_hello_without_a_version_says_so() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(frame({"id": 5, "op": "hello", "args": {"client": "x/1"}}))

    [event] = drain(server)

    assert isinstance(event, BadRequest)
    assert isinstance(event.error, UnsupportedVersion)
    assert event.error.message == "hello has no 'version'; this daemon speaks [1]"
    assert event.error.details == {"supported": [1]}
    assert server.state is State.AWAIT_HELLO


def test_unsupported_hello_after_a_good_one_is_refused_but_keeps_the_connection_ready() -> None:
    server = ready_server()
    server.receive_data(frame({"id": 9, "op": "hello", "args": {"version": 99}}))

    [event] = drain(server)

    assert isinstance(event, BadRequest)
    assert isinstance(event.error, UnsupportedVersion)
    assert server.state is State.READY
    assert server.peer_version == 1


def test_client_must_send_hello_first() -> None:
    client = Connection(Role.CLIENT)

    with pytest.raises(LocalProtocolError, match="send 'hello' before any other request"):
        client.send(Request(1, "ping"))

    assert client.state is State.AWAIT_HELLO
    assert client.send(hello_request(0)) == frame(
        {"id": 0, "op": "hello", "args": {"version": PROTOCOL_VERSION, "client": "lambdad-python"}}
    )
    assert client.state is State.READY
    assert client.send(Request(1, "ping")) == frame({"id": 1, "op": "ping", "args": {}})


def test_a_hello_that_cannot_be_encoded_was_not_sent() -> None:
    client = Connection(Role.CLIENT)

    with pytest.raises(TypeError):
        client.send(Request(0, "hello", {"version": 1, "bad": object()}))

    assert client.state is State.AWAIT_HELLO
    # The packer reset itself: the next frame carries no leftovers of the failed one.
    assert client.send(Request(0, "hello", {"version": 1})) == frame(
        {"id": 0, "op": "hello", "args": {"version": 1}}
    )


def test_client_may_pipeline_requests_behind_hello() -> None:
    pair = ConnectionPair()
    received = pair.send(
        pair.client, hello_request(0), Request(1, "ping"), Request(2, "get", {"name": "f"})
    )
    assert received == [hello_request(0), Request(1, "ping"), Request(2, "get", {"name": "f"})]


def test_server_cannot_send_requests() -> None:
    server = ready_server()
    with pytest.raises(LocalProtocolError, match="only a client sends requests"):
        server.send(Request(1, "ping"))


@pytest.mark.parametrize(
    "event",
    [
        Response(1, {"pong": True}),
        ErrorResponse(1, {"type": "ServiceError", "message": "x"}),
        BadRequest(1, ProtocolError("x")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_client_cannot_send_responses(event: Event) -> None:
    client = Connection(Role.CLIENT)
    client.send(hello_request())
    with pytest.raises(LocalProtocolError, match="only the daemon sends responses"):
        client.send(event)


@pytest.mark.parametrize("bad_id", [-1, MAX_ID + 1, True, 1.5, "1"], ids=repr)
def test_sending_an_id_the_peer_would_refuse_is_a_local_error(bad_id: Any) -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(LocalProtocolError, match="id must be an integer"):
        client.send(Request(bad_id, "hello", {"version": 1}))
    assert client.state is State.AWAIT_HELLO  # nothing was sent

    server = Connection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="id must be an integer"):
        server.send(Response(bad_id, {}))


def test_responses_come_back_in_any_order_with_their_ids() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.send(pair.client, Request(1, "invoke"), Request(2, "invoke"), Request(3, "invoke"))

    received = pair.send(
        pair.server,
        Response(3, {"n": 3}),
        ErrorResponse.of(1, TooManyRequests("slow down", reason="R")),
        Response(2, {"n": 2}),
    )

    assert [e.id for e in received] == [3, 1, 2]
    assert received[0] == Response(3, {"n": 3})
    assert received[2] == Response(2, {"n": 2})


def test_every_live_state_has_an_eof_transition() -> None:
    # Otherwise a peer hanging up would raise LocalProtocolError out of next_event().
    for role in Role:
        for state in (State.AWAIT_HELLO, State.READY, State.CLOSED):
            assert TRANSITIONS[(role, state, "recv-eof")] is State.CLOSED
        for state in (State.AWAIT_HELLO, State.READY):
            assert TRANSITIONS[(role, state, "recv-garbage")] is State.ERROR
    # Nothing leaves ERROR.
    assert not [key for key in TRANSITIONS if key[1] is State.ERROR]


# ---------------------------------------------------------------------------------------------
# Framing: any valid frames, split anywhere, decode to the same events


def msgpack_values() -> st.SearchStrategy[Any]:
    """Values that survive a msgpack round trip unchanged (lists, not tuples; no NaN)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
        | st.binary(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8) | st.integers(0, 100), children, max_size=4)
        ),
        max_leaves=12,
    )


args_maps = st.dictionaries(st.text(max_size=10), msgpack_values(), max_size=5)
ids = st.integers(min_value=0, max_value=MAX_ID)
# Not a known op: their arguments are checked (random ones would be refused).
ops = st.text(min_size=1, max_size=12).filter(lambda op: op not in OPERATION_ARGS)
requests = st.builds(Request, ids, ops, args_maps)

bodies = st.dictionaries(st.text(max_size=10), msgpack_values(), max_size=5)
errors = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["TooManyRequests", "ServiceError", "SomethingNew"]),
        "message": st.text(max_size=30),
    },
    optional={"reason": st.text(max_size=10), "limit": st.integers(0, 2**40)},
)
server_events = st.one_of(
    st.builds(Response, ids, bodies),
    st.builds(ErrorResponse, ids | st.none(), errors),
    st.builds(
        BadRequest,
        ids | st.none(),
        st.builds(ProtocolError, st.text(max_size=30)),
    ),
)


def cut_points(data: st.DataObject, size: int) -> list[int]:
    return data.draw(st.lists(st.integers(0, size), max_size=12), label="cuts")


@FUZZ
@given(st.lists(requests, max_size=8), st.data())
def test_requests_split_anywhere_decode_to_the_same_events(
    sent: list[Request], data: st.DataObject
) -> None:
    client = Connection(Role.CLIENT)
    frames = [client.send(hello_request(0)), *(client.send(r) for r in sent)]
    stream = b"".join(frames)
    # The limit is exactly the largest frame: every frame fits, the stream may not.
    server = Connection(Role.SERVER, max_frame_size=max(map(len, frames)))

    received = feed_in_chunks(server, stream, cut_points(data, len(stream)))

    assert received == [hello_request(0), *sent]
    server.receive_data(b"")
    assert server.next_event() is CLOSED


@FUZZ
@given(requests, st.data())
def test_a_request_one_byte_over_the_limit_is_always_too_large(
    request: Request, data: st.DataObject
) -> None:
    # The header check must never pass a frame over the limit, nor (above) refuse one at it.
    # (No hello first: it might not fit, and the size limit does not depend on the state.)
    client = Connection(Role.CLIENT)
    client.send(hello_request(0))
    frame_bytes = client.send(request)
    server = Connection(Role.SERVER, max_frame_size=len(frame_bytes) - 1)

    with pytest.raises(RemoteProtocolError) as info:
        feed_in_chunks(server, frame_bytes, cut_points(data, len(frame_bytes)))

    assert isinstance(info.value.error, FrameTooLarge)


@FUZZ
@given(st.lists(server_events, max_size=8), st.data())
def test_responses_split_anywhere_decode_to_the_same_events(
    sent: list[Response | ErrorResponse | BadRequest], data: st.DataObject
) -> None:
    server = Connection(Role.SERVER)
    frames = [server.send(e) for e in sent]
    stream = b"".join(frames)
    client = Connection(Role.CLIENT, max_frame_size=max(map(len, frames), default=1))
    client.send(hello_request())

    received = feed_in_chunks(client, stream, cut_points(data, len(stream)))

    # A BadRequest reaches the client as the error response it stands for.
    expected = [
        ErrorResponse(e.id, e.error.to_wire()) if isinstance(e, BadRequest) else e for e in sent
    ]
    assert received == expected
    client.receive_data(b"")
    assert client.next_event() is CLOSED


# ---------------------------------------------------------------------------------------------
# Garbage: only RemoteProtocolError, and the connection stays dead


def assert_only_remote_errors(conn: Connection, chunks: list[bytes]) -> None:
    """Feed ``chunks`` then EOF; any failure must be a RemoteProtocolError, then sticky."""
    try:
        for chunk in [*chunks, b""]:
            conn.receive_data(chunk)
            drain(conn)
    except RemoteProtocolError as exc:
        assert isinstance(exc.error, LambdadError)
        assert exc.error.type in ("ProtocolError", "FrameTooLarge")
        assert exc.error.message
        assert conn.state is State.ERROR
        for _ in range(2):
            conn.receive_data(b"more bytes")  # ignored once dead
            with pytest.raises(RemoteProtocolError):
                conn.next_event()
        assert conn.state is State.ERROR
    else:
        assert conn.state is State.CLOSED


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=6), st.booleans())
def test_arbitrary_bytes_never_raise_anything_but_remote_protocol_error(
    chunks: list[bytes], handshake_first: bool
) -> None:
    server = ready_server(max_frame_size=96) if handshake_first else Connection(Role.SERVER, 96)
    assert_only_remote_errors(server, chunks)


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=6))
def test_arbitrary_bytes_to_a_client_never_raise_anything_but_remote_protocol_error(
    chunks: list[bytes],
) -> None:
    client = Connection(Role.CLIENT, 96)
    client.send(hello_request())
    assert_only_remote_errors(client, chunks)


@FUZZ
@given(st.lists(msgpack_values(), min_size=1, max_size=4), st.data())
def test_arbitrary_msgpack_values_are_events_or_remote_errors(
    values: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(frame(v) for v in values)
    server = ready_server()
    assert_only_remote_errors(server, split(stream, cut_points(data, len(stream))))


def test_garbage_is_fatal_and_sticky() -> None:
    server = ready_server()
    server.receive_data(b"\xc1")  # 0xc1 is never used by msgpack

    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()

    assert type(info.value.error) is ProtocolError
    assert info.value.error.message.startswith("bytes are not a msgpack frame")
    assert server.state is State.ERROR
    server.receive_data(frame({"id": 1, "op": "ping"}))
    with pytest.raises(RemoteProtocolError, match="error state"):
        server.next_event()


# ---------------------------------------------------------------------------------------------
# Frame size limit: per frame, not per buffer


LIMIT = 1024


def padded_request(size: int, id: int = 1) -> bytes:
    """A request frame of exactly ``size`` bytes, padded with one string."""
    base = len(frame({"id": id, "op": "x", "args": {"pad": ""}}))
    for pad_len in range(size - base, size - base - 6, -1):
        data = frame({"id": id, "op": "x", "args": {"pad": "p" * pad_len}})
        if len(data) == size:
            return data
    raise AssertionError(f"no padding gives {size} bytes")


def nested_request(count: int, id: int = 1) -> bytes:
    """A request of many tiny values: the unpacker decodes it element by element."""
    return frame({"id": id, "op": "x", "args": {"a": [[i % 100] * 10 for i in range(count)]}})


@pytest.mark.parametrize("chunk", [None, 1, 100], ids=["one-call", "bytewise", "chunks-of-100"])
def test_a_frame_at_the_limit_decodes(chunk: int | None) -> None:
    server = ready_server(LIMIT)
    data = padded_request(LIMIT)
    assert len(data) == LIMIT

    cuts = list(range(0, len(data), chunk)) if chunk else []
    [event] = feed_in_chunks(server, data, cuts)

    assert isinstance(event, Request)
    assert frame({"id": event.id, "op": event.op, "args": event.args}) == data


@pytest.mark.parametrize("make", [padded_request, nested_request], ids=["one-string", "nested"])
@pytest.mark.parametrize("chunk", [None, 7, 100], ids=["one-call", "chunks-of-7", "chunks-of-100"])
def test_a_frame_over_the_limit_is_fatal(make: Any, chunk: int | None) -> None:
    server = ready_server(LIMIT)
    data = make(LIMIT + 1) if make is padded_request else make(LIMIT // 4)
    assert len(data) > LIMIT

    with pytest.raises(RemoteProtocolError) as info:
        feed_in_chunks(server, data, list(range(0, len(data), chunk)) if chunk else [])

    assert isinstance(info.value.error, FrameTooLarge)
    assert info.value.error.details == {"limit": LIMIT, "fatal": True}
    assert info.value.error.message == f"frame larger than the limit of {LIMIT} bytes"
    assert server.state is State.ERROR


def _huge(header: bytes, declared: int) -> bytes:
    """A request whose 'pad' argument starts with ``header`` + ``declared`` as its length."""
    width = {0xC4: 1, 0xD9: 1, 0xC5: 2, 0xDA: 2, 0xDC: 2, 0xDE: 2, 0xC7: 1}.get(header[0], 4)
    return (
        b"\x83\xa2id\x01\xa2op\xa1x\xa4args\x81\xa3pad" + header + declared.to_bytes(width, "big")
    )


@pytest.mark.parametrize(
    ("header", "declared"),
    [
        (b"\xdb", 2**30),  # str32 of 1 GiB
        (b"\xc6", 100 * 2**20),  # bin32 of 100 MiB
        (b"\xc9", 2**31),  # ext32 (its type byte follows the length)
        (b"\xda", LIMIT),  # str16 one limit long: the header itself does not fit as well
        (b"\xdd", 2**32 - 1),  # array32 of 4 G elements (each at least a byte)
        (b"\xdf", LIMIT // 2),  # map32: keys and values, two bytes per entry at least
    ],
    ids=["str32", "bin32", "ext32", "str16", "array32", "map32"],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-call", "bytewise"])
def test_a_frame_declaring_more_than_the_limit_is_refused_from_its_header(
    header: bytes, declared: int, bytewise: bool
) -> None:
    server = ready_server(LIMIT)
    data = _huge(header, declared)
    if header == b"\xc9":
        data += b"\x05"  # the ext type: the header is complete only with it

    with pytest.raises(RemoteProtocolError) as info:
        feed_in_chunks(server, data, list(range(len(data))) if bytewise else [])

    assert isinstance(info.value.error, FrameTooLarge)
    assert info.value.error.details == {"limit": LIMIT, "fatal": True}
    assert server.state is State.ERROR


def test_a_header_that_fits_exactly_waits_for_its_body() -> None:
    server = ready_server(LIMIT)
    head = _huge(b"\xc5", 0)
    body = LIMIT - len(head)
    data = _huge(b"\xc5", body)
    server.receive_data(data)
    assert server.next_event() is NEED_DATA  # the frame would end exactly at the limit

    for _ in range(body):  # byte by byte: the scan skips the body it has already seen
        server.receive_data(b"p")
        event = server.next_event()
    assert isinstance(event, Request)
    assert event.args == {"pad": b"p" * body}
    assert server.next_event() is NEED_DATA


def test_an_incomplete_frame_behind_whole_ones_is_measured_from_its_own_start() -> None:
    server = ready_server(LIMIT)
    whole = [padded_request(LIMIT - 10, id=i) for i in range(1, 4)]
    partial = padded_request(LIMIT, id=9)
    server.receive_data(b"".join(whole) + partial[:-1])
    assert [e.id for e in drain(server) if isinstance(e, Request)] == [1, 2, 3]

    server.receive_data(partial[-1:])

    [event] = drain(server)
    assert isinstance(event, Request) and event.id == 9


def test_many_small_frames_far_over_the_limit_in_one_call_all_decode() -> None:
    server = ready_server(LIMIT)
    frames = [padded_request(LIMIT // 4, id=i) for i in range(1, 401)]
    stream = b"".join(frames)
    assert len(stream) == 100 * LIMIT

    server.receive_data(stream)
    events = drain(server)

    assert [e.id for e in events if isinstance(e, Request)] == list(range(1, 401))
    assert server.next_event() is NEED_DATA


# ---------------------------------------------------------------------------------------------
# Valid msgpack, wrong shape: BadRequest, and the next good request still works


@pytest.mark.parametrize(
    ("obj", "bad_id", "message"),
    [
        ({"op": "ping"}, None, "request has no 'id'"),
        ({"id": -1, "op": "ping"}, None, "'id' must be an integer in [0, 2**63), got int -1"),
        ({"id": True, "op": "ping"}, None, "'id' must be an integer in [0, 2**63), got bool True"),
        ({"id": 1.5, "op": "ping"}, None, "'id' must be an integer in [0, 2**63), got float 1.5"),
        (
            {"id": 2.0**53 + 2, "op": "ping"},
            None,
            f"'id' must be an integer in [0, 2**63), got float {2.0**53 + 2!r}",
        ),
        (
            {"id": 4, "op": "ping", "arg": {}},
            4,
            "unknown request key str 'arg'; a request has only 'id', 'op' and 'args'",
        ),
        ({"id": "1", "op": "ping"}, None, "'id' must be an integer in [0, 2**63), got str '1'"),
        (
            {"id": 2**63, "op": "ping"},
            None,
            f"'id' must be an integer in [0, 2**63), got int {2**63}",
        ),
        ({"id": None, "op": "ping"}, None, "'id' must be an integer in [0, 2**63), got nil None"),
        ({"id": 4}, 4, "request has no 'op'"),
        ({"id": 4, "op": 5}, 4, "'op' must be a string, got int"),
        ({"id": 4, "op": b"ping"}, 4, "'op' must be a string, got bytes"),
        ({"id": 4, "op": "ping", "args": [1]}, 4, "'args' must be a map, got array"),
        ({"id": 4, "op": "ping", "args": None}, 4, "'args' must be a map, got nil"),
        ({"id": 4, "op": "ping", "args": {1: 2}}, 4, "'args' keys must be strings, got int 1"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_wrong_shaped_request_is_a_bad_request(obj: Any, bad_id: int | None, message: str) -> None:
    server = ready_server()
    server.receive_data(frame(obj) + frame({"id": 8, "op": "ping", "args": {}}))

    bad, good = drain(server)

    assert isinstance(bad, BadRequest)
    assert bad.id == bad_id
    assert type(bad.error) is ProtocolError
    assert bad.error.message == message
    assert good == Request(8, "ping", {})
    assert server.state is State.READY


@pytest.mark.parametrize("id", [0.0, 7.0, 2.0**32, 2.0**53], ids=repr)
def test_an_integral_float_id_is_that_integer(id: float) -> None:
    server = ready_server()
    server.receive_data(frame({"id": id, "op": "ping"}))
    [event] = drain(server)
    assert event == Request(int(id), "ping", {})
    assert type(event.id) is int  # and so the response echoes it as a msgpack integer


@pytest.mark.parametrize(
    ("op", "args", "field"),
    [
        ("deploy", {"name": "f", "code": b"", "timeout_S": 9}, "timeout_S"),
        ("invoke", {"name": "f", "Payload": b"{}"}, "Payload"),
        ("ping", {"x": 1}, "x"),
        ("hello", {"version": 1, "extensions": []}, "extensions"),
    ],
)
def test_an_unknown_argument_of_a_known_op_is_refused(
    op: str, args: dict[str, Any], field: str
) -> None:
    server = ready_server()
    server.receive_data(frame({"id": 2, "op": op, "args": args}))

    [event] = drain(server)

    assert isinstance(event, BadRequest)
    assert event.id == 2
    assert type(event.error) is InvalidParameterValue
    assert event.error.details == {"field": field}
    assert event.error.message.startswith(f"unknown argument {field!r} for {op!r}; it takes ")
    assert server.state is State.READY


def test_every_documented_argument_is_accepted() -> None:
    server = ready_server()
    for id, (op, allowed) in enumerate(OPERATION_ARGS.items(), start=1):
        args = {key: None for key in allowed}
        if op == "hello":
            args["version"] = PROTOCOL_VERSION
        server.receive_data(frame({"id": id, "op": op, "args": args}))
        assert drain(server) == [Request(id, op, args)]


def test_args_default_to_an_empty_map() -> None:
    server = ready_server()
    server.receive_data(frame({"id": 3, "op": "list"}))
    assert drain(server) == [Request(3, "list", {})]


@pytest.mark.parametrize("obj", [[1, 2], 5, "hello", None, b"x"], ids=repr)
def test_a_frame_that_is_not_a_map_is_fatal(obj: Any) -> None:
    server = ready_server()
    server.receive_data(frame(obj))

    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()

    assert type(info.value.error) is ProtocolError
    assert info.value.error.message.startswith("a frame must be a msgpack map, got ")
    assert server.state is State.ERROR


def test_a_malformed_response_is_fatal_for_the_client() -> None:
    client = Connection(Role.CLIENT)
    client.send(hello_request())
    client.receive_data(frame({"id": 1, "ok": [1, 2]}))
    with pytest.raises(RemoteProtocolError, match="malformed response frame"):
        client.next_event()


def test_an_error_that_is_not_a_map_becomes_a_protocol_error() -> None:
    client = Connection(Role.CLIENT)
    client.send(hello_request())
    client.receive_data(frame({"id": 1, "error": "boom"}))

    [event] = drain(client)

    assert isinstance(event, ErrorResponse)
    assert event.id == 1
    exc = event.exception()
    assert type(exc) is ProtocolError
    assert exc.message == "malformed error 'boom'"


# ---------------------------------------------------------------------------------------------
# End of stream


def test_eof_between_frames_is_closed_and_stays_closed() -> None:
    server = ready_server()
    server.receive_data(frame({"id": 1, "op": "ping"}))
    server.receive_data(b"")

    assert server.next_event() == Request(1, "ping", {})
    assert server.next_event() is CLOSED
    assert server.next_event() is CLOSED  # asking again is not a protocol error
    assert server.state is State.CLOSED


def test_eof_before_anything_is_closed() -> None:
    pair = ConnectionPair()
    assert pair.close(pair.client) is CLOSED
    assert pair.close(pair.server) is CLOSED


def test_data_after_eof_is_a_local_error() -> None:
    server = ready_server()
    server.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the end of the stream"):
        server.receive_data(frame({"id": 1, "op": "ping"}))
    server.receive_data(b"")  # a second EOF is harmless
    assert server.next_event() is CLOSED


@pytest.mark.parametrize(
    "data",
    [
        frame({"id": 1, "op": "invoke", "args": {"name": "f", "payload": {"k": [1, 2, 3]}}}),
        padded_request(300),
    ],
    ids=["nested", "one-string"],
)
def test_eof_in_the_middle_of_a_frame_is_fatal_at_every_cut(data: bytes) -> None:
    for cut in range(1, len(data)):
        server = ready_server()
        server.receive_data(data[:cut])
        assert server.next_event() is NEED_DATA
        server.receive_data(b"")

        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()

        assert type(info.value.error) is ProtocolError, cut
        assert info.value.error.message == "connection closed in the middle of a frame"
        assert server.state is State.ERROR


# ---------------------------------------------------------------------------------------------
# Errors across the wire


def test_a_typed_error_round_trips_to_the_same_exception() -> None:
    pair = ConnectionPair()
    pair.handshake()

    [event] = pair.send(pair.server, ErrorResponse.of(4, TooManyRequests("x", reason="R")))

    assert event == ErrorResponse(4, {"type": "TooManyRequests", "message": "x", "reason": "R"})
    assert isinstance(event, ErrorResponse)
    exc = event.exception()
    assert type(exc) is TooManyRequests
    assert exc.message == "x"
    assert exc.details == {"reason": "R"}


def test_an_unknown_error_type_keeps_its_name() -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = {"type": "QuotaExhausted", "message": "no more", "quota": 10}

    [event] = pair.send(pair.server, ErrorResponse(None, wire))

    assert isinstance(event, ErrorResponse)
    assert event.id is None
    exc = event.exception()
    assert type(exc) is LambdadError
    assert exc.type == "QuotaExhausted"
    assert exc.details == {"quota": 10}
    assert exc.to_wire() == wire


def test_a_fatal_error_is_sent_back_before_closing() -> None:
    pair = ConnectionPair(max_frame_size=LIMIT)
    pair.handshake()
    pair.server.receive_data(padded_request(LIMIT + 1))
    with pytest.raises(RemoteProtocolError) as info:
        pair.server.next_event()

    # What the daemon does with it: one error response with no id, then close.
    [event] = pair.send(pair.server, ErrorResponse.of(None, info.value.error))

    assert isinstance(event, ErrorResponse)
    assert event.id is None
    exc = event.exception()
    assert type(exc) is FrameTooLarge
    assert exc.details == {"limit": LIMIT, "fatal": True}


def test_bad_request_reaches_the_client_as_its_error() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(msgpack.packb({"id": 3, "op": "ping"}))
    [bad] = drain(pair.server)
    assert isinstance(bad, BadRequest)

    [event] = pair.send(pair.server, bad)

    assert isinstance(event, ErrorResponse)
    assert event.id == 3
    exc = event.exception()
    assert type(exc) is ProtocolError
    assert exc.message == "the first request must be 'hello'"
