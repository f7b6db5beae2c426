"""A daemon with the gateway on a free loopback port."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_CONFIG, DaemonProcess, make_daemon

GATEWAY_CONFIG = TEST_CONFIG + 'gateway_address = "127.0.0.1:0"\n'


@pytest.fixture(scope="module")
def gw_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, GATEWAY_CONFIG)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
