"""The Lambda API front as a whole: raw (signed and unsigned) HTTP against a real daemon, the
CLI verbs that go with it (keys, publish, alias, invoke NAME:QUALIFIER), the socket's admin
check for keys, and persistence across a restart."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.api.conftest import ApiDaemon, start_api_daemon, zip_of
from tests.api.test_operations import create, invoke, source
from tests.conftest import ROOT, TEST_CONFIG, make_daemon


def signed(
    api: ApiDaemon, method: str, path: str, body: bytes = b"", key: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request signed by botocore's SigV4Auth, sent with http.client."""
    key = key or api.admin
    url = api.endpoint + path
    request = AWSRequest(method=method, url=url, data=body)
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    return send(api, method, path, body, dict(request.headers.items()))


def send(
    api: ApiDaemon, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    netloc = urlsplit(api.endpoint).netloc
    conn = http.client.HTTPConnection(netloc, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_malformed_json_and_unknown_operations_get_a_clean_4xx(
    api_daemon: ApiDaemon, lam: Any
) -> None:
    status, headers, body = signed(api_daemon, "POST", "/2015-03-31/functions", b"{not json")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "Could not parse request body into json" in json.loads(body)["message"]
    status, headers, body = signed(api_daemon, "POST", "/2015-03-31/functions", b"[1, 2]")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestContentException"
    status, headers, _ = signed(api_daemon, "GET", "/2015-03-31/no-such-thing")
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    status, headers, _ = signed(api_daemon, "GET", "/2020-04-22/code-signing-configs")
    assert status == 400 and headers["x-amzn-errortype"] == "UnsupportedOperationException"
    create(lam, "front-types")
    status, headers, body = signed(
        api_daemon, "POST", "/2015-03-31/functions", json.dumps({"FunctionName": 7}).encode()
    )
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidParameterValueException"
    status, headers, _ = signed(
        api_daemon,
        "PUT",
        "/2015-03-31/functions/front-types/configuration",
        json.dumps({"MemorySize": "big"}).encode(),
    )
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidParameterValueException"


def test_an_unsigned_request_is_refused(api_daemon: ApiDaemon) -> None:
    status, headers, body = send(api_daemon, "GET", "/2015-03-31/functions", b"", {})
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["Type"] == "User"


def run_cli(
    api: ApiDaemon, *args: str, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args],
        cwd=ROOT,
        env={**os.environ, "LAMBDAD_SOCKET": api.daemon.socket},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_keys_publish_alias_and_qualified_invoke(api_daemon: ApiDaemon, lam: Any) -> None:
    made = run_cli(api_daemon, "keys", "create", "--name", "cli-key")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["Name"] == "cli-key" and key["Admin"] is False and len(key["SecretAccessKey"]) == 40
    listed = run_cli(api_daemon, "keys", "ls")
    assert listed.returncode == 0 and "cli-key" in listed.stdout
    assert key["SecretAccessKey"] not in listed.stdout  # never shown again
    create(lam, "front-cli")
    assert invoke(api_daemon.client(key), "front-cli")[1]["tag"] == "one"
    published = run_cli(api_daemon, "publish", "front-cli", "--description", "from the CLI")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout) == {"version": "1", "created": True}
    assert (
        lam.get_function_configuration(FunctionName="front-cli", Qualifier="1")["Description"]
        == "from the CLI"
    )
    lam.update_function_code(FunctionName="front-cli", ZipFile=zip_of(source("two")))
    second = run_cli(api_daemon, "publish", "front-cli")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["version"] == "2"
    alias = run_cli(api_daemon, "alias", "create", "front-cli", "live", "1", "--weight", "2=0.5")
    assert alias.returncode == 0, alias.stderr
    assert json.loads(alias.stdout)["weights"] == {"2": 0.5}
    got = lam.get_alias(FunctionName="front-cli", Name="live")
    assert got["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    updated = run_cli(
        api_daemon, "alias", "update", "front-cli", "live", "--version", "2", "--weight", "none"
    )
    assert (
        json.loads(updated.stdout)["version"] == "2" and json.loads(updated.stdout)["weights"] == {}
    )
    out = run_cli(api_daemon, "invoke", "front-cli:live")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tag"] == "two"
    out = run_cli(api_daemon, "invoke", "front-cli:1")
    assert json.loads(out.stdout)["tag"] == "one"
    assert json.loads(run_cli(api_daemon, "alias", "ls", "front-cli").stdout)[0]["name"] == "live"
    assert run_cli(api_daemon, "alias", "rm", "front-cli", "live").returncode == 0
    missing = run_cli(api_daemon, "invoke", "front-cli:live")
    assert missing.returncode == 2 and "ResourceNotFound" in missing.stderr
    bad = run_cli(api_daemon, "alias", "create", "front-cli", "x", "1", "--weight", "2")
    assert bad.returncode == 2 and "VERSION=WEIGHT" in bad.stderr

    removed = run_cli(api_daemon, "keys", "rm", "cli-key")
    assert removed.returncode == 0 and key["AccessKeyId"] in removed.stdout
    assert run_cli(api_daemon, "keys", "rm", "cli-key").returncode == 2


def call_as(uid: int, socket_path: str, op: str, **args: Any) -> str:
    """The error type (or "ok") of one request made by a child process running as ``uid``
    (forked, not exec'd: the unprivileged uid need not be able to read this tree)."""
    from lambdad.client import Client
    from lambdad.errors import LambdadError

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome = "ok"
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            with Client(socket_path, timeout=30) as c:
                c.call(op, **args)
        except LambdadError as exc:
            outcome = exc.type
        except BaseException as exc:
            outcome = f"unexpected {exc!r}"
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.root
def test_keys_are_admin_operations_on_the_socket(api_daemon: ApiDaemon) -> None:
    # Let an unprivileged uid reach the socket at all, so the refusal is the admin check's.
    socket_path = api_daemon.daemon.socket
    os.chmod(os.path.dirname(socket_path), 0o755)
    os.chmod(socket_path, 0o666)
    try:
        assert call_as(65534, socket_path, "ping") == "ok"
        for op, args in (
            ("keys_create", {"admin": True}),
            ("keys_list", {}),
            ("keys_remove", {"key": "admin"}),
            ("publish", {"name": "x"}),
            ("alias_create", {"name": "x", "alias": "a", "version": "1"}),
        ):
            assert call_as(65534, socket_path, op, **args) == "AccessDenied", op
    finally:
        os.chmod(socket_path, 0o660)
    with api_daemon.daemon.client() as c:
        assert any(k["Name"] == "admin" for k in c.call("keys_list")["keys"])


def test_functions_keys_and_aliases_survive_a_restart(tmp_path: Path) -> None:
    api = start_api_daemon(str(tmp_path))
    try:
        lam = api.client()
        create(lam, "front-restart", Tags={"k": "v"})
        lam.publish_version(FunctionName="front-restart")
        lam.create_alias(FunctionName="front-restart", Name="live", FunctionVersion="1")
        lam.put_function_concurrency(FunctionName="front-restart", ReservedConcurrentExecutions=5)
        api.daemon.restart()
        with api.daemon.client() as c:
            endpoint = f"http://{c.stats()['api_address']}"
        restarted = ApiDaemon(api.daemon, endpoint, api.admin, api.invoker).client()
        assert invoke(restarted, "front-restart", Qualifier="live")[0]["ExecutedVersion"] == "1"
        assert restarted.list_tags(
            Resource="arn:aws:lambda:us-east-1:000000000000:function:front-restart"
        )["Tags"] == {"k": "v"}
        assert (
            restarted.get_function_concurrency(FunctionName="front-restart")[
                "ReservedConcurrentExecutions"
            ]
            == 5
        )
        keys = (Path(api.daemon.state_dir) / "api-keys.json").stat().st_mode & 0o777
        assert keys == 0o600
    finally:
        api.daemon.stop()


def test_serve_api_flag_turns_the_front_on(tmp_path: Path) -> None:
    d = make_daemon(str(tmp_path), TEST_CONFIG, extra_args=["--api", "127.0.0.1:0"])
    d.start()
    try:
        with d.client() as c:
            address = c.stats()["api_address"]
        assert address and address.startswith("127.0.0.1:")
        api = ApiDaemon(d, f"http://{address}", {}, {})
        status, headers, _ = send(api, "GET", "/2016-08-19/account-settings", b"", {})
        assert (
            status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
        )
        assert "Lambda API on http://" in d.output()
    finally:
        d.stop()
    (tmp_path / "plain").mkdir()
    plain = make_daemon(str(tmp_path / "plain"), TEST_CONFIG)
    plain.start()
    try:
        with plain.client() as c:
            assert c.stats()["api_address"] is None  # off unless asked for
    finally:
        plain.stop()


def test_body_limits_depend_on_the_operation(api_daemon: ApiDaemon) -> None:
    # Refused from Content-Length alone, before the body is read (and before any signature).
    for method, path, size in (
        ("PUT", "/2015-03-31/functions/x/configuration", 1024 * 1024 + 1),
        ("POST", "/2015-03-31/functions/x/invocations", 6 * 1024 * 1024 + 2),
        ("POST", "/2015-03-31/functions", 70 * 1024 * 1024 + 1),
    ):
        netloc = urlsplit(api_daemon.endpoint).netloc
        conn = http.client.HTTPConnection(netloc, timeout=30)
        try:
            conn.putrequest(method, path)
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            response = conn.getresponse()
            assert response.status == 413, (path, response.status)
            assert response.getheader("x-amzn-errortype") == "RequestTooLargeException"
        finally:
            conn.close()


def test_a_request_signed_more_than_five_minutes_ago_is_refused(
    api_daemon: ApiDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    import botocore.auth

    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale)
    status, headers, body = signed(api_daemon, "GET", "/2015-03-31/functions")
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "Signature expired" in json.loads(body)["message"]
    monkeypatch.undo()
    status, _, _ = signed(api_daemon, "GET", "/2015-03-31/functions")
    assert status == 200
