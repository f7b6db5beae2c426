"""sandbox.messages: every message survives encode -> decode, and what a sandbox may send is
validated (it runs untrusted code)."""

from __future__ import annotations

import os
import socket
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import messages as m

EXAMPLES: list[m.Message] = [
    m.ZygoteConfig("python3", "/var/lib/lambdad/rootfs", "lambdad-abc", ("seccomp",)),
    m.ZygoteReady(pid=42, missing=("egress: needs root",), cgroup_version=1),
    m.ZygoteReady(pid=42, missing=(), cgroup_version=None),
    m.Spawn(count=3, source="fork"),
    m.Spawned(id="python3-1-1", pid=7, uid=200001, cgroup="python3-1-1", source="pool"),
    m.Spawned(id="python3-1-2", pid=8, uid=0, cgroup=None, source="fork"),
    m.SpawnFailed("fork: out of memory"),
    m.Exited(id="python3-1-1", pid=7, status=9, memory_peak=1 << 20, oom_kills=0),
    m.Ready(phases={"fork": 600, "mounts": 300}),
    m.Init(
        function={"name": "f", "version": "1", "handler": "app.handler", "tmp_mb": 512},
        code_path="/var/lib/lambdad/code/ab",
        log_stream="2026/12/01/[1]abc",
        pids_max=64,
        egress={"address": "10.0.0.2/30", "gateway": "10.0.0.1"},
        region="eu-west-3",
        initialization_type="provisioned-concurrency",
    ),
    m.Init(function={"name": "f"}, code_path="/c", log_stream="s"),
    m.InitDone(phases={"import": 120}, init_us=900),
    m.InitError(
        error={
            "errorMessage": "no module",
            "errorType": "Runtime.ImportModuleError",
            "stackTrace": ["  File x"],
        },
        phases={},
        init_us=5,
    ),
    m.Invoke(request_id="r-1", payload=b'{"a": 1}', timeout_ms=3000),
    m.Invoke(
        request_id="r-2",
        payload=b"{}",
        timeout_ms=3000,
        trace_id="Root=1-6b0e9dcb-ae2d79d2bb3951ce5bd9c02e;Parent=a25b544a682b3da4;Sampled=1",
        client_context="eyJjdXN0b20iOiB7fX0=",
    ),
    m.Result(result=b'"ok"', duration_us=12.5, maxrss_kb=2048),
    m.Result(
        error={"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []},
        duration_us=3.0,
        maxrss_kb=1,
    ),
    m.Result(bad_payload="Could not parse request body into json"),
    m.Retire(),
    # function templates (sandbox/template.py)
    m.Init(function={"name": "f"}, code_path="/c", log_stream="s", template=True),
    m.Fork(id="python3-1-2-c1", tmp_mb=1024),
    m.Forked(id="python3-1-2-c1", pid=12),
    m.Forked(id="python3-1-2-c2", pid=0, error="fork: Resource temporarily unavailable"),
    m.CopyExited(pid=12, status=7 << 8),
    m.Restore(),
    m.Restored(phases={"mounts": 300, "seccomp": 40}, restore_us=2100),
]


_INIT = {"t": "init", "function": {"name": "f"}, "code_path": "/c", "log_stream": "s"}
_INVOKE = {"t": "invoke", "request_id": "r", "payload": b"{}", "timeout_ms": 10}


def _round_trip(msg: m.Message) -> m.Message:
    return m.decode(msgpack.unpackb(m.encode(msg), raw=False))


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_every_message_round_trips(msg: m.Message) -> None:
    assert _round_trip(msg) == msg


def test_every_kind_has_an_example_and_a_distinct_name() -> None:
    assert {type(msg) for msg in EXAMPLES} == set(m.KIND)
    assert len(set(m.KIND.values())) == len(m.KIND)


def test_the_fast_invoke_encoding_is_the_general_one() -> None:
    msg = m.Invoke(request_id="r", payload=b"{}", timeout_ms=10)
    assert m.encode_invoke("r", b"{}", 10) == m.encode(msg)
    traced = m.Invoke("r", b"{}", 10, trace_id="Root=1-a;Sampled=0", client_context="e30=")
    assert m.encode_invoke("r", b"{}", 10, "Root=1-a;Sampled=0", "e30=") == m.encode(traced)


@given(
    request_id=st.text(max_size=40),
    payload=st.binary(max_size=200),
    timeout_ms=st.integers(min_value=0, max_value=900_000),
)
def test_invoke_round_trips_for_any_values(
    request_id: str, payload: bytes, timeout_ms: int
) -> None:
    msg = m.Invoke(request_id, payload, timeout_ms)
    assert _round_trip(msg) == msg


@pytest.mark.parametrize(
    "raw, problem",
    [
        ([1, 2], "not a map"),
        ({"t": "x"}, "unknown message kind"),
        ({"no": "kind"}, "unknown message kind"),
        ({"t": "result", "result": 5, "duration_us": 1}, "result is not bytes"),
        ({"t": "result", "result": b"1", "duration_us": "abc"}, "duration_us"),
        ({"t": "result", "result": b"1", "duration_us": float("nan")}, "out of range"),
        ({"t": "result", "result": b"1", "duration_us": True}, "duration_us"),
        ({"t": "result", "result": b"1", "maxrss_kb": -1}, "maxrss_kb"),
        ({"t": "result", "error": 7}, "error is not a map"),
        ({"t": "result", "error": {"stackTrace": [1]}}, "stackTrace"),
        ({"t": "ready", "phases": {"fork": "x"}}, "phases"),
        ({"t": "ready", "phases": {str(i): i for i in range(100)}}, "phases"),
        ({"t": "init-done", "phases": {}, "init_us": -5}, "init_us"),
        ({"t": "spawned", "id": "x", "pid": "7", "uid": 0, "source": "pool"}, "pid"),
        # What the sandbox receives is checked as strictly (the daemon never sends these).
        ({**_INIT, "region": "eu west"}, "region"),
        ({**_INIT, "region": 3}, "region"),
        ({**_INIT, "initialization_type": "sometimes"}, "initialization_type"),
        ({**_INVOKE, "trace_id": "x" * 257}, "trace_id"),
        ({**_INVOKE, "trace_id": "Root=1\nSampled=1"}, "trace_id"),
        ({**_INVOKE, "client_context": 5}, "client_context"),
        ({**_INVOKE, "client_context": "e" * 3584}, "client_context"),
    ],
)
def test_what_a_sandbox_sends_is_validated(raw: Any, problem: str) -> None:
    with pytest.raises(m.MessageError, match=problem):
        m.decode(raw)


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize(
    "raw",
    [
        {"t": _nested(1000, None)},
        {"t": "init-error", "error": {"errorMessage": _nested(1000, "x")}},
        {"t": "result", "bad_payload": _nested(1000, 1)},
        {"t": "spawn-failed", "message": _nested(1000, 1)},
    ],
    ids=["kind", "init-error", "bad-payload", "spawn-failed"],
)
def test_a_field_too_deep_to_print_is_a_message_error(raw: Any) -> None:
    # str() of a list nested 1,000 deep raises RecursionError: it must not escape decode
    # (issue 12 point 11: it escaped the daemon's cold start and leaked the sandbox).
    with pytest.raises(m.MessageError):
        m.decode(raw)


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.sampled_from(
    ["t", "phases", "init_us", "error", "result", "duration_us", "maxrss_kb", "bad_payload",
     "function", "code_path", "log_stream", "request_id", "payload", "timeout_ms", "id", "pid"]
)  # fmt: skip


@given(
    kind=st.sampled_from(sorted(m.KIND.values())) | _values,
    fields=st.dictionaries(_fields, _values, max_size=6),
)
def test_decode_raises_nothing_but_message_error(kind: Any, fields: dict[str, Any]) -> None:
    try:
        msg = m.decode({**fields, "t": kind})
    except m.MessageError:
        return
    assert type(msg) in m.KIND


def test_an_error_object_is_bounded() -> None:
    huge = {
        "errorMessage": "x" * 10**6,
        "errorType": "T" * 10**4,
        "stackTrace": ["f" * 10**5] * 1000,
    }
    raw = {"t": "result", "error": huge}
    result = m.decode(raw)
    assert isinstance(result, m.Result) and result.error is not None
    assert len(result.error["errorMessage"]) == m.MAX_ERROR_MESSAGE
    assert len(result.error["errorType"]) == m.MAX_ERROR_TYPE
    assert len(result.error["stackTrace"]) == m.MAX_FRAMES
    assert {len(t) for t in result.error["stackTrace"]} == {m.MAX_FRAME_CHARS}


def test_expect_names_what_came_instead() -> None:
    with pytest.raises(m.MessageError, match="expected 'result', got 'ready'"):
        m.expect({"t": "ready", "phases": {}}, m.Result)


def test_stream_channel_carries_messages_and_fds() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = socket.socketpair()
    try:
        init = EXAMPLES[9]
        m.send_with_fds(a, init, [r.fileno()])
        a.sendall(m.encode_invoke("r", b"1", 5))
        chan = m.StreamChannel(b)
        got, fds = chan.recv()
        assert got == init and len(fds) == 1
        socket.socket(fileno=fds[0]).close()
        got, fds = chan.recv(with_fds=False)
        assert got == m.Invoke("r", b"1", 5) and fds == []
        a.close()
        assert chan.recv() == (None, [])
    finally:
        for s in (a, b, r, w):
            s.close()


def test_a_bad_control_datagram_is_an_error_and_its_fds_are_closed() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = socket.socketpair()
    try:
        socket.send_fds(a, [msgpack.packb({"t": "spawned", "id": 5})], [r.fileno()])
        open_fds = len(os.listdir("/proc/self/fd"))
        with pytest.raises(m.MessageError, match="unreadable control message"):
            m.recv_datagram(b)
        assert len(os.listdir("/proc/self/fd")) == open_fds  # the passed fd did not leak
        a.send(m.encode(m.Spawn(2)))
        assert m.recv_datagram(b) == (m.Spawn(2), [])
        a.close()
        assert m.recv_datagram(b) == (None, [])
    finally:
        for s in (a, b, r, w):
            s.close()
