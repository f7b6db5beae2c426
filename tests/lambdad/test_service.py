"""The service end to end with a fake sandbox factory: admission, placement, cold and warm
starts, outcomes and metering, without a zygote (pure logic on one event loop).

The integration tests drive the same code with real sandboxes through a real daemon; these pin
down the service's own decisions, fast.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lambdad.admission import Admission
from lambdad.client import zip_code
from lambdad.config import DaemonConfig
from lambdad.errors import (
    InvalidRequest,
    RequestTooLarge,
    ResourceNotFound,
    ShuttingDown,
    TooManyRequests,
)
from lambdad.events import EventStore
from lambdad.functions import validate
from lambdad.invoke import Invoker
from lambdad.logs import LogStore
from lambdad.model import InvokeRequest
from lambdad.placement import WarmPool
from lambdad.registry import Registry
from lambdad.sandboxes import TRANSITIONS, ExitInfo, IllegalTransition, SandboxDied, State
from lambdad.scheduler import Scheduler
from lambdad.service import Service
from lambdad.specialize import Specializer
from sandbox import messages

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# What the fake runtime does with a payload: a Result, or an exception to raise from receive.
Behaviour = Callable[[bytes], "messages.Result | BaseException"]


def echo(payload: bytes) -> messages.Result | BaseException:
    try:
        event = json.loads(payload) if payload else None
    except ValueError:
        return messages.Result(bad_payload="Could not parse request body into json")
    if isinstance(event, dict) and "do" in event:
        return DO[event["do"]]
    return messages.Result(result=json.dumps({"echo": event}).encode(), duration_us=1500.0,
                           maxrss_kb=4096)  # fmt: skip


DO: dict[str, messages.Result | BaseException] = {
    "raise": messages.Result(
        error={"errorType": "ValueError", "errorMessage": "boom", "stackTrace": []},
        duration_us=10.0,
    ),
    "marshal": messages.Result(
        error={"errorType": "Runtime.MarshalError", "errorMessage": "no", "stackTrace": []}
    ),
    "timeout": TimeoutError(),
    "crash": SandboxDied("crash"),
    "bad-json": messages.Result(bad_payload="Could not parse request body into json"),
}


class FakeZygote:
    runtime = "python3"
    missing: list[str] = []


class FakeSandbox:
    """The parts of lambdad.sandboxes.Sandbox that specialization and invocation use."""

    def __init__(self, n: int, world: World) -> None:
        self.id = f"fake-{n}"
        self.pid = 10_000 + n
        self.state = State.GENERIC
        self.function: str | None = None
        self.version: int | None = None
        self.memory_mb = 128
        self.generic_phases = {"fork": 500}
        self.last_used = 0.0
        self.log_stream: Any = None
        self.log_tail: bytearray | None = None
        self.on_close: Any = None
        self.cgroup = None
        self.cpu_lowered = False  # no cgroup: nothing to raise
        self.zygote = FakeZygote()
        self.world = world
        self.exit_info: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._pending: collections.deque[messages.Message | BaseException] = collections.deque()
        self.invocations = 0
        self.received_ns = 0  # the daemon's clock at the last answer (lambdad.metering)

    @property
    def alive(self) -> bool:
        return self.state is not State.DEAD

    def move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.id}: {self.state} -> {new}")
        self.state = new

    def kill(self) -> None:
        self.state = State.DEAD
        if not self.exit_info.done():
            self.exit_info.set_result(ExitInfo(9, 3 << 20, 0))  # SIGKILL

    retire = kill

    def violation(self, what: str) -> None:
        self.kill()

    def freeze(self) -> bool:
        return False

    def thaw(self) -> bool:
        return True

    def send_init(self, init: messages.Init, fds: list[int]) -> None:
        self.world.inits.append(init)
        self._pending.append(self.world.init_reply)

    def send_invoke(
        self,
        request_id: str,
        payload: bytes,
        timeout_ms: int,
        trace_id: str | None = None,
        client_context: str | None = None,
        qualifier: str | None = None,
    ) -> None:
        if not self.alive:
            raise SandboxDied(self.id)
        self.invocations += 1
        self._pending.append(self.world.behaviour(payload))

    async def receive_any(self, timeout: float) -> messages.Message:
        reply = self._pending.popleft()
        if isinstance(reply, BaseException):
            raise reply
        # As if the answer took what the sandbox claims, and 50 us of link on top: the daemon
        # bounds the claim by this round trip.
        claimed_us = getattr(reply, "duration_us", 0) or getattr(reply, "init_us", 0)
        self.received_ns = time.monotonic_ns() + int(claimed_us * 1000) + 50_000
        return reply

    async def receive(self, kind: type[Any], timeout: float) -> Any:
        await self.world.gate.wait()
        reply = await self.receive_any(timeout)
        return messages.expect(msgpack_round_trip(reply), kind)

    def drain_log(self) -> None:
        pass

    def memory_peak_mb(self, fallback_kb: int = 0) -> int:
        return max(1, fallback_kb // 1024)


def msgpack_round_trip(msg: messages.Message) -> Any:
    import msgpack

    return msgpack.unpackb(messages.encode(msg), raw=False)


@dataclass
class FakePool:
    world: World

    async def acquire(self) -> tuple[FakeSandbox, str]:
        self.world.forked += 1
        return FakeSandbox(self.world.forked, self.world), "pool"


@dataclass
class World:
    """The fake sandbox factory and what it has seen."""

    behaviour: Behaviour = echo
    init_reply: messages.Message | BaseException = field(
        default_factory=lambda: messages.InitDone({"import": 100}, 900)
    )
    forked: int = 0
    inits: list[messages.Init] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    ready: dict[str, int] = field(default_factory=lambda: {"python3": 4})
    missing: list[str] = field(default_factory=list)

    def pool(self, runtime: str) -> FakePool:
        return FakePool(self)

    def generic_ready(self) -> dict[str, int]:
        return self.ready


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Run ``body(service, world)`` on a fresh loop with a fresh service."""

    def runner(body: Callable[[Service, World], Any], **config: Any) -> Any:
        async def main() -> Any:
            cfg = DaemonConfig(socket_path=str(tmp_path / "s"), state_dir=str(tmp_path), **config)
            world = World()
            world.gate.set()
            registry = Registry(str(tmp_path))
            logs = LogStore(str(tmp_path / "logs"), cfg.log_max_bytes, cfg.log_keep)
            events = EventStore(str(tmp_path / "events.sqlite3"))
            await events.open(asyncio.get_running_loop())
            warm: WarmPool[Any] = WarmPool()
            specializer = Specializer(warm, world, registry, logs, 1024)

            def live(name: str) -> frozenset[str]:
                fn = registry.functions.get(name)
                return fn.live_keys() if fn else frozenset()

            invoker = Invoker(warm, specializer, live, cfg.sync_payload_max)
            admission = Admission(Scheduler(8, cfg.queue_max), cfg.queue_timeout_s)
            service = Service(cfg, registry, logs, events, admission, warm, invoker, world, 1024)
            try:
                return await body(service, world)
            finally:
                await events.close()

        return asyncio.run(main())

    yield runner


