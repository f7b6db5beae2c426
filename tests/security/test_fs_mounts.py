"""File-system mounts (``/mnt/NAME``, Lambda's EFS) and the Runtime API listener, from inside:
two functions sharing a mount exchange files as its POSIX owner; a function without it cannot
see it; ``ro`` holds; symlinks cannot leave it; deploy refuses targets outside /mnt. And no
sandbox reaches another sandbox's Runtime API, or the daemon, through 127.0.0.1:9001."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue
from tests.conftest import DaemonProcess, write_function
from tests.runtimes.conftest import FUNCTIONS

pytestmark = pytest.mark.root
OWNER = 4242  # the shared directory's owner on the host (an EFS access point's user)

HANDLER = '''
import errno, json, os, socket

def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as exc:
        return {"ok": False, "errno": errno.errorcode.get(exc.errno, str(exc.errno))}

def handler(event, context):
    d = "/mnt/shared"
    out = {"uid": os.getuid(), "exists": os.path.isdir(d), "mnt": sorted(os.listdir("/mnt"))
           if os.path.isdir("/mnt") else None}
    if event.get("write"):
        def write():
            with open(f"{d}/{event['write']}", "w") as f:
                f.write(event["text"])
            st = os.stat(f"{d}/{event['write']}")
            return [st.st_uid, st.st_gid]
        out["write"] = attempt(write)
    if event.get("read"):
        out["read"] = attempt(lambda: open(f"{d}/{event['read']}").read())
        out["read_owner"] = attempt(lambda: os.stat(f"{d}/{event['read']}").st_uid)
    if event.get("escape"):
        out["via_abs_link"] = attempt(lambda: open(f"{d}/abs-link").read())
        out["via_rel_link"] = attempt(lambda: open(f"{d}/rel-link").read())
        out["via_dir_link"] = attempt(lambda: sorted(os.listdir(f"{d}/dir-link")))
        out["new_link"] = attempt(lambda: os.symlink("/", f"{d}/made-inside"))
        out["chown"] = attempt(lambda: os.chown(f"{d}/hello", 0, 0))
        out["setuid_bit"] = attempt(lambda: os.chmod(f"{d}/hello", 0o4755))
        out["remount"] = attempt(lambda: os.rename(d, "/mnt/elsewhere"))
    if event.get("api"):
        def connect(port):
            with socket.socket() as s:  # numeric address: no name lookup
                s.settimeout(2)
                s.connect((b"127.0.0.1", port))
            return "connected"
        out["api"] = attempt(lambda: connect(9001))
        out["daemon_socket"] = attempt(lambda: os.stat(event["api"]))
    return out
'''


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("efs")
    base.chmod(0o755)
    d = base / "shared"
    d.mkdir()
    (d / "hello").write_text("hello from the host\n")
    os.symlink("/etc/hostname", d / "abs-link")
    os.symlink("../../../../../../../../etc/hostname", d / "rel-link")
    os.symlink("/", d / "dir-link")
    for path in (d, d / "hello"):
        os.chown(path, OWNER, OWNER)
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_function(tmp_path_factory.mktemp("code"), HANDLER)


def call(c: Client, name: str, event: dict[str, Any]) -> Any:
    inv = c.invoke(name, event)
    assert inv.error is None, inv.error
    return inv.result


def test_two_functions_share_a_mount_as_its_owner(
    client: Client, shared: Path, code: Path
) -> None:
    client.deploy("efs-a", code, mounts=[f"{shared}:/mnt/shared"])
    client.deploy("efs-b", code, mounts=[f"{shared}:/mnt/shared"])
    a = call(client, "efs-a", {"write": "from-a", "text": "a was here", "read": "hello"})
    assert a["read"] == {"ok": True, "value": "hello from the host\n"}
    assert a["read_owner"]["value"] == a["uid"]  # the owner's files are the sandbox's own
    assert a["write"]["ok"] and a["write"]["value"] == [a["uid"], a["uid"]]
    st = os.stat(shared / "from-a")
    assert (st.st_uid, st.st_gid) == (OWNER, OWNER)  # on the host: the mount's owner
    b = call(client, "efs-b", {"read": "from-a", "write": "from-b", "text": "b too"})
    assert b["uid"] != a["uid"]  # another sandbox uid, the same owner on disk
    assert b["read"] == {"ok": True, "value": "a was here"}
    assert b["write"]["ok"] and (shared / "from-b").read_text() == "b too"


def test_read_only_mount_is_enforced(client: Client, shared: Path, code: Path) -> None:
    client.deploy("efs-ro", code, mounts=[f"{shared}:/mnt/shared:ro"])
    out = call(client, "efs-ro", {"read": "hello", "write": "nope", "text": "x"})
    assert out["read"]["ok"]
    assert out["write"] == {"ok": False, "errno": "EROFS"}
    assert not (shared / "nope").exists()


def test_a_function_without_the_mount_cannot_see_it(client: Client, code: Path) -> None:
    client.deploy("efs-none", code)
    out = call(client, "efs-none", {"read": "hello"})
    assert out["exists"] is False and out["mnt"] == []
    assert out["read"]["ok"] is False


def test_symlinks_cannot_leave_the_mount(client: Client, shared: Path, code: Path) -> None:
    client.deploy("efs-links", code, mounts=[f"{shared}:/mnt/shared"])
    out = call(client, "efs-links", {"escape": True})
    host_hostname = Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else ""
    # Links resolve in the sandbox's own root: its /etc/hostname, never the host's.
    assert out["via_abs_link"] == {"ok": True, "value": "lambdad\n"}
    assert out["via_rel_link"] == {"ok": True, "value": "lambdad\n"}
    assert host_hostname != "lambdad\n"
    listing = out["via_dir_link"]["value"]
    assert "var" in listing and "root" not in listing and "home" not in listing
    assert out["chown"]["ok"] is False  # no taking the file for root
    # Its owner may set the bit, but the file stays the owner's (never root's), and the
    # mount is nosuid for everyone who sees it through a sandbox.
    assert out["setuid_bit"]["ok"] is True
    assert os.stat(shared / "hello").st_uid == OWNER
    assert out["remount"]["ok"] is False
    # A link made inside points, on the host, at the host's / -- the host never follows
    # tenants' links; for the sandbox it is its own root.
    assert os.readlink(shared / "made-inside") == "/"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("{d}:/etc/passwd", "/mnt/NAME"),
        ("{d}:/mnt", "/mnt/NAME"),
        ("{d}:/mnt/..", "/mnt/NAME"),
        ("{d}:/mnt/a/b", "/mnt/NAME"),
        ("relative:/mnt/x", "absolute"),
        ("/:/mnt/x", "other than /"),
        ("{d}/../shared:/mnt/x", "normalised"),
        ("/nonexistent-lambdad-dir:/mnt/x", "No such file"),
        ("{d}/hello:/mnt/x", "not a directory"),
        ("{d}:/mnt/x:rx", "HOSTDIR:/mnt/NAME[:ro]"),
        ("{link}:/mnt/x", "symlink"),
    ],
)
def test_deploy_refuses_bad_mounts(
    client: Client, shared: Path, code: Path, spec: str, words: str
) -> None:
    link = shared.parent / "link-to-shared"
    if not link.exists():
        os.symlink(shared, link)
    with pytest.raises(InvalidParameterValue) as info:
        client.deploy("efs-bad", code, mounts=[spec.format(d=shared, link=link)])
    assert words in str(info.value)
    with pytest.raises(InvalidParameterValue):
        client.deploy("efs-bad", code, mounts=[f"{shared}:/mnt/x", f"{shared}:/mnt/x"])


def test_runtime_api_is_each_sandboxs_own(
    client: Client, code: Path, shared_daemon: DaemonProcess
) -> None:
    # A provided sandbox is serving its Runtime API on its own 127.0.0.1:9001 right now ...
    client.deploy("api-owner", FUNCTIONS / "probe", handler="probe.handler", runtime="provided")
    assert call(client, "api-owner", {"act": "probe"})["wrong_id"] == 400
    # ... and from a Python sandbox there is nothing at 127.0.0.1:9001, nor the daemon's socket.
    client.deploy("api-prober", code)
    out = call(client, "api-prober", {"api": shared_daemon.socket})
    assert out["api"] == {"ok": False, "errno": "ECONNREFUSED"}
    assert out["daemon_socket"] == {"ok": False, "errno": "ENOENT"}
    # The host's loopback port 9001 is not the sandbox's either.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 9001)) != 0
