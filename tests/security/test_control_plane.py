"""The multi-tenant control plane (issue 12 point 6): a socket user who may invoke is not an
admin, and must not read another function's secrets.

The daemon's socket is 0660, group ``lambdad``: members may connect and invoke. The test gives
the socket a group of its own choosing (as the daemon does with ``lambdad``) and connects from
forked children that drop to a uid and gids that are not root, so the daemon sees them through
``SO_PEERCRED`` as a real local account would be seen. A secret is planted where a non-admin
could look for it: the function's environment (``get``, ``list``), its log (the handler
prints it), and a dead letter's error (an async event that fails with it). The non-admin may
invoke and see names and metadata; every read of the secret is ``AccessDenied`` or redacted.
Positive controls: root sees all of it, and so does a member of the configured admin group.
"""

from __future__ import annotations

import grp
import json
import os
import re
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import LambdadError
from lambdad.frontends.unix import ACCESS, OPS, Access
from tests.conftest import ROOT, TEST_CONFIG, DaemonProcess, make_daemon, wait_for
from tests.security.conftest import CALL_TIMEOUT_S, deploy

pytestmark = pytest.mark.root

SECRET = "sk-" + uuid.uuid4().hex  # what must not leak
TENANT_UID = 54_321  # a local account that is not root and not an admin
SOCKET_GID = 54_322  # plays the group `lambdad`: may open the socket
OUTSIDER_GID = 54_323  # neither


def _admin_group() -> grp.struct_group:
    """An existing group, none of the ids above, to configure as the admin group."""
    for group in grp.getgrall():
        if group.gr_gid not in (0, SOCKET_GID, OUTSIDER_GID) and not group.gr_mem:
            return group
    raise AssertionError("this host has no group without members to use as the admin group")


ADMIN_GROUP = _admin_group()


@pytest.fixture(scope="module")
def tenant_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        config = TEST_CONFIG + f'admin_group = "{ADMIN_GROUP.gr_name}"\n'
        d = make_daemon(tmp, config)
        d.start()
        try:
            os.chmod(tmp, 0o711)  # the socket's directory: searchable by other uids
            os.chown(d.socket, 0, SOCKET_GID)  # what the daemon does with group `lambdad`
            assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
            yield d
        finally:
            d.stop()


