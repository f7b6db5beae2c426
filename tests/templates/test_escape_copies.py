"""The escape battery against template copies: the same attacks, every function deployed with
``template = true``, so each attack runs in a copy forked from an initialized template (its
Init ran the attack module's import in the template; the invocation runs in the copy).

The battery's tests are reused as they are: this module re-exports them and makes the
battery's ``deploy`` (and so ``attack``) add ``template = true``. A copy must fail every
attempt a pooled sandbox fails — the template's own, wider seccomp filter and the user
namespace the copy was made in must not show.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

import tests.security.conftest as battery_helpers
from lambdad.client import Client
from tests.security import test_escape as battery
from tests.security.conftest import assert_all_failed, assert_daemon_serves

pytestmark = pytest.mark.root

_deploy = battery_helpers.deploy


def _deploy_as_template(c: Client, name: str, module: str, **config: Any) -> None:
    config.setdefault("template", True)
    _deploy(c, name, module, **config)


@pytest.fixture(autouse=True, scope="module")
def _copies() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(battery_helpers, "deploy", _deploy_as_template)
    patch.setattr(battery, "deploy", _deploy_as_template)
    yield
    patch.undo()


for _name in dir(battery):
    if _name.startswith("test_") and _name != "test_no_root_no_capabilities_no_setuid":
        globals()[_name] = getattr(battery, _name)


def test_no_root_no_capabilities_no_setuid(client: Client) -> None:
    """The battery's test, but for one difference a copy shows: host root is not mapped in
    the copy's user namespace, so the host's setuid-root binaries appear owned by the overflow
    uid (65534) and the handler's scan (owner 0) lists none. They are run explicitly instead:
    each must leave the copy's credentials as they were and no capability."""
    setuid = [p for p in ("/usr/bin/su", "/usr/bin/passwd") if os.path.exists(p)]
    file_caps = battery._file_capability_binaries()
    out = battery_helpers.attack(
        client, "sec-privs", "privs", {"file_caps": [*file_caps, *setuid]}
    )
    status = out["status"]
    uid, euid, gid, egid, groups = out["ids"]
    assert uid == euid and uid >= 100_000, "not an unprivileged, sandbox-only uid"
    assert gid == egid and gid != 0 and groups == []
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap} = {status[cap]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert_all_failed(out["attempts"], {errno.EPERM, errno.EINVAL})
    assert "nosuid" in out["usr_mount_options"].split(",")
    assert out["setuid_binaries"] == {}  # owned by 65534 here, see above
    ran = out["file_capability_binaries"]
    assert sorted(ran) == sorted([*file_caps, *setuid])
    for path, outcome in ran.items():
        if "ok" in outcome:
            assert not outcome["ok"], f"{path}: {outcome}"
        else:
            assert outcome == {"uids": [uid] * 4, "CapPrm": 0, "CapEff": 0}, f"{path}: {outcome}"
    code, stdout, stderr = out["unshare -r"]
    assert code != 0 and stdout.strip() != "0", f"unshare -r worked: {stdout!r} {stderr!r}"
    assert_daemon_serves(client)


def test_the_battery_ran_in_copies(client: Client) -> None:
    """The patched deploy took: the battery's functions are template functions, and a cold
    invocation of one is a copy."""
    battery_helpers.deploy(client, "sec-copy-check", "echo")
    assert client.get("sec-copy-check")["template"] is True
    inv = client.invoke("sec-copy-check", {"x": 1}, force_cold=True)
    assert inv.report is not None and inv.report.source == "template"
