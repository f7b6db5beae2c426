"""Tests for sandbox.cgroups.

Three layers:

* pure logic (limits arithmetic, mountinfo parsing) — no privileges;
* the v2 backend against a temporary directory that mimics cgroupfs (control files as plain,
  initially empty files) — checks the exact values written, no privileges;
* the real kernel, as root: v1 against /sys/fs/cgroup/<controller>, v2 against the cgroup2
  hierarchy at /sys/fs/cgroup/unified (only the parts whose files exist there). Every effect is
  proved with a forked child: it joins, allocates, forks, spins or gets killed.

Nothing sleeps to wait for an effect: conditions are polled against a generous deadline.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.cgroups import (
    Cgroup,
    CgroupError,
    CgroupLimits,
    V1Backend,
    V2Backend,
    detect,
    is_cgroup2_mount,
)
from sandbox.cgroups.base import rmdir_retry
from sandbox.cgroups.v1 import V1Cgroup
from sandbox.cgroups.v2 import V2Cgroup

IS_ROOT = os.geteuid() == 0
skip_unless_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (real cgroups)")

DEADLINE_S = 10.0
MiB = 1 << 20
V1_ROOT = "/sys/fs/cgroup"
V2_ROOT = "/sys/fs/cgroup/unified"
TEST_PARENT = f"lambdad-test-{os.getpid()}"


# -- helpers ---------------------------------------------------------------------------------------


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``cond`` with a short backoff until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def assert_stays(cond: Callable[[], bool], what: str, seconds: float = 0.2) -> None:
    """Check that ``cond`` holds throughout an observation window (proving *absence* of
    progress needs some time to pass; this is not waiting for anything)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cond(), what


def read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def flat_keyed(path: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in read(path).splitlines())


def is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper that is not us."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class Child:
    """A forked process running ``body(child)``; talks to the test over two pipes.

    The child always leaves through ``os._exit`` (70 on an exception, after printing it), so
    it never runs pytest's code. ``close`` SIGKILLs and reaps it if it is still there.
    """

    def __init__(self, body: Callable[[Child], None]) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(down_w)
                os.close(up_r)
                self._r, self._w = down_r, up_w
                body(self)
            except BaseException:
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid = pid
        self._r, self._w = up_r, down_w
        self._pidfd = os.pidfd_open(pid)
        self.status: int | None = None

    # Both sides use these two.
    def send(self, msg: bytes = b".") -> None:
        os.write(self._w, msg)

    def recv(self, timeout: float | None = DEADLINE_S) -> bytes:
        """One message (each is one small write, so one read); b"" on EOF."""
        ready, _, _ = select.select([self._r], [], [], timeout)
        if not ready:
            raise AssertionError(f"no message from pid {self.pid} within {timeout} s")
        return os.read(self._r, 4096)

    # Test side only.
    def wait(self, timeout: float = DEADLINE_S) -> int:
        """The wait status once the child has exited."""
        if self.status is None:
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            if not ready:
                raise AssertionError(f"pid {self.pid} still running after {timeout} s")
            _, self.status = os.waitpid(self.pid, 0)
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        for fd in (self._r, self._w, self._pidfd):
            os.close(fd)


@contextlib.contextmanager
def child(body: Callable[[Child], None]) -> Iterator[Child]:
    c = Child(body)
    try:
        yield c
    finally:
        c.close()


