"""Run one admitted invocation: a sandbox (warm, or cold via :mod:`lambdad.specialize`), the
call, the meter, the log lines, and the :class:`~lambdad.model.InvocationResult`.

The timer that enforces the function's timeout is the sandbox handle's receive deadline; what
each way of ending means to the caller is :mod:`lambdad.outcomes`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Final

from lambdad import outcomes
from lambdad.errors import InvalidRequest, ServiceError
from lambdad.functions import Version
from lambdad.logs import LogStream
from lambdad.metering import Report, billed, bounded_duration, link_slack_ms
from lambdad.model import InvocationResult
from lambdad.placement import FunctionState, WarmPool
from lambdad.sandboxes import Sandbox, SandboxDied, State
from lambdad.specialize import ColdStart, GenericLost, InitFailed, Specializer, exit_description
from sandbox import messages

GENERIC_RETRIES: Final = 3  # pooled sandboxes found dead before one is taken for good


@dataclass(frozen=True)
class Call:
    """One admitted invocation, as it travels down to a sandbox."""

    version: Version
    payload: bytes  # the event, JSON text, never parsed by the daemon
    log_tail: bool  # collect this invocation's last 4 KB of log
    request_id: str
    force_cold: bool  # use a fresh sandbox and retire it afterwards
    queue_us: int  # time spent waiting for concurrency
    trace_id: str = ""  # the X-Ray trace header (the caller's, or new_trace_id()'s)
    client_context: str | None = None  # Lambda's ClientContext (base64 JSON), passed through
    qualifier: str | None = None  # as the caller named the version: invoked_function_arn's tail


class Invoker:
    def __init__(
        self,
        warm: WarmPool[Sandbox],
        specializer: Specializer,
        live_versions: Callable[[str], Container[str]],
        max_result: int,
    ) -> None:
        self.warm = warm
        self.specializer = specializer
        # The keys (Version.key) of a function's $LATEST and published versions; empty once
        # it is deleted. A sandbox of any other version is retired when it is released.
        self.live_versions = live_versions
        self.max_result = max_result
        self.draining = False

    async def run(self, state: FunctionState[Sandbox], call: Call) -> InvocationResult:
        """Run ``call`` (already admitted) to its result. Raises only platform refusals
        (TooManyRequests for the memory budget, InvalidRequest for a payload that is not
        JSON, ServiceError when no sandbox can be had)."""
        try:
            sandbox, cold = await self._sandbox_for(state, call.version, call.force_cold)
        except InitFailed as exc:
            status, error_type = outcomes.report_status(exc.error, outcomes.UNHANDLED)
            report = _report(call, exc.cold.init_ms, None, exc.cold, status, error_type)
            tail = _log_failed_init(exc.cold.stream, call, exc.error, report)
            state.stats.record(report, error=True)
            return InvocationResult(
                request_id=call.request_id,
                error=exc.error,
                function_error=outcomes.UNHANDLED,
                report=report,
                log_tail=tail if call.log_tail else None,
                executed_version=str(call.version.number),
            )
        try:
            return await self._call_sandbox(state, sandbox, cold, call)
        except InvalidRequest:
            raise  # the payload was bad, not the sandbox: it is back in the pool
        except BaseException:
            # Whatever went wrong (a bug, a cancellation), a sandbox is never left BUSY and
            # counted against the budget: it is condemned and forgotten.
            if sandbox.state is State.BUSY:
                sandbox.kill()
            self.warm.discard(state, sandbox)
            raise

    async def _sandbox_for(
        self, state: FunctionState[Sandbox], version: Version, force_cold: bool
    ) -> tuple[Sandbox, ColdStart | None]:
        if not force_cold:
            warm = self.warm.take(state, version.key)
            if warm is not None:
                return warm, None
        for attempt in range(GENERIC_RETRIES):
            try:
                sandbox, cold = await self.specializer.cold_start(state, version)
                break
            except GenericLost:
                if attempt == GENERIC_RETRIES - 1:
                    raise ServiceError("no live sandbox could be had for this invocation") from None
        if not sandbox.alive:  # died between its init-done and now (e.g. its zygote went down)
            self.warm.discard(state, sandbox)
            raise InitFailed(outcomes.init_exit_error("signal: killed"), cold)
        sandbox.move(State.BUSY)
        return sandbox, cold

    async def _call_sandbox(
        self, state: FunctionState[Sandbox], sandbox: Sandbox, cold: ColdStart | None, call: Call
    ) -> InvocationResult:
        stream = sandbox.log_stream
        assert stream is not None
        # Held until END and REPORT are written: a sandbox that dies meanwhile closes its
        # stream, which must still get this invocation's records.
        stream.hold()
        try:
            return await self._run_on(state, sandbox, cold, call, stream)
        finally:
            stream.release()

    async def _run_on(
        self,
        state: FunctionState[Sandbox],
        sandbox: Sandbox,
        cold: ColdStart | None,
        call: Call,
        stream: LogStream,
    ) -> InvocationResult:
        version, request_id = call.version, call.request_id
        cfg = version.config
        if call.log_tail:
            stream.start_tail()
        label = version.number or "$LATEST"  # an unpublished $LATEST is number 0
        stream.platform(f"START RequestId: {request_id} Version: {label}")
        started = time.monotonic_ns()
        error: dict[str, Any] | None = None
        function_error: str | None = None
        result: bytes | None = None
        duration_ms: float
        maxrss_kb = 0
        try:
            sandbox.send_invoke(
                request_id,
                call.payload,
                int(cfg.timeout_s * 1000),
                call.trace_id or None,
                call.client_context,
                call.qualifier,
            )
            answer = await sandbox.receive(messages.Result, timeout=cfg.timeout_s)
        except TimeoutError:
            # The loop's timer has millisecond granularity and may fire a hair early; a
            # timed-out invocation ran for (at least) its whole timeout, as Lambda reports.
            duration_ms = max((time.monotonic_ns() - started) / 1e6, cfg.timeout_s * 1000)
            peak = sandbox.memory_peak_mb()
            sandbox.kill()
            function_error = outcomes.UNHANDLED
            error = outcomes.timeout_error(cfg.timeout_s)
            message = outcomes.timeout_message(cfg.timeout_s)
            stream.platform(f"{_utc()} {request_id} {message}")
            maxrss_kb = peak * 1024
        except SandboxDied:
            duration_ms = (time.monotonic_ns() - started) / 1e6
            description, peak_bytes, oom_kills = await exit_description(sandbox)
            function_error = outcomes.UNHANDLED
            error = outcomes.exit_error(request_id, description, oom=bool(oom_kills))
            stream.platform(error["errorMessage"])
            maxrss_kb = peak_bytes // 1024
        except messages.MessageError as exc:
            # The sandbox runs untrusted code: a malformed answer condemns it.
            sandbox.drain_log()
            sandbox.violation(f"malformed result ({exc})")
            duration_ms = (time.monotonic_ns() - started) / 1e6
            error = outcomes.invalid_response(request_id, str(exc))
            stream.platform(error["errorMessage"])
            function_error = outcomes.UNHANDLED
        else:
            sandbox.drain_log()
            # The sandbox says the event is not JSON: believed only when it is true (it is
            # checked here, on this rare path only), or hostile code on the link could make
            # the caller's valid request look like the caller's fault.
            lied = answer.bad_payload is not None and _is_json(call.payload)
            if answer.bad_payload is not None and not lied:
                # Refused before the handler ran: no invocation, so no REPORT.
                stream.platform(f"END RequestId: {request_id}")
                stream.tail = None
                self._release(state, sandbox, version)
                raise InvalidRequest(answer.bad_payload)
            # The sandbox's own figure, within what the daemon's clock allows: the function
            # shares the runtime's process and could make its clocks say anything.
            duration_ms = bounded_duration(
                answer.duration_us / 1000,
                (sandbox.received_ns - started) / 1e6,
                link_slack_ms(len(call.payload) + len(answer.result or b"")),
            )
            maxrss_kb = answer.maxrss_kb
            if lied or (answer.result is not None and len(answer.result) > self.max_result):
                problem = (
                    "claimed a JSON event is not JSON"
                    if lied
                    else f"result of {len(answer.result or b'')} bytes is over {self.max_result}"
                )
                sandbox.violation(f"malformed result ({problem})")
                duration_ms = (time.monotonic_ns() - started) / 1e6
                error = outcomes.invalid_response(request_id, problem)
                maxrss_kb = 0
                stream.platform(error["errorMessage"])
                function_error = outcomes.UNHANDLED
            elif answer.error is not None:
                # The runtime has logged it, in the function's log format, as Lambda's does.
                error = dict(answer.error)
                function_error = outcomes.function_error(error)
            else:
                result = answer.result
        memory_used = (
            sandbox.memory_peak_mb(maxrss_kb) if sandbox.alive else max(1, maxrss_kb // 1024)
        )
        status, error_type = outcomes.report_status(error, function_error)
        report = _report(call, duration_ms, memory_used, cold, status, error_type)
        xray = xray_line(call.trace_id)
        if xray:
            stream.platform(f"END RequestId: {request_id}", report.line(), xray.rstrip("\n"))
        else:
            stream.platform(f"END RequestId: {request_id}", report.line())
        tail = stream.take_tail() if call.log_tail else None
        # One write(): this invocation's records are in the kernel before its caller
        # learns the result, so a SIGKILL of the daemon cannot lose them.
        stream.flush()
        state.stats.record(report, error=error is not None)
        if sandbox.alive and not call.force_cold:
            self._release(state, sandbox, version)
        else:
            self.warm.discard(state, sandbox)
            # After the response is written (it is, before this callback runs): tearing a
            # sandbox down is not the caller's business.
            asyncio.get_running_loop().call_soon(sandbox.retire)
        return InvocationResult.ran(request_id, result, error, function_error, report, tail)

    def _release(self, state: FunctionState[Sandbox], sandbox: Sandbox, version: Version) -> None:
        """Back to the idle list, or retired: the function was deleted, its version is no
        longer live ($LATEST changed and was not published), or the daemon is draining."""
        if (
            not self.warm.current(state)
            or self.draining
            or version.key not in self.live_versions(state.name)
        ):
            self.warm.retire(state, sandbox)
            return
        self.warm.put_back(state, sandbox)


def _log_failed_init(
    stream: LogStream | None, call: Call, error: dict[str, Any], report: Report
) -> str:
    """An invocation whose Init failed: START, the error line, END and REPORT (after the
    INIT_REPORT the cold start wrote), in the kernel before the caller learns of it."""
    if stream is None:
        return ""
    stream.hold()
    try:
        if call.log_tail:
            stream.start_tail()
        label = call.version.number or "$LATEST"  # an unpublished $LATEST is number 0
        stream.platform(f"START RequestId: {call.request_id} Version: {label}")
        if error.get("errorType") == outcomes.EXIT_ERROR:  # the platform's words, not the handler's
            stream.platform(f"RequestId: {call.request_id} Error: {error.get('errorMessage')}")
            stream.platform(outcomes.EXIT_ERROR)
        stream.platform(f"END RequestId: {call.request_id}", report.line())
        tail = stream.take_tail() if call.log_tail else ""
        stream.flush()
        return tail
    finally:
        stream.release()


def _report(
    call: Call,
    duration_ms: float,
    memory_used: int | None,
    cold: ColdStart | None,
    status: str | None = None,
    error_type: str | None = None,
) -> Report:
    duration_ms = round(duration_ms, 2)  # what the REPORT line shows is what is billed
    return Report(
        request_id=call.request_id,
        duration_ms=duration_ms,
        billed_ms=billed(duration_ms),
        memory_mb=call.version.config.memory_mb,
        max_memory_used_mb=memory_used or 1,
        init_ms=round(cold.init_ms, 3) if cold and cold.restore_ms is None else None,
        cold=cold is not None,
        source=cold.source if cold else "warm",
        version=str(call.version.number),
        queue_us=call.queue_us,
        phases_us=cold.phases_us if cold else {},
        trace_id=call.trace_id,
        status=status,
        error_type=error_type,
        restore_ms=round(cold.restore_ms, 3) if cold and cold.restore_ms is not None else None,
    )


class _RandomPool:
    """``os.urandom`` bytes drawn 4 KB at a time: a request id and a trace id on every
    invocation were two ``getrandom()`` calls each time (measured with ``strace -c``); now one
    per ~110 invocations. The bytes are the same kernel CSPRNG's. Emptied in a forked child,
    so that a child never hands out its parent's ids."""

    SIZE: Final = 4096

    def __init__(self) -> None:
        self._data = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._data, self._at = b"", 0

    def take(self, n: int) -> bytes:
        at = self._at
        if at + n > len(self._data):
            self._data, at = os.urandom(max(self.SIZE, n)), 0
        self._at = at + n
        return self._data[at : at + n]


