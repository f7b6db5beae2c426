"""The photo-resize pipeline end to end (examples/thumbnail): ``lambdad serve --examples``
publishes the Pillow layer (pip, at start), makes buckets ``uploads`` and ``thumbnails`` and the
s3 trigger; a real JPEG copied into ``uploads`` becomes a thumbnail of at most 128 px.

The second test SIGKILLs the daemon in the middle of a burst of 200 uploads; after a restart
every photo has its thumbnail and no event is in the dead-letter store (at least once).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import EXAMPLES, TEST_CONFIG, DaemonProcess, make_daemon, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

BURST = 200


@pytest.fixture
def pipeline() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-thumbs-") as tmp:
        examples = Path(tmp, "examples")
        examples.mkdir()
        for name in ("thumbnail", "pillow-layer"):
            shutil.copytree(EXAMPLES / name, examples / name)
        d = make_daemon(tmp, TEST_CONFIG, extra_args=["--examples", str(examples)])
        d.start()
        try:
            with d.client() as client:
                # pip installs Pillow into the layer at start: allow it a few minutes.
                wait_for(lambda: any(t["name"] == "thumbnail-on-upload"
                                     for t in client.trigger_list()), timeout=300)  # fmt: skip
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    image = Image.new("RGB", (width, height), (seed % 256, 90, 160))
    for x in range(0, width, 7):  # some structure, so it is a real photo-like JPEG
        image.putpixel((x, (x * 3 + seed) % height), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def buckets(d: DaemonProcess) -> dict[str, Path]:
    with d.client() as client:
        return {b["name"]: Path(b["path"]) for b in client.list_buckets()}


def size_of(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            return image.size
    except (FileNotFoundError, OSError):
        return None


def test_a_photo_copied_into_uploads_gets_a_thumbnail(
    pipeline: DaemonProcess, tmp_path: Path
) -> None:
    b = buckets(pipeline)
    photo = tmp_path / "holiday photo.jpg"
    photo.write_bytes(jpeg(640, 480))
    shutil.copy(photo, b["uploads"] / photo.name)  # cp: open, write, close (CLOSE_WRITE)
    (b["uploads"] / "notes.txt").write_text("not a photo")  # suffix filter: no event
    thumb = b["thumbnails"] / photo.name
    assert wait_for(lambda: size_of(thumb), timeout=120) == (128, 96)
    with pipeline.client() as client:
        t = {t["name"]: t for t in client.trigger_list()}["thumbnail-on-upload"]
        assert t["counters"]["invoked"] == 1
        assert client.dead_letters("thumbnail") == []
    assert not (b["thumbnails"] / "notes.txt").exists()


def test_kill9_mid_burst_loses_no_upload(pipeline: DaemonProcess) -> None:
    b = buckets(pipeline)
    data = [jpeg(320, 240, i) for i in range(BURST)]
    for i, blob in enumerate(data):
        partial = b["uploads"] / f".p{i:03d}.jpg.part"
        partial.write_bytes(blob)
        os.rename(partial, b["uploads"] / f"p{i:03d}.jpg")  # renamed into place
        if i == BURST // 2:
            # Deliveries are under way (thumbnails appearing, events stored and running,
            # index rows being written) when the daemon is killed; the rest land while down.
            wait_for(lambda: len(list(b["thumbnails"].iterdir())) >= 5, timeout=120)
            assert pipeline.proc is not None
            pipeline.proc.send_signal(signal.SIGKILL)
            pipeline.proc.wait()
    pipeline.start()  # the rescan delivers what changed while it was down
    names = {f"p{i:03d}.jpg" for i in range(BURST)}
    done = lambda: names <= {p.name for p in b["thumbnails"].iterdir()}  # noqa: E731
    wait_for(done, timeout=600)
    assert all(size_of(b["thumbnails"] / n) == (128, 96) for n in names)
    with pipeline.client() as client:
        wait_for(lambda: client.stats("thumbnail") is not None)
        assert client.dead_letters("thumbnail") == []
