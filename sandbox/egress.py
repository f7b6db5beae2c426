"""Egress, parent half: a veth pair and NAT for ``network = "egress"`` sandboxes.

Each egress sandbox gets a /30 of ``cidr``: the host end of a veth pair (``lde<block>``) holds
the first address and is the sandbox's gateway; the other end (``eth0``) is created directly
inside the sandbox's network namespace and given the second address by the child half,
:func:`sandbox.netns.configure_egress`. One nftables table holds every filter, for all sandboxes
at once (interface wildcard ``lde*``), so attaching a sandbox never touches the ruleset:

* ``prerouting``: from a sandbox, IPv6 is dropped (IPv4 egress only) and so is any packet whose
  source address is not routed back through the veth it arrived on (anti-spoofing, strict
  reverse-path check with ``fib``);
* ``input``: nothing from a sandbox reaches the host itself (its loopback services, the daemon,
  anything bound to ``0.0.0.0`` reached through the gateway address) except replies to
  connections the host opened;
* ``forward``: no sandbox-to-sandbox traffic, nothing new *into* a sandbox, and nothing to
  ``127.0.0.0/8``, link-local ``169.254.0.0/16`` (cloud metadata services), ``cidr`` or any
  address of the host's own (``fib daddr type local``);
* ``postrouting``: what leaves through any other interface is masqueraded.

Why ``nft -f -`` rather than pyroute2's nftables API: a script is applied as one atomic
transaction (the filters are replaced, never briefly absent), reads like what an administrator
sees with ``nft list table inet lambdad``, and ``masquerade``/``fib``/``ct`` are one word each
where pyroute2 makes us hand-assemble netlink expressions. It runs once at start and once at
stop, never on the request path, so the fork+exec of ``nft`` (a binary: no Python in the child)
is irrelevant.

Threading: the daemon calls every method through ``asyncio.to_thread``, from whichever worker
thread. pyroute2 0.9 keeps one netlink socket and one private event loop *per calling thread*, so
netlink work is funnelled onto two dedicated threads, each owning one ``IPRoute`` for the life of
the daemon: one creates veths (``attach``, ~1 ms, on the cold-start path), the other deletes them
(``detach``: ~20 ms per veth, mostly RCU grace periods). Separate, so a burst of reaped sandboxes
never queues in front of a cold start; ``detach`` only hands the deletion over and returns. The
allocator state they share is guarded by one lock.

Several daemons may share a host (tests do): a small registry in ``/run/lambdad/egress.json``,
under ``flock``, makes the last one to stop delete a table and restore ``ip_forward``; each veth
carries its daemon's pid as its link group, so start-up cleans only the leftovers of dead daemons;
and a veth's name is derived from its block, so the kernel's unique-name check arbitrates blocks
between processes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

T = TypeVar("T")

PREFIX: Final = "lde"  # host ends: lde<block in hex>; every filter matches "lde*"
INNER_IFNAME: Final = "eth0"  # the sandbox's end, inside its network namespace
RUN_DIR: Final = "/run/lambdad"
IP_FORWARD: Final = "/proc/sys/net/ipv4/ip_forward"
NFT_TIMEOUT_S: Final = 10.0
# Never forwarded from a sandbox, whatever the routing table says.
BLOCKED_NETS: Final = ("127.0.0.0/8", "169.254.0.0/16")
NFT_PACKAGE: Final = "nftables"  # the Debian package with ``nft`` (scripts/system-packages)
# Searched after $PATH: root's PATH has them, but cron's and many sudo set-ups do not.
SBIN_DIRS: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class _Attachment:
    block: int
    host_ifname: str
    host_index: int


class _NetlinkThread:
    """One thread that owns one pyroute2 ``IPRoute`` (opened by its first task)."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._ipr: Any = None

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(ipr, *args)`` on the thread. Raises OSError once the thread is closed."""
        try:
            return self._pool.submit(self._run, fn, args)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            raise OSError(errno.ENETDOWN, f"egress is not set up: {exc}") from None

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def close(self) -> None:
        """Finish what is queued, close the socket, end the thread."""
        self._pool.submit(self._close)
        self._pool.shutdown(wait=True)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._ipr is None:
            from pyroute2 import IPRoute  # only the daemon pays for this import, once

            self._ipr = IPRoute(groups=0)  # no multicast subscriptions: nothing queues unread
        return fn(self._ipr, *args)

    def _close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


class Egress:
    """Host half of sandbox egress: NAT and filters (once), a veth pair per sandbox."""

    def __init__(
        self, cidr: str = "10.200.0.0/16", table: str = "lambdad", *, run_dir: str = RUN_DIR
    ) -> None:
        """``cidr``: the sandboxes' addresses, cut into /30 blocks (at most 65,536 are used).
        ``table``: the nftables table (family ``inet``) that holds every rule. ``run_dir``: where
        the host-wide registry of egress users lives (shared by every daemon on the host).

        Raises:
            ValueError: ``cidr`` is not an IPv4 network of at least 4 addresses, or ``table``
                is not a plain name.
        """
        net = ipaddress.IPv4Network(cidr)
        if net.prefixlen > 30:
            raise ValueError(f"egress cidr {cidr!r} is smaller than one /30")
        if not table.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"nftables table name {table!r}")
        self.cidr = net
        self.table = table
        self._run_dir = run_dir
        self._blocks = min(net.num_addresses // 4, 0x10000)  # lde + 4 hex digits <= 15 chars
        # Thread-safety: the allocator state below is guarded by _lock (attach thread, reaper
        # thread, callers); the threads themselves by _lifecycle (setup/teardown).
        self._lock = threading.Lock()
        self._next = 0  # round robin: a released block is reused as late as possible
        self._used: set[int] = set()  # attached, or released but its veth not yet deleted
        self._attached: dict[str, _Attachment] = {}
        self._lifecycle = threading.Lock()
        self._creator: _NetlinkThread | None = None
        self._reaper: _NetlinkThread | None = None
        self._token = secrets.token_hex(8)  # this instance, in the host registry
        self._old_forward: str | None = None

    # -- host set-up and teardown ----------------------------------------------------------

    def setup_host(self) -> None:
        """Enable forwarding, install the nftables table, remove dead daemons' veths.

        Idempotent; a second call re-applies the same table atomically.

        Raises:
            OSError: ``nft`` is missing (checked first, before anything changes: the message is
                :func:`find_nft`'s) or refused the ruleset, ``ip_forward`` is not writable, or
                netlink failed.
        """
        find_nft()
        with self._lifecycle:
            if self._creator is None or self._reaper is None:
                self._creator = _NetlinkThread("lambdad-egress")
                self._reaper = _NetlinkThread("lambdad-egress-reaper")
            try:
                self._join_host()
                self._creator.call(_noop)  # open the socket now, not on the first cold start
                self._reaper.call(_remove_leftovers)
            except BaseException:
                with contextlib.suppress(OSError):
                    self._leave_host()  # as it was
                raise

    def _join_host(self) -> None:
        """Register in the host-wide registry, enable forwarding, (re)apply the table."""
        with self._registry() as reg:
            others = [u for u in reg.get("users", []) if _alive(u) and u["token"] != self._token]
            if "ip_forward" not in reg:
                # First user since boot (or since the last one stopped cleanly): the value to
                # restore is the current one. After a crash, the recorded one still is.
                reg["ip_forward"] = _read(IP_FORWARD)
            self._old_forward = str(reg["ip_forward"])
            me = {"token": self._token, "pid": os.getpid(), "start": _start_time(os.getpid())}
            reg["users"] = [*others, {**me, "table": self.table}]
            _write(IP_FORWARD, "1")
            _nft(self._ruleset())

    def teardown_host(self) -> None:
        """Delete this daemon's veths; if no other live daemon uses the table (and forwarding),
        delete it and restore ``ip_forward``. Idempotent; state already gone is not an error.

        Raises:
            OSError: ``nft`` failed to delete the table.
        """
        with self._lifecycle:
            self._leave_host()

    def _leave_host(self) -> None:
        """Stop the netlink threads (deleting our veths), then unregister from the host."""
        creator, reaper = self._creator, self._reaper
        self._creator = self._reaper = None
        if creator is not None:
            creator.close()  # an attach in flight finishes first
        if reaper is not None:
            with self._lock:
                leftover = list(self._attached.values())
                self._attached.clear()
            for att in leftover:
                reaper.submit(self._reap, att)
            reaper.close()  # runs every queued deletion first
        with self._registry() as reg:
            users = [u for u in reg.get("users", []) if _alive(u) and u["token"] != self._token]
            if not any(u["table"] == self.table for u in users):
                _nft(f"table inet {self.table}\ndelete table inet {self.table}\n")
            old = reg.get("ip_forward", self._old_forward)
            if users:
                reg["users"] = users
            else:
                reg.clear()  # the registry file is removed
                if old is not None:
                    _write(IP_FORWARD, str(old))

    # -- per sandbox -----------------------------------------------------------------------

    def attach(self, sandbox_id: str, pid: int) -> dict[str, str]:
        """Give the sandbox whose PID 1 is ``pid`` (a host pid) a veth into the host.

        Creates the pair with its inner end directly in ``pid``'s network namespace, addresses
        and raises the host end. Returns what :func:`sandbox.netns.configure_egress` needs:
        ``{"ifname": "eth0", "address": "10.200.x.y/30", "gateway": "10.200.x.z"}``.

        Raises:
            OSError: not set up, no free block, no such process, or netlink refused (nothing
                stays allocated then).
        """
        creator = self._creator
        if creator is None:
            raise OSError(errno.ENETDOWN, "egress is not set up: setup_host() has not run")
        return creator.call(self._attach, sandbox_id, pid)

    def detach(self, sandbox_id: str) -> None:
        """Hand the sandbox's host veth end to the reaper thread, which deletes it if it still
        exists (it vanishes with the sandbox's network namespace, but that teardown is
        deferred) and then frees its address block.

        Never blocks on netlink (it takes a lock held for microseconds and queues the work), so
        it is safe from any thread, the event loop's included; never raises (it runs from a
        sandbox's close callback); unknown ids are ignored."""
        with self._lock:
            att = self._attached.pop(sandbox_id, None)
        if att is None:
            return
        reaper = self._reaper
        try:
            if reaper is None:
                raise OSError(errno.ENETDOWN, "egress is torn down")
            reaper.submit(self._reap, att)
        except OSError:  # torn down meanwhile: the kernel removes the pair with the netns
            with self._lock:
                self._used.discard(att.block)

    @property
    def attached(self) -> dict[str, str]:
        """sandbox id -> host veth name (for diagnostics and tests)."""
        with self._lock:
            return {k: v.host_ifname for k, v in self._attached.items()}

    @property
    def blocks_in_use(self) -> int:
        """Address blocks held: attached, or detached with the deletion still pending."""
        with self._lock:
            return len(self._used)

    # -- on the netlink threads ------------------------------------------------------------

    def _take_block(self) -> int:
        with self._lock:
            for _ in range(self._blocks):
                block = self._next
                self._next = (self._next + 1) % self._blocks
                if block not in self._used:
                    self._used.add(block)
                    return block
        raise OSError(errno.ENOSPC, f"egress: every /30 of {self.cidr} is in use")

    def _attach(self, ipr: Any, sandbox_id: str, pid: int) -> dict[str, str]:
        from pyroute2.netlink.exceptions import NetlinkError

        with self._lock:
            if sandbox_id in self._attached:
                raise OSError(errno.EEXIST, f"egress: sandbox {sandbox_id} is already attached")
        for _ in range(self._blocks):
            block = self._take_block()
            name = f"{PREFIX}{block:x}"
            gateway = self.cidr.network_address + 4 * block + 1
            try:
                try:
                    ipr.link(
                        "add",
                        ifname=name,
                        kind="veth",
                        group=os.getpid(),  # whose it is, for leftover cleanup
                        state="up",
                        peer={"ifname": INNER_IFNAME, "net_ns_pid": pid},
                    )
                except NetlinkError as exc:
                    if exc.code == errno.EEXIST and ipr.link_lookup(ifname=name):
                        # Another daemon's block, or a veth of ours the kernel has not reaped.
                        with self._lock:
                            self._used.discard(block)
                        continue
                    raise OSError(
                        exc.code,
                        f"egress: ip link add {name} type veth peer name {INNER_IFNAME} netns"
                        f" {pid} (sandbox {sandbox_id}): {os.strerror(exc.code)}",
                    ) from None
                try:
                    index = int(ipr.link_lookup(ifname=name)[0])
                    ipr.addr("add", index=index, address=str(gateway), prefixlen=30)
                except (NetlinkError, IndexError) as exc:
                    _delete_link(ipr, name)
                    code = getattr(exc, "code", errno.ENODEV)
                    raise OSError(
                        code, f"egress: ip addr add {gateway}/30 dev {name}: {os.strerror(code)}"
                    ) from None
            except BaseException:
                with self._lock:
                    self._used.discard(block)
                raise
            with self._lock:
                self._attached[sandbox_id] = _Attachment(block, name, index)
            return {"ifname": INNER_IFNAME, "address": f"{gateway + 1}/30", "gateway": str(gateway)}
        raise OSError(errno.ENOSPC, f"egress: every /30 of {self.cidr} is taken")

    def _reap(self, ipr: Any, att: _Attachment) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            # By index: the kernel allocates interface indexes cyclically, so a stale index
            # cannot name another daemon's veth that took over the name meanwhile.
            ipr.link("del", index=att.host_index)
        except NetlinkError as exc:
            if exc.code not in (errno.ENODEV, errno.ENOENT):
                print(f"lambdad: egress: ip link del {att.host_ifname}: {exc}", file=sys.stderr)
        finally:
            with self._lock:
                self._used.discard(att.block)

    # -- host state ------------------------------------------------------------------------

    def _ruleset(self) -> str:
        t, net, p = self.table, str(self.cidr), f'"{PREFIX}*"'
        blocked = ", ".join((*BLOCKED_NETS, net))
        return f"""\
table inet {t}
delete table inet {t}
table inet {t} {{
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        iifname {p} meta nfproto ipv6 drop comment "sandboxes get IPv4 egress only"
        iifname {p} fib saddr . iif oif missing drop comment "anti-spoofing"
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname {p} ct state established,related accept comment "replies to the host"
        iifname {p} drop comment "a sandbox never reaches the host itself"
        iifname != "lo" ip saddr {net} drop comment "spoofed sandbox addresses"
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname {p} oifname {p} drop comment "no sandbox-to-sandbox traffic"
        oifname {p} ct state established,related accept
        oifname {p} drop comment "nothing new into a sandbox"
        iifname {p} ip daddr {{ {blocked} }} drop
        iifname {p} fib daddr type {{ local, broadcast, multicast }} drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {net} oifname != {p} masquerade
    }}
}}
"""

    @contextlib.contextmanager
    def _registry(self) -> Iterator[dict[str, Any]]:
        """The host-wide record of egress users, read and rewritten under an exclusive lock."""
        os.makedirs(self._run_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self._run_dir, "egress.json")
        with open(os.path.join(self._run_dir, "egress.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path) as f:
                    reg: dict[str, Any] = json.load(f)
            except (FileNotFoundError, ValueError):
                reg = {}
            yield reg
            if reg:
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump(reg, f)
                os.replace(tmp, path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _noop(ipr: Any) -> None:
    pass


def _remove_leftovers(ipr: Any) -> None:
    """Delete ``lde*`` veths whose daemon (the pid in their link group) is gone."""
    for link in ipr.link("dump"):
        name = link.get("ifname") or ""
        owner = int(link.get("group") or 0)
        if not name.startswith(PREFIX) or _kind(link) != "veth":
            continue
        if owner > 0 and _pid_exists(owner):
            continue
        _delete_link(ipr, name)


def _delete_link(ipr: Any, name: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("del", ifname=name)
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT):
            raise OSError(exc.code, f"egress: ip link del {name}: {exc}") from None


def find_nft() -> str:
    """The ``nft`` binary: on ``$PATH``, else in the usual sbin directories.

    Raises:
        OSError: not found; the message says so and which package provides it:
            ``nft not found (apt-get install nftables)``.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    nft = shutil.which("nft", path=search)
    if nft is None:
        raise OSError(errno.ENOENT, f"nft not found (apt-get install {NFT_PACKAGE})")
    return nft


def _nft(script: str) -> None:
    nft = find_nft()
    try:
        out = subprocess.run(
            [nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(errno.ENOEXEC, f"nft -f -: {exc}") from exc
    if out.returncode != 0:
        raise OSError(errno.EINVAL, f"nft -f - exited {out.returncode}: {out.stderr.strip()}")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise OSError(exc.errno, f"write {value!r} to {path}: {exc.strerror}") from exc


def _kind(link: Any) -> str | None:
    info = link.get("IFLA_LINKINFO") or link.get("linkinfo")
    return info.get("IFLA_INFO_KIND") if info is not None else None


def _pid_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, names it uniquely."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(user: dict[str, Any]) -> bool:
    pid, start = user.get("pid"), user.get("start")
    return isinstance(pid, int) and start is not None and _start_time(pid) == start