_random = _RandomPool()


def new_request_id() -> str:
    """A random (version 4) UUID, as ``str(uuid.uuid4())``, from the pool."""
    return str(uuid.UUID(bytes=_random.take(16), version=4))


def new_trace_id(now: float | None = None) -> str:
    """An X-Ray trace header for an invocation whose caller sent none, as Lambda makes one: a
    root id starting with the epoch second in hex, a parent segment id, not sampled."""
    seconds = int(time.time() if now is None else now)
    rand = _random.take(20).hex()
    return f"Root=1-{seconds:08x}-{rand[:24]};Parent={rand[24:]};Sampled=0"


def xray_line(trace_id: str) -> str:
    """Lambda's ``XRAY TraceId:`` line (after REPORT) for a trace header: only for a sampled
    trace (``Sampled=1``), as Lambda writes it only for traced invocations; "" otherwise. Every
    invocation's trace id is in its report (``Report.trace_id``) either way."""
    if "Sampled=1" not in trace_id:  # the common case, on every invocation: no parsing
        return ""
    fields = dict(f.partition("=")[::2] for f in trace_id.split(";"))
    root = fields.get("Root")
    if not root or fields.get("Sampled") != "1":
        return ""
    return f"XRAY TraceId: {root}\tSegmentId: {fields.get('Parent', '')}\tSampled: true\n"


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload or b"null")
    except ValueError:
        return False
    return True
