"""CreateFunction through boto3 with Lambda-sized zips (issue 10 point 2): a 40 MB package
(random, incompressible files) is accepted and its module imports; past 50 MB zipped,
botocore raises RequestTooLargeException (HTTP 413)."""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiDaemon

ROLE = "arn:aws:iam::000000000000:role/lambdad"
HOST_RUNTIME = f"python{sys.version_info[0]}.{sys.version_info[1]}"
MB = 1000 * 1000
APP = """
import vendored

def handler(event, context):
    return {"imported": vendored.NAME, "blobs": vendored.count()}
"""
VENDORED = """
import os
NAME = "vendored"

def count():
    return len([n for n in os.listdir(os.path.dirname(__file__)) if n.endswith(".bin")])
"""


def big_zip(total: int) -> tuple[bytes, int]:
    """A zip of about ``total`` bytes: the handler, a package and 1 MB random files."""
    buf = io.BytesIO()
    blobs = total // MB
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", APP)
        archive.writestr("vendored/__init__.py", VENDORED)
        for i in range(blobs):
            archive.writestr(f"vendored/blob-{i:03d}.bin", os.urandom(MB))
    return buf.getvalue(), blobs


def test_create_function_takes_a_40_mb_zip(api_daemon: ApiDaemon) -> None:
    lam: Any = api_daemon.client(read_timeout=300)
    data, blobs = big_zip(40 * MB)
    assert len(data) > 40 * MB
    made = lam.create_function(
        FunctionName="api-big40", Runtime=HOST_RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": data}, MemorySize=256, Timeout=10,
    )  # fmt: skip
    assert made["CodeSize"] == len(data)  # the deployment package's bytes, as Lambda says
    answer = lam.invoke(FunctionName="api-big40", Payload=b"{}")
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"imported": "vendored", "blobs": blobs}
    lam.delete_function(FunctionName="api-big40")


def test_create_function_refuses_a_zip_over_50_mb(api_daemon: ApiDaemon) -> None:
    lam: Any = api_daemon.client(read_timeout=300)
    data, _ = big_zip(53 * MB)
    assert len(data) > 50 * 1024 * 1024
    with pytest.raises(ClientError) as refused:
        lam.create_function(
            FunctionName="api-big53", Runtime=HOST_RUNTIME, Role=ROLE, Handler="app.handler",
            Code={"ZipFile": data},
        )  # fmt: skip
    error = refused.value.response
    assert error["Error"]["Code"] == "RequestTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert f"{len(data)} bytes is over the 52428800-byte zipped limit" in error["Error"]["Message"]
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.get_function(FunctionName="api-big53")
