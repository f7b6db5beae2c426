"""Mounts: a fresh, mostly read-only root for every sandbox (child half).

Pool time (:func:`build_root`): a private mount namespace, a small tmpfs as the new root with
the runtime's host directories mounted read-only, a minimal ``/dev``, a fresh ``/proc`` (its
dangerous corners read-only, its host-revealing files masked), an ``/etc`` holding only what the
runtime needs, then ``pivot_root`` and the old root detached, and the root tmpfs itself made
read-only.

Specialization (:func:`mount_function`): the function's code arrives as a *detached mount*
(``open_tree(OPEN_TREE_CLONE)`` done by the daemon, sent over the sandbox's socket) and appears
read-only at ``/var/task``; ``/tmp`` becomes a tmpfs of the function's ``tmp_mb``.

No host inode is shared with a sandbox (issue 12, point 2). A read-only bind mount shares the
host's inodes, and inodes carry two things that cross any mount: ``flock``/``fcntl`` locks (a
sandbox holding ``LOCK_EX`` on ``/usr/bin/env`` made the host's ``flock -n`` fail) and inotify
watches (a sandbox watching ``/var/runtime`` saw the host's CLI import lambdad; one watching
``/var/task`` saw another function with the same code run its Init). So every host directory is
the single lower layer of a read-only **overlay** of its own, per sandbox (:func:`_overlay_ro`);
an overlay has inodes of its own, so locks and watches taken on them never meet the host's or
another sandbox's. (Events still flow the other way: the host, watching the real directory, sees
a sandbox's opens. The host is not the one to protect from that.) Single host files
(``/etc/ld.so.cache``) are bound out of one overlay of their directory; the device nodes are
``mknod``-ed in the sandbox's own ``/dev`` rather than bound from the host's. The overlays name
their layers ``/proc/self/fd/N`` and the host's block device appears nowhere, so
``/proc/self/mountinfo`` shows no host path (issue 12, point 10).
"""

from __future__ import annotations

import os
import stat
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
# What Docker masks in /proc (its default ``MaskedPaths``), plus what else tells a sandbox about
# the host: its boot arguments (``cmdline``), kernel build (``config.gz``, ``kallsyms``,
# ``modules``), hardware (``interrupts``), keys and memory layout. Files get the sandbox's own
# /dev/null bound over them (they read empty), directories an empty read-only tmpfs. Missing
# ones are skipped. (``/sys``, Docker's other masked tree, is not mounted at all.)
PROC_MASKED_FILES = (
    "cmdline", "config.gz", "interrupts", "kallsyms", "kcore", "key-users", "keys",
    "latency_stats", "modules", "sched_debug", "timer_list", "timer_stats", "vmallocinfo",
)  # fmt: skip
PROC_MASKED_DIRS = ("acpi", "asound", "scsi")
# The empty second layer every overlay needs (an overlay without an upper layer must have two
# lower ones): the sandbox's /dev/shm directory, empty until specialization mounts its tmpfs,
# in the /dev tmpfs that is read-only by then. Overlays hold the directory itself, not what is
# mounted on it later.
_EMPTY_LAYER = "/dev/shm"


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