async def _deploy(service: Service, name: str = "f", **fields: Any) -> None:
    code = await asyncio.to_thread(zip_code, EXAMPLES / "hello")
    await service.deploy(validate({"name": name, **fields}), code)


def _req(payload: Any, **kw: Any) -> InvokeRequest:
    return InvokeRequest(
        function=kw.pop("function", "f"), payload=json.dumps(payload).encode(), **kw
    )


def test_cold_then_warm_on_the_same_sandbox(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service, memory_mb=256)
        first = await service.invoke(_req({"a": 1}))
        second = await service.invoke(_req({"a": 2}))
        assert json.loads(first.result or b"") == {"echo": {"a": 1}}
        assert first.report is not None and first.report.cold and first.report.source == "pool"
        assert first.report.phases_us["fork"] == 500 and first.report.phases_us["import"] == 100
        assert second.report is not None and not second.report.cold
        assert second.report.duration_ms == 1.5 and second.report.billed_ms == 2
        assert second.report.memory_mb == 256 and second.report.max_memory_used_mb == 4
        assert world.forked == 1 and len(world.inits) == 1
        assert world.inits[0].function["memory_mb"] == 256
        view = service.function_stats("f")
        assert view.stats["invocations"] == 2 and view.stats["cold_starts"] == 1
        assert (view.sandboxes.warm, view.sandboxes.idle) == (1, 1)

    run(body)


@pytest.mark.parametrize(
    "do, error_type, function_error, keeps_sandbox",
    [
        ("raise", "ValueError", "Unhandled", True),
        ("marshal", "Runtime.MarshalError", "Unhandled", True),
        ("timeout", "Sandbox.Timedout", "Unhandled", False),
        ("crash", "Runtime.ExitError", "Unhandled", False),
    ],
)
def test_outcomes_and_what_they_cost_the_sandbox(
    run: Callable[..., Any], do: str, error_type: str, function_error: str, keeps_sandbox: bool
) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service, timeout_s=1)
        failed = await service.invoke(_req({"do": do}))
        assert failed.error is not None and failed.error["errorType"] == error_type
        assert failed.function_error == function_error and failed.result is None
        after = await service.invoke(_req("next"))
        assert after.error is None
        assert world.forked == (1 if keeps_sandbox else 2)
        assert service.function_stats("f").stats["errors"] == 1

    run(body)


