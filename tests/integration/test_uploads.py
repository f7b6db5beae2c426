"""Code zips over the socket's 8 MiB frame limit travel as staged uploads (issue 10 point 2),
against the real daemon: deploy and layer_publish through the clients and the CLI, Lambda's
50 MB zipped limit, the upload ops' errors, ownership by connection, clean-up on close,
time-out and restart, and other clients served while an upload is under way."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import (
    UPLOAD_CHUNK,
    AsyncClient,
    run_plan,
    with_code,
)
from lambdad.errors import (
    InvalidParameterValue,
    RequestTooLarge,
    ResourceNotFound,
    TooManyRequests,
)
from lambdad.uploads import ZIPPED_MAX
from tests.conftest import DaemonProcess, make_daemon, wait_for, write_function
from tests.integration.test_cli import lambdad

MiB = 1024 * 1024
APP = """
import hashlib
import bigdep

def handler(event, context):
    with open(bigdep.BLOB, "rb") as f:
        blob = f.read()
    return {"value": bigdep.VALUE, "blob_size": len(blob),
            "blob_sha256": hashlib.sha256(blob).hexdigest()}
"""
BIGDEP = """
import os
VALUE = "imported from a staged upload"
BLOB = os.path.join(os.path.dirname(__file__), "blob-last.bin")
"""


def big_zip(path: Path, mib: int) -> str:
    """A zip of ``mib`` MiB of random (incompressible) files beside a module ``bigdep`` and
    the handler; returns the SHA-256 of its last blob."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", APP)
        archive.writestr("bigdep/__init__.py", BIGDEP)
        last = b""
        for i in range(mib):
            last = os.urandom(MiB)
            name = "blob-last.bin" if i == mib - 1 else f"blob-{i:03d}.bin"
            archive.writestr(f"bigdep/{name}", last)
    return hashlib.sha256(last).hexdigest()


def staged(daemon: DaemonProcess) -> list[str]:
    """The files of the daemon's staged uploads."""
    return sorted(os.listdir(os.path.join(daemon.state_dir, "uploads")))


