"""The state directory's lock, modes and cgroup naming (pure file-system logic, no daemon)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from lambdad import statedir


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid(tmp_path):
    path = str(tmp_path / "state")
    fd = statedir.lock(path)
    try:
        # flock is per open file description: a second open in this process conflicts as a
        # second daemon's would.
        with pytest.raises(statedir.StateDirInUse) as info:
            statedir.lock(path)
        assert f"pid {os.getpid()}" in info.value.message
        assert info.value.details["pid"] == os.getpid()
    finally:
        os.close(fd)
    os.close(statedir.lock(path))  # released with its holder


def test_the_lock_dies_with_a_sigkilled_holder(tmp_path):
    path = str(tmp_path / "state")
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from lambdad import statedir
            statedir.lock({path!r})
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            with pytest.raises(statedir.StateDirInUse, match=f"pid {holder.pid}"):
                statedir.lock(path)
        finally:
            holder.kill()
    os.close(statedir.lock(path))


def test_secure_narrows_private_files_and_leaves_shared_trees(tmp_path):
    root = tmp_path / "state"
    (root / "logs" / "fn").mkdir(parents=True)
    (root / "code" / "abc").mkdir(parents=True)
    (root / "events.sqlite3").write_text("x")
    (root / "logs" / "fn" / "stream.log").write_text("secret")
    (root / "code" / "abc" / "app.py").write_text("pass")
    os.chmod(root, 0o755)
    os.chmod(root / "logs", 0o755)
    os.chmod(root / "events.sqlite3", 0o644)
    os.chmod(root / "logs" / "fn" / "stream.log", 0o644)
    os.chmod(root / "code" / "abc" / "app.py", 0o644)
    os.symlink("/etc/passwd", root / "link")

    fixed = statedir.secure(str(root))

    assert _mode(str(root)) == 0o700
    assert _mode(str(root / "logs")) == 0o700
    assert _mode(str(root / "events.sqlite3")) == 0o600
    assert _mode(str(root / "logs" / "fn" / "stream.log")) == 0o600
    assert _mode(str(root / "code" / "abc" / "app.py")) == 0o644  # sandboxes read it
    assert _mode("/etc/passwd") == 0o644  # the link was not followed
    assert any("events.sqlite3: mode 0644 -> 0600" in line for line in fixed)
    assert statedir.secure(str(root)) == []  # nothing left to fix


def test_cgroup_parents_differ_by_directory_and_never_are_the_bare_base(tmp_path):
    a = statedir.cgroup_parent("lambdad", str(tmp_path / "a"))
    b = statedir.cgroup_parent("lambdad", str(tmp_path / "b"))
    assert a != b
    assert a.startswith("lambdad-") and b.startswith("lambdad-")
    assert statedir.cgroup_parent("lambdad", str(tmp_path / "a" / ".." / "a")) == a
