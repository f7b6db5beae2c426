"""Privilege attacks: become uid 0, regain a capability, run a setuid-root binary or one
with file capabilities."""

import ctypes
import os
import resource
import stat
import subprocess
import threading

from common import attempt, failed

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 38, 47, 2
CAP_SYS_ADMIN = 21
SETUID_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib/openssh", "/usr/lib/dbus-1.0",
               "/usr/lib/polkit-1")


def _prctl(*args):
    if _libc.prctl(*(ctypes.c_ulong(a) for a in args)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return 0


def _raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 2, hard * 2))
    except ValueError as exc:  # Python's wording for EPERM here
        raise PermissionError(1, str(exc)) from exc
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _status():
    with open("/proc/self/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def _setuid_root_binaries():
    found = []
    for d in SETUID_DIRS:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in sorted(names):
            try:
                st = os.stat(f"{d}/{name}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID and st.st_uid == 0:
                found.append(f"{d}/{name}")
    return found


def _credentials_at_exit(path):
    """Run a privileged binary and read its credentials once it has exited but before it is
    reaped (``waitid(WNOWAIT)``: the zombie's /proc/<pid>/status keeps them). Had the setuid
    bit or a file capability been honoured, its uids would be 0 or its capabilities set."""
    try:
        proc = subprocess.Popen([path, "--version"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:  # e.g. mode 4754: not executable by "others" at all
        return failed(exc)
    watchdog = threading.Timer(10.0, proc.kill)  # a binary that waits for input: bounded
    watchdog.start()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with open(f"/proc/{proc.pid}/status") as f:
            status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    return {"uids": [int(u) for u in status["Uid"].split()],
            "CapPrm": int(status["CapPrm"], 16), "CapEff": int(status["CapEff"], 16)}


def handler(event, context):
    status = _status()
    out = {
        "setuid(0)": attempt(os.setuid, 0),
        "setgid(0)": attempt(os.setgid, 0),
        "seteuid(0)": attempt(os.seteuid, 0),
        "setresuid(0,0,0)": attempt(os.setresuid, 0, 0, 0),
        "setgroups([0])": attempt(os.setgroups, [0]),
        "chown /tmp to root": attempt(os.chown, "/tmp", 0, 0),
        "raise CAP_SYS_ADMIN into the ambient set": attempt(
            _prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0),
        "clear no_new_privs": attempt(_prctl, PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0),
        "raise RLIMIT_NOFILE hard limit": attempt(_raise_nofile),
    }
    setuid_bins = {path: _credentials_at_exit(path) for path in _setuid_root_binaries()}
    file_cap_bins = {path: _credentials_at_exit(path) for path in event.get("file_caps", [])}
    # A real attacker's tool: util-linux unshare asking for a user namespace to be root in.
    unshare = subprocess.run(["/usr/bin/unshare", "-r", "id", "-u"], capture_output=True,
                             timeout=10)
    with open("/proc/self/mounts") as f:
        usr_opts = next(line.split()[3] for line in f if line.split()[1] == "/usr")
    return {
        "attempts": out,
        "status": {k: status.get(k) for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm",
                                              "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                                              "Seccomp")},
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
        "setuid_binaries": setuid_bins,
        "file_capability_binaries": file_cap_bins,
        "unshare -r": [unshare.returncode, unshare.stdout.decode(), unshare.stderr.decode()],
        "usr_mount_options": usr_opts,
    }
