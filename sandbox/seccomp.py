"""The sandbox's seccomp filter: Docker's default deny set, compiled once, loaded last.

Lifecycle
    :func:`compile_filter` builds the filter with libseccomp (through pyseccomp) and exports it as
    classic-BPF bytes (``struct sock_filter[]``). It runs **once, in the zygote** (well under a
    millisecond); every sandbox forked from the zygote inherits the bytes and only calls
    :func:`load` (a single ``prctl``), so no sandbox runs libseccomp.

    :func:`load` is the **last** isolation step, after namespaces, mounts, cgroups, rlimits,
    ``close_range`` and dropping credentials and capabilities: everything before it needs
    ``mount``/``unshare``/``setns``, which the filter forbids. The caller sets ``no_new_privs``
    first (the kernel refuses a filter from a task that has neither ``no_new_privs`` nor
    ``CAP_SYS_ADMIN``). The filter is installed on the calling thread only (no TSYNC), so it must
    be loaded while the sandbox is still single-threaded; threads and children created
    afterwards inherit it and can never remove it.

Policy
    Default action ALLOW; every syscall in :data:`DENIED_SYSCALLS` fails with ``EPERM``, every one
    in :data:`NOSYS_SYSCALLS` (Linux AIO) with ``ENOSYS``, plus the argument-dependent rules of
    :func:`_argument_rules`:

    * ``clone`` with any namespace flag -> ``EPERM`` (one ``MASKED_EQ`` rule per flag bit), so
      ``fork()``, threads and ``subprocess`` keep working.
    * ``clone3`` -> ``ENOSYS``. Its flags live in a ``struct clone_args`` in user memory, which a
      seccomp filter cannot dereference, so it cannot tell a thread from a new user namespace.
      ``ENOSYS`` ("this kernel has no clone3") makes glibc fall back to ``clone``, whose flags
      the filter *can* inspect. Docker does the same; ``EPERM`` would make glibc fail outright.
    * ``personality``: only ``0`` (PER_LINUX) and ``0xffffffff`` (the query) are allowed.
    * ``mknod``/``mknodat``: only device nodes (``S_IFCHR``, ``S_IFBLK``) are refused; FIFOs,
      sockets and regular files still work (``os.mkfifo`` is ``mknodat``). Without
      ``CAP_MKNOD`` the kernel refuses device nodes anyway; this is the second line.

    Architectures: only the native one is added to the filter and libseccomp's default
    bad-architecture action is kept: ``SCMP_ACT_KILL`` (= ``SECCOMP_RET_KILL_THREAD``; the thread
    dies of SIGSYS, which takes the whole process when it is single-threaded). A syscall from a
    foreign ABI -- i386 through ``int 0x80`` on x86_64, or x32 (``nr | 0x40000000``, which
    libseccomp sends to that action whenever the x32 arch is not added) -- is killed instead of
    slipping past rules written for x86_64 numbers.

    Names the running architecture does not have (``stime``, ``vm86``, ``umount`` on x86_64) or
    that libseccomp 2.5 does not know yet are skipped, not errors; the list can therefore name
    syscalls of every architecture.

Not covered
    * A deny list cannot deny what it does not name: syscalls newer than the host's libseccomp
      (e.g. ``statmount``/``listmount``, Linux 6.8) are allowed. They are read-only or need
      capabilities the sandbox no longer has; dropping all capabilities, the user, pid, mount and
      network namespaces are the primary defence, the filter is a second line.
    * Arguments behind pointers are invisible to seccomp (``clone3``'s flags, paths, socket
      addresses). ``ioctl``, ``socket`` families (``AF_NETLINK``, ``AF_PACKET``, ...) and
      ``prctl`` options are not filtered; capabilities and the network namespace cover them.
    * Syscalls Docker gates on capabilities the sandbox has dropped (``vhangup``,
      ``fanotify_init``, ``mbind``/``set_mempolicy``/``move_pages``, ``process_madvise`` ...) are
      left to the kernel's own capability checks.
    * ``unshare`` is refused entirely, including its namespace-free uses (``CLONE_FILES``,
      ``CLONE_FS``), as in Docker.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Final

import pyseccomp

from sandbox import _libc

log = logging.getLogger(__name__)

# Unconditionally refused with EPERM. Argument-dependent rules (clone, clone3, personality,
# mknod, mknodat) are in _argument_rules() below. Names the running arch lacks are skipped.
DENIED_SYSCALLS: Final[tuple[str, ...]] = (
    # Mounts and the filesystem root: the sandbox's view of the filesystem is final.
    "mount",
    "umount",  # old single-argument umount; not on x86_64
    "umount2",
    "pivot_root",
    "chroot",
    # The new mount API (Linux 5.2+) does what mount(2) does, by file descriptor.
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # Namespaces: no new ones, no joining others (clone's namespace flags: see below).
    # Dropped by compile_filter(allow_namespaces=True).
    "unshare",
    "setns",
    # Inspecting or manipulating other processes.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # Replacing or extending the kernel.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",  # removed in 2.6, still named by old tables
    "get_kernel_syms",  # removed in 2.6
    "query_module",  # removed in 2.6
    "bpf",
    # Kernel observation and side channels.
    "perf_event_open",
    "syslog",
    "lookup_dcookie",
    "userfaultfd",  # stalls kernel page faults at will: a classic race-widening exploit aid
    # The kernel keyring is not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    # Host-wide machine state.
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "sethostname",
    "setdomainname",
    "nfsservctl",  # removed in 3.1
    "_sysctl",  # removed in 5.5
    # The clock is host-wide (time namespaces only offset the monotonic clocks).
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",  # i386 and others; not on x86_64
    # Raw hardware access and legacy modes.
    "iopl",
    "ioperm",
    "vm86",  # i386 only
    "vm86old",  # i386 only
    # File handles bypass path-based checks (the "shocker" container escape).
    "open_by_handle_at",
    "name_to_handle_at",
    # Obsolete interfaces with a history of bugs.
    "uselib",
    "ustat",
    "sysfs",
    # io_uring performs file and socket operations from kernel workers, where the seccomp
    # filter never sees them: allowing it would let a handler bypass every rule above.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

# Refused with ENOSYS, "this kernel has no such call", so that libraries take the fallback they
# have for such kernels rather than fail. Linux AIO: every context io_setup(nr) makes holds nr
# of the host-wide fs.aio-max-nr (65,536 by default) until it is destroyed, so one sandbox
# could take them all and make every io_setup on the host fail with EAGAIN (issue 12, point 3).
# libaio users (databases, qemu) fall back to threads on ENOSYS; glibc's POSIX aio never used
# these calls.
NOSYS_SYSCALLS: Final[tuple[str, ...]] = (
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
)

# Subset of DENIED_SYSCALLS that allow_namespaces=True leaves allowed.
_NAMESPACE_SYSCALLS: Final = frozenset({"unshare", "setns"})
# Subset that a function template's filter leaves allowed (sandbox.template): what a copy
# needs to make its own user, pid, mount, network, uts and ipc namespaces and mount its /tmp
# and /proc in them. Never setns (no joining anything), never the new mount API, never
# umount (what a copy mounts over its template's /tmp and /proc stays over it).
TEMPLATE_ALLOWED: Final = frozenset({"unshare", "mount"})

# <linux/sched.h>: every flag that creates a namespace. CLONE_NEWTIME (0x80) only works with
# clone3 and unshare; in clone(2) that bit falls in the exit-signal byte, where no real signal
# (1-64) sets it, so refusing clone with it set costs nothing and stays right if that changes.
_CLONE_NAMESPACE_FLAGS: Final[tuple[int, ...]] = (
    _libc.CLONE_NEWNS,
    _libc.CLONE_NEWCGROUP,
    _libc.CLONE_NEWUTS,
    _libc.CLONE_NEWIPC,
    _libc.CLONE_NEWUSER,
    _libc.CLONE_NEWPID,
    _libc.CLONE_NEWNET,
    _libc.CLONE_NEWTIME,
)

# <sys/stat.h>
_S_IFMT: Final = 0o170000
_S_IFCHR: Final = 0o020000
_S_IFBLK: Final = 0o060000

_Rule = tuple[str, int, tuple[pyseccomp.Arg, ...]]  # (syscall name, errno, argument filters)


def _argument_rules(*, allow_namespaces: bool) -> list[_Rule]:
    """The rules that depend on a syscall's arguments, each refusing with the errno it names.

    A libseccomp rule ANDs its argument comparisons and may compare each argument once;
    several rules for one syscall are ORed. Every rule below has at most one comparison.
    """
    rules: list[_Rule] = []

    if not allow_namespaces:
        # clone(flags, ...) on most arches; clone(stack, flags, ...) on s390.
        s390 = pyseccomp.system_arch() in (pyseccomp.Arch.S390, pyseccomp.Arch.S390X)
        flags_arg = 1 if s390 else 0
        for flag in _CLONE_NAMESPACE_FLAGS:
            has_flag = pyseccomp.Arg(flags_arg, pyseccomp.MASKED_EQ, flag, flag)
            rules.append(("clone", errno.EPERM, (has_flag,)))
        # ENOSYS, not EPERM: glibc (pthread_create, posix_spawn) then falls back to clone.
        rules.append(("clone3", errno.ENOSYS, ()))

    # personality(persona): the kernel takes an unsigned int, so only the low 32 bits count.
    # Refuse every value whose low 32 bits are neither all 0 (PER_LINUX) nor all 1 (0xffffffff,
    # the query): exactly the words with some bit i set and bit i+1 (mod 32) clear. That is 32
    # MASKED_EQ rules, since one rule cannot say "!= 0 and != 0xffffffff".
    for bit in range(32):
        mask = (1 << bit) | (1 << ((bit + 1) % 32))
        set_then_clear = pyseccomp.Arg(0, pyseccomp.MASKED_EQ, mask, 1 << bit)
        rules.append(("personality", errno.EPERM, (set_then_clear,)))

    # Device nodes only; mode is arg 1 of mknod(path, mode, dev), arg 2 of mknodat(dfd, ...).
    for name, mode_arg in (("mknod", 1), ("mknodat", 2)):
        for kind in (_S_IFCHR, _S_IFBLK):
            is_device = pyseccomp.Arg(mode_arg, pyseccomp.MASKED_EQ, _S_IFMT, kind)
            rules.append((name, errno.EPERM, (is_device,)))

    # Socket families a network namespace does not confine. AF_VSOCK talks to the hypervisor
    # (on a VM host, vsock is how the host's agents are reached); Docker's profile refuses it
    # too. Only the family is checked: arg 0 of socket(domain, type, protocol).
    for family in _UNCONFINED_FAMILIES:
        is_family = pyseccomp.Arg(0, pyseccomp.EQ, family)
        rules.append(("socket", errno.EPERM, (is_family,)))

    return rules


_AF_VSOCK = 40
_UNCONFINED_FAMILIES = (_AF_VSOCK,)


def _syscall_number(name: str) -> int | None:
    """The native number of ``name``, or None when this arch (or libseccomp) lacks it.

    libseccomp answers -1 for names it does not know and a negative "pseudo-syscall" number
    for names of other arches (``stime`` on x86_64); rules on those would be no-ops.
    """
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    return number if number >= 0 else None


def compile_filter(*, allow_namespaces: bool = False, template: bool = False) -> bytes:
    """Build the sandbox's seccomp filter and return it as classic-BPF bytes.

    Call once, in the zygote; pass the bytes to :func:`load` in each sandbox.

    Args:
        allow_namespaces: leave ``unshare``, ``setns``, ``clone`` with namespace flags and
            ``clone3`` allowed (for a handler that must build nested sandboxes itself).
        template: a function template's filter: :data:`TEMPLATE_ALLOWED` and ``clone`` with
            namespace flags allowed, everything else as the full filter. Every copy stacks
            the full filter on it before it serves (docs/security.md, "Function templates").

    Returns:
        A ``struct sock_filter[]`` for the native architecture (8 bytes per instruction).

    Raises:
        OSError: libseccomp refused a rule or the export; the message names the call.
    """
    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    rules: list[_Rule] = [
        (name, errno.EPERM, ())
        for name in DENIED_SYSCALLS
        if not (allow_namespaces and name in _NAMESPACE_SYSCALLS)
        and not (template and name in TEMPLATE_ALLOWED)
    ]
    rules += [(name, errno.ENOSYS, ()) for name in NOSYS_SYSCALLS]
    rules += _argument_rules(allow_namespaces=allow_namespaces or template)

    skipped: set[str] = set()
    for name, err, args in rules:
        number = _syscall_number(name)
        if number is None:
            skipped.add(name)
            continue
        try:
            flt.add_rule(pyseccomp.ERRNO(err), number, *args)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"seccomp_rule_add({name}, ERRNO({errno.errorcode[err]})): {exc.strerror}",
            ) from exc
    if skipped:
        log.debug("seccomp: not on this arch, skipped: %s", ", ".join(sorted(skipped)))
    return _export_bpf(flt)


def _export_bpf(flt: pyseccomp.SyscallFilter) -> bytes:
    # libseccomp only exports to a file descriptor; an anonymous memfd keeps it off the disk.
    fd = os.memfd_create("lambdad-seccomp", os.MFD_CLOEXEC)
    with open(fd, "w+b", buffering=0) as memfd:
        try:
            flt.export_bpf(memfd)
        except OSError as exc:
            raise OSError(exc.errno, f"seccomp_export_bpf(): {exc.strerror}") from exc
        memfd.seek(0)
        return memfd.read()


def load(program: bytes) -> None:
    """Install ``program`` (from :func:`compile_filter`) on the calling thread, irrevocably.

    The caller must have set ``no_new_privs`` (or still hold ``CAP_SYS_ADMIN``) and must not
    have started any thread yet.

    Raises:
        ValueError: ``program`` is not a whole ``struct sock_filter[]``.
        OSError: the kernel refused the filter; the message names the call.
    """
    try:
        _libc.seccomp_load_bpf(program)
    except OSError as exc:
        hint = " (set no_new_privs first)" if exc.errno == errno.EACCES else ""
        raise OSError(
            exc.errno, f"seccomp.load({len(program) // 8} instructions): {exc.strerror}{hint}"
        ) from exc
