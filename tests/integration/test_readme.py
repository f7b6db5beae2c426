"""The README's client example works as written (against a real daemon)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, DaemonProcess


def test_readme_python_example(daemon: DaemonProcess) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1
    out = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        cwd=ROOT,
        env={**os.environ, "LAMBDAD_SOCKET": daemon.socket},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    hello, ada, duration, cold = out.stdout.split()
    assert (hello, ada) == ("Hello,", "Ada!")
    assert float(duration) >= 0 and cold == "True"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
