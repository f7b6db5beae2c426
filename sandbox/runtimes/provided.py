"""``provided`` (``provided.al2023``, ``provided.al2``): any executable ``bootstrap`` that speaks
the Lambda Runtime API — a shell script, awslambdaric, a compiled binary.

The agent execs ``bootstrap`` from ``/var/task`` (else ``/opt``, where a layer may put it) at
Init, as the sandbox's unprivileged uid with every isolation step in place (see
:mod:`sandbox.runtimes.process`). Nothing can be started ahead of time: the program is the
function's own code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sandbox import messages
from sandbox.agent import InitFailure
from sandbox.runtimes.process import ProcessRuntime
from sandbox.runtimes.python_layout import Layout

PRELOAD = ("json", "selectors", "secrets", "resource")


def sandbox_layout() -> Layout:
    """A custom runtime sees the host's /usr and its own code and layers, nothing of lambdad."""
    return Layout({}, (), (), None)
BOOTSTRAP_DIRS = ("/var/task", "/opt")


class ProvidedRuntime(ProcessRuntime):
    name = "provided"

    def command(self, init: messages.Init, task_root: str) -> Sequence[str]:
        candidates = [os.path.join(task_root, "bootstrap")]
        if task_root == "/var/task":
            candidates.append("/opt/bootstrap")
        for path in candidates:
            if os.path.isfile(path):
                if not os.access(path, os.X_OK):
                    raise InitFailure({
                        "errorType": "Runtime.InvalidEntrypoint",
                        "errorMessage": f"RequestId: Error: fork/exec {path}: permission denied",
                    })  # fmt: skip
                return [path]
        raise InitFailure({
            "errorType": "Runtime.InvalidEntrypoint",
            "errorMessage": "RequestId: Error: Couldn't find valid bootstrap(s): "
            f"[{' '.join(candidates)}]",
        })  # fmt: skip


RUNTIME = ProvidedRuntime()
