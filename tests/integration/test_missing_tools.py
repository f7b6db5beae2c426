"""A host without ``nft``: egress is reported missing at start, with the package to install;
deploying ``network = "egress"`` is refused naming the cause; ``--strict`` refuses to start.

The daemon runs in a private mount namespace where /dev/null is bound over every ``nft``, so
for it (and only for it) there is no ``nft`` to run, exactly as on a fresh machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue, LambdadError
from tests.conftest import ROOT, TEST_CONFIG, make_daemon, wait_for, write_function

pytestmark = pytest.mark.root

NO_NFT = "egress unavailable: nft not found (apt-get install nftables)"
HELLO = "def handler(event, context):\n    return 'hi'\n"
# Wherever an executable nft is, /dev/null (not executable) is bound over it.
HIDE_NFT = (
    'IFS=:; for d in $PATH /usr/local/sbin /usr/sbin /sbin; do'
    ' if [ -x "$d/nft" ]; then mount --bind /dev/null "$d/nft" || exit 1; fi; done; exec "$@"'
)


def serve_without_nft(tmp: Path, *args: str) -> list[str]:
    """The command line of ``lambdad serve`` on a host where ``nft`` does not exist."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_NFT, "sh",
            sys.executable, "-m", "lambdad", "serve", "--socket", str(tmp / "lambdad.sock"),
            "--state-dir", str(tmp / "state"), "--config", str(tmp / "lambdad.toml"),
            *args]  # fmt: skip


def answers(path: Path) -> bool:
    try:
        with Client(str(path), timeout=5) as c:
            c.call("ping")
        return True
    except LambdadError:
        return False


def deploy_egress_function(tmp_path: Path) -> None:
    """With nft present (the normal daemon): deploy a function that wants egress."""
    d = make_daemon(str(tmp_path), TEST_CONFIG)
    d.start()
    try:
        with d.client() as c:
            c.deploy("wants-net", write_function(tmp_path / "code", HELLO), network="egress")
    finally:
        d.stop()


def test_no_nft_is_reported_and_egress_deploys_are_refused(tmp_path: Path) -> None:
    deploy_egress_function(tmp_path)  # a function deployed while the host still had nft
    (tmp_path / "lambdad.toml").write_text(TEST_CONFIG)
    log = tmp_path / "daemon.log"
    log.write_text("")
    with open(log, "ab") as out:
        proc = subprocess.Popen(serve_without_nft(tmp_path), stdout=out, stderr=out, cwd=ROOT)
    try:
        wait_for(lambda: proc.poll() is not None or answers(tmp_path / "lambdad.sock"), 60)
        assert proc.poll() is None, log.read_text()
        start = log.read_text()
        assert f"lambdad: WARNING: {NO_NFT}" in start
        assert "function 'wants-net' has network = 'egress'" in start
        with Client(str(tmp_path / "lambdad.sock"), timeout=60) as c:
            assert NO_NFT in c.stats()["missing"]
            with pytest.raises(InvalidParameterValue) as refused:
                c.deploy("net2", write_function(tmp_path / "code", HELLO), network="egress")
            assert refused.value.details.get("field") == "network"
            assert "nft not found (apt-get install nftables)" in refused.value.message
            # The one deployed earlier fails as a platform error that names the cause.
            failed = c.invoke("wants-net")
            assert failed.function_error == "Unhandled" and failed.error is not None
            assert "nft not found" in failed.error["errorMessage"]
            # Everything else works.
            c.deploy("no-net", write_function(tmp_path / "code", HELLO))
            assert c.invoke("no-net").result == "hi"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_strict_refuses_to_start_without_nft(tmp_path: Path) -> None:
    (tmp_path / "lambdad.toml").write_text(TEST_CONFIG)
    out = subprocess.run(serve_without_nft(tmp_path, "--strict"), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0, out.stderr
    assert "--strict: refusing to start" in out.stderr
    assert "nft not found (apt-get install nftables)" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "lambdad.sock").exists()


def test_without_namespaces_nft_is_still_named(tmp_path: Path) -> None:
    """The branch a non-root daemon takes (no network namespaces for egress), reached as root
    by disabling namespaces: the missing nft is named too, so installing it is not forgotten."""
    (tmp_path / "lambdad.toml").write_text(TEST_CONFIG + 'disable_isolation = ["namespaces"]\n')
    out = subprocess.run(serve_without_nft(tmp_path, "--strict"), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0, out.stderr
    assert (
        "WARNING: egress unavailable: nft not found (apt-get install nftables); needs root and"
        " network namespaces"
    ) in out.stderr
    assert "Traceback" not in out.stderr


def test_find_nft_names_the_package_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox import egress

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(egress, "SBIN_DIRS", ())
    with pytest.raises(OSError, match=r"^\[Errno 2\] nft not found \(apt-get install nftables\)$"):
        egress.find_nft()
    monkeypatch.undo()
    assert os.access(egress.find_nft(), os.X_OK)  # the suite's own check made sure it is here

