"""The sandbox lifecycle: the table in docs/architecture.md is the table in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdad.sandboxes import TRANSITIONS, IllegalTransition, Sandbox, State

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _doc_table() -> dict[str, set[str]]:
    text = DOC.read_text()
    section = text[text.index("## Sandbox lifecycle") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (\w+) \| ([^|]+) \|$", section, re.M)
    return {
        src: set() if dst.strip() == "—" else {d.strip() for d in dst.split(",")}
        for src, dst in rows
        if src != "from"
    }


def test_doc_matches_transitions() -> None:
    code = {s.value: {d.value for d in targets} for s, targets in TRANSITIONS.items()}
    assert _doc_table() == code


class _FakeSandbox:
    """Just enough of a Sandbox to run its move() against the table."""

    def __init__(self, state: State) -> None:
        self.id = "fake"
        self.state = state

    move = Sandbox.move


@pytest.mark.parametrize("src", list(State))
@pytest.mark.parametrize("dst", list(State))
def test_every_move_obeys_the_table(src: State, dst: State) -> None:
    sandbox = _FakeSandbox(src)
    if dst in TRANSITIONS[src]:
        sandbox.move(dst)
        assert sandbox.state is dst
    else:
        with pytest.raises(IllegalTransition):
            sandbox.move(dst)
        assert sandbox.state is src


def test_dead_is_final() -> None:
    assert TRANSITIONS[State.DEAD] == frozenset()
    assert all(State.DEAD in targets for s, targets in TRANSITIONS.items() if s is not State.DEAD)
