"""``context`` field by field against awslambdaric's ``LambdaContext``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from awslambdaric.lambda_context import LambdaContext as TheirContext

from sandbox.runtimes import lambda_env
from sandbox.runtimes.lambda_context import LambdaContext

FUNCTION = {"name": "orders", "version": "3", "memory_mb": 1769, "timeout_s": 30,
            "handler": "app.handler", "env": {}}  # fmt: skip
ARN = lambda_env.function_arn("us-east-1", "orders")
ATTRIBUTES = (
    "aws_request_id",
    "log_group_name",
    "log_stream_name",
    "function_name",
    "memory_limit_in_mb",
    "function_version",
    "invoked_function_arn",
    "tenant_id",
)


def _pair(
    monkeypatch: pytest.MonkeyPatch,
    client_context: Any = None,
    identity: Any = None,
    tenant: str | None = None,
) -> tuple[LambdaContext, Any]:
    env = lambda_env.lambda_environment(FUNCTION, "2026/12/01/[3]abc", "/var/task")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    deadline_ms = int(time.time() * 1000) + 30_000
    ours = LambdaContext(
        "rid-1", env, ARN, time.monotonic_ns() + 30_000 * 10**6,
        client_context, identity, tenant,
    )  # fmt: skip
    theirs = TheirContext("rid-1", client_context, identity, deadline_ms, ARN, tenant)
    return ours, theirs


def test_plain_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = _pair(monkeypatch)
    for name in ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
        assert type(getattr(ours, name)) is type(getattr(theirs, name)), name
    assert ours.memory_limit_in_mb == "1769"
    assert ours.client_context is None and theirs.client_context is None
    assert ours.identity.cognito_identity_id is None
    assert ours.identity.cognito_identity_pool_id is None
    assert repr(ours) == repr(theirs)
    assert abs(ours.get_remaining_time_in_millis() - theirs.get_remaining_time_in_millis()) < 50
    assert ours.w3c() == theirs.w3c() == {}


def test_with_client_context_identity_and_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    client_context = {
        "client": {"installation_id": "i-1", "app_title": "Shop", "app_version_code": "7"},
        "custom": {"user": "ada"},
        "env": {"locale": "fr"},
        "w3c": {"traceparent": "00-abc-def-01", "tracestate": 5, "other": "dropped"},
    }
    identity = {"cognitoIdentityId": "id-9", "cognitoIdentityPoolId": "pool-2"}
    ours, theirs = _pair(monkeypatch, dict(client_context), identity, "tenant-a")
    assert repr(ours) == repr(theirs)
    assert ours.client_context is not None and ours.client_context.client is not None
    assert ours.client_context.client.app_title == "Shop"
    assert ours.client_context.client.app_package_name is None
    assert ours.client_context.custom == {"user": "ada"}
    assert ours.identity.cognito_identity_id == "id-9"
    assert ours.tenant_id == theirs.tenant_id == "tenant-a"
    assert ours.w3c() == theirs.w3c() == {"traceparent": "00-abc-def-01"}


def test_remaining_time_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    env = lambda_env.lambda_environment(FUNCTION, "s", "/var/task")
    assert (
        LambdaContext("r", env, ARN, time.monotonic_ns() - 10**9).get_remaining_time_in_millis()
        == 0
    )
