"""Lambda's log records against awslambdaric's formatters and its error log."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from awslambdaric import bootstrap, lambda_runtime_log_utils

from sandbox.runtimes import lambda_logging


@pytest.fixture
def record() -> logging.LogRecord:
    try:
        {}["missing"]
    except KeyError:
        exc_info = sys.exc_info()
    rec = logging.LogRecord("orders", logging.ERROR, "/var/task/app.py", 12, "failed %s", ("x",),
                            exc_info, func="handler")  # fmt: skip
    rec.aws_request_id = "rid-1"
    rec.tenant_id = None
    rec.order_id = 7  # an `extra` field
    return rec


def test_json_record_matches_awslambdaric(record: logging.LogRecord) -> None:
    ours = json.loads(lambda_logging.JsonFormatter().format(record))
    theirs = json.loads(lambda_runtime_log_utils.JsonFormatter().format(record))
    assert ours == theirs
    assert ours["requestId"] == "rid-1" and ours["order_id"] == 7
    assert ours["location"] == "/var/task/app.py:handler:12"


def test_json_dict_message_and_odd_levels() -> None:
    rec = logging.LogRecord("x", 25, "/var/task/app.py", 1, {"k": "v"}, None, None)
    rec.aws_request_id = ""
    ours = json.loads(lambda_logging.JsonFormatter().format(rec))
    theirs = json.loads(lambda_runtime_log_utils.JsonFormatter().format(rec))
    assert ours == theirs and ours["message"] == {"k": "v"} and ours["level"] == "INFO"


def test_text_record_format(record: logging.LogRecord) -> None:
    record.exc_info = None
    line = lambda_logging.TextFormatter().format(record)
    theirs = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S",
    ).format(record)
    assert line == theirs
    assert line.startswith("[ERROR]\t") and line.endswith("\trid-1\tfailed x\n")


class _Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log_error(self, lines: list[str]) -> None:
        self.lines = lines


ERRORS: list[dict[str, Any]] = [
    {"errorMessage": "Unable to import module 'app': No module named 'x'",
     "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []},
    {"errorMessage": "order 7", "errorType": "OrderError", "requestId": "r",
     "stackTrace": ['  File "/var/task/app.py", line 4, in handler\n    raise OrderError()\n',
                    '  File "/var/task/lib.py", line 9, in check\n    raise\n']},
    {"errorMessage": "", "errorType": "Empty", "requestId": "r", "stackTrace": ["", "x"]},
]  # fmt: skip


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e["errorType"])
def test_error_log_matches_awslambdaric_text(error: dict[str, Any]) -> None:
    sink = _Sink()
    bootstrap.log_error(error, sink)  # the Text variant (AWS_LAMBDA_LOG_FORMAT unset)
    assert lambda_logging.error_lines(error, json_format=False) == "\n".join(sink.lines) + "\n"


def test_error_log_json() -> None:
    out = json.loads(lambda_logging.error_lines(ERRORS[1], json_format=True))
    assert out["level"] == "ERROR" and out["errorType"] == "OrderError"
    assert out["stackTrace"] == ERRORS[1]["stackTrace"] and out["timestamp"].endswith("Z")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level, converter = root.handlers[:], root.level, logging.Formatter.converter
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.Formatter.converter = converter  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("env", "level", "json_format"),
    [
        ({}, logging.WARNING, False),
        ({"AWS_LAMBDA_LOG_FORMAT": "Text"}, logging.WARNING, False),
        ({"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "TRACE"}, logging.DEBUG, True),
        ({"AWS_LAMBDA_LOG_FORMAT": "json", "AWS_LAMBDA_LOG_LEVEL": "WARN"}, logging.WARNING, True),
        ({"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "FATAL"}, logging.FATAL, True),
        ({"AWS_LAMBDA_LOG_LEVEL": "bogus"}, logging.WARNING, False),
    ],
)
def test_setup_installs_lambdas_root_handler(
    root_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    level: int,
    json_format: bool,
) -> None:
    root_logger.setLevel(logging.WARNING)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert lambda_logging.setup(env) is json_format
    lambda_logging.set_request("rid-2")
    assert root_logger.level == level
    logging.getLogger("app").log(level - 1, "below the level")
    logging.getLogger("app").log(level, "boom")
    text = out.getvalue()
    if json_format:
        assert json.loads(text)["requestId"] == "rid-2"
        assert json.loads(text)["message"] == "boom"
    else:
        assert text.startswith(f"[{logging.getLevelName(level)}]\t")
        assert text.endswith("\trid-2\tboom\n")