def _overlay_ro(lower: str | int, dst: str, empty: int) -> None:
    """A read-only overlay at ``dst`` whose only content is ``lower`` (a path or an ``O_PATH``
    fd, such as a detached mount's): the files of ``lower`` with inodes of their own.

    The layers are named ``/proc/self/fd/N``: mountinfo prints the names given here, and those
    reveal nothing of the host. ``empty`` is an fd of an empty directory (the second layer).
    """
    fd = lower if isinstance(lower, int) else os.open(lower, os.O_PATH | os.O_DIRECTORY)
    try:
        data = f"lowerdir=/proc/self/fd/{fd}:/proc/self/fd/{empty}"
        _libc.mount("overlay", dst, "overlay", _RO, data)
    finally:
        if fd != lower:
            os.close(fd)


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
    for d in ("proc", "dev", "etc", "tmp", "var/task", "opt", "mnt", ".old"):
        os.makedirs(f"{root}/{d}", exist_ok=True)

    _build_dev(root + "/dev")
    empty = os.open(root + _EMPTY_LAYER, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in HOST_RO:
            if os.path.islink(path):
                os.symlink(os.readlink(path), root + path)
            elif os.path.isdir(path):
                os.makedirs(root + path, exist_ok=True)
                _overlay_ro(path, root + path, empty)
        for host_path, sandbox_path in spec.runtime_binds:
            _make_target(host_path, root + sandbox_path)
            if os.path.isdir(host_path):
                _overlay_ro(host_path, root + sandbox_path, empty)
            else:  # a single file (none today): still the host's inode, like a bind
                _bind_ro(host_path, root + sandbox_path)
        for path in spec.masks:  # a tmpfs has inodes of its own, like the overlays
            if os.path.isdir(root + path):
                _libc.mount("tmpfs", root + path, "tmpfs", _RO, "size=4k,mode=755")
        _build_etc(root + "/etc", spec.etc_files, uid, gid, root + "/.old", empty)
    finally:
        os.close(empty)

    _libc.mount("proc", root + "/proc", "proc", _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC)
    for path in PROC_RO:
        if os.path.exists(root + path):
            _bind_ro(root + path, root + path)
    _mask_proc(root + "/proc", root + "/dev/null")

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
        # Nodes of its own (the same devices as the host's): a bind of the host's node would
        # share its inode, and with it flock and inotify (every open of the host's /dev/null).
        node = f"{dev}/{name}"
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.stat(f"/dev/{name}").st_rdev)
        except PermissionError:
            # In a user namespace (a zygote not started as root) no device can be made: bind
            # the host's node instead; that mode has no per-sandbox isolation from the caller.
            os.close(os.open(node, os.O_CREAT | os.O_WRONLY, 0o666))
            _libc.mount(f"/dev/{name}", node, None, _libc.MS_BIND)
            continue
        os.chmod(node, 0o666)  # whatever the umask
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


def _mask_proc(proc: str, null: str) -> None:
    for name in PROC_MASKED_FILES:
        if os.path.exists(f"{proc}/{name}"):
            _libc.mount(null, f"{proc}/{name}", None, _libc.MS_BIND)
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(f"{proc}/{name}"):
            _libc.mount(
                "tmpfs", f"{proc}/{name}", "tmpfs", _RO | _libc.MS_NOEXEC, "size=4k,mode=555"
            )


def _build_etc(
    etc: str, files: Mapping[str, str], uid: int, gid: int, staging: str, empty: int
) -> None:
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
    # One overlay of the host's /etc, at a staging point (an empty directory of the new root
    # that nothing reaches before pivot_root), and the few entries the runtime needs bound out
    # of it: files and directories with inodes of the overlay, not the host's. The binds keep
    # the overlay alive; the rest of it goes with the staging mount.
    wanted = [path for path in ETC_RO if os.path.exists(path)]
    if not wanted:
        return
    _overlay_ro("/etc", staging, empty)
    try:
        for path in wanted:
            name = path[len("/etc/") :]
            _make_target(path, f"{etc}/{name}")
            _bind_ro(f"{staging}/{name}", f"{etc}/{name}")
    finally:
        _libc.umount2(staging, _libc.MNT_DETACH)


def _attach_then_overlay(tree_fd: int, target: str, empty: int) -> None:
    """For kernels that refuse a detached mount as an overlay layer: attach it, then stack a
    read-only overlay of it on the same place."""
    _libc.move_mount(tree_fd, target)
    _overlay_ro(target, target, empty)


def mount_function(code_tree_fd: int, tmp_mb: int, uid: int, gid: int) -> None:
    """Child half, specialization: the code at /var/task (ro) and a private /tmp.

    The code directory is content-addressed on the host, so functions deployed with the same
    code share it: /var/task is an overlay of the detached tree, with inodes of this sandbox
    alone. Kernels before 6.15 refuse a detached mount as a layer; there the tree is attached
    at /var/task first and the overlay stacked on it (same inodes, but the bind underneath
    then shows in mountinfo).
    """
    empty = os.open(_EMPTY_LAYER, os.O_PATH | os.O_DIRECTORY)  # before its tmpfs, below
    try:
        try:
            _overlay_ro(code_tree_fd, "/var/task", empty)
        except OSError:
            _attach_then_overlay(code_tree_fd, "/var/task", empty)
    finally:
        os.close(empty)
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


