"""The daemon's own diagnostics: one ``logging`` set-up for every module under ``lambdad``.

Lines go to stderr (the journal under systemd) looking as they always have: ``lambdad: ...``,
with ``WARNING:`` / ``ERROR:`` before the message at those levels, and the start-up banner
bare (``lambdad 0.1.0 serving on ...``). Modules log to ``logging.getLogger("lambdad")``; the
banner is logged with ``extra={"bare": True}``.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

LOGGER: Final = "lambdad"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if getattr(record, "bare", False):
            return text
        if record.levelno >= logging.WARNING:
            return f"lambdad: {record.levelname}: {text}"
        return f"lambdad: {text}"


def configure(level: int = logging.INFO) -> logging.Logger:
    """Install the handler once (idempotent) and return the ``lambdad`` logger."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h.formatter, _Formatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)  # flushed after every record
        handler.setFormatter(_Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
