"""Lambda's logging for Python functions: the root logger's handler and the error records.

As Lambda's runtime does (``awslambdaric``'s ``bootstrap._setup_logging`` and
``lambda_runtime_log_utils``): a handler on the root logger, timestamps in UTC, each record
tagged with the current request id, and one of two formats chosen by ``AWS_LAMBDA_LOG_FORMAT``
(``LoggingConfig.LogFormat``):

* Text: ``[LEVEL]\\t2026-12-01T09:00:00.123Z\\t<request id>\\t<message>``
* JSON: ``{"timestamp", "level", "message", "logger", "requestId", ...}`` plus ``stackTrace``,
  ``errorType``, ``errorMessage`` and ``location`` for a record with an exception, plus any
  ``extra`` fields.

``AWS_LAMBDA_LOG_LEVEL`` (``LoggingConfig.ApplicationLogLevel``; ``TRACE`` is ``DEBUG``) sets
the root logger's level; without it the level stays Python's default (WARNING), so
``logger.setLevel(logging.INFO)`` is what makes ``logger.info`` appear, as on Lambda.

Errors (a handler's exception, an Init failure) are written by the runtime as Lambda writes
them: ``[ERROR] <type>: <message>`` and ``Traceback (most recent call last):`` with the frames,
their indentation in no-break spaces (Text), or one JSON record (JSON).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
TEXT_DATEFMT = "%Y-%m-%dT%H:%M:%S"
ERROR_INDENT = "\u00a0"  # no-break space: CloudWatch keeps it, so tracebacks stay indented
UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function "
    "code. However, in rare cases, a Lambda runtime update can cause unexpected function "
    "behavior. For functions using managed runtimes, runtime updates can be triggered by a "
    "function change, or can be applied automatically. To determine if the runtime has been "
    "updated, check the runtime version in the INIT_START log entry. If this error correlates "
    "with a change in the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)
_RESERVED = frozenset(
    {"name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
     "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
     "relativeCreated", "thread", "threadName", "processName", "process", "aws_request_id",
     "tenant_id", "taskName"}
)  # fmt: skip
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


class _Request:
    """The invocation in progress, for the records' ``aws_request_id``."""

    request_id = ""
    tenant_id: str | None = None


current = _Request()


def set_request(request_id: str, tenant_id: str | None = None) -> None:
    current.request_id = request_id
    current.tenant_id = tenant_id


class StandardLogSink:
    """Where the handler's records go: the sandbox's stdout, which the daemon frames into the
    function's log stream. ``context.log()`` finds it through the handler's ``log_sink``."""

    def log(self, msg: str) -> None:
        sys.stdout.write(msg)


class LambdaLoggerFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = current.request_id
        record.tenant_id = current.tenant_id
        return True


class LambdaLoggerHandler(logging.Handler):
    def __init__(self, sink: StandardLogSink) -> None:
        super().__init__()
        self.log_sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log_sink.log(self.format(record))
        except Exception:
            self.handleError(record)


def _level(record: logging.LogRecord) -> int:
    return min(50, max(0, record.levelno)) // 10 * 10


class JsonFormatter(logging.Formatter):
    """Lambda's JSON log record, key for key (``None`` values left out)."""

    def __init__(self, relocate: Callable[[str], str] = lambda p: p) -> None:
        super().__init__(datefmt=DATETIME_FORMAT)
        self.relocate = relocate

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = _level(record)
        record.levelname = logging.getLevelName(record.levelno)
        exc = record.exc_info
        message = (
            record.msg if isinstance(record.msg, dict) and not record.args else record.getMessage()
        )
        result: dict[str, Any] = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "message": message,
            "logger": record.name,
            "stackTrace": format_tb(exc[2], self.relocate) if exc else None,
            "errorType": exc[0].__name__ if exc and exc[0] else None,
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{self.relocate(record.pathname)}:{record.funcName}:{record.lineno}"
            if exc
            else None,
        }
        tenant = getattr(record, "tenant_id", None)
        if tenant is not None:
            result["tenantId"] = tenant
        result.update(
            (k, v) for k, v in record.__dict__.items() if k not in _RESERVED and k not in result
        )
        return _encode({k: v for k, v in result.items() if v is not None}) + "\n"


