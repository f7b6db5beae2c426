"""The ``http`` scenario: ``Invoke`` over the Lambda HTTP API, beside the msgpack path and
serverless-offline's Lambda Invoke endpoint, all in the same run, all on the same no-op handler
(``benchmarks/functions/noop_http``).

* **warm**: one client, sequential invocations, in interleaved blocks (msgpack, HTTP,
  serverless-offline, msgpack, ...) so that noise from the shared machine lands on all alike.
  The HTTP client keeps one connection alive and re-sends one SigV4-signed request (signed
  again every minute; a signature is valid for five), reading each answer by its
  Content-Length: the figure is what the daemon costs — parsing, signature verification,
  routing, the invocation — not what botocore's signer costs the client. A short boto3 run is
  shown beside it for what an SDK user sees.
* **cold**: every sample is the first invocation of a freshly deployed function with the
  generic pool full (as ``cold``'s ``pool_ready``): one through msgpack, one through HTTP, in
  turn. serverless-offline has no way to force a cold start; its one cold sample is its first
  invocation after start (it spawns the Python process then).

serverless-offline 13 under Serverless Framework 3 (login-free) is installed by
``make bench-peers`` into ``benchmarks/.cache/serverless-offline``; it runs the handler in a
long-lived ``python3`` process fed over stdin. Whatever cannot run here is reported as
``skipped: <why>`` and the rest is still measured: a daemon without the Lambda API front
(``--api``), a front that does not serve ``Invoke`` yet, no serverless-offline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, BenchDaemon, Settings, note_problem, summarize
from lambdad.client import Client
from lambdad.testing import wait_for

FUNCTION_DIR = ROOT / "benchmarks" / "functions" / "noop_http"
SLS_DIR = ROOT / "benchmarks" / ".cache" / "serverless-offline"
SLS_CLI = SLS_DIR / "node_modules" / "serverless" / "bin" / "serverless.js"
SLS_FUNCTION = "bench-dev-noop"  # <service>-<stage>-<function> in serverless.yml below
REGION = "us-east-1"
POOL_SIZE = 4
BLOCK = 500  # invocations per interleaved warm block
WARMUP = 200
RESIGN_S = 60.0
SLS_START_S = 90.0
SERVERLESS_YML = """\
service: bench
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.11
  region: us-east-1
functions:
  noop:
    handler: app.handler
plugins:
  - serverless-offline
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpInvoker:
    """One keep-alive connection that POSTs an invocation and reads the answer."""

    def __init__(self, host: str, port: int, path: str, key: Any = None) -> None:
        self.host, self.port, self.path = host, port, path
        self.key = key  # a lambdad.keys.NewKey: sign with SigV4; None: unsigned
        self.raw = b""
        self.signed_at = -RESIGN_S
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _request(self) -> bytes:
        if time.monotonic() - self.signed_at < RESIGN_S:
            return self.raw
        headers = {"content-type": "application/json"}
        if self.key is not None:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials

            url = f"http://{self.host}:{self.port}{self.path}"
            request = AWSRequest(method="POST", url=url, data=b"{}", headers=headers)
            creds = Credentials(self.key.key.access_key_id, self.key.secret_access_key)
            SigV4Auth(creds, "lambda", REGION).add_auth(request)
            headers = dict(request.prepare().headers)
        head = f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        head += "content-length: 2\r\n" if "Content-Length" not in headers else ""
        self.raw = (head + "\r\n").encode() + b"{}"
        self.signed_at = time.monotonic()
        return self.raw

    def invoke(self) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-case headers, body) of one invocation."""
        self.sock.sendall(self._request())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            self.buf = rest
            self._fill()
            rest = self.buf
        self.buf = rest[length:]
        return status, headers, rest[:length]

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed by {self.host}:{self.port}")
        self.buf += data


def _timed_msgpack(client: Client, name: str, n: int, sink: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter_ns()
        inv = client.invoke(name)
        sink.append((time.perf_counter_ns() - t0) / 1000)
        if inv.error is not None:
            raise RuntimeError(f"msgpack invoke failed: {inv.error}")


def _timed_http(invoker: HttpInvoker, n: int, sink: list[float]) -> None:
    for _ in range(n):
        invoker._request()  # re-signing, when due, is not part of the sample
        t0 = time.perf_counter_ns()
        status, headers, body = invoker.invoke()
        sink.append((time.perf_counter_ns() - t0) / 1000)
        if status != 200 or "x-amz-function-error" in headers:
            raise RuntimeError(f"HTTP invoke answered {status} {headers}: {body[:300]!r}")


# -- serverless-offline ----------------------------------------------------------------------


class ServerlessOffline:
    """``serverless offline start`` on loopback ports of its own, in its own process group.

    ``port`` is its Lambda Invoke endpoint, ``http_port`` its API Gateway emulation (the
    ``httpApi`` events of ``serverless_yml``)."""

    def __init__(
        self, work_dir: Path, serverless_yml: str = SERVERLESS_YML, label: str = "sls-invoke"
    ) -> None:
        self.dir = work_dir / label
        self.serverless_yml = serverless_yml
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.http_port = 0
        self.log_path = self.dir / "serverless.log"
        self.version = ""

    def unavailable(self) -> str | None:
        if not SLS_CLI.is_file():
            return f"skipped: serverless-offline is not installed in {SLS_DIR} (make bench-peers)"
        if shutil.which("node") is None:
            return "skipped: no node on PATH"
        return None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "serverless.yml").write_text(self.serverless_yml)
        shutil.copy(FUNCTION_DIR / "app.py", self.dir / "app.py")
        modules = self.dir / "node_modules"
        if not modules.exists():
            modules.symlink_to(SLS_DIR / "node_modules")
        # Its runner spawns "python3" for runtime python3.11: give it this interpreter directly
        # (not a pyenv shim), the one lambdad's sandboxes run.
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        python = bin_dir / "python3"
        if not python.exists():
            python.symlink_to(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
        package = json.loads((SLS_DIR / "node_modules" / "serverless-offline" / "package.json")
                             .read_text())  # fmt: skip
        framework = json.loads((SLS_DIR / "node_modules" / "serverless" / "package.json")
                               .read_text())  # fmt: skip
        self.version = f"serverless-offline {package['version']}, Serverless {framework['version']}"
        self.port, self.http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", SLS_TELEMETRY_DISABLED="1",
                   SLS_NOTIFICATIONS_MODE="off")  # fmt: skip
        argv = ["node", str(SLS_CLI), "offline", "start", "--host", "127.0.0.1",
                "--lambdaPort", str(self.port), "--httpPort", str(self.http_port),
                "--websocketPort", str(free_port()), "--albPort", str(free_port())]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.dir, env=env, stdout=log, stderr=log, start_new_session=True
            )

    def wait_ready(self, port: int = 0) -> None:
        """Until it listens on ``port`` (default: its Lambda endpoint)."""

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", port or self.port), timeout=1).close()
            except OSError:
                return False
            return True

        try:
            wait_for(listening, timeout=SLS_START_S, interval=0.1)
        except TimeoutError:
            raise RuntimeError(
                f"not listening after {SLS_START_S:.0f} s: {self.log_tail()}"
            ) from None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-600:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to its process group (node and the Python runner it spawned), then SIGKILL."""
        if self.proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None


