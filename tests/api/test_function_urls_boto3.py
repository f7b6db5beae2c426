"""Function URLs end to end: boto3 creates one through the Lambda API front, and a plain HTTP
client calls it on the gateway of the same daemon (the url trigger it is), as on Lambda."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import API_CONFIG, ApiDaemon, start_api_daemon, zip_of

pytestmark = pytest.mark.root

ECHO = (
    "import json\n"
    "def handler(event, context):\n"
    "    return {'statusCode': 201, 'headers': {'x-fn': context.function_name},\n"
    "            'body': json.dumps({'path': event['rawPath'], 'method':\n"
    "                                event['requestContext']['http']['method']})}\n"
)


@pytest.fixture(scope="module")
def both() -> Iterator[ApiDaemon]:
    with tempfile.TemporaryDirectory(prefix="lambdad-urls-") as tmp:
        api = start_api_daemon(tmp, API_CONFIG + 'gateway_address = "127.0.0.1:0"\n')
        try:
            yield api
        finally:
            api.daemon.stop()


def test_boto3_function_url_is_served_by_the_gateway(both: ApiDaemon) -> None:
    lam: Any = both.client()
    lam.create_function(FunctionName="url-echo", Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/x",
                        Code={"ZipFile": zip_of(ECHO)})  # fmt: skip
    made = lam.create_function_url_config(FunctionName="url-echo", AuthType="NONE")
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = made["FunctionUrl"]
    assert url.startswith("http://") and url.endswith("/")
    assert lam.get_function_url_config(FunctionName="url-echo")["FunctionUrl"] == url
    listed = lam.list_function_url_configs(FunctionName="url-echo")["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]
    req = urllib.request.Request(url + "items/7", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201 and resp.headers["x-fn"] == "url-echo"
        assert json.loads(resp.read()) == {"path": "/items/7", "method": "POST"}
    lam.delete_function_url_config(FunctionName="url-echo")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="url-echo")
