"""The function URL operations (lambdad/frontends/lambda_function_urls.py), tested directly:
the handlers in a LambdaApi on a loopback HttpServer, called by a real boto3 client, over a
real registry and trigger store (the Lambda API front that will carry them is api-ops')."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from lambdad.config import DaemonConfig
from lambdad.frontends import lambda_function_urls
from lambdad.frontends.lambda_api_routes import LambdaApi
from lambdad.functions import validate
from lambdad.registry import Registry
from lambdad.triggers.manager import Triggers
from tests.api.helpers import serve


@dataclass
class Core:
    """What the trigger model reads of the service: the registry and the fronts' addresses."""

    registry: Registry
    addresses: dict[str, str] = field(default_factory=dict)
    triggers: Any = None
    draining: bool = False


def test_function_url_operations_with_boto3(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return e\n")
    registry.add_version(validate({"name": "fn"}), registry.store_code(buf.getvalue()))
    core = Core(registry, {"gateway": "127.0.0.1:9002"})
    core.triggers = Triggers(DaemonConfig(state_dir=str(tmp_path)), core)  # type: ignore[arg-type]
    table: dict[str, Any] = {}
    lambda_function_urls.register(table, core)  # type: ignore[arg-type]
    with serve(LambdaApi(table)) as served:
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://{served.host}:{served.port}",
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
        )
        made = client.create_function_url_config(
            FunctionName="fn", AuthType="NONE", Cors={"AllowOrigins": ["https://a.example"]}
        )
        assert made["FunctionUrl"] == "http://127.0.0.1:9002/lambda-url/fn/"
        assert made["AuthType"] == "NONE" and made["Cors"] == {
            "AllowOrigins": ["https://a.example"]
        }
        assert made["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
        with pytest.raises(client.exceptions.ResourceConflictException):
            client.create_function_url_config(FunctionName="fn", AuthType="NONE")
        got = client.get_function_url_config(FunctionName="fn")
        assert got["FunctionUrl"] == made["FunctionUrl"]
        updated = client.update_function_url_config(FunctionName="fn", AuthType="AWS_IAM")
        assert updated["AuthType"] == "AWS_IAM"
        assert core.triggers.store.get("fn-url").settings["auth_type"] == "AWS_IAM"
        listed = client.list_function_url_configs(FunctionName="fn")["FunctionUrlConfigs"]
        assert [u["AuthType"] for u in listed] == ["AWS_IAM"]
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client.update_function_url_config(FunctionName="fn", AuthType="PASSWORD")
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
        client.delete_function_url_config(FunctionName="fn")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_function_url_config(FunctionName="fn")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.create_function_url_config(FunctionName="ghost", AuthType="NONE")