# Where a function template keeps the unmasked proc its copies need (sandbox.template): a
# copy is root only in a user namespace of its own, where the kernel lets it mount a proc for
# its new pid namespace only if one is already fully visible in its mount namespace, and the
# sandbox's /proc has masks on it. This one sits in a root-owned 0700 tmpfs over /proc/fs:
# neither the template's uid nor a copy (host root is unmapped in its user namespace) can
# reach it; the kernel's check does not walk paths.
TEMPLATE_PROC = "/proc/fs/p"


def mount_template_proc() -> None:
    """Specialization of a function template, as root: the hidden unmasked proc."""
    _libc.mount("tmpfs", "/proc/fs", "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "size=4k,mode=700")
    os.mkdir(TEMPLATE_PROC, 0o700)
    _libc.mount("proc", TEMPLATE_PROC, "proc", _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC)


def mount_copy(tmp_mb: int, uid: int, gid: int) -> None:
    """A template's copy, root of its own user namespace: its own /tmp, /dev/shm and a proc
    of its own pid namespace (masked like every sandbox's) over the template's."""
    for path, size in (("/tmp", tmp_mb), ("/dev/shm", min(tmp_mb, 64))):
        _libc.mount(
            "tmpfs",
            path,
            "tmpfs",
            _libc.MS_NOSUID | _libc.MS_NODEV | (_libc.MS_NOEXEC if path == "/dev/shm" else 0),
            f"size={size}m,mode=700,uid={uid},gid={gid}",
        )
    _libc.mount("proc", "/proc", "proc", _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC)
    for path in PROC_RO:
        if os.path.exists(path):
            _libc.mount(path, path, None, _libc.MS_BIND | _libc.MS_REC)
            _libc.mount(None, path, None, _libc.MS_BIND | _libc.MS_REMOUNT | _RO)
    _mask_proc("/proc", "/dev/null")


def mount_layers(
    layer_tree_fds: Sequence[int], target: str = "/opt", empty_dir: str = _EMPTY_LAYER
) -> None:
    """Child half, specialization: the function's layers merged read-only at ``/opt``.

    ``layer_tree_fds`` are detached mounts (``open_tree(OPEN_TREE_CLONE)`` of each layer
    version's directory, done by the daemon), in the function's order: a later layer wins
    where two have the same path, as on Lambda. One read-only overlay holds them all (the
    first lower layer named is the topmost), so no host inode is shared, as for /var/task.
    Kernels that refuse a detached mount as a layer (before 6.15) get each tree attached under
    a small tmpfs at ``target`` first and the overlay stacked on top.
    """
    if not layer_tree_fds:
        return
    empty = os.open(empty_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        layers = [f"/proc/self/fd/{fd}" for fd in reversed(layer_tree_fds)]
        if len(layers) == 1:
            layers.append(f"/proc/self/fd/{empty}")
        try:
            _libc.mount("overlay", target, "overlay", _RO, "lowerdir=" + ":".join(layers))
        except OSError:
            _libc.mount("tmpfs", target, "tmpfs", _RO & ~_libc.MS_RDONLY, "size=16k,mode=755")
            staged = []
            for i, fd in enumerate(layer_tree_fds):
                os.mkdir(f"{target}/.layer{i}")
                _libc.move_mount(fd, f"{target}/.layer{i}")
                staged.append(f"{target}/.layer{i}")
            layers = staged[::-1] if len(staged) > 1 else [staged[0], f"/proc/self/fd/{empty}"]
            _libc.mount("overlay", target, "overlay", _RO, "lowerdir=" + ":".join(layers))
    finally:
        os.close(empty)
