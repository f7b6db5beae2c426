"""Real-world handler styles, deployed unmodified with their dependencies and invoked with
AWS's sample events (issue 10's corpus).

Each ``corpus/<case>/`` holds the function's code as its ecosystem writes it and a
``case.json``: the handler, the event (a file in ``events/``, optionally patched, or an inline
``payload``), the dependency group (``deps/<group>.txt``) and the expected answer and log
lines. Dependencies are installed from PyPI at set-up (``pip install --target``) into
``build/compat-deps/``, keyed by the requirements and the interpreter, and never committed.
As a Lambda user's package would, they leave out what the runtime provides (boto3, botocore
and their dependencies, see ``sandbox/runtimes/python-sdk.txt``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from tests.conftest import DaemonProcess, running_daemon, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / "build" / "compat-deps"
CASES = sorted(p.name for p in (HERE / "corpus").iterdir() if (p / "case.json").is_file())
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil",
                    "python_dateutil", "six", "urllib3")  # fmt: skip
# `chalice package` ships only the runtime half of chalice.
PRUNE = {"chalice": ("chalice/__init__.py", "chalice/app.py")}


def deps_zip(group: str) -> Path:
    """A zip of the group's dependencies, built once per requirements + interpreter."""
    reqs = (HERE / "deps" / f"{group}.txt").read_bytes()
    key = hashlib.sha256(reqs + sys.version.encode()).hexdigest()[:16]
    target = CACHE / f"{group}-{key}.zip"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tree = CACHE / f"{group}-{key}.tmp"
    shutil.rmtree(tree, ignore_errors=True)
    reqs_file = str(HERE / "deps" / f"{group}.txt")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--no-compile", "--target", str(tree), "-r", reqs_file]  # fmt: skip
    if group in PRUNE:
        cmd.append("--no-deps")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip install for {group} failed:\n{proc.stderr[-4000:]}"
    keep = PRUNE.get(group)
    with zipfile.ZipFile(f"{target}.part", "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            top = rel.split("/")[0]
            if path.is_dir() or top == "bin" or "__pycache__" in rel:
                continue
            if top.split("-")[0] in RUNTIME_PROVIDED or (keep and rel not in keep):
                continue
            zf.write(path, rel)
    os.replace(f"{target}.part", target)
    shutil.rmtree(tree, ignore_errors=True)
    return target


def package(case: str, tmp: Path) -> Path:
    """The deployment package: the dependencies plus the case's own files, one zip."""
    spec = json.loads((HERE / "corpus" / case / "case.json").read_text())
    out = tmp / f"{case}.zip"
    if "deps" in spec:
        shutil.copyfile(deps_zip(spec["deps"]), out)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((HERE / "corpus" / case).iterdir()):
            if path.suffix == ".py":
                zf.write(path, path.name)
    return out


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in patch.items()}}
    return patch


def _matches(expected: Any, actual: Any) -> bool:
    """``expected`` is a subset of ``actual`` (dicts: its keys; everything else: equal)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _matches(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


@pytest.fixture(scope="module")
def corpus_daemon() -> Iterator[DaemonProcess]:
    yield from running_daemon()


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(corpus_daemon: DaemonProcess, tmp_path: Path, case: str) -> None:
    spec = json.loads((HERE / "corpus" / case / "case.json").read_text())
    name = "compat-" + case.replace("_", "-")
    if "event" in spec:
        event = json.loads((HERE / "events" / spec["event"]).read_text())
        event = _merge(event, spec.get("event_patch", {}))
    else:
        event = spec["payload"]
    with Client(corpus_daemon.socket, timeout=120) as c:
        c.deploy(name, package(case, tmp_path), handler=spec["handler"], timeout_s=30,
                 memory_mb=128, env=spec.get("env"))  # fmt: skip
        inv = c.invoke(name, event)
        assert inv.error is None, f"{case}: {inv.error}"
        result = inv.result
        assert _matches(spec["expect"], result), f"{case}: {result!r}"
        if "expect_body" in spec:
            assert json.loads(result["body"]) == spec["expect_body"], result["body"]
        for needle in spec.get("raw_contains", []):
            assert inv.raw_result is not None and needle.encode() in inv.raw_result
        end = f"END RequestId: {inv.request_id}"
        text = wait_for(lambda: (t := c.logs(name)[0]) and end in t and t)
    section = text[text.index(f"START RequestId: {inv.request_id}") : text.index(end)]
    lines = section.splitlines()[1:]
    names = {"request_id": inv.request_id, "name": name}
    for pattern in spec.get("log_contains", []):
        regex = re.compile(_fill(pattern, names))
        assert any(regex.search(line) for line in lines), f"{case}: no {regex.pattern}\n{section}"
    records = []
    for line in lines:
        if line.startswith("{"):
            records.append(json.loads(line))
    for expected in _fill(spec.get("log_json", []), names):
        assert any(_matches(expected, r) for r in records), f"{case}: {expected}\n{section}"
    for key in spec.get("log_json_has", []):
        assert any(key in r for r in records), f"{case}: no {key!r} in\n{section}"
    for needle in spec.get("log_lacks", []):
        assert needle not in section, f"{case}: {needle!r} in\n{section}"
