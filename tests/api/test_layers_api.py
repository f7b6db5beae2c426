"""The layer operations of the Lambda API, driven by boto3 over real HTTP.

The application is the real one — ``LambdaApi`` with SigV4 against a real ``KeyStore``, the
layer handlers of ``lambda_layers`` over a real ``LayerStore`` on disk, served by the HTTP
machinery on a loopback port — and every call is boto3's, so request serialization, response
parsing, paginators and modelled exceptions are botocore's own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdad.frontends.http import Limits
from lambdad.frontends.lambda_api_routes import LambdaApi, http_error, sigv4_authenticator
from lambdad.frontends.lambda_layers import handlers, register
from lambdad.keys import KeyStore, NewKey
from lambdad.layers import Layers, LayerStore
from tests.api.helpers import Served, serve

REGION = "eu-central-1"


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


ZIP = make_zip({"python/deps.py": b"VALUE = 1\n"})


class Api:
    def __init__(self, served: Served, admin: NewKey, invoker: NewKey, store: LayerStore) -> None:
        self.served = served
        self.admin = admin
        self.invoker = invoker
        self.store = store
        self.url = f"http://{served.host}:{served.port}"

    def client(self, key: NewKey | None = None) -> Any:
        key = key or self.admin
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key.key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"total_max_attempts": 1}),
        )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    keys = KeyStore(str(tmp_path))
    admin = keys.create(name="admin", admin=True)
    invoker = keys.create(name="invoker")
    store = LayerStore(str(tmp_path))

    def is_admin(identity: Any) -> bool:
        key = keys.lookup(identity.access_key_id)
        return key is not None and key.admin

    app = LambdaApi(handlers(Layers(store)), authenticate=sigv4_authenticator(keys),
                    is_admin=is_admin)  # fmt: skip
    with serve(app, limits=Limits(max_body_bytes=70 * 2**20), error_response=http_error) as srv:
        yield Api(srv, admin, invoker, store)


def test_publish_get_list_delete(api: Api) -> None:
    client = api.client()
    out = client.publish_layer_version(
        LayerName="deps",
        Description="shared code",
        Content={"ZipFile": ZIP},
        CompatibleRuntimes=["python3.11", "python3.12"],
        CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    arn = f"arn:aws:lambda:{REGION}:000000000000:layer:deps"
    assert out["LayerArn"] == arn
    assert out["LayerVersionArn"] == f"{arn}:1"
    assert out["Version"] == 1
    assert out["Description"] == "shared code"
    assert out["LicenseInfo"] == "MIT"
    assert out["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert out["CompatibleArchitectures"] == ["x86_64"]
    assert out["Content"] == {
        "CodeSha256": base64.b64encode(hashlib.sha256(ZIP).digest()).decode(),
        "CodeSize": len(ZIP),
    }
    assert out["CreatedDate"].endswith("+0000") and out["CreatedDate"][10] == "T"

    second = client.publish_layer_version(LayerName=arn, Content={"ZipFile": make_zip({"a": b""})})
    assert second["Version"] == 2 and "CompatibleRuntimes" not in second

    got = client.get_layer_version(LayerName="deps", VersionNumber=1)
    assert {k: v for k, v in got.items() if k != "ResponseMetadata"} == {
        k: v for k, v in out.items() if k != "ResponseMetadata"
    }
    by_arn = client.get_layer_version_by_arn(Arn=f"{arn}:2")
    assert by_arn["Version"] == 2 and by_arn["LayerVersionArn"] == f"{arn}:2"

    [layer] = client.list_layers()["Layers"]
    assert layer["LayerName"] == "deps" and layer["LayerArn"] == arn
    assert layer["LatestMatchingVersion"]["Version"] == 2
    assert "Content" not in layer["LatestMatchingVersion"]
    # The filters pick the newest *matching* version.
    [layer] = client.list_layers(CompatibleRuntime="python3.12")["Layers"]
    assert layer["LatestMatchingVersion"]["Version"] == 1
    assert client.list_layers(CompatibleRuntime="nodejs20.x")["Layers"] == []
    assert client.list_layers(CompatibleArchitecture="arm64")["Layers"] == []

    versions = client.list_layer_versions(LayerName="deps")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    assert versions[1]["LayerVersionArn"] == f"{arn}:1"
    assert client.list_layer_versions(LayerName="never-published")["LayerVersions"] == []

    deleted = client.delete_layer_version(LayerName="deps", VersionNumber=2)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    # Idempotent, as on AWS.
    client.delete_layer_version(LayerName="deps", VersionNumber=2)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_layer_version(LayerName="deps", VersionNumber=2)
    assert [v["Version"] for v in client.list_layer_versions(LayerName="deps")["LayerVersions"]] \
        == [1]  # fmt: skip
    # Numbers are never reused.
    assert client.publish_layer_version(LayerName="deps", Content={"ZipFile": ZIP})["Version"] == 3


def test_paginators_walk_every_page(api: Api) -> None:
    client = api.client()
    for name in ("a", "b", "c", "d", "e"):
        client.publish_layer_version(LayerName=name, Content={"ZipFile": ZIP})
    for _ in range(4):
        client.publish_layer_version(LayerName="a", Content={"ZipFile": ZIP})
    pages = list(client.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["Layers"]) for p in pages] == [2, 2, 1]
    assert [la["LayerName"] for p in pages for la in p["Layers"]] == ["a", "b", "c", "d", "e"]
    pages = list(
        client.get_paginator("list_layer_versions").paginate(
            LayerName="a", PaginationConfig={"PageSize": 2}
        )
    )
    assert [v["Version"] for p in pages for v in p["LayerVersions"]] == [5, 4, 3, 2, 1]
    assert len(pages) == 3
    # MaxItems on a direct call: one page and a marker.
    first = client.list_layer_versions(LayerName="a", MaxItems=3)
    assert [v["Version"] for v in first["LayerVersions"]] == [5, 4, 3]
    rest = client.list_layer_versions(LayerName="a", Marker=first["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [2, 1] and "NextMarker" not in rest


def test_errors_are_the_modelled_ones(api: Api) -> None:
    client = api.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_layer_version(LayerName="nope", VersionNumber=1)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_layer_version_by_arn(Arn="arn:aws:lambda:eu-central-1:000000000000:layer:x:1")
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="zip"):
        client.publish_layer_version(LayerName="deps", Content={"ZipFile": b"not a zip"})
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="unsafe path"):
        client.publish_layer_version(
            LayerName="deps", Content={"ZipFile": make_zip({"../x.py": b""})}
        )
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="no S3"):
        client.publish_layer_version(
            LayerName="deps", Content={"S3Bucket": "bucket", "S3Key": "deps.zip"}
        )
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="LayerName"):
        client.get_layer_version(LayerName="arn:aws:lambda:x", VersionNumber=1)
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="Marker"):
        client.list_layers(Marker="%%%")
    assert api.store.list_layers() == []


def test_what_botocore_would_not_send_is_refused_too(api: Api) -> None:
    """Signed raw requests with values botocore's own validation stops on the client side."""
    creds = botocore.credentials.Credentials(
        api.admin.key.access_key_id, api.admin.secret_access_key
    )

    def call(method: str, path: str, body: bytes) -> tuple[int, str, dict[str, Any]]:
        request = botocore.awsrequest.AWSRequest(method, api.url + path, data=body)
        botocore.auth.SigV4Auth(creds, "lambda", REGION).add_auth(request)
        conn = api.served.http()
        conn.request(method, path, body or None, dict(request.headers))
        response = conn.getresponse()
        return response.status, response.getheader("x-amzn-errortype", ""), json.loads(
            response.read() or b"{}"
        )

    publish = "/2018-10-31/layers/deps/versions"
    zip_b64 = base64.b64encode(ZIP).decode()
    bad_param = "InvalidParameterValueException"
    cases = [
        ("POST", publish, b'{"Content": {"ZipFile": "!!!"}}', "InvalidRequestContentException",
         "not base64"),
        ("POST", publish, b"[1]", "InvalidRequestContentException", "expected an object"),
        ("POST", publish, b"{}", bad_param, "Content is required"),
        ("POST", publish, json.dumps({"Content": {"ZipFile": zip_b64},
                                      "CompatibleRuntimes": ["cobol"]}).encode(), bad_param,
         "cobol"),
        ("POST", publish, json.dumps({"Content": {"ZipFile": zip_b64},
                                      "Description": 5}).encode(), bad_param, "Description"),
        ("GET", "/2018-10-31/layers/deps/versions/x1", b"", bad_param, "VersionNumber"),
        ("GET", "/2018-10-31/layers?MaxItems=51", b"", bad_param, "MaxItems"),
        ("GET", "/2018-10-31/layers?CompatibleRuntime=cobol", b"", bad_param, "CompatibleRuntime"),
        ("GET", "/2018-10-31/layers?CompatibleArchitecture=sparc", b"", bad_param, "sparc"),
        ("GET", "/2018-10-31/layers?find=LayerVersion&Arn=deps%3A1", b"", bad_param, "Arn"),
        ("GET", "/2018-10-31/layers?find=LayerVersion", b"", bad_param, "Arn is required"),
        ("GET", "/2018-10-31/layers/deps/versions?Marker=YWJj", b"", bad_param, "Marker"),
    ]  # fmt: skip
    for method, path, body, aws_type, text in cases:
        status, error_type, doc = call(method, path, body)
        assert (status, error_type) == (400, aws_type), (path, body, doc)
        assert text in json.dumps(doc), (path, body, doc)
    assert api.store.list_layers() == []


def test_an_invoke_only_key_may_read_but_not_publish(api: Api) -> None:
    api.client().publish_layer_version(LayerName="deps", Content={"ZipFile": ZIP})
    reader = api.client(api.invoker)
    assert reader.list_layers()["Layers"][0]["LayerName"] == "deps"
    assert reader.get_layer_version(LayerName="deps", VersionNumber=1)["Version"] == 1
    for call in (
        lambda: reader.publish_layer_version(LayerName="deps", Content={"ZipFile": ZIP}),
        lambda: reader.delete_layer_version(LayerName="deps", VersionNumber=1),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    assert [v.number for v in api.store.list_versions("deps")] == [1]


def test_register_extends_an_operation_table(tmp_path: Path) -> None:
    table: dict[str, Any] = {"Invoke": object()}
    register(table, Layers(LayerStore(str(tmp_path))))
    assert set(table) == {
        "Invoke", "PublishLayerVersion", "GetLayerVersion", "GetLayerVersionByArn", "ListLayers",
        "ListLayerVersions", "DeleteLayerVersion",
    }  # fmt: skip