# -- the scenario ----------------------------------------------------------------------------


def _probe(invoker: HttpInvoker) -> str:
    """'ok', or why the daemon's API cannot be measured."""
    status, headers, body = invoker.invoke()
    if status == 200:
        return "ok"
    error = headers.get("x-amzn-errortype", "")
    try:
        message = json.loads(body).get("message") or json.loads(body).get("Message") or ""
    except ValueError:
        message = body[:200].decode("utf-8", "replace")
    if error == "UnsupportedOperationException":
        return f"skipped: Invoke not served ({message})"
    return f"failed: Invoke answered {status} {error}: {message}"[:300]


def _cold(client: Client, invoker: HttpInvoker | None, n: int) -> dict[str, list[float]]:
    """First invocations of fresh functions, the generic pool full before each."""
    out: dict[str, list[float]] = {"msgpack": [], "http": []}
    for i in range(n):
        for path in ("msgpack", "http") if invoker is not None else ("msgpack",):
            name = f"cold-{path}-{i}"
            client.deploy(name, FUNCTION_DIR)
            try:
                wait_for(lambda: client.stats()["sandboxes"]["generic"] >= POOL_SIZE,
                         timeout=10, interval=0.002)  # fmt: skip
            except TimeoutError:
                note_problem(f"http cold: the generic pool did not refill to {POOL_SIZE} in 10 s")
            if path == "msgpack":
                t0 = time.perf_counter_ns()
                inv = client.invoke(name)
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if inv.report is None or not inv.report.cold:
                    note_problem(f"http cold: the first invocation of {name} was not cold")
            else:
                assert invoker is not None
                invoker.path = f"/2015-03-31/functions/{name}/invocations"
                invoker.signed_at = -RESIGN_S  # another path: sign again, before the clock
                invoker._request()
                t0 = time.perf_counter_ns()
                status, _headers, body = invoker.invoke()
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if status != 200:
                    raise RuntimeError(f"cold HTTP invoke answered {status}: {body[:300]!r}")
            out[path].append(elapsed)
            client.delete(name)
    return out


def _boto3(address: str, key: Any, n: int) -> dict[str, float]:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "lambda", endpoint_url=f"http://{address}", region_name=REGION,
        aws_access_key_id=key.key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip
    samples = []
    for i in range(n + 20):
        t0 = time.perf_counter_ns()
        client.invoke(FunctionName="noop", Payload=b"{}")["Payload"].read()
        if i >= 20:
            samples.append((time.perf_counter_ns() - t0) / 1000)
    return summarize(samples)