def killed_by_sigkill(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


# Child bodies. Each one ends by blocking on recv(): EOF (the test closed the pipe or died)
# makes it exit, so no child outlives a test.


def idle(c: Child) -> None:
    c.recv(None)


def joins_then_idles(cg: Cgroup) -> Callable[[Child], None]:
    def body(c: Child) -> None:
        cg.attach(0)
        c.send(b"joined")
        c.recv(None)

    return body


def joins_then_allocates(cg: Cgroup, nbytes: int) -> Callable[[Child], None]:
    def body(c: Child) -> None:
        cg.attach(0)
        data = b"\x01" * nbytes  # filled by memset, so every page is really charged
        c.send(str(len(data)).encode())
        c.recv(None)

    return body


def joins_then_exhausts_memory(cg: Cgroup) -> Callable[[Child], None]:
    def body(c: Child) -> None:
        cg.attach(0)
        chunks = [b"\x01" * MiB for _ in range(512)]
        c.send(f"survived {len(chunks)} MiB".encode())  # the test fails on this
        c.recv(None)

    return body


def joins_then_forks(cg: Cgroup, attempts: int, report_error: bool) -> Callable[[Child], None]:
    """Fork up to ``attempts`` grandchildren that block until this child exits."""

    def body(c: Child) -> None:
        cg.attach(0)
        hold_r, hold_w = os.pipe()
        made: list[int] = []
        failure = 0
        for _ in range(attempts):
            try:
                pid = os.fork()
            except OSError as exc:
                failure = exc.errno or -1
                break
            if pid == 0:
                os.close(hold_w)
                os.read(hold_r, 1)  # EOF when the child exits
                os._exit(0)
            made.append(pid)
        c.send(f"{len(made)} {failure}".encode() if report_error else b"forked")
        c.recv(None)
        os.close(hold_w)
        for pid in made:
            os.waitpid(pid, 0)

    return body


def counter_body(cg: Cgroup, counter: mmap.mmap) -> Callable[[Child], None]:
    def body(c: Child) -> None:
        cg.attach(0)
        view = memoryview(counter).cast("Q")
        c.send(b"joined")
        while True:
            view[0] += 1

    return body


def counter_value(counter: mmap.mmap) -> int:
    value: int = struct.unpack_from("Q", counter, 0)[0]
    return value


# -- CgroupLimits: pure arithmetic -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_mb", "cpu_weight", "v1_shares", "v2_weight"),
    [
        (128, None, 74, 7),  # 128/1769 of a vCPU
        (1769, None, 1024, 100),  # Lambda's one full vCPU
        (3538, None, 2048, 200),
        (10240, None, 5928, 579),  # Lambda's maximum, ~5.8 vCPUs
        (1, None, 2, 1),  # clamped to the kernel minimums
        (1_000_000, None, 262144, 10000),  # clamped to the kernel maximums
        (128, 250, 2560, 250),  # explicit weight, in v2 units
        (128, 1, 10, 1),
        (128, 10000, 102400, 10000),
    ],
)
def test_cpu_weight_derivation(
    memory_mb: int, cpu_weight: int | None, v1_shares: int, v2_weight: int
) -> None:
    limits = CgroupLimits(memory_mb=memory_mb, cpu_weight=cpu_weight)
    assert limits.v1_cpu_shares() == v1_shares
    assert limits.v2_cpu_weight() == v2_weight


def test_limits_defaults_and_validation() -> None:
    limits = CgroupLimits(memory_mb=128)
    assert (limits.pids_max, limits.cpu_weight, limits.memory_bytes) == (64, None, 128 * MiB)
    with pytest.raises(ValueError, match="memory_mb"):
        CgroupLimits(memory_mb=0)
    with pytest.raises(ValueError, match="pids_max"):
        CgroupLimits(memory_mb=128, pids_max=0)
    with pytest.raises(ValueError, match="cpu_weight"):
        CgroupLimits(memory_mb=128, cpu_weight=10001)


# -- mount detection -------------------------------------------------------------------------------


def test_is_cgroup2_mount_reads_mountinfo(tmp_path: Path) -> None:
    weird = tmp_path / "cg two"
    weird.mkdir()
    escaped = str(weird).replace(" ", "\\040")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"31 23 0:28 / {tmp_path} rw,relatime - tmpfs tmpfs rw\n"
        f"40 31 0:38 / {escaped} rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
    )
    assert is_cgroup2_mount(str(weird), str(mountinfo))
    assert not is_cgroup2_mount(str(tmp_path), str(mountinfo))
    # A later mount over the same point hides the earlier one.
    with mountinfo.open("a") as f:
        f.write(f"41 40 0:39 / {escaped} rw - tmpfs tmpfs rw\n")
    assert not is_cgroup2_mount(str(weird), str(mountinfo))


# -- v2 against a directory that mimics cgroupfs ---------------------------------------------------

V2_CONTROL = ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control")
V2_LEAF = (
    "cgroup.procs",
    "cgroup.kill",
    "cgroup.freeze",
    "memory.max",
    "memory.swap.max",
    "memory.peak",
    "memory.current",
    "memory.events",
    "pids.max",
    "cpu.weight",
)