def test_a_crash_reports_the_zygotes_exit_status(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        crashed = await service.invoke(_req({"do": "crash"}))
        assert crashed.error is not None
        assert crashed.error["errorMessage"].endswith("Runtime exited with error: signal: killed")
        assert crashed.report is not None and crashed.report.max_memory_used_mb == 3

    run(body)


def test_a_payload_that_is_not_json_is_the_callers_error(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        not_json = InvokeRequest(function="f", payload=b'{"unterminated": ')
        with pytest.raises(InvalidRequest, match="Could not parse"):
            await service.invoke(not_json)
        assert (await service.invoke(_req(1))).error is None
        assert world.forked == 1  # the sandbox was not blamed
        # A sandbox that says so of a JSON event lies (hostile code on its link): the caller
        # gets the runtime's error, never the blame.
        lied = await service.invoke(_req({"do": "bad-json"}))
        assert lied.error is not None and lied.error["errorType"] == "Runtime.InvalidResponse"

    run(body)


def test_init_failure_is_unhandled_and_keeps_nothing(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        world.init_reply = messages.InitError(
            {"errorType": "Runtime.ImportModuleError", "errorMessage": "no module"}, {}, 50
        )
        result = await service.invoke(_req(1, log_tail=True))
        assert result.error is not None and result.error["errorType"] == "Runtime.ImportModuleError"
        assert result.function_error == "Unhandled"
        assert result.report is not None and result.report.cold
        # The failed Init's invocation still has its records (issue 13 point 5).
        assert result.log_tail is not None
        assert result.log_tail.startswith(f"START RequestId: {result.request_id} ")
        assert result.log_tail.endswith(
            "Status: error\tError Type: Runtime.ImportModuleError\t\n"
        ), result.log_tail
        assert service.function_stats("f").sandboxes.live == 0

    run(body)


def test_a_new_version_retires_idle_sandboxes_of_the_old(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        await service.invoke(_req(1))
        await _deploy(service, memory_mb=512)  # a new version
        result = await service.invoke(_req(2))
        assert result.report is not None and result.report.cold and result.executed_version == "2"
        assert world.forked == 2 and service.function_stats("f").sandboxes.live == 1

    run(body)


def test_over_reserved_concurrency_a_request_waits_then_is_throttled(
    run: Callable[..., Any],
) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service, concurrency=1)
        world.gate.clear()  # the first invocation holds its sandbox
        first = asyncio.ensure_future(service.invoke(_req(1)))
        while service.busy_count() == 0:
            await asyncio.sleep(0)
        with pytest.raises(TooManyRequests) as info:
            await service.invoke(_req(2))
        assert info.value.details["reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        world.gate.set()
        assert (await first).error is None
        assert service.function_stats("f").stats["throttles"] == 1

    run(body, queue_timeout_s=0.05)


def test_dryrun_async_and_refusals(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        dry = await service.invoke(_req(1, type="dryrun"))
        assert (dry.status, dry.executed_version, world.forked) == (204, "1", 0)
        accepted = await service.invoke(_req(1, type="async"))
        assert accepted.status == 202 and accepted.event_id
        with pytest.raises(RequestTooLarge):
            await service.invoke(InvokeRequest("f", b"1" * (256 * 1024 + 1), type="async"))
        with pytest.raises(ResourceNotFound):
            await service.invoke(_req(1, function="nobody"))
        with pytest.raises(ResourceNotFound):
            await service.invoke(_req(1, qualifier="7"))
        service.begin_drain()
        with pytest.raises(ShuttingDown):
            await service.invoke(_req(1))

    run(body)


def test_delete_forgets_the_function_and_its_sandboxes(run: Callable[..., Any]) -> None:
    async def body(service: Service, world: World) -> None:
        await _deploy(service)
        await service.invoke(_req(1))
        assert [info.config.name for info in service.list()] == ["f"]
        await service.delete("f")
        assert service.list() == []
        with pytest.raises(ResourceNotFound):
            service.get("f")
        stats = await service.stats()
        assert stats.warm_sandboxes == 0 and stats.generic_sandboxes == 4

    run(body)
