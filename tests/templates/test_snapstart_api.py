"""SnapStart through the Lambda API (boto3 against the daemon's own --api): ``ApplyOn:
PublishedVersions`` makes a template function, its configuration says so, and an invocation
after the first runs in a copy (the REPORT in the log tail has a Restore Duration)."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiDaemon, start_api_daemon, zip_of

pytestmark = pytest.mark.root

SOURCE = "import uuid\n\ndef handler(event, context):\n    return str(uuid.uuid4())\n"


@pytest.fixture(scope="module")
def lam() -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="lambdad-snapstart-") as tmp:
        api: ApiDaemon = start_api_daemon(tmp)
        try:
            yield api.client()
        finally:
            if api.daemon.proc is not None and api.daemon.proc.poll() is None:
                api.daemon.stop()


def create(lam: Any, name: str, **extra: Any) -> dict[str, Any]:
    return lam.create_function(  # type: ignore[no-any-return]
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::000000000000:role/r",
        Handler="app.handler",
        Code={"ZipFile": zip_of(SOURCE)},
        **extra,
    )


def report_line(answer: dict[str, Any]) -> str:
    tail = base64.b64decode(answer["LogResult"]).decode()
    return next(line for line in tail.splitlines() if line.startswith("REPORT"))


def test_snapstart_makes_a_template_function(lam: Any) -> None:
    made = create(lam, "snap", SnapStart={"ApplyOn": "PublishedVersions"})
    assert made["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    version = lam.publish_version(FunctionName="snap")["Version"]
    config = lam.get_function_configuration(FunctionName="snap", Qualifier=version)
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    # The first invocation of the version is a copy of its template (made for it): a restore.
    first = lam.invoke(FunctionName="snap", Qualifier=version, LogType="Tail")
    assert "FunctionError" not in first
    report = report_line(first)
    assert "Restore Duration: " in report and "Billed Restore Duration: " in report
    assert "Init Duration" not in report
    # The next runs warm in that copy: neither duration.
    second = lam.invoke(FunctionName="snap", Qualifier=version, LogType="Tail")
    assert "Restore Duration" not in report_line(second)
    assert json.loads(first["Payload"].read()) != json.loads(second["Payload"].read())
    off = lam.update_function_configuration(FunctionName="snap", SnapStart={"ApplyOn": "None"})
    assert off["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    plain = lam.invoke(FunctionName="snap", LogType="Tail")
    assert "Init Duration: " in report_line(plain)


def test_snapstart_apply_on_must_be_known(lam: Any) -> None:
    with pytest.raises(ClientError) as info:
        create(lam, "snap-bad", SnapStart={"ApplyOn": "Always"})
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "SnapStart.ApplyOn" in info.value.response["Error"]["Message"]
