"""Daemon configuration: one frozen, typed dataclass, loaded from TOML (stdlib ``tomllib``).

Paths follow SPEC §8: as root ``/run/lambdad/lambdad.sock`` and ``/var/lib/lambdad``,
otherwise under ``$XDG_RUNTIME_DIR`` and ``~/.local/share``; ``LAMBDAD_SOCKET`` and
``LAMBDAD_STATE_DIR`` override both.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from lambdad.errors import InvalidParameterValue
from lambdad.logs import LogLimits


def default_socket_path() -> str:
    env = os.environ.get("LAMBDAD_SOCKET")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/lambdad/lambdad.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/lambdad-{os.getuid()}"
    return os.path.join(runtime_dir, "lambdad", "lambdad.sock")


def default_state_dir() -> str:
    env = os.environ.get("LAMBDAD_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/lambdad"
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data_home, "lambdad")


@dataclass(frozen=True)
class DaemonConfig:
    socket_path: str = ""  # where clients connect; "" = default_socket_path()
    state_dir: str = ""  # registry, code, logs, async events; "" = default_state_dir()
    strict: bool = False  # refuse to start when any isolation mechanism is unavailable
    max_frame_bytes: int = 8 * 1024 * 1024  # largest request frame accepted from a client
    hello_timeout_s: float = 10.0  # a connection that has not said hello by then is closed
    # Staged uploads of code zips bigger than one frame (lambdad/uploads.py), per peer (uid):
    upload_max_open: int = 4  # uploads open at once, across the peer's connections
    upload_max_bytes: int = 128 * 1024 * 1024  # declared bytes of the peer's open uploads
    upload_timeout_s: float = 60.0  # an upload with no chunk for this long is removed
    sync_payload_max: int = 6 * 1024 * 1024  # Lambda's synchronous payload limit
    async_payload_max: int = 256 * 1024  # Lambda's asynchronous payload limit
    pool_size: int = 4  # generic (unspecialized) sandboxes kept ready per runtime
    pool_max: int = 64  # the adaptive pool target never exceeds this
    global_concurrency: int = 0  # busy sandboxes across all functions; 0 = budget / 128 MB
    # Sum of the memory *limits* of live sandboxes. Limits are caps, not reservations (most
    # handlers use a fraction of theirs, as on Lambda), so the default overcommits: 3x RAM.
    memory_budget_mb: int = 0
    # Lambda's rule: reservations always leave this much of the global limit to the functions
    # that reserve nothing (at most half the global limit, for small hosts).
    unreserved_concurrency_min: int = 100
    queue_timeout_s: float = 0.5  # how long an over-limit request may wait before throttling
    queue_max: int = 1000  # requests waiting for concurrency at once, beyond that: throttle
    idle_ttl_s: float = 300.0  # reap a warm sandbox idle this long
    freeze_after_s: float = 1.0  # freeze a warm sandbox idle this long (cgroup freezer)
    shutdown_grace_s: float = 10.0  # SIGTERM: how long in-flight invocations may finish
    log_max_bytes: int = 4 * 1024 * 1024  # a log stream file is rotated past this size
    log_keep: int = 8  # rotated files kept per stream
    # Disk bounds for logs (docs/operations.md, "Logs"): over one, the oldest files go first.
    log_function_max_bytes: int = 64 * 1024 * 1024  # all log files of one function
    log_function_max_files: int = 256  # log files (streams + rotated) of one function
    log_total_max_bytes: int = 1024 * 1024 * 1024  # all log files
    log_total_max_files: int = 10_000  # all log files
    log_retention_s: float = 14 * 86400.0  # a log file not written for this long is removed
    async_retry_delays_s: tuple[float, ...] = (60.0, 120.0)  # Lambda: 2 retries, backing off
    async_max_age_s: float = 6 * 3600.0  # Lambda's maximum event age
    async_workers: int = 16  # async events run at once
    # Deploy's unpack + byte-compile runs in a niced child process with these caps
    # (lambdad/codebuild.py); past one, the deploy fails with InvalidParameterValue.
    deploy_build_memory_mb: int = 1024  # the builder's address space (RLIMIT_AS)
    deploy_build_cpu_s: int = 60  # the builder's CPU time (RLIMIT_CPU)
    deploy_build_timeout_s: float = 120.0  # the builder's wall-clock time, then SIGKILL
    # Async queue caps (TooManyRequests when full, as Lambda's async queue throttles):
    # events not yet finished (pending or running) and their payload bytes.
    async_queue_max_events: int = 100_000  # across every function
    async_queue_max_bytes: int = 1024 * 1024 * 1024  # across every function
    async_queue_function_max_events: int = 10_000  # of one function
    async_queue_function_max_bytes: int = 256 * 1024 * 1024  # of one function
    # Free-disk watermark of the state directory's file system: below it, new deploys and
    # async events are refused (InsufficientStorage) instead of filling the disk.
    disk_min_free_mb: int = 512
    disk_min_free_percent: float = 2.0  # and this share of the file system
    # Persisted per-minute statistics (lambdad/rollups.py, <state>/rollups.sqlite3).
    rollup_retention_s: float = 7 * 24 * 3600.0  # minutes older than this are dropped
    rollup_max_rows: int = 2_000_000  # and never more rows than this, oldest first
    admin_group: str = "lambdad-admin"  # besides root, members may deploy/delete
    cgroup_parent: str = "lambdad"  # parent cgroup of every sandbox cgroup
    # Remount the host's cgroup2 with favordynmods (as root, Linux 6.0+): a sandbox's move
    # into its own cgroup then never waits for an RCU grace period (sandbox.cgroups).
    cgroup_favordynmods: bool = True
    # Let the kernel merge identical pages of sandboxes (KSM; starts ksmd): idle sandboxes'
    # memory shrinks ~4x, but a merged page is a side channel between functions. Only for a
    # host whose functions all trust each other (docs/security.md, "Memory merging").
    memory_merge: bool = False
    # AWS_REGION and the region in the ARNs functions see (boto3 builds endpoints from it).
    region: str = "us-east-1"
    metrics_address: str = ""  # Prometheus endpoint, e.g. "127.0.0.1:9464"; "" = off
    api_address: str = ""  # the Lambda HTTP API (SigV4), e.g. "127.0.0.1:9001"; "" = off
    gateway_address: str = ""  # the HTTP gateway (http and url triggers), e.g. "127.0.0.1:9002"
    # Mechanisms to turn off on purpose (namespaces, cgroups, credentials, seccomp): to measure
    # what each costs or to debug. Each is reported as missing; --strict refuses to start.
    disable_isolation: tuple[str, ...] = ()

    def log_limits(self) -> LogLimits:
        return LogLimits(
            stream_bytes=self.log_max_bytes,
            keep=self.log_keep,
            function_bytes=self.log_function_max_bytes,
            function_files=self.log_function_max_files,
            total_bytes=self.log_total_max_bytes,
            total_files=self.log_total_max_files,
            retention_s=self.log_retention_s,
        )

    def resolved(self) -> DaemonConfig:
        return dataclasses.replace(
            self,
            socket_path=self.socket_path or default_socket_path(),
            state_dir=self.state_dir or default_state_dir(),
        )


def load(path: str | None, **overrides: Any) -> DaemonConfig:
    """Read a TOML file (optional) and apply non-None overrides (command-line flags)."""
    values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        section = raw.get("daemon", raw)
        known = {f.name: f for f in dataclasses.fields(DaemonConfig)}
        for key, value in section.items():
            if key not in known:
                raise InvalidParameterValue(f"{path}: unknown setting {key!r}", field=key)
            if key == "async_retry_delays_s":
                value = tuple(float(v) for v in value)
            if key == "disable_isolation":
                value = tuple(str(v) for v in value)
                unknown = set(value) - {"namespaces", "cgroups", "credentials", "seccomp"}
                if unknown:
                    raise InvalidParameterValue(
                        f"{path}: disable_isolation: unknown mechanism(s) {sorted(unknown)}",
                        field=key,
                    )
            if key == "region" and not (
                isinstance(value, str) and re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", value)
            ):
                raise InvalidParameterValue(
                    f"{path}: region must be an AWS region name like 'eu-west-1', got {value!r}",
                    field=key,
                )
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DaemonConfig(**values).resolved()
