"""AWS Signature Version 4 verification: pure functions, no I/O, no clock of its own.

The server side of what botocore's ``SigV4Auth`` / ``SigV4QueryAuth`` do: rebuild the canonical
request from the bytes received, derive the signing key from the caller's key, and compare
signatures in constant time. Both forms are accepted:

* the ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``
  header (every SDK and the CLI);
* a presigned URL (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` in the query), valid from
  its timestamp for ``X-Amz-Expires`` seconds (at most 7 days). Outside S3 the payload hash
  of a presigned request is still the body's SHA-256 (botocore's ``SigV4QueryAuth``).

The payload hash is the SHA-256 of the body unless ``X-Amz-Content-SHA256`` says otherwise:
a hex digest there must match the body; ``UNSIGNED-PAYLOAD`` (what botocore sends over HTTPS
when payload signing is off) and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` leave the body out of
the signature. ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (signed aws-chunked bodies, which botocore
only sends to S3) is refused with a message saying so. A body that arrived with
``Transfer-Encoding: chunked`` is verified as the de-chunked bytes, which is what the client
hashed.

Keys are looked up through a callable ``date_key(access_key_id, yyyymmdd) -> bytes`` that
returns ``kDate = HMAC("AWS4" + secret, yyyymmdd)`` or raises :class:`UnrecognizedClient`, so
the key store never has to hand the secret itself to the verifier (see ``lambdad/keys.py``).

Errors carry the exception name and HTTP status AWS uses, so a front can answer exactly as AWS
does and botocore's error parsing sees the code it expects.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final
from urllib.parse import quote, unquote

ALGORITHM: Final = "AWS4-HMAC-SHA256"
MAX_SKEW_S: Final = 300  # AWS's 5 minutes, either way
MAX_PRESIGN_EXPIRES_S: Final = 7 * 24 * 3600
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
UNSIGNED_PAYLOADS: Final = frozenset({UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_SAFE: Final = "-_.~"  # RFC 3986 unreserved characters besides letters and digits
_TIMESTAMP_RE: Final = re.compile(r"^\d{8}T\d{6}Z$")
_HEX64_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

DateKey = Callable[[str, str], bytes]


class SignatureError(Exception):
    """A request that does not authenticate. ``aws_type`` and ``status`` are what AWS sends."""

    aws_type: ClassVar[str] = "InvalidSignatureException"
    status: ClassVar[int] = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSignature(SignatureError):
    """Wrong signature, tampered request, bad scope, or a timestamp outside the 5 minutes."""

    aws_type = "InvalidSignatureException"


class UnrecognizedClient(SignatureError):
    """The access key id is not one the daemon holds (or it expired)."""

    aws_type = "UnrecognizedClientException"


class IncompleteSignature(SignatureError):
    """The Authorization header or the presigned query is malformed or lacks a part."""

    aws_type = "IncompleteSignatureException"
    status = 400


class MissingAuthenticationToken(SignatureError):
    """The request carries no signature at all."""

    aws_type = "MissingAuthenticationTokenException"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed a verified request, and for what scope."""

    access_key_id: str
    region: str
    service: str
    timestamp: str  # the signed ISO 8601 basic timestamp, e.g. 20261201T101500Z


@dataclass(frozen=True, slots=True)
class _Parts:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str
    presigned: bool
    expires_s: int


def date_key(secret_access_key: str, date: str) -> bytes:
    """``kDate``: the first step of the signing-key derivation, for one ``YYYYMMDD``."""
    return hmac.digest(f"AWS4{secret_access_key}".encode(), date.encode(), "sha256")


@functools.lru_cache(maxsize=1024)
def signing_key(k_date: bytes, region: str, service: str) -> bytes:
    """``kSigning`` from ``kDate``: HMAC chained over region, service and ``aws4_request``.

    Cached: a client signs every request of a day with the same key.
    """
    k_region = hmac.digest(k_date, region.encode(), "sha256")
    k_service = hmac.digest(k_region, service.encode(), "sha256")
    return hmac.digest(k_service, b"aws4_request", "sha256")


