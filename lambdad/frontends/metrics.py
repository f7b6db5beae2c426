"""The metrics front: the numbers of the ``stats`` request, scraped over HTTP (Prometheus).

Off unless ``metrics_address`` is set (``"127.0.0.1:9464"``; port 0 picks a free one, which
``stats`` then reports). The exposition format comes from prometheus-client's collector API;
the HTTP side is the daemon's own HTTP/1.1 machinery (:mod:`lambdad.frontends.http`, the same
as the Lambda API's) on the daemon's loop rather than prometheus-client's threaded server, so
the daemon stays one loop and no thread reads daemon state while the loop mutates it. It
answers ``GET`` and ``HEAD`` of ``/metrics`` (any query), keeps connections alive for
scrapers that reuse them, and gets the machinery's bounds: no request body, a small head,
slowloris deadlines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.frontends.http import HttpServer, Limits, Request, Response
from lambdad.service import Service
from lambdad.triggers import wire as trigger_wire

# A scrape is a GET with a few headers: nothing larger is needed, and nothing else is read.
LIMITS = Limits(max_head_bytes=8192, max_target_bytes=2048, max_headers=50, max_body_bytes=0,
                header_timeout_s=10.0, body_timeout_s=10.0, keepalive_timeout_s=60.0,
                max_connections=256)  # fmt: skip


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
        self.server: HttpServer | None = None
        self.wanted = address
        self.address = ""

    async def start(self) -> None:
        host, _, port = self.wanted.rpartition(":")
        self.server = HttpServer(self.app, limits=LIMITS)
        self.address = await self.server.start(host or "127.0.0.1", int(port))
        self.service.addresses[self.name] = self.address

    async def app(self, request: Request) -> Response:
        if request.path != "/metrics":
            return Response.text(404, "not found: try GET /metrics\n")
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "only GET /metrics\n", (("allow", "GET, HEAD"),))
        body = generate_latest(self.registry)
        return Response(200, (("content-type", CONTENT_TYPE_LATEST),), body)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close(grace_s=1.0)
            self.server = None


def create(service: Service, config: DaemonConfig) -> MetricsFront | None:
    """The endpoint, if ``metrics_address`` asks for one."""
    return MetricsFront(service, config.metrics_address) if config.metrics_address else None
