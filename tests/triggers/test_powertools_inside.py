"""Real handlers unmodified: aws-lambda-powertools' resolvers running *inside* a sandbox,
behind the gateway (payload 2.0 with APIGatewayHttpResolver, 1.0 with APIGatewayRestResolver).

Powertools (and its two dependencies) are copied from the test environment into the
function's code directory at set-up time, as a user's deployment package would carry them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aws_lambda_powertools
import jmespath
import typing_extensions

from tests.conftest import DaemonProcess
from tests.triggers.test_gateway import request

APP = """
from aws_lambda_powertools.event_handler import {resolver}

app = {resolver}()


@app.get("/hello/<name>")
@app.get("/rest/hello/<name>")
def hello(name):
    event = app.current_event
    return {{"hello": name, "x": event.get_query_string_value("x"),
             "agent": event.get_header_value("user-agent")}}


@app.post("/echo")
def echo():
    return {{"got": app.current_event.json_body}}


def handler(event, context):
    return app.resolve(event, context)
"""


def package(directory: Path, resolver: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "app.py").write_text(APP.format(resolver=resolver))
    for module in (aws_lambda_powertools, jmespath):
        source = Path(module.__file__ or "").parent
        shutil.copytree(
            source, directory / source.name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(typing_extensions.__file__ or "", directory / "typing_extensions.py")
    return directory


def test_powertools_resolvers_inside_a_sandbox(gw_daemon: DaemonProcess, tmp_path: Path) -> None:
    with gw_daemon.client() as c:
        c.deploy(
            "pt-http",
            str(package(tmp_path / "http", "APIGatewayHttpResolver")),
            memory_mb=256,
            timeout_s=30,
        )
        c.deploy(
            "pt-rest",
            str(package(tmp_path / "rest", "APIGatewayRestResolver")),
            memory_mb=256,
            timeout_s=30,
        )
        c.trigger_add("http", "pt-http", "pt-http", route="ANY /{proxy+}")
        c.trigger_add("http", "pt-rest", "pt-rest", route="ANY /rest/{proxy+}", api="rest")
        address = c.stats()["gateway_address"]
    status, headers, body = request(
        address, "GET", "/hello/ada?x=1", headers={"User-Agent": "pt/1"}
    )
    assert status == 200, body
    assert json.loads(body) == {"hello": "ada", "x": "1", "agent": "pt/1"}
    assert headers["content-type"] == ["application/json"]
    status, _, body = request(
        address, "POST", "/echo", b'{"a": [1, 2]}', {"Content-Type": "application/json"}
    )
    assert (status, json.loads(body)) == (200, {"got": {"a": [1, 2]}})
    status, _, body = request(address, "GET", "/nothing-here")
    assert status == 404  # Powertools' own not-found, mapped through format 2.0
    # The REST resolver under a REST API route: resource and path as API Gateway sends them.
    status, _, body = request(address, "GET", "/rest/hello/bob?x=2", headers={"User-Agent": "r"})
    assert (status, json.loads(body)) == (200, {"hello": "bob", "x": "2", "agent": "r"}), body
    status, _, body = request(address, "GET", "/rest/whatever")
    assert status == 404, body
