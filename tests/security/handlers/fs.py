"""Filesystem attacks: host secrets, writes outside /tmp, another sandbox's /tmp, /proc/sys,
cgroup files and device nodes."""

import ctypes
import os

from common import attempt

_libc = ctypes.CDLL(None, use_errno=True)


def _read(path):
    with open(path, "rb") as f:
        return f.read(64)


def _write_new(path):
    with open(path, "xb") as f:
        f.write(b"pwned")


def _append(path):
    with open(path, "ab") as f:
        f.write(b"pwned")


def _overwrite(path):
    with open(path, "r+b") as f:
        f.write(b"#")


def _mount(source, target, fstype, data):
    if _libc.mount(source, target, fstype, 0, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return "mounted"


def secrets(event):
    out = {
        "open /etc/shadow": attempt(_read, "/etc/shadow"),
        "open /etc/gshadow": attempt(_read, "/etc/gshadow"),
        "listdir /root": attempt(os.listdir, "/root"),
        "listdir /home": attempt(os.listdir, "/home"),
        "open /root/.bash_history": attempt(_read, "/root/.bash_history"),
        "listdir /proc/1/root/root": attempt(os.listdir, "/proc/1/root/root"),
        "open /proc/1/root/etc/shadow": attempt(_read, "/proc/1/root/etc/shadow"),
        "listdir /var/lib": attempt(os.listdir, "/var/lib"),
        "listdir /run": attempt(os.listdir, "/run"),
        "listdir /sys": attempt(os.listdir, "/sys"),
    }
    # Host paths the test knows exist: its own temporary directory, the daemon's state
    # directory (other functions' code!), the project checkout.
    for path in event["host_paths"]:
        out[f"listdir {path}"] = attempt(os.listdir, path)
    return {"attempts": out, "root": sorted(os.listdir("/"))}


WRITE_NEW = ("/x", "/usr/x", "/usr/bin/x", "/var/task/x", "/var/x", "/etc/x", "/opt/x",
             "/dev/x", "/var/lang/x", "/var/runtime/x", "/lib/x")
OVERWRITE = ("/etc/passwd", "/etc/hosts", "/var/task/fs.py", "/usr/bin/env",
             "/var/runtime/src/sandbox/seccomp.py")


def writes(event):
    out = {}
    for path in WRITE_NEW:
        out[f"create {path}"] = attempt(_write_new, path)
    for path in OVERWRITE:
        out[f"overwrite {path}"] = attempt(_overwrite, path)
        out[f"chmod {path}"] = attempt(os.chmod, path, 0o777)
        out[f"unlink {path}"] = attempt(os.unlink, path)
    out["mkdir /var/task/d"] = attempt(os.mkdir, "/var/task/d")
    out["rename /var/task/fs.py"] = attempt(os.rename, "/var/task/fs.py", "/var/task/gone.py")
    out["symlink /var/task/link"] = attempt(os.symlink, "/etc/passwd", "/var/task/link")
    out["utime /var/task/fs.py"] = attempt(os.utime, "/var/task/fs.py", (0, 0))
    out["remount / rw"] = attempt(_mount, None, b"/", None, None)
    control = attempt(_write_new, "/tmp/control")  # /tmp must work, or the test proves nothing
    return {"attempts": out, "control": control}


def tmp_write(event):
    for d in ("/tmp", "/dev/shm"):
        with open(f"{d}/{event['name']}", "w") as f:
            f.write(event["secret"])
    return {"written": sorted(os.listdir("/tmp")), "uid": os.getuid()}


def tmp_read(event):
    listings, opens = {}, {}
    # Through /proc/<pid>/root as well: only this sandbox's own processes exist here.
    roots = ["/"] + [f"/proc/{p}/root/" for p in os.listdir("/proc") if p.isdigit()]
    for root in roots:
        for d in ("tmp", "dev/shm"):
            try:
                listings[root + d] = sorted(os.listdir(root + d))
            except OSError as exc:
                listings[root + d] = str(exc)
            opens[f"open {root}{d}/{event['name']}"] = attempt(_read, f"{root}{d}/{event['name']}")
    return {"listings": listings, "attempts": opens}


PROC_WRITES = ("/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern",
               "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
               "/proc/sys/net/ipv4/ip_forward", "/proc/sysrq-trigger", "/proc/self/uid_map")
PROC_READS = ("/proc/kcore", "/proc/kmsg")


def proc_sys(event):
    out = {}
    for path in PROC_WRITES:
        out[f"write {path}"] = attempt(_overwrite, path)
    for path in PROC_READS:
        out[f"read {path}"] = attempt(_read, path)
    return {"attempts": out}


CGROUP_FILES = ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/freezer/freezer.state",
                "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cgroup.kill",
                "/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/unified/cgroup.procs")


def cgroups(event):
    out = {}
    for path in CGROUP_FILES:
        out[f"write {path}"] = attempt(_overwrite, path)
    os.makedirs("/tmp/cg", exist_ok=True)
    out["mount cgroup (v1, memory)"] = attempt(_mount, b"cgroup", b"/tmp/cg", b"cgroup", b"memory")
    out["mount cgroup (v1, none,name=x)"] = attempt(
        _mount, b"cgroup", b"/tmp/cg", b"cgroup", b"none,name=lambdadsec")
    out["mount cgroup2"] = attempt(_mount, b"cgroup2", b"/tmp/cg", b"cgroup2", None)
    out["mount sysfs"] = attempt(_mount, b"sysfs", b"/tmp/cg", b"sysfs", None)
    with open("/proc/self/mounts") as f:
        fstypes = sorted({line.split()[2] for line in f})
    with open("/proc/self/cgroup") as f:
        own = f.read().splitlines()
    return {"attempts": out, "fstypes": fstypes, "proc_self_cgroup": own}


DEVICES = ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/sda", "/dev/vda", "/dev/nvme0n1",
           "/dev/xvda", "/dev/kmsg", "/dev/console", "/dev/tty", "/dev/mapper/control",
           "/dev/loop0", "/dev/loop-control", "/dev/net/tun", "/dev/fuse", "/dev/kvm")


def devices(event):
    out = {f"open {d}": attempt(os.open, d, os.O_RDWR) for d in DEVICES}
    # Block devices the test found on the host, by their real names.
    for d in event.get("host_devices", []):
        out[f"open {d}"] = attempt(os.open, d, os.O_RDONLY)
    with open("/dev/urandom", "rb") as f:
        control = len(f.read(16)) == 16
    with open("/dev/null", "wb") as f:
        control = control and f.write(b"x") == 1
    return {"attempts": out, "dev": sorted(os.listdir("/dev")), "control": control}


def handler(event, context):
    return globals()[event["mode"]](event)
