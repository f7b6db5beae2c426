"""The protocol document is enough to write a client: a JavaScript one, written from
docs/protocol.md alone (``client.mjs``), drives a real daemon through handshake (the doc's hex
bytes), every operation, pipelining, the documented errors, a fatal error and a half-close.

Its msgpack library, ``@msgpack/msgpack`` from npm, is installed at set-up time into a cache
directory outside the tree (``$LAMBDAD_NODE_CACHE``, default ``~/.cache/lambdad-conformance``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import zip_code
from tests.conftest import DaemonProcess, running_daemon, write_function

HERE = Path(__file__).resolve().parent
MSGPACK_JS = "@msgpack/msgpack@3"
CACHE = Path(os.environ.get("LAMBDAD_NODE_CACHE", Path.home() / ".cache" / "lambdad-conformance"))

FUNCTION = """
import time

def handler(event, context):
    time.sleep(event.get("s", 0))
    if "raise" in event:
        raise RuntimeError(event["raise"])
    return {"n": event.get("n")}
"""

# Every check client.mjs makes; a check that silently stopped running fails the test too.
EXPECTED_CHECKS = 48


@pytest.fixture(scope="module")
def node_modules() -> Path:
    node = shutil.which("node")
    assert node, "node (Node.js 18+) must be installed for the conformance test"
    target = CACHE / "node_modules" / "@msgpack" / "msgpack" / "package.json"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", MSGPACK_JS],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return CACHE / "node_modules"


@pytest.fixture(scope="module")
def conformance_daemon() -> Iterator[DaemonProcess]:
    yield from running_daemon()


def test_a_client_written_from_the_document_works(
    conformance_daemon: DaemonProcess, node_modules: Path, tmp_path: Path
) -> None:
    code = tmp_path / "function.zip"
    code.write_bytes(zip_code(write_function(tmp_path / "fn", FUNCTION)))

    proc = subprocess.run(
        ["node", str(HERE / "client.mjs"), conformance_daemon.socket, str(code)],
        env={**os.environ, "LAMBDAD_NODE_MODULES": str(node_modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in results if not r["ok"]]
    assert not failed, json.dumps(failed, indent=1)[:4000] + proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr
    assert len(results) == EXPECTED_CHECKS, [r["name"] for r in results]
    output = conformance_daemon.output()
    assert "Traceback" not in output and "never retrieved" not in output, output