@pytest.fixture(scope="module")
def zip20(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("zips") / "big20.zip"
    return path, big_zip(path, 20)


def test_a_20_mib_zip_deploys_through_the_client(
    shared_daemon: DaemonProcess, zip20: tuple[Path, str]
) -> None:
    path, sha = zip20
    assert path.stat().st_size > 20 * MiB > 8 * MiB  # over one frame
    with shared_daemon.client() as c:
        fn = c.deploy("up-client", path, memory_mb=256, timeout_s=10)
        assert fn["name"] == "up-client"
        inv = c.invoke("up-client")
    assert inv.error is None, inv.error
    assert inv.result == {
        "value": "imported from a staged upload", "blob_size": MiB, "blob_sha256": sha,
    }  # fmt: skip
    assert staged(shared_daemon) == []  # used up, file removed


def test_a_20_mib_zip_deploys_through_the_cli(
    shared_daemon: DaemonProcess, zip20: tuple[Path, str]
) -> None:
    path, sha = zip20
    done = lambdad(shared_daemon.socket, "deploy", "up-cli", "--code", str(path),
                   "--memory", "256", "--timeout", "10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    inv = lambdad(shared_daemon.socket, "invoke", "up-cli")
    assert inv.returncode == 0, inv.stderr
    assert sha in inv.stdout and "imported from a staged upload" in inv.stdout
    assert staged(shared_daemon) == []


def test_the_async_client_uploads_a_large_layer(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """layer_publish takes a staged upload too; a function imports from the layer at /opt."""
    content = tmp_path / "layer"
    (content / "python").mkdir(parents=True)
    (content / "python" / "biglayer.py").write_text("GREETING = 'from a 12 MiB layer'\n")
    (content / "python" / "blob.bin").write_bytes(os.urandom(12 * MiB))
    fn = write_function(tmp_path / "fn", "import biglayer\n"
                        "def handler(event, context):\n    return biglayer.GREETING\n")  # fmt: skip

    async def scenario() -> tuple[dict[str, Any], Any]:
        async with AsyncClient(shared_daemon.socket) as c:
            layer = await c.publish_layer("up-biglayer", content)
            await c.deploy("up-layered", fn, layers=[f"up-biglayer:{layer['version']}"])
            return layer, await c.invoke("up-layered")

    layer, inv = asyncio.run(scenario())
    assert layer["code_size"] > 12 * MiB
    assert inv.error is None and inv.result == "from a 12 MiB layer"
    assert staged(shared_daemon) == []


def test_a_zip_over_50_mb_is_refused_before_it_is_sent(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    path = tmp_path / "big60.zip"
    big_zip(path, 58)  # 60.8 MB
    size = path.stat().st_size
    assert size > 60 * 10**6
    with shared_daemon.client() as c:
        with pytest.raises(RequestTooLarge) as refused:
            c.deploy("up-toolarge", path)
        assert refused.value.message == (
            f"Request must be smaller than {ZIPPED_MAX} bytes for the upload_begin operation: "
            f"a code zip of {size} bytes is over the {ZIPPED_MAX}-byte (50 MiB) zipped "
            "deployment package limit"
        )
        assert refused.value.details["limit"] == ZIPPED_MAX == 52_428_800
        with pytest.raises(RequestTooLarge, match="smaller than 52428800 bytes"):
            c.publish_layer("up-toolarge", path)
        with pytest.raises(ResourceNotFound):
            c.get("up-toolarge")
    cli = lambdad(shared_daemon.socket, "deploy", "up-toolarge", "--code", str(path))
    assert cli.returncode != 0
    assert "RequestTooLarge: Request must be smaller than 52428800 bytes" in cli.stderr
    assert staged(shared_daemon) == []


def test_the_upload_ops_refuse_bad_chunks_precisely(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        begun = c.call("upload_begin", size=10)
        upload = begun["upload"]
        assert begun["max_chunk_bytes"] < 8 * MiB and begun["timeout_s"] > 0
        assert c.call("upload_chunk", upload=upload, offset=0, data=b"abcd") == {"received": 4}
        with pytest.raises(InvalidParameterValue) as gap:
            c.call("upload_chunk", upload=upload, offset=6, data=b"gh")
        assert gap.value.message == (
            f"chunk at offset 6 leaves a gap: upload {upload} has 4 bytes, so the next chunk "
            "must start at offset 4"
        )
        assert gap.value.details == {"field": "offset", "expected": 4}
        with pytest.raises(InvalidParameterValue, match="offset 2 overlaps bytes already rec"):
            c.call("upload_chunk", upload=upload, offset=2, data=b"cdef")
        with pytest.raises(InvalidParameterValue, match="ends at byte 11, past the 10 bytes"):
            c.call("upload_chunk", upload=upload, offset=4, data=b"efghijk")
        with pytest.raises(InvalidParameterValue, match="data must be non-empty bytes"):
            c.call("upload_chunk", upload=upload, offset=4, data="text")
        with pytest.raises(InvalidParameterValue, match="incomplete: 4 of the 10 declared"):
            c.call("deploy", name="up-bad", upload=upload)
        with pytest.raises(InvalidParameterValue, match="code or as upload, not both"):
            c.call("deploy", name="up-bad", upload=upload, code=b"PK")
        for size in (0, -1, "10", 1.5, True):
            with pytest.raises(InvalidParameterValue, match="size must be the zip's length"):
                c.call("upload_begin", size=size)
        with pytest.raises(InvalidParameterValue, match="unknown argument 'sha'"):
            c.call("upload_begin", size=10, sha="x")
        assert c.call("upload_abort", upload=upload) == {"aborted": upload}
        with pytest.raises(ResourceNotFound, match="does not exist on this connection"):
            c.call("upload_chunk", upload=upload, offset=4, data=b"efghij")
        with pytest.raises(ResourceNotFound):
            c.call("deploy", name="up-bad", upload="no-such-upload")
        # A complete upload that is not a zip: the deploy's own error, and the upload is used.
        junk = c.call("upload_begin", size=3)["upload"]
        c.call("upload_chunk", upload=junk, offset=0, data=b"abc")
        with pytest.raises(InvalidParameterValue, match="zip"):
            c.call("deploy", name="up-bad", upload=junk)
        with pytest.raises(ResourceNotFound):
            c.call("deploy", name="up-bad", upload=junk)
        # A bad configuration is refused before the upload is used up.
        kept = c.call("upload_begin", size=3)["upload"]
        c.call("upload_chunk", upload=kept, offset=0, data=b"abc")
        with pytest.raises(InvalidParameterValue, match="memory_mb"):
            c.call("deploy", name="up-bad", upload=kept, memory_mb=1)
        with pytest.raises(InvalidParameterValue, match="LayerName"):
            c.call("layer_publish", name="bad name", upload=kept)
        c.call("upload_abort", upload=kept)
    assert staged(shared_daemon) == []


def test_another_connection_cannot_use_an_upload(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """An upload belongs to the connection that began it, even against the same user."""
    code = tmp_path / "fn"
    write_function(code, "def handler(event, context):\n    return 'mine'\n")
    from lambdad.client import zip_code

    data = zip_code(code)
    with shared_daemon.client() as owner, shared_daemon.client() as other:
        upload = owner.call("upload_begin", size=len(data))["upload"]
        for op, args in (
            ("upload_chunk", {"upload": upload, "offset": 0, "data": data}),
            ("upload_abort", {"upload": upload}),
            ("deploy", {"name": "up-stolen", "upload": upload}),
            ("layer_publish", {"name": "up-stolen", "upload": upload}),
        ):
            with pytest.raises(ResourceNotFound, match="another connection's"):
                other.call(op, **args)
        owner.call("upload_chunk", upload=upload, offset=0, data=data)
        with pytest.raises(ResourceNotFound):
            other.call("deploy", name="up-stolen", upload=upload)
        owner.call("deploy", name="up-owned", upload=upload)
        assert owner.invoke("up-owned").result == "mine"
        with pytest.raises(ResourceNotFound):
            other.get("up-stolen")


def test_closing_the_connection_removes_its_uploads(shared_daemon: DaemonProcess) -> None:
    c = shared_daemon.client()
    upload = c.call("upload_begin", size=3 * MiB)["upload"]
    c.call("upload_chunk", upload=upload, offset=0, data=os.urandom(MiB))
    assert staged(shared_daemon) == [upload]
    c.close()
    wait_for(lambda: staged(shared_daemon) == [], timeout=10)


def test_a_daemon_serves_others_while_an_upload_is_under_way(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Invocations on another connection complete between the chunks of a 40 MiB upload."""
    write_function(tmp_path / "echo", "def handler(event, context):\n    return event\n")
    path = tmp_path / "big40.zip"
    big_zip(path, 40)
    with shared_daemon.client() as c:
        c.deploy("up-echo", tmp_path / "echo")
        c.invoke("up-echo", 0)  # warm
    uploading = threading.Event()
    chunks_done = threading.Event()
    seen: list[tuple[str, float]] = []

    def upload() -> None:
        with shared_daemon.client() as c:

            def call(op: str, **args: Any) -> dict[str, Any]:
                answer = c.call(op, **args)
                seen.append((op, time.monotonic()))
                if op == "upload_begin":
                    uploading.set()
                if op == "upload_chunk" and args["offset"] + len(args["data"]) >= size:
                    chunks_done.set()
                return answer

            size = path.stat().st_size
            from lambdad.client import deploy_args

            args = deploy_args("up-big40", path, "app.handler", "python3", 256, 10.0, None,
                               None, "none", 0)  # fmt: skip
            run_plan(with_code("deploy", args, c.max_frame_bytes()), call)

    worker = threading.Thread(target=upload)
    worker.start()
    between: list[float] = []
    try:
        assert uploading.wait(60)
        with shared_daemon.client() as c:
            n = 0
            while not chunks_done.is_set():
                assert c.invoke("up-echo", n).result == n
                between.append(time.monotonic())
                n += 1
    finally:
        worker.join(120)
    chunk_times = [t for op, t in seen if op == "upload_chunk"]
    assert len(chunk_times) >= 40 * MiB // UPLOAD_CHUNK
    first, last = chunk_times[0], chunk_times[-1]
    during = [t for t in between if first <= t <= last]
    assert during, "no invocation completed while the upload was under way"
    with shared_daemon.client() as c:
        assert c.get("up-big40")["name"] == "up-big40"


# -- time-out and restart: a daemon of their own ----------------------------------------------


@pytest.fixture
def quick_daemon() -> Iterator[DaemonProcess]:
    config = "[daemon]\npool_size = 1\nupload_timeout_s = 0.5\nupload_max_open = 2\n"
    with tempfile.TemporaryDirectory(prefix="lambdad-upload-") as tmp:
        d = make_daemon(tmp, config)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def test_an_abandoned_upload_expires_and_a_restart_removes_leftovers(
    quick_daemon: DaemonProcess,
) -> None:
    c = quick_daemon.client()
    upload = c.call("upload_begin", size=2 * MiB)["upload"]
    c.call("upload_chunk", upload=upload, offset=0, data=b"x" * MiB)
    wait_for(lambda: staged(quick_daemon) == [], timeout=10)  # idle past 0.5 s
    with pytest.raises(ResourceNotFound) as expired:
        c.call("upload_chunk", upload=upload, offset=MiB, data=b"x" * MiB)
    assert expired.value.message == (
        f"upload {upload} expired: no chunk for 0.5 s (upload_timeout_s); begin a new one"
    )
    # Per-peer bounds: two open at most here, whatever the connection.
    c.call("upload_begin", size=10)
    with quick_daemon.client() as other:
        other.call("upload_begin", size=10)
        with pytest.raises(TooManyRequests, match="upload_max_open = 2") as limited:
            other.call("upload_begin", size=10)
        assert limited.value.details["reason"] == "UploadLimitExceeded"
    c.close()

    # A staged file of a daemon killed mid-upload is gone when it starts again.
    c = quick_daemon.client()
    upload = c.call("upload_begin", size=2 * MiB)["upload"]
    c.call("upload_chunk", upload=upload, offset=0, data=b"y" * MiB)
    assert staged(quick_daemon) == [upload]
    quick_daemon.stop(signal.SIGKILL)
    c.close()
    assert staged(quick_daemon) == [upload]
    quick_daemon.start()
    assert staged(quick_daemon) == []
    assert "removed 1 staged upload(s) left by the previous run" in quick_daemon.output()
    with quick_daemon.client() as c, pytest.raises(ResourceNotFound):
        c.call("upload_chunk", upload=upload, offset=MiB, data=b"y" * MiB)
    mode = os.stat(os.path.join(quick_daemon.state_dir, "uploads")).st_mode & 0o777
    assert mode == 0o700


def test_staged_files_are_private(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        upload = c.call("upload_begin", size=10)["upload"]
        c.call("upload_chunk", upload=upload, offset=0, data=b"0123")
        path = os.path.join(shared_daemon.state_dir, "uploads", upload)
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        assert Path(path).read_bytes()[:4] == b"0123"
        c.call("upload_abort", upload=upload)
        assert not os.path.exists(path)


def test_a_client_sends_small_code_in_one_frame(shared_daemon: DaemonProcess) -> None:
    """The plan: one deploy request under the frame limit, a staged upload above it."""
    small = with_code("deploy", {"name": "x", "code": b"z" * 1000}, 8 * MiB)
    assert next(small) == ("deploy", {"name": "x", "code": b"z" * 1000})
    big = with_code("deploy", {"name": "x", "code": b"z" * (8 * MiB)}, 8 * MiB)
    assert next(big) == ("upload_begin", {"size": 8 * MiB})
    with shared_daemon.client() as c:
        assert c.max_frame_bytes() == 8 * MiB


def test_the_trio_client_deploys_a_20_mib_zip(
    shared_daemon: DaemonProcess, zip20: tuple[Path, str]
) -> None:
    import trio

    from lambdad.trio_client import TrioClient

    path, sha = zip20

    async def scenario() -> Any:
        async with TrioClient(shared_daemon.socket) as c:
            await c.deploy("up-trio", path, memory_mb=256, timeout_s=10)
            return await c.invoke("up-trio")

    inv = trio.run(scenario)
    assert inv.error is None and inv.result["blob_sha256"] == sha
