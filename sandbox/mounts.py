"""Mounts: a fresh, mostly read-only root for every sandbox (child half).

Pool time (:func:`build_root`): a private mount namespace, a small tmpfs as the new root with
the runtime's host directories bind-mounted read-only, a minimal ``/dev``, a fresh ``/proc``
(its dangerous corners read-only), an ``/etc`` holding only what the runtime needs, then
``pivot_root`` and the old root detached, and the root tmpfs itself made read-only.

Specialization (:func:`mount_function`): the function's code arrives as a *detached mount*
(``open_tree(OPEN_TREE_CLONE)`` done by the daemon, sent over the sandbox's socket) and is
attached read-only at ``/var/task``; ``/tmp`` becomes a tmpfs of the function's ``tmp_mb``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sandbox import _libc

_RO = _libc.MS_RDONLY | _libc.MS_NOSUID | _libc.MS_NODEV
DEVICES = ("null", "zero", "full", "random", "urandom")
# Top-level host paths that a runtime needs, read-only. Missing ones are skipped; symlinks
# (Debian's merged /usr: /bin -> usr/bin) are recreated as symlinks.
HOST_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC_RO = ("/etc/ld.so.cache", "/etc/ssl", "/etc/alternatives", "/etc/mime.types")
PROC_RO = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")


@dataclass(frozen=True)
class RootSpec:
    """What a sandbox's root contains besides the fixed parts."""

    mountpoint: str  # an existing host directory where the root is assembled (private ns)
    runtime_binds: Sequence[tuple[str, str]] = ()  # (host path, sandbox path), read-only
    etc_files: Mapping[str, str] = field(default_factory=dict)  # /etc/<name> -> content
    # Sandbox paths inside the binds above to hide under an empty read-only tmpfs (the host
    # interpreter's site-packages: what was pip-installed on the host is not the runtime's).
    masks: Sequence[str] = ()


def _bind_ro(src: str, dst: str) -> None:
    _libc.mount(src, dst, None, _libc.MS_BIND | _libc.MS_REC)
    _libc.mount(None, dst, None, _libc.MS_BIND | _libc.MS_REMOUNT | _RO)


def _make_target(src: str, dst: str) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))


def build_root(spec: RootSpec, uid: int, gid: int) -> None:
    """Child half, pool time: assemble the root and ``pivot_root`` into it."""
    root = spec.mountpoint
    _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    _libc.mount("tmpfs", root, "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "size=4m,mode=755")
    for d in ("proc", "dev", "etc", "tmp", "var/task", "opt", ".old"):
        os.makedirs(f"{root}/{d}", exist_ok=True)

    for path in HOST_RO:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            os.makedirs(root + path, exist_ok=True)
            _bind_ro(path, root + path)
    for host_path, sandbox_path in spec.runtime_binds:
        _make_target(host_path, root + sandbox_path)
        _bind_ro(host_path, root + sandbox_path)
    for path in spec.masks:
        if os.path.isdir(root + path):
            _libc.mount("tmpfs", root + path, "tmpfs", _RO, "size=4k,mode=755")

    _build_dev(root + "/dev")
    _build_etc(root + "/etc", spec.etc_files, uid, gid)

    _libc.mount("proc", root + "/proc", "proc", _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC)
    for path in PROC_RO:
        if os.path.exists(root + path):
            _bind_ro(root + path, root + path)

    os.chdir(root)
    _libc.pivot_root(".", ".old")
    os.chroot(".")
    _libc.umount2("/.old", _libc.MNT_DETACH)
    os.rmdir("/.old")
    os.chdir("/")
    # The root itself is read-only from here on: writes to /, /etc, /var go nowhere.
    _libc.mount(None, "/", None, _libc.MS_REMOUNT | _RO)


def _build_dev(dev: str) -> None:
    _libc.mount("tmpfs", dev, "tmpfs", _libc.MS_NOSUID | _libc.MS_NOEXEC, "size=64k,mode=755")
    for name in DEVICES:
        os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        _libc.mount(f"/dev/{name}", f"{dev}/{name}", None, _libc.MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm", 0o1777)
    _libc.mount(
        None, dev, None, _libc.MS_REMOUNT | _libc.MS_RDONLY | _libc.MS_NOSUID | _libc.MS_NOEXEC
    )


def _build_etc(etc: str, files: Mapping[str, str], uid: int, gid: int) -> None:
    defaults = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sbx_user{uid}:x:{uid}:{gid}::/tmp:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsbx_user{uid}:x:{gid}:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        "hostname": "lambdad\n",
        "resolv.conf": "",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    }
    for name, content in {**defaults, **files}.items():
        with open(f"{etc}/{name}", "w") as f:
            f.write(content)
    os.symlink("/usr/share/zoneinfo/UTC", f"{etc}/localtime")
    for path in ETC_RO:
        if os.path.exists(path):
            _make_target(path, etc + path[len("/etc") :])
            _bind_ro(path, etc + path[len("/etc") :])


def mount_function(code_tree_fd: int, tmp_mb: int, uid: int, gid: int) -> None:
    """Child half, specialization: the code at /var/task (ro) and a private /tmp."""
    _libc.move_mount(code_tree_fd, "/var/task")
    _libc.mount(None, "/var/task", None, _libc.MS_BIND | _libc.MS_REMOUNT | _RO)
    _libc.mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        _libc.MS_NOSUID | _libc.MS_NODEV,
        f"size={tmp_mb}m,mode=700,uid={uid},gid={gid}",
    )
    _libc.mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC,
        f"size={min(tmp_mb, 64)}m,mode=700,uid={uid},gid={gid}",
    )
