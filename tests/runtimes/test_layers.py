"""Layers end to end against the real daemon: published through the client, referenced by
``NAME:VERSION`` at deploy, merged read-only at /opt in order (later wins) for Python and
Node.js, retained for the functions that use a deleted version, refused when unknown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue
from sandbox import runtimes
from tests.conftest import DaemonProcess, write_function

pytestmark = pytest.mark.root

PROBE = """\
import os, subprocess

import which


def handler(event, context):
    with open("/opt/shared.txt") as f:
        shared = f.read()
    tool = subprocess.run(["tool"], capture_output=True, text=True).stdout.strip()
    try:
        open("/opt/python/which.py", "a").close()
        writable = True
    except OSError:
        writable = False
    return {"which": which.NAME, "shared": shared, "tool": tool, "writable": writable,
            "ld": os.environ["LD_LIBRARY_PATH"].split(":")[-1]}
"""


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=60) as c:
        yield c


def layer_dir(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith("bin/"):
            path.chmod(0o755)
    return root


def publish(c: Client, name: str, root: Path, files: dict[str, str]) -> str:
    layer = c.publish_layer(name, layer_dir(root, files))
    return f"{name}:{layer['version']}"


def test_python_function_sees_its_layers_merged_at_opt_later_wins(
    client: Client, tmp_path: Path
) -> None:
    first = publish(client, "lt-first", tmp_path / "a", {
        "python/which.py": "NAME = 'first'\n", "shared.txt": "first",
        "bin/tool": "#!/bin/sh\necho tool-from-first\n",
    })  # fmt: skip
    second = publish(client, "lt-second", tmp_path / "b", {
        "python/which.py": "NAME = 'second'\n", "shared.txt": "second",
    })  # fmt: skip
    code = write_function(tmp_path / "fn", PROBE)
    fn = client.deploy("lt-probe", code, layers=[first, second])
    assert [arn.rsplit(":", 2)[-2:] for arn in fn["layers"]] == [
        ["lt-first", first.split(":")[1]],
        ["lt-second", second.split(":")[1]],
    ]
    inv = client.invoke("lt-probe", {})
    assert inv.error is None, inv.error
    assert inv.result == {"which": "second", "shared": "second", "tool": "tool-from-first",
                          "writable": False, "ld": "/opt/lib"}  # fmt: skip
    # The other order: the first wins now.
    client.deploy("lt-probe", code, layers=[second, first])
    again = client.invoke("lt-probe", {})
    assert again.result["which"] == "first" and again.result["shared"] == "first"


def test_a_layer_package_in_site_packages_is_importable(client: Client, tmp_path: Path) -> None:
    ver = runtimes.PYTHON_VERSION[len("python") :]
    ref = publish(client, "lt-site", tmp_path / "l", {
        f"python/lib/python{ver}/site-packages/sitepkg/__init__.py": "VALUE = 42\n",
    })  # fmt: skip
    code = write_function(
        tmp_path / "fn", "import sitepkg\n\ndef handler(e, c):\n    return sitepkg.VALUE\n"
    )
    client.deploy("lt-site-fn", code, layers=[ref])
    assert client.invoke("lt-site-fn", {}).result == 42


def test_node_function_requires_a_package_from_its_layer(client: Client, tmp_path: Path) -> None:
    node = runtimes.host_node_name()
    assert node is not None, "the test suite needs node (scripts/system-packages)"
    ref = publish(client, "lt-node", tmp_path / "l", {
        "nodejs/node_modules/greet/index.js": "exports.greet = (n) => `hi ${n}`;\n",
    })  # fmt: skip
    code = tmp_path / "fn"
    code.mkdir()
    (code / "index.js").write_text(
        "const { greet } = require('greet');\n"
        "exports.handler = async (event) => greet(event.name);\n"
    )
    client.deploy("lt-node-fn", code, runtime=node, handler="index.handler", layers=[ref])
    inv = client.invoke("lt-node-fn", {"name": "Ada"})
    assert inv.error is None, inv.error
    assert inv.result == "hi Ada"


def test_deleted_layer_version_stays_for_its_users_only(client: Client, tmp_path: Path) -> None:
    ref = publish(client, "lt-gone", tmp_path / "l", {"python/which.py": "NAME = 'kept'\n",
                                                      "shared.txt": ""})  # fmt: skip
    code = write_function(
        tmp_path / "fn", "import which\n\ndef handler(e, c):\n    return which.NAME\n"
    )
    client.deploy("lt-user", code, layers=[ref])
    name, number = ref.split(":")
    client.delete_layer(name, int(number))
    assert client.list_layers(name) == []
    # A new sandbox of the function still gets the deleted version (as on Lambda) ...
    assert client.invoke("lt-user", {}, force_cold=True).result == "kept"
    # ... and so does a new version of it that keeps the reference ...
    client.deploy("lt-user", code, layers=[ref], env={"CHANGED": "1"})
    assert client.invoke("lt-user", {}).result == "kept"
    # ... but no other function may start using it.
    with pytest.raises(InvalidParameterValue, match=f"Layer version {ref} does not exist"):
        client.deploy("lt-newcomer", code, layers=[ref])


def test_unknown_and_too_many_layers_are_refused(client: Client, tmp_path: Path) -> None:
    code = write_function(tmp_path / "fn", "def handler(e, c):\n    return 1\n")
    with pytest.raises(InvalidParameterValue, match="Layer version nope:1 does not exist"):
        client.deploy("lt-bad", code, layers=["nope:1"])
    with pytest.raises(InvalidParameterValue, match="at most 5 layers"):
        client.deploy("lt-bad", code, layers=[f"x:{i}" for i in range(1, 7)])
    with pytest.raises(InvalidParameterValue, match="NAME:VERSION"):
        client.deploy("lt-bad", code, layers=["../etc:1:2"])
