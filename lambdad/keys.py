"""API keys for the Lambda HTTP API: what the daemon keeps so that it can verify SigV4.

A key is an access key id (``AKID`` + 16 characters, 20 in all, like AWS's) and a 40-character
secret access key, a name, an admin flag and a validity window. The secret is shown once, by
:meth:`KeyStore.create`, and **never stored**.

What is stored instead is only what verification needs. A SigV4 signature is an HMAC whose key
is derived from the secret *per day*: ``kDate = HMAC("AWS4" + secret, YYYYMMDD)``, then region,
service and ``aws4_request`` are chained onto it. A verifier must be able to compute the
signature, so no *one-way* hash of the secret can work (whoever can check an HMAC can make
one); but a verifier needs no more than the ``kDate`` of the days a key is valid on. So the
store keeps, per key, the ``kDate`` of every day in its window: ``valid_days`` (default 365)
from the day it was created, plus a day either side so that clock skew across midnight is
covered; 32 bytes a day, about 16 KB a key.

What that buys against someone who reads the file (a backup, a mistaken ``chmod``):

* they do not learn the secret, so they cannot use it anywhere else or after the window;
* they *can* sign lambdad requests on the remaining days of the window — exactly what a stolen
  verifier key allows in any HMAC scheme; ``lambdad keys rm`` ends that;
* a key stops working when its window ends (AWS advises rotating keys every 90 days; here it
  is enforced): create a new one.

The file is ``<state>/api-keys.json``, mode 0600 (created so, checked and fixed at load), and
replaced atomically (temp file + fsync + rename + fsync of the directory).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.registry import atomic_write
from lambdad.sigv4 import UnrecognizedClient, date_key

FILE_NAME: Final = "api-keys.json"
KEY_ID_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32: no 0/1/8/9 look-alikes
KEY_ID_RE: Final = re.compile(r"^AKID[A-Z2-7]{16}$")
NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,64}$")
DEFAULT_VALID_DAYS: Final = 365
MAX_VALID_DAYS: Final = 3660
K_DATE_BYTES: Final = 32
_UNRECOGNIZED: Final = "The security token included in the request is invalid."


@functools.lru_cache(maxsize=1024)
def _day(date: str) -> int:
    """``YYYYMMDD`` -> proleptic ordinal; ValueError if it is not a date."""
    if len(date) != 8 or not date.isdigit():
        raise ValueError(f"not a YYYYMMDD date: {date!r}")
    return datetime.date(int(date[:4]), int(date[4:6]), int(date[6:])).toordinal()


def _yyyymmdd(ordinal: int) -> str:
    return datetime.date.fromordinal(ordinal).strftime("%Y%m%d")


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: everything but the secret."""

    access_key_id: str
    name: str
    admin: bool  # may change state; otherwise Invoke and read-only operations only
    created: float  # unix time
    first_day: int  # date ordinal of the first day it verifies (the day before creation)
    date_keys: bytes  # kDate of first_day, first_day + 1, ... (32 bytes each)

    @property
    def last_day(self) -> int:
        return self.first_day + len(self.date_keys) // K_DATE_BYTES - 1

    @property
    def expires(self) -> str:
        """The last day it is valid on, ``YYYY-MM-DD`` (UTC)."""
        return datetime.date.fromordinal(self.last_day).isoformat()

    def date_key(self, date: str) -> bytes | None:
        """``kDate`` for ``YYYYMMDD``, or None outside the window (or not a date)."""
        try:
            index = _day(date) - self.first_day
        except ValueError:
            return None
        if not 0 <= index <= self.last_day - self.first_day:
            return None
        return self.date_keys[index * K_DATE_BYTES : (index + 1) * K_DATE_BYTES]

    def describe(self) -> dict[str, Any]:
        """The public view (``keys ls``): never any key material."""
        return {
            "AccessKeyId": self.access_key_id,
            "Name": self.name,
            "Admin": self.admin,
            "Created": datetime.datetime.fromtimestamp(self.created, datetime.UTC).isoformat(),
            "Expires": self.expires,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_key_id": self.access_key_id,
            "name": self.name,
            "admin": self.admin,
            "created": self.created,
            "first_day": _yyyymmdd(self.first_day),
            "date_keys": base64.b64encode(self.date_keys).decode(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiKey:
        key_id = str(d["access_key_id"])
        if not KEY_ID_RE.fullmatch(key_id):
            raise ValueError(f"bad access key id {key_id!r}")
        material = base64.b64decode(d["date_keys"], validate=True)
        if not material or len(material) % K_DATE_BYTES:
            raise ValueError(f"key {key_id}: date keys are not a whole number of days")
        admin = d["admin"]
        if not isinstance(admin, bool):
            raise ValueError(f"key {key_id}: admin must be true or false")
        return cls(
            key_id, str(d["name"]), admin, float(d["created"]), _day(d["first_day"]), material
        )


@dataclass(frozen=True)
class NewKey:
    """What :meth:`KeyStore.create` returns: the stored key and its secret, shown once."""

    key: ApiKey
    secret_access_key: str

    def credentials(self) -> dict[str, Any]:
        """What ``lambdad keys create`` prints."""
        return {**self.key.describe(), "SecretAccessKey": self.secret_access_key}


class KeyStore:
    """The daemon's API keys, loaded at start, written through on every change.

    Raises (constructor):
        ValueError: the file exists but cannot be read as a key store; the message names it.
    """

    def __init__(self, state_dir: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self.clock = clock
        self.keys: dict[str, ApiKey] = {}
        self.warnings: list[str] = []
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(self.path, 0o600)
            self.warnings.append(
                f"{self.path} was readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                "now 0600. Consider its keys leaked: remove them and create new ones."
            )
        try:
            with open(self.path, "rb") as f:
                doc = json.load(f)
            keys = [ApiKey.from_dict(k) for k in doc["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: not a valid key store: {exc}") from exc
        self.keys = {k.access_key_id: k for k in keys}

    def _save(self) -> None:
        doc = {"keys": [k.to_dict() for k in self.list()]}
        atomic_write(self.path, json.dumps(doc, indent=1).encode())  # mkstemp: born 0600
        os.chmod(self.path, 0o600)

    def list(self) -> list[ApiKey]:
        return sorted(self.keys.values(), key=lambda k: (k.created, k.name))

    def create(
        self, *, name: str | None = None, admin: bool = False, valid_days: int = DEFAULT_VALID_DAYS
    ) -> NewKey:
        """Make a new key; the secret is in the result and nowhere else.

        Raises:
            InvalidParameterValue: a bad or duplicate name, or ``valid_days`` out of range.
        """
        if (
            isinstance(valid_days, bool)
            or not isinstance(valid_days, int)
            or not (1 <= valid_days <= MAX_VALID_DAYS)
        ):
            raise InvalidParameterValue(
                f"valid_days must be an integer from 1 to {MAX_VALID_DAYS}, got {valid_days!r}",
                field="valid_days",
            )
        while True:
            key_id = "AKID" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
            if key_id not in self.keys:
                break
        if name is None:
            name = key_id
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidParameterValue(
                f"key name must match {NAME_RE.pattern[1:-1]}, got {name!r}", field="name"
            )
        if any(k.name == name for k in self.keys.values()):
            raise InvalidParameterValue(f"a key named {name!r} exists already", field="name")
        secret = base64.b64encode(secrets.token_bytes(30)).decode()  # 40 characters
        now = self.clock()
        first = datetime.datetime.fromtimestamp(now, datetime.UTC).date().toordinal() - 1
        material = b"".join(
            date_key(secret, _yyyymmdd(day)) for day in range(first, first + valid_days + 2)
        )
        key = ApiKey(key_id, name, bool(admin), now, first, material)
        self.keys[key_id] = key
        try:
            self._save()
        except BaseException:
            del self.keys[key_id]
            raise
        return NewKey(key, secret)

    def find(self, id_or_name: str) -> ApiKey:
        """The key with this access key id or name. Raises ResourceNotFound."""
        key = self.keys.get(id_or_name)
        if key is None:
            key = next((k for k in self.keys.values() if k.name == id_or_name), None)
        if key is None:
            raise ResourceNotFound(f"no API key {id_or_name!r}", name=id_or_name)
        return key

    def remove(self, id_or_name: str) -> ApiKey:
        """Delete a key by id or name; requests signed with it fail from now on."""
        key = self.find(id_or_name)
        del self.keys[key.access_key_id]
        try:
            self._save()
        except BaseException:
            self.keys[key.access_key_id] = key
            raise
        return key

    def lookup(self, access_key_id: str) -> ApiKey | None:
        return self.keys.get(access_key_id)

    def date_key(self, access_key_id: str, date: str) -> bytes:
        """The verifier's key source (:data:`lambdad.sigv4.DateKey`).

        Raises:
            UnrecognizedClient: no such key, or ``date`` outside its window.
        """
        key = self.keys.get(access_key_id)
        if key is None:
            raise UnrecognizedClient(_UNRECOGNIZED)
        k_date = key.date_key(date)
        if k_date is None:
            raise UnrecognizedClient(
                f"{_UNRECOGNIZED} (key {access_key_id} is valid from "
                f"{datetime.date.fromordinal(key.first_day).isoformat()} to {key.expires}; "
                f"the request is dated {date})"
            )
        return k_date
