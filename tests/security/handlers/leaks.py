"""Information the host must not hand to a function: the daemon's environment.

A sandbox is a fork of the zygote, which the daemon starts; whatever environment the zygote
was exec'd with is in the sandbox's memory (the initial stack, libc's and Python's copies)
and, once the process makes itself dumpable again (an unprivileged prctl), readable at
/proc/self/environ. The test gives the daemon a canary variable and looks for it here.

The canary itself is never sent to the sandbox (it would then be in memory because we sent
it): the event carries a prefix, the length and a SHA-256, and a candidate counts only if
its hash matches.
"""

import ctypes
import hashlib
import os

PR_SET_DUMPABLE = 4


def _matches(data, prefix, length, digest):
    start = data.find(prefix)
    while start != -1:
        if hashlib.sha256(data[start:start + length]).hexdigest() == digest:
            return True
        start = data.find(prefix, start + 1)
    return False


def _mappings_with(prefix, length, digest):
    hits = []
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or fields[-1] in ("[vvar]", "[vsyscall]", "[vdso]"):
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            if _matches(data, prefix, length, digest):
                hits.append(line.strip())
    return hits


def environment(event):
    prefix, length, digest = event["prefix"].encode(), event["length"], event["sha256"]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    found = {}
    for path in ("/proc/self/environ", "/proc/self/cmdline"):
        with open(path, "rb") as f:
            found[path] = _matches(f.read(), prefix, length, digest)
    found["os.environ"] = _matches("\0".join(os.environ.values()).encode(), prefix, length,
                                   digest)
    found["memory"] = _mappings_with(prefix, length, digest)
    return found


def fds(event):
    """Every open file descriptor and what it is."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    out = {}
    for n in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            out[n] = os.readlink(f"/proc/self/fd/{n}")
        except FileNotFoundError:  # the directory listing's own fd, closed by now
            continue
    return out


def handler(event, context):
    return globals()[event["mode"]](event)
