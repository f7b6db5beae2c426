"""Fixtures of the Lambda API tests."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from tests.api.signing import NOW
from tests.conftest import DaemonProcess, make_daemon


@pytest.fixture
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at NOW; the verifier is given NOW explicitly."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))


# -- a real daemon serving the Lambda API -----------------------------------------------------

API_CONFIG = """
[daemon]
pool_size = 2
api_address = "127.0.0.1:0"
global_concurrency = 300
async_retry_delays_s = [0.05, 0.1]
"""


@dataclass
class ApiDaemon:
    """A running daemon with the Lambda API on, an admin key and an invoke-only key."""

    daemon: DaemonProcess
    endpoint: str
    admin: dict[str, Any]
    invoker: dict[str, Any]

    def client(self, key: dict[str, Any] | None = None, **config: Any) -> Any:
        """A boto3 Lambda client signing with ``key`` (default: the admin key)."""
        key = key or self.admin
        return boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"max_attempts": 1}, **config),
        )


def start_api_daemon(tmp: str, config_text: str = API_CONFIG) -> ApiDaemon:
    d = make_daemon(tmp, config_text)
    d.start()
    with d.client() as c:
        address = c.stats()["api_address"]
        admin = c.call("keys_create", admin=True, key_name="admin")["key"]
        invoker = c.call("keys_create", key_name="invoker")["key"]
    return ApiDaemon(d, f"http://{address}", admin, invoker)


@pytest.fixture(scope="module")
def api_daemon() -> Iterator[ApiDaemon]:
    """One daemon with the Lambda API for a module (tests use their own function names)."""
    with tempfile.TemporaryDirectory(prefix="lambdad-api-") as tmp:
        api = start_api_daemon(tmp)
        try:
            yield api
        finally:
            if api.daemon.proc is not None and api.daemon.proc.poll() is None:
                api.daemon.stop()


@pytest.fixture(scope="module")
def lam(api_daemon: ApiDaemon) -> Any:
    """boto3's Lambda client with the admin key."""
    return api_daemon.client()


def zip_of(source: str, module: str = "app") -> bytes:
    """A zip holding one Python module."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{module}.py", source)
    return buf.getvalue()
