"""lambdad.sigv4 against requests signed by botocore itself (SigV4Auth, SigV4QueryAuth)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from lambdad import sigv4
from lambdad.sigv4 import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from tests.api.signing import AKID, NOW_TS, Wire, check, signed

pytestmark = pytest.mark.usefixtures("frozen_botocore_clock")


@pytest.mark.parametrize(
    ("method", "path_and_query", "body"),
    [
        ("POST", "/2015-03-31/functions/hello/invocations", b'{"name": "Ada"}'),
        ("GET", "/2015-03-31/functions/", b""),
        ("GET", "/2015-03-31/functions/?Marker=abc%3D%3D&MaxItems=50", b""),
        ("GET", "/2015-03-31/functions/?MaxItems=5&FunctionVersion=ALL&Marker=x", b""),
        ("DELETE", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A0%3Afunction%3Af", b""),
        ("GET", "/2015-03-31/functions/f/aliases/live?Qualifier=%24LATEST", b""),
        ("PUT", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Ax?tagKeys=a&tagKeys=b%20c&tagKeys=~d", b""),
        ("POST", "/2015-03-31/functions/f/invocations", bytes(range(256)) * 10),
        ("GET", "/a/./b/../c//d/", b""),
        ("GET", "/unicode/%C3%A9t%C3%A9?q=%E2%9C%93&empty=&flag", b""),
    ],
)
def test_botocore_signed_requests_verify(method: str, path_and_query: str, body: bytes) -> None:
    wire = signed(method, path_and_query, body, {"Content-Type": "application/json"})
    identity = check(wire)
    assert identity == sigv4.Identity(AKID, "us-east-1", "lambda", "20261201T101530Z")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "ap-southeast-2", "local"])
def test_any_region(region: str) -> None:
    assert check(signed(region=region)).region == region


def test_a_date_header_instead_of_x_amz_date() -> None:
    wire = signed(headers={"Date": "whatever: botocore replaces it"})
    assert not any(k == "x-amz-date" for k, _ in wire.headers)
    assert check(wire).timestamp == "20261201T101530Z"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda w: replace(w, path=w.path.replace("hello", "hellp")),
        lambda w: replace(w, path=w.path + "/"),
        lambda w: replace(w, query="Qualifier=2"),
        lambda w: replace(w, query=w.query + "&extra=1"),
        lambda w: replace(w, query=w.query.replace("1", "2")),
        lambda w: replace(w, method="PUT"),
        lambda w: replace(w, body=w.body + b" "),
        lambda w: replace(w, body=b""),
        lambda w: w.header("content-type", "text/plain"),
        lambda w: w.header("host", "127.0.0.1:9002"),
        lambda w: w.header("x-amz-date", "20261201T101531Z"),
        lambda w: replace(w, headers=tuple(h for h in w.headers if h[0] != "content-type")),
        lambda w: replace(w, headers=(*w.headers, ("content-type", "application/json"))),
    ],
    ids=[
        "path",
        "trailing-slash",
        "query-replaced",
        "query-added",
        "query-value",
        "method",
        "body-appended",
        "body-dropped",
        "signed-header-value",
        "host",
        "date",
        "signed-header-removed",
        "signed-header-repeated",
    ],
)
def test_tampering_is_rejected(tamper: Callable[[Wire], Wire]) -> None:
    wire = signed(path_and_query="/2015-03-31/functions/hello/invocations?Qualifier=1",
                  headers={"Content-Type": "application/json"})  # fmt: skip
    check(wire)
    with pytest.raises(InvalidSignature) as info:
        check(tamper(wire))
    assert info.value.aws_type == "InvalidSignatureException"
    assert info.value.status == 403


def test_unsigned_headers_may_change() -> None:
    wire = signed(headers={"User-Agent": "Boto3/1.0"})
    check(wire.header("user-agent", "curl/8"))  # botocore never signs User-Agent
    check(replace(wire, headers=(*wire.headers, ("x-forwarded-for", "10.0.0.1"))))


def test_the_wrong_secret_and_an_unknown_key() -> None:
    with pytest.raises(InvalidSignature, match="does not match the signature you provided"):
        check(signed(secret="not-the-secret"))
    with pytest.raises(UnrecognizedClient, match="security token included in the request"):
        check(signed(akid="AKIDNOBODYHASTHIS000"))


def test_a_five_minute_clock_skew() -> None:
    wire = signed()
    check(wire, now=NOW_TS + 299)
    check(wire, now=NOW_TS - 299)
    with pytest.raises(InvalidSignature, match=r"Signature expired: 20261201T101530Z is now "
                       r"earlier than 20261201T101531Z \(20261201T102031Z - 5 min.\)"):  # fmt: skip
        check(wire, now=NOW_TS + 301)
    with pytest.raises(InvalidSignature, match="Signature not yet current"):
        check(wire, now=NOW_TS - 301)


def test_a_credential_for_another_service() -> None:
    with pytest.raises(InvalidSignature, match="scoped to correct service: 'lambda'"):
        check(signed(service="s3"))


def test_no_signature_at_all() -> None:
    wire = signed()
    bare = replace(wire, headers=tuple(h for h in wire.headers if h[0] != "authorization"))
    with pytest.raises(MissingAuthenticationToken, match="Missing Authentication Token"):
        check(bare)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Basic dXNlcjpwYXNz", "Unsupported Authorization type 'Basic'"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/lambda/aws4_request, "
         "SignedHeaders=host", "requires 'Signature' parameter"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20261201/lambda/aws4_request, "
         "SignedHeaders=host, Signature=00", "Credential must have the form"),
        ("AWS4-HMAC-SHA256 Credential=AKID/2026-12-01/us-east-1/lambda/aws4_request, "
         "SignedHeaders=host, Signature=00", "Credential date must be YYYYMMDD"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/lambda/aws4_request, "
         "SignedHeaders=x-amz-date;host, Signature=00", "SignedHeaders must be sorted"),
        ("AWS4-HMAC-SHA256 garbage", "malformed near 'garbage'"),
    ],
)  # fmt: skip
def test_malformed_authorization_headers(authorization: str, message: str) -> None:
    wire = signed().header("authorization", authorization)
    with pytest.raises(IncompleteSignature, match=message) as info:
        check(wire)
    assert info.value.status == 400


def test_host_must_be_signed() -> None:
    wire = signed().header(
        "authorization",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20261201/us-east-1/lambda/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
    )
    with pytest.raises(InvalidSignature, match="'Host' must be a signed header"):
        check(wire)


def test_scope_date_must_match_the_timestamp() -> None:
    wire = signed()
    auth = dict(wire.headers)["authorization"].replace("/20261201/", "/20261130/")
    with pytest.raises(InvalidSignature, match="Date in Credential scope does not match"):
        check(wire.header("authorization", auth))


def test_unsigned_payload_as_botocore_sends_it_over_https() -> None:
    wire = signed(https=True, unsigned_payload=True)
    assert dict(wire.headers)["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    check(wire)
    check(replace(wire, body=b"anything"))  # the body is outside the signature, by request
    with pytest.raises(InvalidSignature):
        check(replace(wire, path=wire.path + "x"))  # the rest is not


def test_a_declared_payload_hash_must_match_the_body() -> None:
    wire = signed(headers={"X-Amz-Content-SHA256": "0" * 64})
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256' header does not match"):
        check(wire)
    streaming = signed(headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    with pytest.raises(InvalidSignature, match="aws-chunked signed payloads"):
        check(streaming)


def test_session_tokens_are_not_lambdad_keys() -> None:
    with pytest.raises(UnrecognizedClient, match="unset AWS_SESSION_TOKEN"):
        check(signed(token="FwoGZXIvYXdzEXAMPLE"))


def test_presigned_urls() -> None:
    wire = signed("GET", "/2015-03-31/functions/hello?Qualifier=1", b"", presign_expires=60)
    assert "X-Amz-Signature=" in wire.query
    assert not any(k == "authorization" for k, _ in wire.headers)
    assert check(wire).access_key_id == AKID
    check(wire, now=NOW_TS + 60)
    with pytest.raises(InvalidSignature, match="Signature expired"):
        check(wire, now=NOW_TS + 61)
    with pytest.raises(InvalidSignature, match="does not match"):
        check(replace(wire, query=wire.query.replace("Qualifier=1", "Qualifier=2")))
    with pytest.raises(InvalidSignature, match="does not match"):
        check(replace(wire, path="/2015-03-31/functions/other"))


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sigv4.hmac, "compare_digest", spy)
    with pytest.raises(InvalidSignature):
        check(signed(secret="wrong"))
    assert len(calls) == 1 and len(calls[0][0]) == len(calls[0][1]) == 64
    with pytest.raises(InvalidSignature):  # a non-ASCII signature is compared, not a TypeError
        check(signed().header("authorization", dict(signed().headers)["authorization"][:-2] + "é"))


@pytest.mark.parametrize("stamp", ["20261301T000000Z", "20261232T000000Z", "20261201T246000Z"])
def test_an_impossible_timestamp(stamp: str) -> None:
    wire = signed().header("x-amz-date", stamp)
    auth = dict(wire.headers)["authorization"].replace("/20261201/", f"/{stamp[:8]}/")
    with pytest.raises(IncompleteSignature, match="X-Amz-Date is not a valid time"):
        check(wire.header("authorization", auth))
