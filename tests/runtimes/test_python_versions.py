"""``python3.9`` ... ``python3.13``: each runs on the host's interpreter of that version (one
zygote each, started when first needed), or is refused at deploy naming what the host has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue
from sandbox import runtimes
from tests.conftest import DaemonProcess, write_function

pytestmark = pytest.mark.root
SOURCE = (
    "import sys\n\nimport boto3\n\n"
    "def handler(event, context):\n"
    "    return [*sys.version_info[:2], boto3.__file__, sys.version.split()[0]]\n"
)


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=60) as c:
        yield c


@pytest.mark.parametrize("runtime", runtimes.PYTHON_VERSIONS)
def test_each_python_version_runs_on_its_interpreter_or_is_refused(
    client: Client, tmp_path: Path, runtime: str
) -> None:
    code = write_function(tmp_path / "fn", SOURCE)
    name = runtime.replace(".", "-")
    minor = int(runtime.split(".")[1])
    if runtime == runtimes.PYTHON_VERSION or runtime in runtimes.python_interpreters():
        client.deploy(name, code, runtime=runtime)
        for _ in range(2):  # cold, then warm in the same zygote's sandbox
            inv = client.invoke(name, {})
            assert inv.error is None, inv.error
            # Its own interpreter, with the runtime-provided SDK built for that version.
            assert inv.result[:3] == [3, minor, "/var/runtime/boto3/__init__.py"], inv.result
    else:
        with pytest.raises(InvalidParameterValue) as info:
            client.deploy(name, code, runtime=runtime)
        message = str(info.value)
        assert runtime in message and runtimes.PYTHON_VERSION in message
        for other in runtimes.python_interpreters():
            assert other in message


def test_plain_python3_is_the_daemons_interpreter(client: Client, tmp_path: Path) -> None:
    client.deploy("py3-plain", write_function(tmp_path / "fn", SOURCE), runtime="python3")
    major, minor, _, _ = client.invoke("py3-plain", {}).result
    assert f"python{major}.{minor}" == runtimes.PYTHON_VERSION


def test_this_host_really_has_several_interpreters() -> None:
    # This machine (and CI) has pyenv's 3.10-3.13 besides the daemon's 3.11: the parametrized
    # test above must exercise real side-by-side zygotes, not only refusals.
    assert len(runtimes.python_interpreters()) >= 1, runtimes._python_candidates()
