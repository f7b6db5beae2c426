"""The metrics front: the numbers of the ``stats`` request, scraped over HTTP (Prometheus).

Off unless ``metrics_address`` is set (``"127.0.0.1:9464"``; port 0 picks a free one, which
``stats`` then reports). The exposition format comes from prometheus-client's collector API;
the HTTP side is a few lines of asyncio on the daemon's own loop rather than
prometheus-client's threaded server, so the daemon stays one loop and no thread reads daemon
state while the loop mutates it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.service import Service
from lambdad.triggers import wire as trigger_wire

MAX_REQUEST_HEAD = 8192


class ServiceCollector:
    """Reads the service's per-function statistics at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

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
        for view in self.service.all_function_stats():
            name, stats = view.name, view.stats
            for key, family in families.items():
                family.add_metric([name], stats[key])
            gb_seconds.add_metric([name], stats["gb_seconds"])
            concurrent.add_metric([name], stats["concurrent"])
            for q in ("p50", "p90", "p99"):
                duration.add_metric([name, f"0.{q[1:]}"], stats["duration_ms"][q])
            warm.add_metric([name], view.sandboxes.live)
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
        for runtime, ready in self.service.generic_sandboxes().items():
            pool.add_metric([runtime], ready)
        yield pool
        yield from _trigger_metrics(trigger_wire.counters(self.service))


def _trigger_metrics(counters: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """Each trigger's counters (lambdad/triggers): received, invoked, failed, lag."""
    texts = {
        "received": "Requests or fires a trigger received",
        "invoked": "Invocations a trigger made (schedules: async events stored)",
        "failed": "Trigger deliveries that failed (function errors, throttles, refusals)",
    }
    families = {
        key: CounterMetricFamily(f"lambdad_trigger_{key}", text, labels=["trigger", "kind"])
        for key, text in texts.items()
    }
    lag = GaugeMetricFamily("lambdad_trigger_lag_milliseconds",
                            "Schedules: fire time minus scheduled time, last fire",
                            labels=["trigger", "kind"])  # fmt: skip
    for name, c in counters.items():
        for key, family in families.items():
            family.add_metric([name, c["kind"]], c[key])
        if c["lag_ms"] is not None:
            lag.add_metric([name, c["kind"]], c["lag_ms"])
    yield from families.values()
    yield lag


class MetricsFront(Component):
    name = "metrics"

    def __init__(self, service: Service, address: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(service))
        self.server: asyncio.Server | None = None
        self.wanted = address
        self.address = ""

    async def start(self) -> None:
        host, _, port = self.wanted.rpartition(":")
        self.server = await asyncio.start_server(self._serve, host or "127.0.0.1", int(port))
        bound = self.server.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        self.service.addresses[self.name] = self.address

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

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def create(service: Service, config: DaemonConfig) -> MetricsFront | None:
    """The endpoint, if ``metrics_address`` asks for one."""
    return MetricsFront(service, config.metrics_address) if config.metrics_address else None