def _header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def _one_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    values = _header_values(headers, name)
    return ",".join(values) if values else None


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a non-S3 service: dot segments and empty segments removed, then
    every segment URI-encoded once more (so ``%3A`` on the wire becomes ``%253A``)."""
    segments = [s for s in raw_path.split("/") if s and s != "."]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    path = "/" + "/".join(out)
    if raw_path.endswith("/") and out:
        path += "/"
    return quote(path, safe="/~")


def _pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append(
            (unquote(key, errors="surrogateescape"), unquote(value, errors="surrogateescape"))
        )
    return pairs


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    """Decoded ``(key, value)`` pairs re-encoded strictly (RFC 3986) and sorted."""
    encoded = sorted(
        (
            quote(k, safe=_SAFE, errors="surrogateescape"),
            quote(v, safe=_SAFE, errors="surrogateescape"),
        )
        for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _trim(value: str) -> str:
    return " ".join(value.split())


def canonical_request(
    method: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The canonical request string. Raises :class:`InvalidSignature` for a signed header
    that is not in the request."""
    lines = []
    for name in signed_headers:
        values = _header_values(headers, name)
        if not values:
            raise InvalidSignature(f"signed header {name!r} is not in the request")
        lines.append(f"{name}:{','.join(_trim(v) for v in values)}\n")
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query_pairs),
            "".join(lines),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != "aws4_request":
        raise IncompleteSignature(
            "Credential must have the form <AccessKeyId>/<YYYYMMDD>/<region>/<service>/"
            f"aws4_request, got {credential!r}"
        )
    if not re.fullmatch(r"\d{8}", parts[1]):
        raise IncompleteSignature(f"Credential date must be YYYYMMDD, got {parts[1]!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _signed_header_list(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(names) or list(names) != sorted(set(names)) or value != value.lower():
        raise IncompleteSignature(
            f"SignedHeaders must be sorted, unique, lower-case names separated by ';': {value!r}"
        )
    if "host" not in names:
        raise InvalidSignature("'Host' must be a signed header")
    return names


def _from_header(auth: str, headers: Sequence[tuple[str, str]]) -> _Parts:
    algorithm, _, rest = auth.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported Authorization type {algorithm!r}: only {ALGORITHM} is accepted"
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or key in fields:
            raise IncompleteSignature(f"Authorization header is malformed near {item.strip()!r}")
        fields[key] = value
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise IncompleteSignature(
                f"Authorization header requires '{required}' parameter. Authorization={auth}"
            )
    akid, date, region, service = _parse_credential(fields["Credential"])
    timestamp = _one_header(headers, "x-amz-date")
    if timestamp is None:
        http_date = _one_header(headers, "date")
        if http_date is None:
            raise IncompleteSignature(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        parsed = email.utils.parsedate_tz(http_date)
        if parsed is None:
            raise IncompleteSignature(f"Date header is not an HTTP date: {http_date!r}")
        timestamp = time.strftime(
            "%Y%m%dT%H%M%SZ", time.gmtime(calendar.timegm(parsed[:9]) - (parsed[9] or 0))
        )
    return _Parts(
        akid,
        date,
        region,
        service,
        _signed_header_list(fields["SignedHeaders"]),
        fields["Signature"],
        timestamp,
        presigned=False,
        expires_s=0,
    )


def _from_query(pairs: list[tuple[str, str]]) -> _Parts:
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("X-Amz-"):
            if key in params:
                raise IncompleteSignature(f"query parameter {key} is repeated")
            params[key] = value
    missing = [
        k
        for k in (
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        )
        if k not in params
    ]
    if missing:
        raise IncompleteSignature(f"presigned URL lacks {', '.join(missing)}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(f"X-Amz-Algorithm must be {ALGORITHM}")
    akid, date, region, service = _parse_credential(params["X-Amz-Credential"])
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGN_EXPIRES_S:
        raise IncompleteSignature(
            f"X-Amz-Expires must be an integer from 1 to {MAX_PRESIGN_EXPIRES_S}, got {expires!r}"
        )
    return _Parts(
        akid,
        date,
        region,
        service,
        _signed_header_list(params["X-Amz-SignedHeaders"]),
        params["X-Amz-Signature"],
        params["X-Amz-Date"],
        presigned=True,
        expires_s=int(expires),
    )


def _stamp(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


@functools.lru_cache(maxsize=4096)
def _epoch(timestamp: str) -> int:
    """``YYYYMMDDTHHMMSSZ`` (already matched by _TIMESTAMP_RE) -> Unix time.

    Raises IncompleteSignature for fields out of range (month 13, second 61, ...).
    """
    try:
        fields = (
            int(timestamp[0:4]),
            int(timestamp[4:6]),
            int(timestamp[6:8]),
            int(timestamp[9:11]),
            int(timestamp[11:13]),
            int(timestamp[13:15]),
        )
        datetime.datetime(*fields)  # validates the ranges
    except ValueError:
        raise IncompleteSignature(f"X-Amz-Date is not a valid time: {timestamp!r}") from None
    return calendar.timegm((*fields, 0, 0, 0))


def _check_time(parts: _Parts, now: float) -> None:
    if not _TIMESTAMP_RE.fullmatch(parts.timestamp):
        raise IncompleteSignature(
            f"X-Amz-Date must be an ISO 8601 basic timestamp (YYYYMMDDTHHMMSSZ), "
            f"got {parts.timestamp!r}"
        )
    if parts.timestamp[:8] != parts.date:
        raise InvalidSignature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: {parts.date!r} != {parts.timestamp[:8]!r}, from {parts.timestamp!r}"
        )
    signed = _epoch(parts.timestamp)
    if signed > now + MAX_SKEW_S:
        raise InvalidSignature(
            f"Signature not yet current: {parts.timestamp} is still later than "
            f"{_stamp(now + MAX_SKEW_S)} ({_stamp(now)} + 5 min.)"
        )
    if parts.presigned:
        if now > signed + parts.expires_s:
            raise InvalidSignature(
                f"Signature expired: {parts.timestamp} + {parts.expires_s} s is earlier than "
                f"{_stamp(now)}"
            )
    elif signed < now - MAX_SKEW_S:
        raise InvalidSignature(
            f"Signature expired: {parts.timestamp} is now earlier than "
            f"{_stamp(now - MAX_SKEW_S)} ({_stamp(now)} - 5 min.)"
        )


def _payload_hash(headers: Sequence[tuple[str, str]], body: bytes) -> str:
    declared = _one_header(headers, "x-amz-content-sha256")
    if declared is None:
        return hashlib.sha256(body).hexdigest()
    if declared in UNSIGNED_PAYLOADS:
        return declared
    if declared.startswith("STREAMING-"):
        raise InvalidSignature(
            f"X-Amz-Content-SHA256 {declared} (aws-chunked signed payloads, an S3 feature) is "
            "not supported: sign the whole body, or send UNSIGNED-PAYLOAD over HTTPS"
        )
    if not _HEX64_RE.fullmatch(declared):
        raise InvalidSignature(f"X-Amz-Content-SHA256 is not a SHA-256 hex digest: {declared!r}")
    actual = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(actual, declared):
        raise InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return declared


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    date_key: DateKey,
    *,
    service: str = "lambda",
    now: float | None = None,
) -> Identity:
    """Verify one request's SigV4 signature.

    Args:
        method, raw_path, raw_query: as received (path and query still percent-encoded).
        headers: ``(lower-case name, value)`` pairs as received, repeats included.
        body: the request body (de-chunked).
        date_key: ``(access_key_id, YYYYMMDD) -> kDate``; raises :class:`UnrecognizedClient`.
        service: the only service a credential may be scoped to.
        now: the current Unix time (default ``time.time()``).

    Returns:
        The :class:`Identity` that signed it.

    Raises:
        MissingAuthenticationToken: no Authorization header and no presigned query.
        IncompleteSignature: a malformed header or query.
        UnrecognizedClient: from ``date_key``; also for a session token, which lambdad keys
            never have.
        InvalidSignature: wrong signature, tampering, wrong service, or outside the time
            window.
    """
    now = time.time() if now is None else now
    auth = _one_header(headers, "authorization")
    pairs = _pairs(raw_query)
    if auth is not None:
        parts = _from_header(auth, headers)
        query_for_signature = pairs
    elif any(k == "X-Amz-Algorithm" for k, _ in pairs):
        parts = _from_query(pairs)
        query_for_signature = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    else:
        raise MissingAuthenticationToken("Missing Authentication Token")
    if parts.service != service:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{service}'. (got '{parts.service}')"
        )
    _check_time(parts, now)
    k_date = date_key(parts.access_key_id, parts.date)  # raises UnrecognizedClient
    if _one_header(headers, "x-amz-security-token") is not None or any(
        k == "X-Amz-Security-Token" for k, _ in pairs
    ):
        raise UnrecognizedClient(
            "The security token included in the request is invalid: lambdad keys have no "
            "session tokens (unset AWS_SESSION_TOKEN)"
        )
    payload = _payload_hash(headers, body)
    canonical = canonical_request(
        method, raw_path, query_for_signature, headers, parts.signed_headers, payload
    )
    scope = f"{parts.date}/{parts.region}/{parts.service}/aws4_request"
    key = signing_key(k_date, parts.region, parts.service)
    expected = hmac.new(key, string_to_sign(parts.timestamp, scope, canonical).encode(), "sha256")
    provided = parts.signature.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(expected.hexdigest().encode(), provided):
        raise InvalidSignature(_MISMATCH)
    return Identity(parts.access_key_id, parts.region, parts.service, parts.timestamp)
