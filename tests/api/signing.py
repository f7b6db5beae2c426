"""Requests signed by botocore's own signers, as the server receives them."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambdad import sigv4
from lambdad.sigv4 import UnrecognizedClient, verify

AKID = "AKIDLAMBDADTEST00001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime.datetime(2026, 12, 1, 10, 15, 30, tzinfo=datetime.UTC)
NOW_TS = NOW.timestamp()
BASE = "http://127.0.0.1:9001"


@dataclass(frozen=True)
class Wire:
    """A request as the server receives it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str, value: str) -> Wire:
        others = tuple(h for h in self.headers if h[0] != name)
        return replace(self, headers=(*others, (name, value)))


def keys(secrets: dict[str, str] | None = None) -> Callable[[str, str], bytes]:
    table = {AKID: SECRET} if secrets is None else secrets

    def date_key(akid: str, date: str) -> bytes:
        if akid not in table:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        return sigv4.date_key(table[akid], date)

    return date_key


def signed(
    method: str = "POST",
    path_and_query: str = "/2015-03-31/functions/hello/invocations",
    body: bytes = b'{"name": "Ada"}',
    headers: dict[str, str] | None = None,
    *,
    region: str = "us-east-1",
    service: str = "lambda",
    secret: str = SECRET,
    akid: str = AKID,
    token: str | None = None,
    https: bool = False,
    unsigned_payload: bool = False,
    presign_expires: int | None = None,
) -> Wire:
    url = ("https://127.0.0.1:9001" if https else BASE) + path_and_query
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    if unsigned_payload:
        request.context["payload_signing_enabled"] = False
    creds = Credentials(akid, secret, token)
    signer: Any
    if presign_expires is not None:
        signer = SigV4QueryAuth(creds, service, region, expires=presign_expires)
    else:
        signer = SigV4Auth(creds, service, region)
    signer.add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    wire_headers = [(k.lower(), v) for k, v in prepared.headers.items()]
    if not any(k == "host" for k, _ in wire_headers):
        wire_headers.insert(0, ("host", parts.netloc))  # what the HTTP client adds
    return Wire(method, parts.path, parts.query, tuple(wire_headers), prepared.body or b"")


def check(wire: Wire, *, now: float = NOW_TS, date_key: Any = None) -> sigv4.Identity:
    return verify(
        wire.method, wire.path, wire.query, wire.headers, wire.body, date_key or keys(), now=now
    )
