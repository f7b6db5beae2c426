"""The Prometheus endpoint: the numbers of the ``stats`` request, scraped over HTTP.

Off unless ``metrics_address`` is set (``"127.0.0.1:9464"``; port 0 picks a free one, which
``stats`` then reports). The exposition format comes from prometheus-client's collector API;
the HTTP side is a few lines of asyncio on the daemon's own loop rather than
prometheus-client's threaded server, so the daemon stays one loop and no thread reads daemon
state while the loop mutates it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from lambdad.daemon import Daemon

MAX_REQUEST_HEAD = 8192


class DaemonCollector:
    """Reads the daemon's per-function statistics at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        counters = {
            "invocations": "Invocations, by function",
            "errors": "Function errors (Handled and Unhandled), by function",
            "throttles": "Invocations refused with TooManyRequests, by function",
            "cold_starts": "Invocations that needed a new sandbox, by function",
        }
        families = {
            key: CounterMetricFamily(f"lambdad_{key}", text, labels=["function"])
            for key, text in counters.items()
        }
        gb_seconds = CounterMetricFamily(
            "lambdad_gb_seconds", "Billed GB-seconds, by function", labels=["function"]
        )
        concurrent = GaugeMetricFamily(
            "lambdad_concurrent_executions", "Busy sandboxes, by function", labels=["function"]
        )
        duration = GaugeMetricFamily(
            "lambdad_duration_milliseconds",
            "Handler duration over the recent invocations, by function and quantile",
            labels=["function", "quantile"],
        )
        warm = GaugeMetricFamily(
            "lambdad_warm_sandboxes", "Initialized sandboxes, by function", labels=["function"]
        )
        for name, state in sorted(self.daemon.functions.items()):
            stats = state.stats.to_wire()
            for key, family in families.items():
                family.add_metric([name], stats[key])
            gb_seconds.add_metric([name], stats["gb_seconds"])
            concurrent.add_metric([name], stats["concurrent"])
            for q in ("p50", "p90", "p99"):
                duration.add_metric([name, f"0.{q[1:]}"], stats["duration_ms"][q])
            warm.add_metric([name], len(state.sandboxes))
        yield from families.values()
        yield gb_seconds
        yield concurrent
        yield duration
        yield warm
        pool = GaugeMetricFamily(
            "lambdad_generic_sandboxes",
            "Pre-forked sandboxes ready, by runtime",
            labels=["runtime"],
        )
        for runtime, generic in sorted(self.daemon.pools.items()):
            pool.add_metric([runtime], len(generic.ready))
        yield pool


class MetricsServer:
    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.server = await asyncio.start_server(self._serve, host or "127.0.0.1", int(port))
        bound = self.server.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        request_line = head[: min(len(head), MAX_REQUEST_HEAD)].split(b"\r\n", 1)[0].split()
        if (
            len(request_line) >= 2
            and request_line[0] == b"GET"
            and (request_line[1] == b"/metrics" or request_line[1].startswith(b"/metrics?"))
        ):
            body = generate_latest(self.registry)
            status, content_type = b"200 OK", CONTENT_TYPE_LATEST.encode()
        else:
            body = b"not found: try GET /metrics\n"
            status, content_type = b"404 Not Found", b"text/plain; charset=utf-8"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )  # fmt: skip
        try:
            await writer.drain()
        except OSError:
            pass
        writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
