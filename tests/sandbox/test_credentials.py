"""The credential drop, checked with an independent implementation (pyprctl) in a forked
child: every capability set empty, the bounding set empty, no_new_privs on, the uid/gid
changed and no supplementary group left."""

from __future__ import annotations

import json
import os

import pyprctl
import pytest

from sandbox import credentials

pytestmark = pytest.mark.root

UID = GID = 212_345


def _in_child_after_drop() -> dict[str, object]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            credentials.drop_bounding()
            credentials.drop(UID, GID)
            state = pyprctl.CapState.get_current()
            report = {
                "effective": len(state.effective),
                "permitted": len(state.permitted),
                "inheritable": len(state.inheritable),
                "bounding": sum(bool(pyprctl.capbset_read(cap)) for cap in pyprctl.Cap),
                "ambient": len(pyprctl.cap_ambient_probe()),
                "no_new_privs": pyprctl.get_no_new_privs(),
                "pdeathsig": pyprctl.get_pdeathsig(),
                "ids": [os.getresuid(), os.getresgid(), os.getgroups()],
            }
            try:
                os.setuid(0)
                report["setuid0"] = "succeeded"
            except PermissionError:
                report["setuid0"] = "refused"
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = json.loads(f.read())
    os.waitpid(pid, 0)
    return out  # type: ignore[no-any-return]


def test_drop_leaves_no_capability_and_no_way_back() -> None:
    out = _in_child_after_drop()
    assert out["effective"] == out["permitted"] == out["inheritable"] == 0
    assert out["bounding"] == 0 and out["ambient"] == 0
    assert out["no_new_privs"] is True
    assert out["pdeathsig"] != 0  # set again after the credential change cleared it
    assert out["ids"] == [[UID] * 3, [GID] * 3, []]
    assert out["setuid0"] == "refused"
