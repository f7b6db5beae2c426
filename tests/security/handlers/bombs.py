"""Resource bombs: each must be contained by a limit, with a clear result."""

import errno
import os
import signal

from common import failed


def _pidns():
    return os.stat("/proc/self/ns/pid").st_ino


def ok(event):
    return {"ok": True, "pidns": _pidns(), "pid": os.getpid()}


def forks(event):
    """Fork children that wait on a pipe until fork fails; report how many we got."""
    r, w = os.pipe()
    children, error = [], None
    while len(children) < event["max"]:
        try:
            pid = os.fork()
        except OSError as exc:
            error = failed(exc)
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # returns b"" when the parent closes its end
            os._exit(0)
        children.append(pid)
    os.close(w)
    os.close(r)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error, "pidns": _pidns()}


def forkbomb(event):
    """The classic: every process forks forever. Contained by pids.max, ended by the timeout."""
    print(f"PIDNS {_pidns()}", flush=True)
    while True:
        try:
            os.fork()
        except OSError:
            pass


def memory(event):
    """Touch memory in 8 MB steps until the memory cgroup's OOM killer ends us."""
    print(f"PIDNS {_pidns()}", flush=True)
    hoard = []
    while True:
        hoard.append(bytearray(8 << 20))  # calloc'd pages, then written: really resident
        block = hoard[-1]
        for i in range(0, len(block), 4096):
            block[i] = 1
        if len(hoard) * 8 > event["give_up_mb"]:
            return {"allocated_mb": len(hoard) * 8}  # the limit did not hold


def tmpfill(event):
    """Fill /tmp with 1 MB writes, across several files, until the kernel says no."""
    chunk = b"\0" * (1 << 20)
    written, files, error = 0, 0, None
    try:
        while written < event["give_up_mb"] << 20:
            with open(f"/tmp/fill-{files}", "wb") as f:
                files += 1
                for _ in range(event["file_mb"]):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
    except OSError as exc:
        error = failed(exc)
    st = os.statvfs("/tmp")
    for i in range(files):
        os.unlink(f"/tmp/fill-{i}")
    return {"written_mb": written / (1 << 20), "error": error,
            "tmp_size_mb": st.f_blocks * st.f_frsize / (1 << 20)}


def spin(event):
    """Burn CPU past the deadline, ignoring the polite signals, in two processes."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if os.fork() == 0:
        while True:
            pass
    print(f"PIDNS {_pidns()}", flush=True)
    while True:
        pass


def fds(event):
    """Open /dev/null up to 100,000 times; RLIMIT_NOFILE must stop us near 1024."""
    opened, error = [], None
    try:
        while len(opened) < event["count"]:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        error = failed(exc)
    n = len(opened)
    highest = max(opened) if opened else -1
    for fd in opened:
        os.close(fd)
    return {"opened": n, "highest_fd": highest, "error": error,
            "emfile": error is not None and error["errno"] == errno.EMFILE}


def sockets(event):
    """Park data in loopback TCP buffers: connected pairs, each end told to keep large
    buffers, the sender filling until the kernel says EAGAIN, nobody reading. The data lives
    in kernel socket memory, outside the process; it must still count against the sandbox."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    chunk = b"\0" * (1 << 20)
    pairs, parked, error = [], 0, None
    try:
        while len(pairs) < event["max_pairs"] and parked < event["give_up_mb"] << 20:
            a = socket.socket()
            for s, opt in ((a, socket.SO_SNDBUF), (a, socket.SO_RCVBUF)):
                s.setsockopt(socket.SOL_SOCKET, opt, 64 << 20)  # the kernel caps it
            a.connect(server.getsockname())
            b, _ = server.accept()
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
            pairs.append((a, b))
            a.setblocking(False)
            while parked < event["give_up_mb"] << 20:
                try:
                    parked += a.send(chunk)
                except BlockingIOError:
                    break
    except OSError as exc:
        error = failed(exc)
    with open("/proc/net/sockstat") as f:
        tcp = next(line.split() for line in f if line.startswith("TCP:"))
    for a, b in pairs:
        a.close()
        b.close()
    server.close()
    return {"parked_mb": parked / (1 << 20), "pairs": len(pairs), "error": error,
            "tcp_mem_pages": int(tcp[tcp.index("mem") + 1])}


def handler(event, context):
    return globals()[event["mode"]](event)