def as_user(socket: str, uid: int, gids: list[int], calls: Callable[[Client], Any]) -> Any:
    """Run ``calls(client)`` in a forked child with these credentials; return what it
    returned (JSON), or raise AssertionError with what went wrong there."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups(gids)
            os.setresgid(gids[0], gids[0], gids[0])
            os.setresuid(uid, uid, uid)
            try:
                with Client(socket, timeout=CALL_TIMEOUT_S) as c:
                    out = {"ok": calls(c)}
            except Exception as exc:
                out = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write, "w") as f:
                json.dump(out, f, default=repr)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and text, f"the child failed: {status}"
    out = json.loads(text)
    assert "ok" in out, out["error"]
    return out["ok"]


def each_op(c: Client, name: str, delete: bool = True) -> dict[str, str]:
    """Every read and change a tenant might try on ``name``: "ok <answer>" or the error
    (``delete``: try deleting it too, last)."""
    attempts: dict[str, Callable[[], Any]] = {
        "hello": lambda: c.call("hello", version=1, client="tenant"),
        "ping": lambda: c.call("ping"),
        "invoke": lambda: c.invoke(name, {"mode": "ok"}).result,
        "invoke force_cold": lambda: c.invoke(name, {"mode": "ok"}, force_cold=True).result,
        "get": lambda: c.get(name),
        "list": lambda: c.list(),
        "stats": lambda: c.stats(),
        "stats name": lambda: c.stats(name),
        "logs": lambda: c.logs(name),
        "dead_letters": lambda: c.dead_letters(),
        "dead_letters name": lambda: c.dead_letters(name),
        # Neither changes what the other callers look at: no such event; another function.
        "redrive": lambda: c.redrive(event_id="no-such-event"),
        "deploy": lambda: c.call("deploy", name=f"{name}-new", code=b"PK\x05\x06" + bytes(18)),
    }
    if delete:
        attempts["delete"] = lambda: c.call("delete", name=name)
    outcome = {}
    for what, attempt in attempts.items():
        try:
            outcome[what] = f"ok {attempt()!r}"
        except LambdadError as exc:
            outcome[what] = f"{exc.type}: {exc}"
    return outcome


@pytest.fixture(scope="module")
def secret_function(tenant_daemon: DaemonProcess) -> str:
    """A function with the secret in its environment, its log and a dead letter."""
    name = "sec-secret"
    with tenant_daemon.client(timeout=CALL_TIMEOUT_S) as c:
        deploy(c, name, "secret", env={"API_KEY": SECRET}, timeout_s=5)
        assert c.invoke(name, {"mode": "print"}).error is None
        c.invoke(name, {"mode": "fail"}, type="async")
        wait_for(lambda: c.dead_letters(name), timeout=30)
    return name


def test_a_non_admin_may_invoke_and_see_metadata_but_no_secret(
    tenant_daemon: DaemonProcess, secret_function: str
) -> None:
    seen = as_user(
        tenant_daemon.socket, TENANT_UID, [SOCKET_GID], lambda c: each_op(c, secret_function)
    )
    leaked = {what: answer for what, answer in seen.items() if SECRET in answer}
    assert not leaked, f"a non-admin read the secret: {leaked}"
    for what in ("hello", "ping", "invoke", "get", "list", "stats", "stats name"):
        assert seen[what].startswith("ok "), (what, seen[what])
    assert "'ok': True" in seen["invoke"]
    # Names and metadata: the function, its variables' names, not their values.
    assert "'API_KEY': None" in seen["get"] and "'redacted': ['env']" in seen["get"], seen["get"]
    assert secret_function in seen["list"] and "'API_KEY': None" in seen["list"]
    for what in (
        "invoke force_cold", "logs", "dead_letters", "dead_letters name", "redrive", "deploy",
        "delete",
    ):  # fmt: skip
        assert seen[what].startswith("AccessDenied: "), (what, seen[what])
        assert ADMIN_GROUP.gr_name in seen[what]  # the message says who may


def test_admins_see_the_secret_where_it_is(
    tenant_daemon: DaemonProcess, secret_function: str
) -> None:
    """Positive control: the secret is really there, for root and for the admin group."""
    with tenant_daemon.client(timeout=CALL_TIMEOUT_S) as c:
        as_root = each_op(c, secret_function, delete=False)
    as_admin = as_user(
        tenant_daemon.socket,
        TENANT_UID + 1,
        [ADMIN_GROUP.gr_gid, SOCKET_GID],
        lambda c: each_op(c, secret_function, delete=False),
    )
    for seen in (as_root, as_admin):
        for what in ("get", "list", "logs", "dead_letters", "dead_letters name"):
            assert SECRET in seen[what], (what, seen[what])
        # Past the access check: the unknown event id itself is what is refused.
        assert seen["redrive"].startswith("ResourceNotFound: "), seen["redrive"]
        assert seen["invoke force_cold"].startswith("ok "), seen["invoke force_cold"]
        assert seen["deploy"].startswith("ok "), seen["deploy"]


def test_no_group_no_socket(tenant_daemon: DaemonProcess) -> None:
    """Someone in neither group cannot even connect (the socket is 0660)."""

    def connect(c: Client) -> str:
        return repr(c.call("ping"))

    with pytest.raises(AssertionError, match=r"Permission denied|PermissionError"):
        as_user(tenant_daemon.socket, TENANT_UID + 2, [OUTSIDER_GID], connect)


def test_every_op_has_a_decided_access_and_the_doc_says_the_same() -> None:
    """A new op must be placed in the access table (it is admin-only until then), and
    docs/security.md's table must say what the code does."""
    assert set(OPS) <= set(ACCESS), f"ops with no decided access: {sorted(set(OPS) - set(ACCESS))}"
    assert {op for op, a in ACCESS.items() if a is Access.ANYONE} == {
        "hello", "ping", "invoke", "get", "list", "stats", "aliases", "layer_list",
        # A message to a queue is an invocation of what its mappings run (as invoke is open);
        # the others show settings and counters, never message bodies.
        "queue_send", "queue_list", "mapping_get", "mapping_list", "destination_get",
    }  # fmt: skip
    text = (ROOT / "docs" / "security.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+)` \| (anyone|admin) \|", text, re.MULTILINE))
    assert documented == {op: a.value for op, a in ACCESS.items()}
