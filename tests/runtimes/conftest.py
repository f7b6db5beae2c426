"""Fixtures for the process runtimes: function directories built at set-up (never committed
artefacts): a compiled C runtime, awslambdaric installed from PyPI with ``pip --target``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parent / "functions"


def copy_function(name: str, dest: Path) -> Path:
    shutil.copytree(FUNCTIONS / name, dest)
    return dest


@pytest.fixture(scope="session")
def c_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bootstrap`` compiled from functions/cbin/runtime.c with the host's gcc."""
    code = tmp_path_factory.mktemp("cbin")
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-o", str(code / "bootstrap"),
         str(FUNCTIONS / "cbin" / "runtime.c")],
        check=True,
    )  # fmt: skip
    return code


@pytest.fixture(scope="session")
def ric_function(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python function run by awslambdaric (from PyPI) as a ``provided`` bootstrap."""
    code = tmp_path_factory.mktemp("ric")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--only-binary=:all:", "--target", str(code), "awslambdaric"],
        check=True,
    )  # fmt: skip
    (code / "bootstrap").write_text("#!/bin/sh\nexec python3 -m awslambdaric app.handler\n")
    (code / "bootstrap").chmod(0o755)
    (code / "app.py").write_text(
        "import os\n"
        "COUNT = 0\n"
        "def handler(event, context):\n"
        "    global COUNT\n"
        "    COUNT += 1\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('ric says no')\n"
        "    print('ric handler', context.aws_request_id)\n"
        "    return {'event': event, 'count': COUNT, 'request_id': context.aws_request_id,\n"
        "            'remaining': context.get_remaining_time_in_millis(),\n"
        "            'function': context.function_name, 'uid': os.getuid()}\n"
    )
    return code