def run(settings: Settings) -> dict[str, Any]:
    from lambdad.keys import KeyStore

    warm_n = settings.warm_n // 2
    sls_n = min(warm_n, 100 if settings.quick else 1000)
    cold_n = max(5, settings.cold_n // 2)
    result: dict[str, Any] = {"handler": "benchmarks/functions/noop_http (returns {})"}
    sls = ServerlessOffline(settings.work_dir)
    sls_status = sls.unavailable()
    if sls_status is None:
        sls.start()  # it takes seconds to start: let it do so while the daemon starts
    port = free_port()
    config = {"idle_ttl_s": 3600.0, "pool_size": POOL_SIZE}
    daemon = BenchDaemon("http", settings.work_dir, config, ["--api", f"127.0.0.1:{port}"])
    os.makedirs(daemon.state_dir, mode=0o700, exist_ok=True)
    key = KeyStore(daemon.state_dir).create(name="bench", admin=True)
    api_status = "ok"
    try:
        daemon.start()
    except RuntimeError as exc:
        if "--api" not in str(exc):
            raise
        api_status = "skipped: `lambdad serve` has no --api (no Lambda API front in this build)"
        daemon = BenchDaemon("http-noapi", settings.work_dir, config)
        daemon.start()
    invoker: HttpInvoker | None = None
    sls_invoker: HttpInvoker | None = None
    try:
        with daemon.client() as c:
            c.deploy("noop", FUNCTION_DIR)
            c.invoke("noop")
            if api_status == "ok":
                path = "/2015-03-31/functions/noop/invocations"
                try:
                    invoker = HttpInvoker("127.0.0.1", port, path, key)
                    api_status = _probe(invoker)
                except OSError as exc:
                    api_status = f"failed: the API does not answer on 127.0.0.1:{port}: {exc}"
                if api_status != "ok" and invoker is not None:
                    invoker.close()
                    invoker = None
            if sls_status is None:
                try:
                    sls.wait_ready()
                    sls_invoker = HttpInvoker(
                        "127.0.0.1", sls.port, f"/2015-03-31/functions/{SLS_FUNCTION}/invocations"
                    )
                    t0 = time.perf_counter_ns()
                    status, _h, body = sls_invoker.invoke()
                    result["serverless_offline_first_invoke_ms"] = (
                        time.perf_counter_ns() - t0
                    ) / 1e6
                    if status != 200:
                        raise RuntimeError(f"answered {status}: {body[:200]!r}")
                    sls_status = "ok"
                except (RuntimeError, OSError) as exc:
                    sls_status = f"failed: {exc}"[:400]
            # Warm-up, then interleaved blocks.
            msgpack_us: list[float] = []
            http_us: list[float] = []
            sls_us: list[float] = []
            _timed_msgpack(c, "noop", WARMUP, [])
            if invoker is not None:
                _timed_http(invoker, WARMUP, [])
            if sls_invoker is not None:
                _timed_http(sls_invoker, min(WARMUP, 50), [])
            remaining, sls_left = warm_n, sls_n
            while remaining > 0:
                block = min(BLOCK, remaining)
                _timed_msgpack(c, "noop", block, msgpack_us)
                if invoker is not None:
                    _timed_http(invoker, block, http_us)
                if sls_invoker is not None and sls_left > 0:
                    share = min(sls_left, max(1, sls_n * block // warm_n))
                    _timed_http(sls_invoker, share, sls_us)
                    sls_left -= share
                remaining -= block
            if invoker is not None:
                result["boto3_us"] = _boto3(f"127.0.0.1:{port}", key, 100 if settings.quick
                                            else 1000)  # fmt: skip
            cold = _cold(c, invoker, cold_n)
    finally:
        for conn in (invoker, sls_invoker):
            if conn is not None:
                conn.close()
        sls.stop()
        daemon.stop()
    result.update(
        api={"status": api_status, "address": f"127.0.0.1:{port}"},
        serverless_offline={"status": sls_status, "version": sls.version},
        warm_us={
            "msgpack": summarize(msgpack_us),
            "http": summarize(http_us) if http_us else None,
            "serverless_offline": summarize(sls_us) if sls_us else None,
        },
        cold_ms={
            "msgpack": summarize(cold["msgpack"]),
            "http": summarize(cold["http"]) if cold["http"] else None,
        },
    )
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    warm, cold = result["warm_us"], result["cold_ms"]
    rows = [("msgpack", warm["msgpack"], cold["msgpack"], "ok"),
            ("HTTP", warm["http"], cold["http"], result["api"]["status"]),
            ("serverless-offline", warm["serverless_offline"], None,
             result["serverless_offline"]["status"])]  # fmt: skip
    for label, w, c, status in rows:
        if w is None:
            print(f"    {label:18s} {status}", flush=True)
            continue
        line = f"    {label:18s} warm p50 {w['p50']:8.1f} us  p99 {w['p99']:8.1f} us"
        if c is not None:
            line += f" | cold p50 {c['p50']:6.2f} ms  p99 {c['p99']:6.2f} ms"
        print(line, flush=True)
