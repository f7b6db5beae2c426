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
from typing import Any

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


AWS_CLI_TOUR = """
set -euo pipefail
export AWS_PAGER="" AWS_DEFAULT_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET
lam() { aws lambda --endpoint-url "$LAMBDA_ENDPOINT" --output json "$@"; }
printf 'def handler(event, context):\\n    return {"v": "one"}\\n' > app.py
python3 -m zipfile -c one.zip app.py
for name in tour-a tour-b tour-c; do
  lam create-function --function-name $name --runtime python3.11 --handler app.handler \\
      --zip-file fileb://one.zip --role arn:aws:iam::000000000000:role/x --publish > /dev/null
done
lam list-functions --page-size 1 > list.json
lam list-functions --max-items 2 > page.json
lam create-alias --function-name tour-a --name live --function-version 1 > alias.json
printf 'def handler(event, context):\\n    return {"v": "two"}\\n' > app.py
python3 -m zipfile -c two.zip app.py
lam update-function-code --function-name tour-a --zip-file fileb://two.zip --publish > v2.json
lam wait function-updated-v2 --function-name tour-a
lam update-alias --function-name tour-a --name live --function-version 1 \\
    --routing-config '{"AdditionalVersionWeights": {"2": 0.5}}' > routed.json
lam put-function-concurrency --function-name tour-b --reserved-concurrent-executions 3 > /dev/null
lam get-account-settings > account.json
lam invoke --function-name tour-a --qualifier 2 --cli-binary-format raw-in-base64-out \\
    --payload '{}' out.json > invoke.json
lam tag-resource --resource arn:aws:lambda:eu-west-1:000000000000:function:tour-a --tags team=a
lam list-tags --resource arn:aws:lambda:eu-west-1:000000000000:function:tour-a > tags.json
lam delete-function --function-name tour-c
if lam get-function --function-name tour-c 2> missing.txt; then exit 9; fi
"""


def test_an_aws_cli_tour_of_the_operations(api_daemon: ApiDaemon, tmp_path: Path) -> None:
    """The AWS CLI v2 has its own fork of botocore: drive more of the API through it."""
    run = subprocess.run(
        ["bash", "-c", AWS_CLI_TOUR],
        cwd=tmp_path,
        env={
            **environment(api_daemon, tmp_path),
            "KEY_ID": api_daemon.admin["AccessKeyId"],
            "KEY_SECRET": api_daemon.admin["SecretAccessKey"],
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr + run.stdout

    def read(name: str) -> Any:
        return json.loads((tmp_path / name).read_text())

    listed = {f["FunctionName"] for f in read("list.json")["Functions"]}
    assert {"tour-a", "tour-b", "tour-c"} <= listed  # the CLI followed NextMarker
    page = read("page.json")
    assert len(page["Functions"]) == 2 and "NextToken" in page
    assert read("alias.json")["AliasArn"].endswith(":eu-west-1:000000000000:function:tour-a:live")
    assert read("v2.json")["Version"] == "2"
    assert read("routed.json")["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    assert read("account.json")["AccountLimit"]["UnreservedConcurrentExecutions"] == 297
    assert read("invoke.json")["ExecutedVersion"] == "2"
    assert read("out.json") == {"v": "two"}
    assert read("tags.json")["Tags"] == {"team": "a"}
    assert "ResourceNotFoundException" in (tmp_path / "missing.txt").read_text()
