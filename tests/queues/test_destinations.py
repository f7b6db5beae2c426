"""Async destinations, per-function retry settings and recursive loop detection, against a real
daemon; and the command line's queue, trigger and destination verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue, ResourceNotFound
from tests.conftest import ROOT, DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

ECHO = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event}
"""

COUNTER = """
def handler(event, context):
    return {"hop": 1}
"""


def events_in_log(c: Client, function: str) -> list[Any]:
    text, _ = c.logs(function)
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("EVENT ")]


def test_on_success_to_a_function_and_on_failure_to_a_queue_carry_lambdas_record(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("dsrc", write_function(tmp_path / "a", ECHO))
        c.deploy("dsink", write_function(tmp_path / "b", ECHO))
        c.create_queue("dfail")
        config = c.set_destination(
            "dsrc", on_success="fn:dsink", on_failure="queue:dfail", max_retries=0
        )
        assert (config["on_success"], config["on_failure"], config["max_retries"]) == (
            "fn:dsink", "queue:dfail", 0,
        )  # fmt: skip
        ok = c.invoke("dsrc", {"n": 1}, type="async")
        record = wait_for(lambda: next(iter(events_in_log(c, "dsink")), None))
        assert record["version"] == "1.0"
        assert record["timestamp"].endswith("Z")
        ctx = record["requestContext"]
        assert ctx["requestId"] == ok.event_id
        assert ctx["condition"] == "Success"
        assert ctx["approximateInvokeCount"] == 1
        assert ctx["functionArn"] == (
            "arn:aws:lambda:us-east-1:000000000000:function:dsrc:$LATEST"
        )
        assert record["requestPayload"] == {"n": 1}
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
        assert record["responsePayload"] == {"echo": {"n": 1}}

        bad = c.invoke("dsrc", {"fail": True}, type="async")
        wait_for(lambda: next(q for q in c.list_queues() if q["name"] == "dfail")["visible"])
        [message] = c.receive_messages("dfail")
        failure = json.loads(bytes(message["body"]))
        assert failure["requestContext"]["condition"] == "RetriesExhausted"
        assert failure["requestContext"]["requestId"] == bad.event_id
        assert failure["requestContext"]["approximateInvokeCount"] == 1  # max_retries 0
        # The same marking as a synchronous invocation of the same failure gets.
        sync = c.invoke("dsrc", {"fail": True})
        assert failure["responseContext"]["functionError"] == sync.function_error
        assert failure["responsePayload"]["errorType"] == "ValueError"
        assert failure["responsePayload"]["errorMessage"] == "asked to fail"
        assert c.get_destination("dsrc")["stats"]["delivered"] >= 2


def test_destination_settings_are_validated(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    with shared_daemon.client() as c:
        c.deploy("dval", write_function(tmp_path / "a", ECHO))
        with pytest.raises(InvalidParameterValue, match="MaximumRetryAttempts"):
            c.set_destination("dval", max_retries=3)
        with pytest.raises(InvalidParameterValue, match="MaximumEventAgeInSeconds"):
            c.set_destination("dval", max_age_s=10)
        with pytest.raises(InvalidParameterValue, match="fn:FUNCTION or queue:QUEUE"):
            c.set_destination("dval", on_success="sns:topic")
        with pytest.raises(ResourceNotFound):
            c.set_destination("dval", on_failure="queue:no-such-queue")
        with pytest.raises(ResourceNotFound):
            c.set_destination("dval", on_success="fn:no-such-function")
        with pytest.raises(ResourceNotFound):
            c.get_destination("dval")


def test_a_recursive_loop_is_stopped_after_16_hops_and_its_origin_named(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client() as c:
        c.deploy("ping1", write_function(tmp_path / "a", COUNTER))
        c.deploy("pong1", write_function(tmp_path / "b", COUNTER))
        c.set_destination("ping1", on_success="fn:pong1")
        c.set_destination("pong1", on_success="fn:ping1")
        c.invoke("ping1", {}, type="async")
        wait_for(lambda: c.get_destination()["stats"]["loops_stopped"] == 1)
        # The origin's event is hop 0; links 1..16 ran; the 17th link was not made.
        ping = c.stats("ping1")["invocations"]
        pong = c.stats("pong1")["invocations"]
        assert (ping, pong) == (9, 8)
        log = daemon.output()
        assert "recursive loop detected" in log
        assert "started at function 'ping1'" in log
        assert c.dead_letters() == []  # stopped, not failed


def lambdad_cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args, "--socket", d.socket],
        capture_output=True, text=True, cwd=str(ROOT), timeout=60,
    )  # fmt: skip


def test_the_command_line_verbs(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    d = shared_daemon
    with d.client() as c:
        c.deploy("clifn", write_function(tmp_path / "a", ECHO))
    assert lambdad_cli(d, "queue", "create", "cli-dlq").returncode == 0
    made = lambdad_cli(d, "queue", "create", "cliq", "--visibility-timeout", "5",
                       "--max-receive-count", "3", "--dead-letter", "cli-dlq")  # fmt: skip
    assert made.stdout.strip() == "arn:aws:sqs:us-east-1:000000000000:cliq", made.stderr
    half = lambdad_cli(d, "queue", "create", "cliq2", "--max-receive-count", "3")
    assert half.returncode == 2 and "go together" in half.stderr
    sent = lambdad_cli(d, "queue", "send", "cli-dlq", "hello", "--attr", "k=v")
    assert sent.returncode == 0 and len(sent.stdout.strip()) == 36
    listed = json.loads(lambdad_cli(d, "queue", "ls", "--json").stdout)
    counts = {q["name"]: q["visible"] for q in listed if q["name"].startswith("cli")}
    assert counts == {"cli-dlq": 1, "cliq": 0}
    got = json.loads(lambdad_cli(d, "queue", "receive", "cli-dlq", "--max", "5", "--json").stdout)
    assert [m["body"] for m in got] == ["hello"]
    assert got[0]["attributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    lambdad_cli(d, "queue", "send", "cli-dlq", "x")
    assert lambdad_cli(d, "queue", "purge", "cli-dlq").stdout.strip() == "purged 1 message(s)"

    add = lambdad_cli(
        d, "trigger", "add", "queue", "clim", "clifn", "--queue", "cliq", "--batch-size", "5",
        "--report-batch-item-failures", "--disabled",
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    [m] = json.loads(lambdad_cli(d, "trigger", "ls", "--function", "clifn", "--json").stdout)
    assert (m["name"], m["batch_size"], m["report_batch_item_failures"], m["state"]) == (
        "clim", 5, True, "disabled",
    )  # fmt: skip
    assert lambdad_cli(d, "trigger", "enable", "clim").returncode == 0
    lambdad_cli(d, "queue", "send", "cliq", '{"via": "cli"}')
    wait_for(lambda: received_records(d, "clifn"))
    missing = lambdad_cli(d, "trigger", "add", "queue", "clim2", "clifn", "--queue", "nope")
    assert missing.returncode == 2 and "queue 'nope' does not exist" in missing.stderr
    assert lambdad_cli(d, "trigger", "rm", "clim").returncode == 0

    dest = lambdad_cli(d, "destination", "set", "clifn", "--on-failure", "queue:cli-dlq",
                       "--max-retries", "1", "--max-age", "120")  # fmt: skip
    assert dest.returncode == 0, dest.stderr
    shown = json.loads(lambdad_cli(d, "destination", "show", "clifn").stdout)
    assert shown["config"]["on_failure"] == "queue:cli-dlq"
    assert (shown["config"]["max_retries"], shown["config"]["max_age_s"]) == (1, 120)
    assert lambdad_cli(d, "destination", "rm", "clifn").returncode == 0


def received_records(d: DaemonProcess, function: str) -> bool:
    with d.client() as c:
        return any(isinstance(e, dict) and e.get("Records") for e in events_in_log(c, function))
