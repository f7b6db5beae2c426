"""The Node.js and shell examples, deployed by ``lambdad serve --examples`` (what `make run`
does) and invoked through the client."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from lambdad.client import Client
from tests.conftest import EXAMPLES, TEST_CONFIG, DaemonProcess, make_daemon, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def examples_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-examples-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG, ["--examples", str(EXAMPLES)])
        d.start()
        try:
            yield d
        finally:
            d.stop()


def deployed(c: Client) -> set[str]:
    return {f["name"] for f in c.list()}


def test_node_and_shell_examples_run(examples_daemon: DaemonProcess) -> None:
    with examples_daemon.client() as c:
        wait_for(lambda: {"hello-node", "hello-shell"} <= deployed(c), 60)
        node = c.invoke("hello-node", {"name": "Ada"}, log_tail=True)
        assert node.error is None, node.error
        assert node.result["message"] == "Hello, Ada!" and node.result["invocations"] == 1
        assert "\tINFO\tgreeting Ada" in (node.log_tail or "")
        shell = c.invoke("hello-shell", {"name": "Ada"})
        assert shell.error is None, shell.error
        assert shell.result == {"message": "Hello from bash", "event": {"name": "Ada"}}


def test_layer_example_serves_its_package_to_the_function(examples_daemon: DaemonProcess) -> None:
    with examples_daemon.client() as c:
        wait_for(lambda: "hello-layer" in deployed(c), 60)
        inv = c.invoke("hello-layer", {"name": "Ada"})
        assert inv.error is None, inv.error
        assert inv.result == {"message": "Hello, Ada, from a layer!"}
        (layer,) = c.list_layers("greeting")
        assert c.get("hello-layer")["layers"] == [layer["arn"]]
