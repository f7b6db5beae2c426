"""docs/protocol.md and :data:`lambdad.protocol.OPERATION_ARGS` name the same arguments.

The daemon refuses any argument not in the table, so an argument documented but missing from
it would be refused, and one in it but undocumented would be a secret: both fail here.
"""

from __future__ import annotations

import re
from pathlib import Path

from lambdad.protocol import OPERATION_ARGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_args() -> dict[str, set[str]]:
    """Each ``### `op``` section's arguments: its ``{a, b?}`` heading or its first table (the
    argument table; later ones, like invoke's Report, describe results)."""
    found: dict[str, set[str]] = {}
    op = None
    table = "before"
    for line in DOC.read_text().splitlines():
        heading = re.match(r"### `(\w+)`(.*)", line)
        if heading:
            op = heading.group(1)
            found[op] = set()
            table = "before"
            before_result = heading.group(2).split("→")[0]
            for braces in re.findall(r"`\{([^}]*)\}`", before_result):
                found[op] |= {a.strip().rstrip("?") for a in braces.split(",")}
        elif line.startswith("## "):
            op = None
        elif op is not None and table != "after":
            if line.startswith("|"):
                table = "in"
                row = re.match(r"\| `(\w+)`", line)
                if row:
                    found[op].add(row.group(1))
            elif table == "in":
                table = "after"
    return found


def test_every_operation_documents_exactly_the_arguments_it_takes() -> None:
    documented = documented_args()
    # hello is documented in "Handshake"; deploy's `layers` in the text under its table.
    documented["hello"] = {"version", "client"}
    documented["deploy"].add("layers")
    assert documented == {op: set(args) for op, args in OPERATION_ARGS.items()}
