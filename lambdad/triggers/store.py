"""Trigger records: what a trigger is, its settings checked per kind, and their persistence.

One JSON file per trigger under ``STATE/triggers/``, written atomically (temp file + fsync +
rename + fsync of the directory, :func:`lambdad.registry.atomic_write`) and read back at start.
A damaged file is reported and skipped, never fatal.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from lambdad.registry import atomic_write, load_records
from lambdad.triggers import expressions, routes

KINDS: Final = ("http", "url", "schedule", "s3")
NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_INPUT_BYTES: Final = 256 * 1024  # a schedule's input is an async payload (Lambda's limit)

# Each kind's settings: name -> default. An unknown setting is refused.
CORS_DEFAULTS: Final[dict[str, Any]] = {
    "allow_origins": [],
    "allow_methods": [],
    "allow_headers": [],
    "expose_headers": [],
    "max_age": 0,
    "allow_credentials": False,
}
DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    # api: "http" = an HTTP API (SAM HttpApi), "rest" = a REST API (SAM Api: format 1.0 and
    # REST's error answers).
    "http": {"route": None, "payload_format": "2.0", "api": "http", "cors": None},
    "url": {"auth_type": "NONE", "cors": None},
    "schedule": {
        "expression": None,
        "timezone": "UTC",
        "input": None,
        "catch_up": "none",
        "overlap": "allow",
    },
    # s3: object events of a lambdad bucket (docs/triggers-buckets.md); push = the records
    # that an S3-compatible server (MinIO, Ceph RGW) POSTs to the gateway, with a secret.
    "s3": {
        "bucket": None,
        "events": ["s3:ObjectCreated:*"],
        "prefix": "",
        "suffix": "",
        "push": False,
        "secret": None,
    },
}
S3_EVENTS: Final = (
    "s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete",
)  # fmt: skip


@dataclass
class Trigger:
    """A persisted trigger. ``last_fire`` (schedules): the last scheduled time delivered."""

    name: str
    kind: str
    function: str
    qualifier: str | None
    settings: dict[str, Any]
    enabled: bool = True
    created: float = 0.0
    uid: str = ""  # fixed at creation: a re-created trigger of the same name is another one
    disabled_reason: str | None = None
    last_fire: float | None = None
    removed: bool = False  # not persisted: set once its record is deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "function": self.function,
            "qualifier": self.qualifier,
            "settings": self.settings,
            "enabled": self.enabled,
            "created": self.created,
            "uid": self.uid,
            "disabled_reason": self.disabled_reason,
            "last_fire": self.last_fire,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trigger:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            function=str(d["function"]),
            qualifier=d.get("qualifier"),
            settings=dict(d["settings"]),
            enabled=bool(d.get("enabled", True)),
            created=float(d.get("created", 0.0)),
            uid=str(d.get("uid") or ""),
            disabled_reason=d.get("disabled_reason"),
            last_fire=d.get("last_fire"),
        )

    @property
    def target(self) -> str:
        return self.function if self.qualifier is None else f"{self.function}:{self.qualifier}"


@dataclass
class Counters:
    """Live counters of one trigger (since the daemon started)."""

    received: int = 0  # requests / fires seen
    invoked: int = 0  # invocations made (sync) or events stored (schedules)
    failed: int = 0  # function errors, throttles, refusals
    last_error: str | None = None
    lag_ms: float | None = None  # schedules: fire time minus scheduled time, last fire
    lags_ms: list[float] = field(default_factory=list)  # the last 1000, for percentiles

    def lag_percentile(self, q: float) -> float | None:
        if not self.lags_ms:
            return None
        ordered = sorted(self.lags_ms)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    def to_wire(self) -> dict[str, Any]:
        return {
            "lag_p50_ms": self.lag_percentile(0.50),
            "lag_p99_ms": self.lag_percentile(0.99),
            "received": self.received,
            "invoked": self.invoked,
            "failed": self.failed,
            "last_error": self.last_error,
            "lag_ms": self.lag_ms,
        }


def check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise InvalidParameterValue(
            f"{what} must match [A-Za-z0-9_-]{{1,64}}, got {name!r}", field=what
        )
    return name


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterValue(f"{what} must be a list of strings", field=what)
    return list(value)


def check_cors(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidParameterValue("cors must be a map", field="cors")
    unknown = set(value) - set(CORS_DEFAULTS)
    if unknown:
        raise InvalidParameterValue(f"cors: unknown setting(s) {sorted(unknown)}", field="cors")
    cors = {**CORS_DEFAULTS, **value}
    for key in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
        cors[key] = _strings(cors[key], f"cors.{key}")
    if (
        isinstance(cors["max_age"], bool)
        or not isinstance(cors["max_age"], int)
        or not (0 <= cors["max_age"] <= 86400)
    ):
        raise InvalidParameterValue("cors.max_age must be 0-86400 seconds", field="cors.max_age")
    if not isinstance(cors["allow_credentials"], bool):
        raise InvalidParameterValue(
            "cors.allow_credentials must be a boolean", field="cors.allow_credentials"
        )
    if cors["allow_credentials"] and "*" in cors["allow_origins"]:
        raise InvalidParameterValue(
            "cors: allow_credentials cannot be used with origin '*'", field="cors.allow_origins"
        )
    return cors


def check_settings(kind: str, settings: Any) -> dict[str, Any]:
    """The settings of a ``kind`` trigger with defaults filled in.

    Raises:
        InvalidParameterValue: naming the first bad setting.
    """
    if kind not in KINDS:
        raise InvalidParameterValue(
            f"kind must be one of {', '.join(KINDS)}, got {kind!r}", field="kind"
        )
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise InvalidParameterValue("settings must be a map", field="settings")
    defaults = DEFAULTS[kind]
    unknown = set(settings) - set(defaults)
    if unknown:
        raise InvalidParameterValue(
            f"{kind} trigger: unknown setting(s) {sorted(unknown)} (known: {sorted(defaults)})",
            field="settings",
        )
    s = {**defaults, **{k: v for k, v in settings.items() if v is not None}}
    if kind == "http":
        if s["route"] is None:
            raise InvalidParameterValue("an http trigger needs a route", field="route")
        routes.parse(s["route"])
        if s["api"] not in ("http", "rest"):
            raise InvalidParameterValue("api must be 'http' or 'rest'", field="api")
        if s["payload_format"] not in ("2.0", "1.0"):
            raise InvalidParameterValue(
                "payload_format must be '2.0' or '1.0'", field="payload_format"
            )
        if s["api"] == "rest" and "payload_format" not in settings:
            s["payload_format"] = "1.0"  # a REST API only speaks 1.0
        if s["api"] == "rest" and s["payload_format"] != "1.0":
            raise InvalidParameterValue(
                "a REST API route takes payload format 1.0", field="payload_format"
            )
        s["cors"] = check_cors(s["cors"])
    elif kind == "url":
        if s["auth_type"] not in ("NONE", "AWS_IAM"):
            raise InvalidParameterValue("auth_type must be NONE or AWS_IAM", field="auth_type")
        s["cors"] = check_cors(s["cors"])
    elif kind == "s3":
        _check_s3(s)
    else:
        if s["expression"] is None:
            raise InvalidParameterValue("a schedule needs an expression", field="expression")
        expressions.parse(s["expression"], s["timezone"])
        if s["input"] is not None:
            if not isinstance(s["input"], str):
                raise InvalidParameterValue("input must be JSON text", field="input")
            if len(s["input"].encode()) > MAX_INPUT_BYTES:
                raise InvalidParameterValue(
                    f"input is over the async payload limit of {MAX_INPUT_BYTES} bytes",
                    field="input",
                )
            try:
                json.loads(s["input"])
            except ValueError as exc:
                raise InvalidParameterValue(f"input is not JSON: {exc}", field="input") from exc
        if s["catch_up"] not in ("none", "last", "all"):
            raise InvalidParameterValue("catch_up must be none, last or all", field="catch_up")
        if s["overlap"] not in ("allow", "skip"):
            raise InvalidParameterValue("overlap must be allow or skip", field="overlap")
    return s


def _check_s3(s: dict[str, Any]) -> None:
    if not isinstance(s["push"], bool):
        raise InvalidParameterValue("push must be a boolean", field="push")
    if not s["push"] and not isinstance(s["bucket"], str):
        raise InvalidParameterValue("an s3 trigger needs a bucket (or push)", field="bucket")
    if s["bucket"] is not None and not isinstance(s["bucket"], str):
        raise InvalidParameterValue("bucket must be a string", field="bucket")
    events = _strings(s["events"], "events")
    if not events:
        raise InvalidParameterValue("events must name at least one event type", field="events")
    for name in events:
        if name not in S3_EVENTS:
            raise InvalidParameterValue(
                f"unknown event type {name!r} (known: {', '.join(S3_EVENTS)})", field="events"
            )
    for key in ("prefix", "suffix"):
        if not isinstance(s[key], str) or len(s[key]) > 1024:
            raise InvalidParameterValue(f"{key} must be a string of at most 1024 characters",
                                        field=key)  # fmt: skip
    if s["push"] and (not isinstance(s["secret"], str) or len(s["secret"]) < 16):
        raise InvalidParameterValue("a push trigger's secret is at least 16 characters",
                                    field="secret")  # fmt: skip


def _checked_trigger(doc: Any) -> Trigger:
    trigger = Trigger.from_dict(doc)
    check_settings(trigger.kind, trigger.settings)
    return trigger


class TriggerStore:
    """Every trigger, by name; written through on every change."""

    def __init__(self, state_dir: str) -> None:
        self.directory = os.path.join(state_dir, "triggers")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # A schedule's save runs on a worker thread; this keeps one that finishes after the
        # trigger was removed from writing its record back.
        self._lock = threading.Lock()
        triggers, self.load_errors = load_records(self.directory, _checked_trigger)
        self.triggers: dict[str, Trigger] = {t.name: t for t in triggers}

    def __iter__(self) -> Iterator[Trigger]:
        return iter(sorted(self.triggers.values(), key=lambda t: t.name))

    def get(self, name: str) -> Trigger:
        trigger = self.triggers.get(name)
        if trigger is None:
            raise ResourceNotFound(f"no trigger named {name!r}", trigger=name)
        return trigger

    def add(
        self, name: str, kind: str, function: str, qualifier: str | None, settings: dict[str, Any]
    ) -> Trigger:
        if name in self.triggers:
            raise ResourceConflict(f"a trigger named {name!r} exists", trigger=name)
        trigger = Trigger(
            name, kind, function, qualifier, settings, created=time.time(), uid=str(uuid.uuid4())
        )
        self.save(trigger)
        self.triggers[name] = trigger
        return trigger

    def save(self, trigger: Trigger) -> None:
        path = os.path.join(self.directory, trigger.name + ".json")
        data = json.dumps(trigger.to_dict(), indent=1, sort_keys=True).encode()
        with self._lock:
            if not trigger.removed:
                atomic_write(path, data)

    def remove(self, name: str) -> Trigger:
        trigger = self.get(name)
        with self._lock:
            os.unlink(os.path.join(self.directory, name + ".json"))
            trigger.removed = True
        del self.triggers[name]
        return trigger


__all__ = ["KINDS", "Counters", "Trigger", "TriggerStore", "check_name", "check_settings"]
