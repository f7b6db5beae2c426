"""The layer diagram in docs/architecture.md is the import-linter contracts in pyproject.toml.

Like tests/lambdad/test_lifecycle_doc.py for the lifecycle table: the page and the build's
contracts cannot drift apart. (``make lint`` runs the contracts themselves.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _doc_layers() -> dict[str, list[str]]:
    """Each ```text block of the "Layers" section that starts with ``# <contract id>``."""
    text = DOC.read_text()
    section = text[text.index("## Layers") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```text\n# ([\w-]+)\n(.*?)```", section, re.S)
    return {
        cid: [line.strip() for line in body.splitlines() if line.strip()] for cid, body in blocks
    }


def _normalise(layer: str) -> str:
    return " | ".join(part.strip() for part in layer.split("|"))


def test_every_layers_contract_is_drawn_as_it_is() -> None:
    code = {
        str(c["id"]): [_normalise(str(layer)) for layer in c["layers"]]  # type: ignore[attr-defined]
        for c in _contracts()
        if c["type"] == "layers"
    }
    assert code, "no layers contracts in pyproject.toml"
    assert _doc_layers() == code


@pytest.mark.parametrize("contract", _contracts(), ids=lambda c: str(c["id"]))
def test_every_contract_is_named_in_the_doc(contract: dict[str, object]) -> None:
    section = DOC.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    assert f"`{contract['id']}`" in section or f"# {contract['id']}\n" in section


def test_the_make_lint_target_runs_the_contracts() -> None:
    lint = (ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "lint-imports" in lint
