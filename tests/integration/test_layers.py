"""Layers through the real daemon: the client library, the ``lambdad layer`` verbs, restarts,
and the admin check on the socket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import AccessDenied, InvalidParameterValue, ResourceNotFound
from tests.conftest import DaemonProcess
from tests.integration.test_cli import lambdad


def layer_dir(tmp_path: Path, value: int) -> Path:
    root = tmp_path / f"layer{value}"
    (root / "python").mkdir(parents=True, exist_ok=True)
    (root / "python" / "shared.py").write_text(f"VALUE = {value}\n")
    return root


def test_client_publish_list_delete_and_restart(daemon: DaemonProcess, tmp_path: Path) -> None:
    with daemon.client() as client:
        first = client.publish_layer(
            "shared", layer_dir(tmp_path, 1), compatible_runtimes=["python3.11"],
            description="one", license_info="MIT",
        )  # fmt: skip
        assert first["version"] == 1
        assert first["arn"] == "arn:aws:lambda:us-east-1:000000000000:layer:shared:1"
        assert first["compatible_runtimes"] == ["python3.11"]
        assert first["unzipped_size"] == len("VALUE = 1\n")
        assert (first["description"], first["license_info"]) == ("one", "MIT")
        second = client.publish_layer("shared", layer_dir(tmp_path, 2))
        assert second["version"] == 2
        assert [la["version"] for la in client.list_layers()] == [2]
        assert [la["version"] for la in client.list_layers("shared")] == [2, 1]
        with pytest.raises(InvalidParameterValue, match="CompatibleRuntimes"):
            client.publish_layer("shared", layer_dir(tmp_path, 3), compatible_runtimes=["cobol"])
        with pytest.raises(InvalidParameterValue, match="LayerName"):
            client.publish_layer("bad name", layer_dir(tmp_path, 3))
        client.delete_layer("shared", 2)
        with pytest.raises(ResourceNotFound, match="shared:2"):
            client.delete_layer("shared", 2)
        with pytest.raises(InvalidParameterValue, match="version"):
            client.call("layer_delete", name="shared", version="2")
    tree = Path(daemon.state_dir) / "layers"
    assert len(os.listdir(tree)) == 1  # version 2's tree is gone, version 1's stays
    daemon.restart()
    with daemon.client() as client:
        [kept] = client.list_layers("shared")
        assert kept == first
        assert client.publish_layer("shared", layer_dir(tmp_path, 4))["version"] == 3


def test_the_layer_verbs(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    s = shared_daemon.socket
    published = lambdad(
        s, "layer", "publish", "clideps", "--code", str(layer_dir(tmp_path, 1)),
        "--compatible-runtime", "python3.11", "--compatible-runtime", "python3.12",
        "--description", "from the CLI",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert published.stdout == "1\n"  # the new version, alone: V=$(lambdad layer publish ...)
    assert "arn:aws:lambda:us-east-1:000000000000:layer:clideps:1" in published.stderr
    again = lambdad(s, "layer", "publish", "clideps", "--code", str(layer_dir(tmp_path, 2)))
    assert again.stdout == "2\n", again.stderr

    ls = lambdad(s, "layer", "ls")
    assert ls.returncode == 0, ls.stderr
    header, *rows = ls.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "RUNTIMES", "UNZIPPED", "CREATED", "DESCRIPTION"]
    assert [r.split()[:2] for r in rows if r.startswith("clideps")] == [["clideps", "2"]]
    versions = lambdad(s, "layer", "ls", "clideps")
    lines = versions.stdout.splitlines()[1:]
    assert [line.split()[1] for line in lines] == ["2", "1"]
    assert lines[1].split()[2] == "python3.11,python3.12" and "from the CLI" in lines[1]

    rm = lambdad(s, "layer", "rm", "clideps:1")
    assert (rm.returncode, rm.stdout) == (0, "deleted clideps:1\n"), rm.stderr
    missing = lambdad(s, "layer", "rm", "clideps:1")
    assert missing.returncode == 2 and "ResourceNotFound" in missing.stderr
    bad = lambdad(s, "layer", "rm", "clideps")
    assert bad.returncode == 2 and "NAME:VERSION" in bad.stderr
    nocode = lambdad(s, "layer", "publish", "clideps", "--code", str(tmp_path / "absent"))
    assert nocode.returncode != 0 and "absent" in nocode.stderr


@pytest.mark.root
def test_changing_layers_needs_an_admin(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    """An unprivileged peer (SO_PEERCRED) may list layers but not change them."""
    with shared_daemon.client() as client:
        client.publish_layer("admindeps", layer_dir(tmp_path, 1))
    sock_dir = os.path.dirname(shared_daemon.socket)
    os.chmod(sock_dir, 0o755)
    os.chmod(shared_daemon.socket, 0o666)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, then speak to the daemon
        outcome: dict[str, object] = {}
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with Client(shared_daemon.socket, timeout=30) as nobody:
                outcome["listed"] = [la["name"] for la in nobody.list_layers()]
                changes: list[tuple[str, dict[str, object]]] = [
                    ("layer_publish", {"name": "x", "code": b"PK"}),
                    ("layer_delete", {"name": "admindeps", "version": 1}),
                ]
                for op, args in changes:
                    try:
                        nobody.call(op, **args)
                        outcome[op] = "allowed"
                    except AccessDenied as exc:
                        outcome[op] = exc.message
        except BaseException as exc:  # reported to the parent, never raised in a fork
            outcome["error"] = repr(exc)
        os.write(write, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "error" not in outcome, outcome
    assert "admindeps" in outcome["listed"]  # type: ignore[operator]
    assert "needs root" in str(outcome["layer_publish"])
    assert "needs root" in str(outcome["layer_delete"])
    with shared_daemon.client() as client:
        assert [la["version"] for la in client.list_layers("admindeps")] == [1]


def test_the_async_client(daemon: DaemonProcess, tmp_path: Path) -> None:
    import asyncio

    from lambdad.client import AsyncClient

    async def main() -> tuple[dict[str, object], list[dict[str, object]], list[dict[str, object]]]:
        async with AsyncClient(daemon.socket) as client:
            published = await client.publish_layer(
                "asyncdeps", layer_dir(tmp_path, 1), compatible_architectures=["arm64"]
            )
            listed = await client.list_layers("asyncdeps")
            await client.delete_layer("asyncdeps", 1)
            return published, listed, await client.list_layers()

    published, listed, after = asyncio.run(main())
    assert published["version"] == 1 and published["compatible_architectures"] == ["arm64"]
    assert listed == [published]
    assert after == []
