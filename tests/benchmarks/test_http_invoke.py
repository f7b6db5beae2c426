"""The http scenario's own client and probe, against the real API application (no daemon):
what it reports when the front does not serve Invoke, and that it reads keep-alive answers."""

from __future__ import annotations

from pathlib import Path

from benchmarks.http_invoke import HttpInvoker, _probe
from lambdad.frontends.http import Response
from lambdad.frontends.lambda_api_routes import Call, LambdaApi, http_error, sigv4_authenticator
from lambdad.keys import KeyStore
from tests.api.helpers import serve

PATH = "/2015-03-31/functions/noop/invocations"


def test_a_front_without_invoke_is_reported_as_skipped(tmp_path: Path) -> None:
    keys = KeyStore(str(tmp_path))
    key = keys.create(name="bench", admin=True)
    app = LambdaApi({}, authenticate=sigv4_authenticator(keys))
    with serve(app, error_response=http_error) as srv:
        invoker = HttpInvoker(srv.host, srv.port, PATH, key)
        try:
            status = _probe(invoker)
        finally:
            invoker.close()
    assert status.startswith("skipped: Invoke not served (")
    assert "Invoke" in status


def test_signed_keep_alive_invocations(tmp_path: Path) -> None:
    keys = KeyStore(str(tmp_path))
    key = keys.create(name="bench", admin=True)
    calls: list[Call] = []

    async def invoke(call: Call) -> Response:
        calls.append(call)
        return Response(200, (("x-amz-executed-version", "$LATEST"),), b'{"n": %d}' % len(calls))

    app = LambdaApi({"Invoke": invoke}, authenticate=sigv4_authenticator(keys))
    with serve(app, error_response=http_error) as srv:
        invoker = HttpInvoker(srv.host, srv.port, PATH, key)
        try:
            assert _probe(invoker) == "ok"
            answers = [invoker.invoke() for _ in range(5)]
        finally:
            invoker.close()
        assert len(srv.server.connections) <= 1
    assert [a[2] for a in answers] == [b'{"n": %d}' % i for i in range(2, 7)]
    assert all(status == 200 and h["x-amz-executed-version"] == "$LATEST"
               for status, h, _ in answers)  # fmt: skip
    assert {c.identity.access_key_id for c in calls if c.identity} == {key.key.access_key_id}
    assert all(c.request.body == b"{}" for c in calls)
