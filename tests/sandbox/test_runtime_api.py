"""The Runtime API's HTTP/1.1 request parser (sans-IO, pure logic) and its error objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import runtime_api
from sandbox.runtime_api import HttpError, Request, RequestParser


def parse_all(data: bytes, cap: int = 1024, step: int = 0) -> list[Request]:
    parser = RequestParser(body_cap=cap)
    out = []
    chunks = [data] if step == 0 else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        parser.feed(chunk)
        while (req := parser.next_request()) is not None:
            out.append(req)
    return out


def test_get_without_body_and_keep_alive() -> None:
    (req,) = parse_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.method, req.target, req.body, req.keep_alive) == (
        "GET", "/2018-06-01/runtime/invocation/next", b"", True
    )  # fmt: skip
    assert req.headers["host"] == "x"


def test_content_length_body_byte_by_byte_and_pipelined() -> None:
    one = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    two = b"POST /b HTTP/1.0\r\nContent-Length: 2\r\n\r\nok"
    reqs = parse_all(one + two, step=1)
    assert [(r.target, r.body, r.keep_alive) for r in reqs] == [
        ("/a", b"hello", True),
        ("/b", b"ok", False),
    ]


def test_chunked_body_with_extensions_and_trailers() -> None:
    data = (
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    for step in (0, 1, 3):
        (req,) = parse_all(data, step=step)
        assert req.body == b"wikipedia"


def test_body_over_the_cap_is_counted_not_kept_and_the_stream_stays_in_step() -> None:
    big = b"x" * 3000
    data = b"POST /r HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + big + b"GET /n HTTP/1.1\r\n\r\n"
    first, second = parse_all(data, cap=1000, step=512)
    assert first.too_large and first.body == b"" and first.body_size == 3000
    assert second.target == "/n" and not second.too_large


def test_expect_continue_is_flagged_until_the_body_comes() -> None:
    parser = RequestParser()
    parser.feed(b"POST /r HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert parser.next_request() is None
    assert parser.expects_continue and parser.declared_length() == 3
    parser.feed(b"abc")
    req = parser.next_request()
    assert req is not None and req.body == b"abc" and not parser.expects_continue


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / FTP/1.0\r\n\r\n", 400),
        (b"GET /  HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (70 * 1024), 431),
    ],
)
def test_malformed_requests_get_a_precise_status(data: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_all(data)
    assert info.value.status == status


@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    parser = RequestParser(body_cap=512)
    parser.feed(data)
    try:
        for _ in range(100):
            if parser.next_request() is None:
                break
    except HttpError as exc:
        assert 400 <= exc.status < 600
    assert len(parser.body) <= 512


def req(body: bytes, **headers: str) -> Request:
    return Request("POST", "/", {k.replace("_", "-").lower(): v for k, v in headers.items()}, body)


def test_error_object_from_a_json_body_keeps_nodes_trace() -> None:
    body = (
        b'{"errorType":"TypeError","errorMessage":"x is undefined",'
        b'"trace":["TypeError: x","  at f"]}'
    )
    error = runtime_api.runtime_error(req(body), "Unhandled")
    assert error["errorType"] == "TypeError" and error["errorMessage"] == "x is undefined"
    assert error["trace"] == ["TypeError: x", "  at f"]


def test_error_object_from_the_header_when_the_body_says_nothing() -> None:
    error = runtime_api.runtime_error(
        req(b"", Lambda_Runtime_Function_Error_Type="Runtime.Custom"), "Unhandled"
    )
    assert error == {"errorMessage": "", "errorType": "Runtime.Custom", "stackTrace": []}
    text = runtime_api.runtime_error(req(b"not json"), "Unhandled")
    assert text["errorType"] == "Unhandled" and text["errorMessage"] == "not json"


def test_trace_header_has_xrays_shape() -> None:
    import re

    assert re.fullmatch(
        r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", runtime_api.trace_header()
    )