def fake_cgroup(path: Path, files: tuple[str, ...], controllers: str = "") -> Path:
    """A directory with empty control files, like a fresh cgroup (cgroupfs would make them on
    mkdir; here they must exist beforehand). Empty, so that what a test reads back is exactly
    what the backend wrote (the backend writes without O_TRUNC, as cgroupfs needs none)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text("")
    (path / "cgroup.controllers").write_text(controllers + "\n")
    return path


def fake_tree(
    tmp_path: Path,
    *,
    controllers: str = "cpuset cpu io memory hugetlb pids rdma misc",
    own: str = "",
    sandboxes: tuple[str, ...] = ("sb",),
    leaf_files: tuple[str, ...] = V2_LEAF,
) -> Path:
    """mount_root [/own] /lambdad /<sandbox>; returns the directory the parent goes in."""
    base = fake_cgroup(tmp_path, V2_CONTROL, controllers)
    if own:
        base = fake_cgroup(tmp_path / own.strip("/"), (*V2_CONTROL, "cgroup.type"), controllers)
        fake_cgroup(base / "supervisor", V2_CONTROL)
    parent = fake_cgroup(base / "lambdad", (*V2_CONTROL, *leaf_files), controllers)
    for name in sandboxes:
        fake_cgroup(parent / name, leaf_files)
    return base


def test_v2_enables_controllers_and_writes_exact_limits(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    backend = V2Backend(str(tmp_path), "lambdad", own="/")
    assert not backend.delegated
    assert backend.root == f"{tmp_path}/lambdad"
    assert backend.controllers == ("cpu", "memory", "pids")
    # Enabled one level above the parent (so the parent has the files) and in the parent.
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "lambdad/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert backend.missing() == []

    cg = backend.create("sb")
    assert (tmp_path / "lambdad/sb/memory.swap.max").read_text() == "0"  # swap off at birth
    cg.set_limits(CgroupLimits(memory_mb=128))
    sb = tmp_path / "lambdad/sb"
    written = {f: (sb / f).read_text() for f in ("memory.max", "memory.swap.max", "pids.max")}
    assert written == {"memory.max": str(128 * MiB), "memory.swap.max": "0", "pids.max": "64"}
    assert (sb / "cpu.weight").read_text() == "7"


def test_v2_explicit_cpu_weight_and_pids(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    cg = V2Backend(str(tmp_path), "lambdad", own="/").open("sb")
    cg.set_limits(CgroupLimits(memory_mb=1769, pids_max=8, cpu_weight=250))
    sb = tmp_path / "lambdad/sb"
    assert (sb / "cpu.weight").read_text() == "250"
    assert (sb / "pids.max").read_text() == "8"
    assert (sb / "memory.max").read_text() == str(1769 * MiB)


def test_v2_attach_freeze_kill_write_the_right_files(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    cg = V2Backend(str(tmp_path), "lambdad", own="/").open("sb")
    sb = tmp_path / "lambdad/sb"
    cg.attach(4242)
    assert (sb / "cgroup.procs").read_text() == "4242"
    cg.freeze()
    assert (sb / "cgroup.freeze").read_text() == "1"
    cg.thaw()
    assert (sb / "cgroup.freeze").read_text() == "0"
    (sb / "cgroup.procs").write_text("")
    cg.kill()  # cgroup.procs is empty, so nothing is signalled
    assert (sb / "cgroup.kill").read_text() == "1"


def test_v2_reads_peak_and_oom_kills(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    backend = V2Backend(str(tmp_path), "lambdad", own="/")
    sb = tmp_path / "lambdad/sb"
    cg = backend.open("sb")
    assert cg.memory_peak_bytes() == 0  # empty file: unreadable as a number
    assert cg.oom_kills() == 0
    (sb / "memory.peak").write_text("25165824\n")
    (sb / "memory.current").write_text("4096\n")
    (sb / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert cg.memory_peak_bytes() == 25165824
    assert cg.oom_kills() == 2
    assert backend.open("nonexistent").memory_peak_bytes() == 0


def test_v2_peak_falls_back_to_memory_current(tmp_path: Path) -> None:
    files = tuple(f for f in V2_LEAF if f != "memory.peak")  # Linux < 5.19
    fake_tree(tmp_path, leaf_files=files)
    cg = V2Backend(str(tmp_path), "lambdad", own="/").open("sb")
    (tmp_path / "lambdad/sb/memory.current").write_text("8192\n")
    assert cg.memory_peak_bytes() == 8192


def test_v2_missing_controllers_are_reported_and_skipped(tmp_path: Path) -> None:
    files = tuple(f for f in V2_LEAF if f not in ("memory.swap.max", "cgroup.freeze"))
    fake_tree(tmp_path, controllers="cpu memory io", leaf_files=files)
    backend = V2Backend(str(tmp_path), "lambdad", own="/")
    assert backend.controllers == ("cpu", "memory")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory"
    missing = "\n".join(backend.missing())
    assert "no pids controller" in missing and "RLIMIT_NPROC" in missing
    assert "memory.swap.max" in missing
    assert "cgroup.freeze" in missing
    cg = backend.open("sb")
    cg.set_limits(CgroupLimits(memory_mb=64))
    cg.freeze()  # no freezer: a no-op
    sb = tmp_path / "lambdad/sb"
    assert (sb / "pids.max").read_text() == ""
    assert (sb / "memory.max").read_text() == str(64 * MiB)


def test_v2_already_enabled_controllers_are_not_rewritten(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    for d in (tmp_path, tmp_path / "lambdad"):
        (d / "cgroup.subtree_control").write_text("cpu memory pids\n")
    V2Backend(str(tmp_path), "lambdad", own="/")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_v2_systemd_delegation_uses_a_supervisor_leaf(tmp_path: Path) -> None:
    service = "/system.slice/lambdad.service"
    base = fake_tree(tmp_path, own=service)
    backend = V2Backend(str(tmp_path), "lambdad", own=service)
    assert backend.delegated
    assert backend.root == f"{tmp_path}{service}/lambdad"
    # The daemon moved itself out of the service cgroup before enabling controllers there.
    assert (base / "supervisor/cgroup.procs").read_text() == "0"
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (base / "lambdad/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    # Nothing was touched above the delegated cgroup.
    assert (tmp_path / "cgroup.subtree_control").read_text() == ""
    # A zygote started afterwards lives in .../supervisor and must find the same parent.
    zygote = V2Backend(str(tmp_path), "lambdad", own=f"{service}/supervisor")
    assert zygote.root == backend.root


def test_v2_names_must_be_one_path_component(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    backend = V2Backend(str(tmp_path), "lambdad", own="/")
    for bad in ("", ".", "..", "a/b", "../escape"):
        with pytest.raises(ValueError):
            backend.create(bad)


def test_write_errors_name_the_file_and_the_value(tmp_path: Path) -> None:
    fake_tree(tmp_path)
    cg = V2Backend(str(tmp_path), "lambdad", own="/").open("gone")
    with pytest.raises(CgroupError) as info:
        cg.set_limits(CgroupLimits(memory_mb=128))
    assert info.value.errno == errno.ENOENT
    assert f"write '{tmp_path}/lambdad/gone/memory.max' <- '134217728'" in str(info.value)


def test_v2_cleanup_removes_leftovers(tmp_path: Path) -> None:
    fake_tree(tmp_path, sandboxes=())
    backend = V2Backend(str(tmp_path), "lambdad", own="/")
    for name in ("a", "b"):
        (tmp_path / "lambdad" / name).mkdir()  # empty dirs: no cgroup.procs, no tasks
    backend.cleanup()
    assert sorted(p.name for p in (tmp_path / "lambdad").iterdir() if p.is_dir()) == []


# -- v1, real kernel -------------------------------------------------------------------------------


def thaw_children(parent: str, freeze_file: str, thawed: str) -> None:
    """Thaw every child cgroup by hand, so that a failing test (or a broken ``kill``) cannot
    leave frozen processes behind on a shared machine."""
    with contextlib.suppress(FileNotFoundError), os.scandir(parent) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError), open(f"{entry.path}/{freeze_file}", "w") as f:
                    f.write(thawed)


@pytest.fixture
def v1() -> Iterator[V1Backend]:
    if not os.path.isfile(f"{V1_ROOT}/memory/memory.limit_in_bytes"):
        pytest.skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    backend = V1Backend(V1_ROOT, TEST_PARENT)
    try:
        yield backend
    finally:
        if "freezer" in backend.parents:
            thaw_children(backend.parents["freezer"], "freezer.state", "THAWED")
        backend.cleanup()
        for path in dict.fromkeys(backend.parents.values()):
            rmdir_retry(path)


def freezer_state(cg: V1Cgroup) -> str:
    return read(cg.dirs["freezer"] + "/freezer.state")


@pytest.mark.root
@skip_unless_root
class TestV1:
    def test_detect_picks_v1_on_this_host(self) -> None:
        if not os.path.isfile(f"{V1_ROOT}/memory/memory.limit_in_bytes"):
            pytest.skip("this host has no cgroup v1 memory controller")
        backend = detect(parent=TEST_PARENT)
        try:
            assert isinstance(backend, V1Backend)
            assert backend.version == 1
            assert set(backend.parents) >= {"memory", "cpu", "pids", "freezer"}
        finally:
            if isinstance(backend, V1Backend):
                for path in dict.fromkeys(backend.parents.values()):
                    rmdir_retry(path)

    def test_create_is_idempotent_and_destroy_removes_every_dir(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        assert len(cg.paths) == len(set(cg.paths)) >= 4
        assert all(os.path.isdir(p) for p in cg.paths)
        assert v1.create("sb").paths == cg.paths
        assert cg.procs() == []
        cg.destroy()
        assert not any(os.path.exists(p) for p in cg.paths)
        cg.destroy()  # idempotent

    def test_attach_by_pid_from_the_parent(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        with child(idle) as c:
            cg.attach(c.pid)
            assert cg.procs() == [c.pid]
            lines = read(f"/proc/{c.pid}/cgroup").splitlines()
            for ctrl in ("memory", "cpu", "pids", "freezer"):
                line = next(x for x in lines if ctrl in x.split(":")[1].split(","))
                assert line.endswith(f"/{TEST_PARENT}/sb"), line

    def test_attach_self_from_a_forked_child(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        with child(joins_then_idles(cg)) as c:
            assert c.recv() == b"joined"
            for path in cg.paths:
                assert read(path + "/cgroup.procs").split() == [str(c.pid)]

    def test_set_limits_reads_back(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        mem, cpu, pids = cg.dirs["memory"], cg.dirs["cpu"], cg.dirs["pids"]
        memsw = mem + "/memory.memsw.limit_in_bytes"
        cg.set_limits(CgroupLimits(memory_mb=128))
        assert read(mem + "/memory.limit_in_bytes") == str(128 * MiB)
        if os.path.exists(memsw):
            assert read(memsw) == str(128 * MiB)
        assert read(mem + "/memory.swappiness") == "0"
        assert read(cpu + "/cpu.shares") == "74"
        assert read(pids + "/pids.max") == "64"
        # Up and down again: memsw must stay >= the limit at every step, so the write order
        # flips; a wrong order fails with EINVAL.
        for mb in (512, 64):
            cg.set_limits(CgroupLimits(memory_mb=mb, pids_max=10, cpu_weight=200))
            assert read(mem + "/memory.limit_in_bytes") == str(mb * MiB)
            if os.path.exists(memsw):
                assert read(memsw) == str(mb * MiB)
            assert read(cpu + "/cpu.shares") == "2048"
            assert read(pids + "/pids.max") == "10"
        # A second object for the same cgroup (the daemon opening the zygote's) does not know
        # the current limit and must still get the order right.
        v1.open("sb").set_limits(CgroupLimits(memory_mb=1024))
        assert read(mem + "/memory.limit_in_bytes") == str(1024 * MiB)

    def test_memory_peak_counts_what_the_child_allocated(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        cg.set_limits(CgroupLimits(memory_mb=256))
        with child(joins_then_allocates(cg, 24 * MiB)) as c:
            assert c.recv() == str(24 * MiB).encode()
            assert cg.memory_peak_bytes() > 20 * MiB
        assert cg.oom_kills() == 0

    def test_oom_kills_a_child_past_its_limit(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        cg.set_limits(CgroupLimits(memory_mb=32))
        with child(joins_then_exhausts_memory(cg)) as c:
            status = c.wait()
            assert killed_by_sigkill(status), f"wait status {status:#x}"
        assert cg.oom_kills() >= 1
        assert cg.memory_peak_bytes() <= 32 * MiB

    def test_pids_limit_stops_forks(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        cg.set_limits(CgroupLimits(memory_mb=256, pids_max=4))
        with child(joins_then_forks(cg, attempts=10, report_error=True)) as c:
            forked, error = map(int, c.recv().split())
            # The child itself is one of the four.
            assert (forked, error) == (3, errno.EAGAIN)
            assert len(cg.procs()) == 4
            c.send()
            assert os.WIFEXITED(c.wait()) and os.WEXITSTATUS(c.wait()) == 0

    def test_freeze_stops_a_spinning_child_and_thaw_resumes_it(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        counter = mmap.mmap(-1, 8)
        with child(counter_body(cg, counter)) as c:
            assert c.recv() == b"joined"
            wait_for(lambda: counter_value(counter) > 0, "the child to start counting")
            cg.freeze()
            wait_for(lambda: freezer_state(cg) == "FROZEN", "freezer.state FROZEN")
            frozen_at = counter_value(counter)
            assert_stays(lambda: counter_value(counter) == frozen_at, "a frozen child counted")
            cg.thaw()
            wait_for(lambda: freezer_state(cg) == "THAWED", "freezer.state THAWED")
            wait_for(lambda: counter_value(counter) > frozen_at, "the thawed child to count")
        counter.close()

    def test_kill_kills_every_process_even_when_frozen(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        with child(joins_then_forks(cg, attempts=3, report_error=False)) as c:
            assert c.recv() == b"forked"
            pids = cg.procs()
            assert len(pids) == 4 and c.pid in pids
            cg.freeze()
            wait_for(lambda: freezer_state(cg) == "FROZEN", "freezer.state FROZEN")
            cg.kill()
            assert cg.procs() == []
            assert killed_by_sigkill(c.wait())
            wait_for(lambda: all(is_dead(p) for p in pids), "the grandchildren to die")

    def test_destroy_kills_and_removes(self, v1: V1Backend) -> None:
        cg = v1.create("sb")
        with child(joins_then_idles(cg)) as c:
            assert c.recv() == b"joined"
            cg.destroy()
            assert killed_by_sigkill(c.wait())
        assert not any(os.path.exists(p) for p in cg.paths)

    def test_cleanup_destroys_leftovers_of_a_crashed_daemon(self, v1: V1Backend) -> None:
        a, b = v1.create("left-a"), v1.create("left-b")
        with child(joins_then_idles(b)) as c:
            assert c.recv() == b"joined"
            V1Backend(V1_ROOT, TEST_PARENT).cleanup()  # a fresh daemon's view
            assert killed_by_sigkill(c.wait())
        assert not any(os.path.exists(p) for p in (*a.paths, *b.paths))
        assert all(os.listdir(p) for p in v1.parents.values())  # control files only remain
        assert not any(e.is_dir() for p in v1.parents.values() for e in os.scandir(p)), (
            "child cgroups left"
        )

    def test_unmounted_controllers_are_reported(self) -> None:
        backend = V1Backend(V1_ROOT, TEST_PARENT, controllers=("memory", "nosuch"))
        try:
            assert set(backend.parents) == {"memory"}
            assert any("no nosuch controller" in line for line in backend.missing())
        finally:
            rmdir_retry(backend.parents["memory"])

    def test_open_does_not_create(self, v1: V1Backend) -> None:
        cg = v1.open("never-made")
        assert not any(os.path.exists(p) for p in cg.paths)
        assert cg.procs() == []
        assert cg.memory_peak_bytes() == 0 and cg.oom_kills() == 0
        with pytest.raises(CgroupError, match=r"write '.*/never-made/cgroup.procs' <- '0'"):
            cg.attach(0)


# -- v2, real kernel (the cgroup2 hierarchy at /sys/fs/cgroup/unified) -----------------------------


@pytest.fixture
def v2() -> Iterator[V2Backend]:
    if not is_cgroup2_mount(V2_ROOT):
        pytest.skip(f"no cgroup2 hierarchy at {V2_ROOT}")
    backend = V2Backend(V2_ROOT, TEST_PARENT)
    try:
        yield backend
    finally:
        thaw_children(backend.root, "cgroup.freeze", "0")
        backend.cleanup()
        rmdir_retry(backend.root)


def need(cg: V2Cgroup, filename: str) -> str:
    path = f"{cg.path}/{filename}"
    if not os.path.exists(path):
        pytest.skip(f"{filename} does not exist in this cgroup2 hierarchy")
    return path


@pytest.mark.root
@skip_unless_root
class TestV2Real:
    def test_attach_populated_kill(self, v2: V2Backend) -> None:
        cg = v2.create("sb")
        assert os.path.isdir(cg.path)
        with child(joins_then_idles(cg)) as c:
            assert c.recv() == b"joined"
            assert cg.procs() == [c.pid]
            assert read(f"/proc/{c.pid}/cgroup").splitlines()[-1].endswith(f"/{TEST_PARENT}/sb")
            events = need(cg, "cgroup.events")
            assert flat_keyed(events)["populated"] == "1"
            cg.kill()
            assert cg.procs() == []
            assert killed_by_sigkill(c.wait())
            wait_for(lambda: flat_keyed(events)["populated"] == "0", "populated 0")

    def test_cgroup_kill_takes_the_whole_tree(self, v2: V2Backend) -> None:
        cg = v2.create("sb")
        kill_file = need(cg, "cgroup.kill")
        with child(joins_then_forks(cg, attempts=3, report_error=False)) as c:
            assert c.recv() == b"forked"
            pids = cg.procs()
            assert len(pids) == 4
            with open(kill_file, "w") as f:  # the kernel's own kill, not our loop
                f.write("1")
            assert killed_by_sigkill(c.wait())
            wait_for(lambda: cg.procs() == [], "cgroup.kill to empty the cgroup")
            wait_for(lambda: all(is_dead(p) for p in pids), "the grandchildren to die")

    def test_freeze_really_freezes(self, v2: V2Backend) -> None:
        cg = v2.create("sb")
        need(cg, "cgroup.freeze")
        events = need(cg, "cgroup.events")
        counter = mmap.mmap(-1, 8)
        with child(counter_body(cg, counter)) as c:
            assert c.recv() == b"joined"
            wait_for(lambda: counter_value(counter) > 0, "the child to start counting")
            cg.freeze()
            wait_for(lambda: flat_keyed(events).get("frozen") == "1", "cgroup.events frozen 1")
            frozen_at = counter_value(counter)
            assert_stays(lambda: counter_value(counter) == frozen_at, "a frozen child counted")
            cg.thaw()
            wait_for(lambda: flat_keyed(events).get("frozen") == "0", "cgroup.events frozen 0")
            wait_for(lambda: counter_value(counter) > frozen_at, "the thawed child to count")
            # A frozen v2 cgroup can be killed without thawing it first.
            cg.freeze()
            wait_for(lambda: flat_keyed(events).get("frozen") == "1", "frozen again")
            cg.destroy()
            assert killed_by_sigkill(c.wait())
        counter.close()
        assert not os.path.exists(cg.path)

    def test_limits_apply_only_to_available_controllers(self, v2: V2Backend) -> None:
        cg = v2.create("sb")
        cg.set_limits(CgroupLimits(memory_mb=128))  # must not fail on absent controllers
        for ctrl, filename, value in (
            ("memory", "memory.max", str(128 * MiB)),
            ("pids", "pids.max", "64"),
            ("cpu", "cpu.weight", "7"),
        ):
            if ctrl in v2.controllers:
                assert read(f"{cg.path}/{filename}") == value
            else:
                assert not os.path.exists(f"{cg.path}/{filename}")
                assert any(f"no {ctrl} controller" in m for m in v2.missing())
        if "memory" not in v2.controllers:
            assert cg.memory_peak_bytes() == 0 and cg.oom_kills() == 0

    def test_destroy_and_cleanup(self, v2: V2Backend) -> None:
        a, b = v2.create("a"), v2.create("b")
        a.destroy()
        assert not os.path.exists(a.path)
        with child(joins_then_idles(b)) as c:
            assert c.recv() == b"joined"
            v2.cleanup()
            assert killed_by_sigkill(c.wait())
        assert not os.path.exists(b.path)
