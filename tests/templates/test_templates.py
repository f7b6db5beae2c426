"""Function templates against the real daemon: copies are isolated from each other and from
their template, re-seeded, report ``source: template`` with a Restore Duration, run Lambda's
SnapStart hooks, and a copy's report, logs and exit are as exact as any sandbox's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client, Invocation
from tests.conftest import DaemonProcess, write_function

pytestmark = pytest.mark.root

NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")

# Init runs in the template: what it records is the template's, copied into every copy.
PROBE = '''
import ctypes, errno, os, random, tempfile, time, uuid

NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")
def _ns():
    return {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in NAMESPACES}

INIT_NS = _ns()
INIT_PID = os.getpid()
INIT_RANDOM = random.random()
with open("/tmp/written-during-init", "w") as f:
    f.write("template")
_libc = ctypes.CDLL(None, use_errno=True)

def _try(fn, *args):
    if fn(*args) == 0:
        return "ok"
    return errno.errorcode[ctypes.get_errno()]

def _status():
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\\n").split(":\\t", 1) for line in f if ":\\t" in line)

def handler(event, context):
    time.sleep(event.get("hold", 0))  # to keep two copies alive at once
    mine = event.get("mine")
    seen = None
    if mine:
        seen = sorted(os.listdir("/tmp"))
        with open(f"/tmp/{mine}", "w") as f:
            f.write(mine)
    status = _status()
    return {
        "ns": _ns(),
        "init_ns": INIT_NS,
        "pid": os.getpid(),
        "init_pid": INIT_PID,
        "uid": os.getuid(),
        "uuid": str(uuid.uuid4()),
        "random": random.random(),
        "init_random": INIT_RANDOM,
        "tempname": next(tempfile._get_candidate_names()),
        "tmp_before": seen,
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "signal_others": [
            _try(_libc.kill, pid, 0) for pid in range(2, 40)
        ],
        "unshare_user": _try(_libc.unshare, 0x10000000),
        "unshare_ns": _try(_libc.unshare, 0x00020000),
        "mount_tmpfs": _try(_libc.mount, b"tmpfs", b"/tmp", b"tmpfs", 0, None),
        "caps": [status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
        "seccomp": [status["Seccomp"], status.get("Seccomp_filters")],
        "no_new_privs": status["NoNewPrivs"],
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
'''

HOOKS = '''
import os
from snapshot_restore_py import register_after_restore, register_before_snapshot

STATE = {"before": 0, "after": 0, "connection": None}

@register_before_snapshot
def close_connection():
    STATE["before"] += 1
    STATE["connection"] = None

@register_after_restore
def reconnect():
    STATE["after"] += 1
    STATE["connection"] = os.urandom(8).hex()
    print("after-restore ran")

STATE["connection"] = "made during init"

def handler(event, context):
    return dict(STATE)
'''


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=60) as c:
        yield c


def deploy(c: Client, tmp: Path, name: str, source: str, **config: object) -> None:
    code = write_function(tmp / name, source)
    c.deploy(name, str(code), template=True, timeout_s=10, **config)


def cold(c: Client, name: str, event: object = None, **kw: object) -> Invocation:
    """A new sandbox for this invocation (and retired after it): a copy of the template."""
    inv = c.invoke(name, event if event is not None else {}, force_cold=True, **kw)
    assert inv.error is None, inv.error
    assert inv.report is not None and inv.report.source == "template", inv.report
    return inv


def together(daemon: DaemonProcess, name: str, events: list[dict[str, object]]) -> list[Any]:
    """Cold invocations at once, one connection each, held long enough to be alive together
    (a namespace's id is reused only once it is gone)."""

    def one(event: dict[str, object]) -> Any:
        with daemon.client(timeout=60) as c:
            return cold(c, name, {"hold": 0.5, **event}).result

    with ThreadPoolExecutor(len(events)) as pool:
        return list(pool.map(one, events))


def test_copies_are_isolated_from_each_other_and_the_template(
    client: Client, shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    deploy(client, tmp_path, "tpl-probe", PROBE)
    a, b = together(shared_daemon, "tpl-probe", [{"mine": "a-secret"}, {"mine": "b-secret"}])
    for out in (a, b):
        # Own namespaces: none is the template's (what Init saw), none the other copy's.
        for ns in NAMESPACES:
            assert out["ns"][ns] != out["init_ns"][ns], f"{ns} namespace is the template's"
        assert out["pid"] == 1 and out["procs"] == [1], "sees processes besides itself"
        assert set(out["signal_others"]) == {"ESRCH"}, "can signal the template or a copy"
        # Own /tmp: neither the template's (written during Init) nor the other copy's.
        assert out["tmp_before"] == []
        # No capability in any set, no_new_privs, and the full filter on the template's.
        assert out["caps"] == ["0000000000000000"] * 5
        assert out["no_new_privs"] == "1"
        assert out["seccomp"] == ["2", "2"]
        # What the template's wider filter allows, the copy's stacked full filter refuses.
        assert out["unshare_user"] == "EPERM" and out["unshare_ns"] == "EPERM"
        assert out["mount_tmpfs"] == "EPERM"
        assert out["uid"] >= 100_000
        assert out["init_type"] == "snap-start"
    for ns in NAMESPACES:
        assert a["ns"][ns] != b["ns"][ns], f"two copies share a {ns} namespace"
    host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in NAMESPACES}
    assert not set(a["ns"].values()) & set(host.values())


def test_randomness_is_reseeded_in_every_copy(client: Client, tmp_path: Path) -> None:
    deploy(client, tmp_path, "tpl-random", PROBE)
    outs = [cold(client, "tpl-random").result for _ in range(3)]
    assert len({o["uuid"] for o in outs}) == 3
    assert len({o["random"] for o in outs}) == 3
    assert len({o["tempname"] for o in outs}) == 3
    # Init's draw was made once, in the template: every copy has the same one.
    assert len({o["init_random"] for o in outs}) == 1
    assert all(o["random"] != o["init_random"] for o in outs)


def test_concurrent_cold_invocations_are_all_copies(
    client: Client, shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    deploy(client, tmp_path, "tpl-concurrent", PROBE)
    outs = together(shared_daemon, "tpl-concurrent", [{}] * 8)
    assert len({o["uuid"] for o in outs}) == 8
    assert len({o["ns"]["net"] for o in outs}) == 8  # all alive at once: all distinct


def test_more_live_copies_than_one_sandboxs_pids_max(
    client: Client, shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Copies share their template's uid, and RLIMIT_NPROC counts a uid's tasks up the user
    namespace chain: the template's limit must not be what bounds its copies together."""
    deploy(client, tmp_path, "tpl-nproc", PROBE, pids_max=8)
    outs = together(shared_daemon, "tpl-nproc", [{}] * 12)
    assert len({o["uuid"] for o in outs}) == 12


def test_report_has_restore_duration_not_init_duration(client: Client, tmp_path: Path) -> None:
    deploy(client, tmp_path, "tpl-report", PROBE)
    inv = cold(client, "tpl-report", log_tail=True)
    report = inv.report
    assert report is not None
    assert report.init_ms is None and report.restore_ms is not None and report.restore_ms > 0
    assert report.cold and report.duration_ms > 0 and report.billed_ms >= 1
    assert report.max_memory_used_mb >= 1
    line = report.line()
    assert "Init Duration" not in line
    assert f"Restore Duration: {report.restore_ms:.2f} ms" in line
    assert "Billed Restore Duration: " in line
    assert inv.log_tail is not None
    assert f"REPORT RequestId: {inv.request_id}" in inv.log_tail
    assert "restore_roundtrip" in report.phases_us
    # A warm invocation of the same copy is an ordinary warm one.
    warm = client.invoke("tpl-report", {})
    assert warm.report is not None and warm.report.source in ("warm", "template")


def test_snapshot_restore_hooks_run_where_lambda_runs_them(
    client: Client, tmp_path: Path
) -> None:
    deploy(client, tmp_path, "tpl-hooks", HOOKS)
    first = cold(client, "tpl-hooks", log_tail=True)
    second = cold(client, "tpl-hooks")
    for inv in (first, second):
        # before_snapshot ran once, in the template; after_restore once in each copy.
        assert inv.result["before"] == 1 and inv.result["after"] == 1
    assert first.result["connection"] != second.result["connection"]
    # The hook's output is in each copy's log stream, before its invocation's START (copies
    # restored ahead of demand have run theirs too).
    text, _ = client.logs("tpl-hooks", request_id=None)
    assert text.count("after-restore ran") >= 2
    assert text.index("after-restore ran") < text.index(f"START RequestId: {first.request_id}")


def test_an_after_restore_hook_that_raises_fails_the_restore(
    client: Client, tmp_path: Path
) -> None:
    source = (
        "from snapshot_restore_py import register_after_restore\n\n"
        "@register_after_restore\n"
        "def reconnect():\n    raise ConnectionError('database unreachable')\n\n"
        "def handler(event, context):\n    return 1\n"
    )
    deploy(client, tmp_path, "tpl-hook-fails", source)
    inv = client.invoke("tpl-hook-fails", {})
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError"
    assert "restore failed" in inv.error["errorMessage"]
    assert inv.report is not None and inv.report.source == "template"
    assert inv.report.restore_ms is not None and inv.report.init_ms is None
    text, _ = client.logs("tpl-hook-fails")
    assert "ConnectionError" in text and "database unreachable" in text


def test_a_copys_exit_is_reported_exactly(client: Client, tmp_path: Path) -> None:
    deploy(
        client,
        tmp_path,
        "tpl-exit",
        "import os\n\ndef handler(event, context):\n    os._exit(event['code'])\n",
    )
    inv = client.invoke("tpl-exit", {"code": 7}, force_cold=True)
    assert inv.error is not None
    assert inv.error["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in inv.error["errorMessage"]
    assert inv.report is not None and inv.report.source == "template"
    assert inv.report.status == "error" and inv.report.error_type == "Runtime.ExitError"
    # The template outlives its copy: the next cold start is another copy.
    again = client.invoke("tpl-exit", {"code": 3}, force_cold=True)
    assert again.error is not None and "exit status 3" in again.error["errorMessage"]


def test_an_init_error_fails_the_invocation_and_is_retried(
    client: Client, tmp_path: Path
) -> None:
    deploy(client, tmp_path, "tpl-init-error", "raise RuntimeError('init went wrong')\n")
    inv = client.invoke("tpl-init-error", {})
    assert inv.error is not None and inv.error["errorType"] == "RuntimeError"
    assert "init went wrong" in inv.error["errorMessage"]
    # No template was kept: the next invocation runs Init again (and fails again).
    again = client.invoke("tpl-init-error", {})
    assert again.error is not None and again.error["errorType"] == "RuntimeError"


def test_init_that_leaves_a_thread_cannot_be_a_template(client: Client, tmp_path: Path) -> None:
    source = (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
        "def handler(event, context):\n    return 1\n"
    )
    deploy(client, tmp_path, "tpl-thread", source)
    inv = client.invoke("tpl-thread", {})
    assert inv.error is not None
    assert inv.error["errorType"] == "Sandbox.TemplateError"
    assert "threads after Init" in inv.error["errorMessage"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"template": "yes"}, "template must be true or false"),
        ({"template": True, "network": "egress"}, "needs network = 'none'"),
        ({"template": True, "runtime": "nodejs20.x"}, "needs a python runtime"),
    ],
)
def test_bad_template_settings_are_refused(
    client: Client, tmp_path: Path, config: dict[str, object], message: str
) -> None:
    code = write_function(tmp_path / "bad", "def handler(e, c):\n    return 1\n")
    with pytest.raises(Exception) as info:
        client.deploy(f"tpl-bad-{uuid.uuid4().hex[:8]}", str(code), **config)
    assert message in str(info.value)

