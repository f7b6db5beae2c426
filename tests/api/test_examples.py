"""The Lambda API examples of docs/lambda-api.md and the README run as written, against a
real daemon: the AWS CLI one (Debian's awscli v2, which `make test` installs) and the boto3 one.

They read ``LAMBDA_ENDPOINT`` and find the daemon's socket through ``LAMBDAD_SOCKET`` (both
default to what ``make run`` serves), so the test points those at its own daemon and runs the
blocks' text unchanged.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import ApiDaemon, start_api_daemon
from tests.conftest import ROOT

AWS = "/usr/bin/aws"  # Debian's awscli (v2); `make awscli` installs it


def example(path: Path, fence: str) -> str:
    blocks = re.findall(rf"```{re.escape(fence)}\n(.*?)```", path.read_text(), re.S)
    assert len(blocks) == 1, f"{path} should have one ```{fence} block"
    return str(blocks[0])


@pytest.fixture(scope="module")
def fresh_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDaemon]:
    """Its own daemon: the examples create functions with fixed names."""
    api = start_api_daemon(str(tmp_path_factory.mktemp("examples-daemon")))
    try:
        yield api
    finally:
        api.daemon.stop()


def environment(api: ApiDaemon, home: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),  # no ~/.aws of whoever runs the tests
        "LAMBDAD_SOCKET": api.daemon.socket,
        "LAMBDA_ENDPOINT": api.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.mark.parametrize("path", [ROOT / "README.md", ROOT / "docs/lambda-api.md"])
def test_the_readme_and_the_doc_show_the_same_examples(path: Path) -> None:
    doc = ROOT / "docs/lambda-api.md"
    for fence in ("sh aws-cli", "python boto3"):
        assert example(path, fence) == example(doc, fence)


def test_the_aws_cli_is_v2(tmp_path: Path) -> None:
    version = subprocess.run([AWS, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("aws-cli/2."), version


def test_the_aws_cli_example(fresh_api: ApiDaemon, tmp_path: Path) -> None:
    assert shutil.which("aws", path="/usr/bin"), "the AWS CLI is missing: run `make awscli`"
    script = example(ROOT / "docs/lambda-api.md", "sh aws-cli")
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=environment(fresh_api, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    # `aws lambda invoke` prints its metadata, then `cat out.json` the result.
    metadata, _, result = run.stdout.rpartition("}\n{")
    answer = json.loads(metadata + "}")
    assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "$LATEST"
    tail = base64.b64decode(answer["LogResult"]).decode()
    assert "hi Ada" in tail and "REPORT RequestId" in tail
    assert json.loads("{" + result) == {"message": "Hello, Ada!"}
    key = json.loads((tmp_path / "key.json").read_text())
    assert set(key) >= {"AccessKeyId", "SecretAccessKey"}


def test_the_boto3_example(fresh_api: ApiDaemon, tmp_path: Path) -> None:
    script = example(ROOT / "docs/lambda-api.md", "python boto3")
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**environment(fresh_api, tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["1 Hello, Ada!", "True"]
