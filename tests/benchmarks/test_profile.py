"""benchmarks/profile.py's pure part: the top frames from py-spy's collapsed stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.profile import top_frames


def test_top_frames_by_own_and_total_time(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "main (a.py:1);loop (a.py:2);write (b.py:9) 6\n"
        "main (a.py:1);loop (a.py:2) 3\n"
        "main (a.py:1);parse (c.py:4);loop (a.py:2) 1\n"
        "garbage line\n"
    )
    own, total = top_frames(raw)
    assert own[0] == ("write (b.py:9)", pytest.approx(0.6))
    assert dict(own)["loop (a.py:2)"] == pytest.approx(0.4)
    # A frame counts once per sample however often it is on the stack.
    assert dict(total)["main (a.py:1)"] == pytest.approx(1.0)
    assert dict(total)["loop (a.py:2)"] == pytest.approx(1.0)
    assert dict(total)["parse (c.py:4)"] == pytest.approx(0.1)


def test_no_samples_no_frames(tmp_path: Path) -> None:
    raw = tmp_path / "empty.txt"
    raw.write_text("")
    assert top_frames(raw) == ([], [])
