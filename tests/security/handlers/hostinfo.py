"""Host information a sandbox must not get (issue 12, point 10): host paths in its mount table,
the host's boot arguments, and the /proc files Docker masks."""

import errno
import os


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace")
    except FileNotFoundError:
        return None  # not on this kernel: nothing to leak
    except PermissionError:
        return ""  # unreadable counts as masked


def _listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return None if exc.errno in (errno.ENOENT, errno.EACCES) else repr(exc)


def handler(event, context):
    tables = {p: _read(p) for p in ("/proc/self/mountinfo", "/proc/self/mounts",
                                    "/proc/1/mountinfo")}
    leaks = {}
    for path, text in tables.items():
        for secret in event["secrets"]:
            hits = [line for line in (text or "").splitlines() if secret in line]
            if hits:
                leaks[f"{path}: {secret}"] = hits[:3]
    fstypes = sorted({line.split(" - ")[1].split()[0]
                      for line in tables["/proc/self/mountinfo"].splitlines()})
    files = ("cmdline", "kcore", "keys", "key-users", "timer_list", "timer_stats",
             "sched_debug", "latency_stats", "config.gz", "kallsyms", "modules",
             "interrupts", "vmallocinfo")
    dirs = ("acpi", "asound", "scsi")
    return {
        "leaks": leaks,
        "fstypes": fstypes,
        "masked_files": {name: _read(f"/proc/{name}") for name in files},
        "masked_dirs": {name: _listing(f"/proc/{name}") for name in dirs},
        "sys": os.path.exists("/sys"),
        "mountinfo": tables["/proc/self/mountinfo"],
    }