class TextFormatter(logging.Formatter):
    def __init__(self, relocate: Callable[[str], str] = lambda p: p) -> None:
        super().__init__(TEXT_FORMAT, TEXT_DATEFMT)
        self.relocate = relocate

    def formatException(self, ei: Any) -> str:
        lines = traceback.format_exception(ei[0], ei[1], ei[2])
        return "".join(_relocate_frames(lines, self.relocate)).rstrip("\n")


def format_tb(tb: Any, relocate: Callable[[str], str]) -> list[str]:
    frames = traceback.extract_tb(tb)
    for frame in frames:
        frame.filename = relocate(frame.filename)
    return traceback.format_list(frames)


def _relocate_frames(lines: list[str], relocate: Callable[[str], str]) -> list[str]:
    out = []
    for line in lines:
        if line.startswith('  File "'):
            path, sep, rest = line[len('  File "') :].partition('"')
            line = f'  File "{relocate(path)}{sep}{rest}'
        out.append(line)
    return out


class _Prepared:
    handler: LambdaLoggerHandler | None = None
    formatters: tuple[logging.Formatter, logging.Formatter] | None = None


_prepared = _Prepared()


def prepare(relocate: Callable[[str], str] = lambda p: p) -> None:
    """Pool time: build the handler and both formatters and install the handler on the root
    logger (no function code has run yet: ~70 µs that stay off the cold path)."""
    handler = LambdaLoggerHandler(StandardLogSink())
    handler.addFilter(LambdaLoggerFilter())
    handler.setFormatter(TextFormatter(relocate))
    _prepared.handler = handler
    _prepared.formatters = (handler.formatter, JsonFormatter(relocate))  # type: ignore[assignment]
    logging.getLogger().addHandler(handler)


def setup(env: Mapping[str, str], relocate: Callable[[str], str] = lambda p: p) -> bool:
    """Install Lambda's handler on the root logger; returns True for the JSON format."""
    json_format = env.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    raw_level = env.get("AWS_LAMBDA_LOG_LEVEL") or ""
    level = {"TRACE": "DEBUG"}.get(raw_level.upper(), raw_level.upper())
    logging.Formatter.converter = time.gmtime
    if _prepared.handler is None or _prepared.formatters is None:
        prepare(relocate)
    handler, formatters = _prepared.handler, _prepared.formatters
    assert handler is not None and formatters is not None
    _prepared.handler = None  # one installation per sandbox
    if json_format:
        handler.setFormatter(formatters[1])
    if level and isinstance(logging.getLevelName(level), int):  # (3.10 has no name mapping)
        logging.getLogger().setLevel(level)
    return json_format


def error_lines(error: Mapping[str, Any], json_format: bool) -> str:
    """How Lambda's runtime logs an error result (with its stack trace)."""
    if json_format:
        record = {
            "timestamp": time.strftime(DATETIME_FORMAT, time.gmtime()),
            "level": "ERROR",
            **error,
        }
        return _encode(record) + "\n"
    head = "[ERROR]"
    if error.get("errorType"):
        head += " " + str(error["errorType"])
    if error.get("errorMessage"):
        head += (":" if error.get("errorType") else "") + " " + str(error["errorMessage"])
    lines = [head]
    trace = error.get("stackTrace")
    if trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            if element == "":
                lines.append("")
                continue
            for line in str(element).splitlines():
                stripped = line.lstrip(" ")
                lines.append(ERROR_INDENT * (len(line) - len(stripped)) + stripped)
    return "\n".join(lines) + "\n"
