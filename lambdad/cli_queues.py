"""The command line's queue and destination verbs, and the ``queue`` kind of ``trigger`` (issue 16's fixed forms):

    lambdad queue create NAME [--visibility-timeout S] [--retention S] [--max-receive-count N --dead-letter Q]
    lambdad queue send NAME BODY [--attr K=V]... [--delay S]
    lambdad queue ls [--json] ; lambdad queue purge NAME ; lambdad queue rm NAME
    lambdad queue receive NAME [--max N] [--json]
    lambdad trigger add queue NAME FUNCTION --queue Q|nats://HOST:PORT/STREAM [--batch-size N]
            [--window S] [--report-batch-item-failures] [--max-concurrency N] [--disabled]
    lambdad trigger ls|rm|enable|disable ...   (with the other triggers: lambdad/cli.py)
    lambdad destination set FUNCTION [--on-success fn:F|queue:Q] [--on-failure fn:F|queue:Q]
            [--max-retries N] [--max-age S] ; destination show [FUNCTION] ; destination rm FUNCTION

A client of the socket like every other verb; it never imports the core.
"""  # noqa: E501

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from lambdad.errors import InvalidRequest

Verb = Callable[[str, str], argparse.ArgumentParser]


def _sub(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A sub-action that also takes ``--socket`` after its arguments (``lambdad queue ls
    --socket S``); SUPPRESS keeps the verb-level value when it is given there instead."""
    sp: argparse.ArgumentParser = parent.add_parser(name, help=help)
    sp.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's socket")
    return sp


def add_parsers(verb: Verb) -> None:
    q = verb("queue", "embedded durable queues (SQS semantics)")
    qs = q.add_subparsers(dest="queue_verb", required=True, metavar="ACTION")
    c = _sub(qs, "create", "create a queue")
    c.add_argument("name")
    c.add_argument("--visibility-timeout", type=float, default=30.0, metavar="S")
    c.add_argument("--retention", type=float, default=4 * 24 * 3600.0, metavar="S")
    c.add_argument("--max-receive-count", type=int, metavar="N")
    c.add_argument("--dead-letter", metavar="QUEUE")
    s = _sub(qs, "send", "send one message; prints its id")
    s.add_argument("name")
    s.add_argument("body")
    s.add_argument("--attr", action="append", default=[], metavar="K=V")
    s.add_argument("--delay", type=float, default=0.0, metavar="S")
    ls = _sub(qs, "ls", "queues with their message counts")
    ls.add_argument("--json", action="store_true")
    p = _sub(qs, "purge", "delete every message of a queue")
    p.add_argument("name")
    rm = _sub(qs, "rm", "delete a queue and its messages")
    rm.add_argument("name")
    r = _sub(qs, "receive", "read and delete messages (e.g. from a dead-letter queue)")
    r.add_argument("name")
    r.add_argument("--max", type=int, default=1, metavar="N")
    r.add_argument("--json", action="store_true")

    d = verb("destination", "async destinations and retry settings of a function")
    ds = d.add_subparsers(dest="destination_verb", required=True, metavar="ACTION")
    dset = _sub(ds, "set", "set (replace) a function's async settings")
    dset.add_argument("function")
    dset.add_argument("--on-success", metavar="fn:F|queue:Q")
    dset.add_argument("--on-failure", metavar="fn:F|queue:Q")
    dset.add_argument("--max-retries", type=int, metavar="N")
    dset.add_argument("--max-age", type=int, metavar="S")
    dshow = _sub(ds, "show", "a function's settings (or every function's)")
    dshow.add_argument("function", nargs="?")
    drm = _sub(ds, "rm", "remove a function's settings")
    drm.add_argument("function")


def _attr(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InvalidRequest(f"--attr wants K=V, got {item!r}")
    return key, value


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def run(client: Any, args: argparse.Namespace) -> int | None:
    """Run a queue/destination verb; None if ``args`` is another verb."""
    if args.verb == "queue":
        return _queue(client, args)
    if args.verb == "destination":
        return _destination(client, args)
    return None


def _queue(client: Any, args: argparse.Namespace) -> int:
    action = args.queue_verb
    if action == "create":
        settings: dict[str, Any] = {
            "visibility_timeout_s": args.visibility_timeout,
            "retention_s": args.retention,
        }
        if args.max_receive_count is not None or args.dead_letter is not None:
            settings["max_receive_count"] = args.max_receive_count
            settings["dead_letter"] = args.dead_letter
        queue = client.create_queue(args.name, **settings)
        print(queue["arn"])
    elif action == "send":
        attributes = dict(_attr(a) for a in args.attr)
        print(client.send_message(args.name, args.body, attributes, args.delay))
    elif action == "ls":
        queues = client.list_queues()
        if args.json:
            print(json.dumps(queues, indent=2))
        else:
            _table(
                [[q["name"], str(q["visible"]), str(q["in_flight"]), str(q["delayed"]),
                  f"{q['visibility_timeout_s']:g}", q["dead_letter"] or "-"] for q in queues],
                ["NAME", "VISIBLE", "IN-FLIGHT", "DELAYED", "VISIBILITY", "DEAD-LETTER"],
            )  # fmt: skip
    elif action == "purge":
        print(f"purged {client.purge_queue(args.name)} message(s)")
    elif action == "rm":
        client.delete_queue(args.name)
        print(f"deleted {args.name}")
    elif action == "receive":
        messages = client.receive_messages(args.name, args.max)
        for m in messages:
            m["body"] = bytes(m["body"]).decode("utf-8", "replace")
        if args.json:
            print(json.dumps(messages, indent=2))
        else:
            for m in messages:
                print(m["body"])
    return 0


def add_queue_kind(kinds: Any, socket_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """``trigger add queue NAME FUNCTION --queue Q ...``, a kind of the ``trigger`` verb."""
    aq = kinds.add_parser("queue", help="an event-source mapping from a queue")
    socket_option(aq)
    aq.add_argument("name")
    aq.add_argument("function", help="FUNCTION or FUNCTION:QUALIFIER")
    aq.add_argument("--queue", required=True, help="a queue name, or nats://HOST:PORT/STREAM")
    aq.add_argument("--batch-size", type=int, default=10, metavar="N")
    aq.add_argument("--window", type=float, default=0.0, metavar="S")
    aq.add_argument("--report-batch-item-failures", action="store_true")
    aq.add_argument("--max-concurrency", type=int, metavar="N")
    aq.add_argument("--disabled", action="store_true", help="create it disabled")
    aq.add_argument("--json", action="store_true")


def add_queue_trigger(client: Any, args: argparse.Namespace) -> int:
    mapping = client.create_mapping(
        args.name,
        args.function,
        args.queue,
        batch_size=args.batch_size,
        window_s=args.window,
        report_batch_item_failures=args.report_batch_item_failures,
        max_concurrency=args.max_concurrency,
        enabled=not args.disabled,
    )
    print(json.dumps(mapping, indent=2) if args.json else mapping["uuid"])
    return 0


def is_mapping(client: Any, name: str) -> bool:
    return any(name in (m["name"], m["uuid"]) for m in client.list_mappings())


def change_queue_trigger(client: Any, action: str, name: str) -> int:
    if action == "rm":
        client.delete_mapping(name)
        print(f"deleted {name}")
    else:
        client.update_mapping(name, enabled=action == "enable")
        print(f"{action}d {name}")
    return 0


def print_queue_triggers(mappings: list[dict[str, Any]]) -> None:
    if not mappings:
        return
    _table(
        [[m["name"], "queue", m["function"] + (f":{m['qualifier']}" if m["qualifier"]
          else ""), m["source"], m["state"], str(m["counters"]["succeeded"]),
          str(m["counters"]["failed"]), m["counters"]["last_error"] or "-"]
         for m in mappings],
        ["NAME", "KIND", "FUNCTION", "SOURCE", "STATE", "OK", "FAILED", "LAST-ERROR"],
    )  # fmt: skip


def _destination(client: Any, args: argparse.Namespace) -> int:
    action = args.destination_verb
    if action == "set":
        config = client.set_destination(
            args.function,
            on_success=args.on_success,
            on_failure=args.on_failure,
            max_retries=args.max_retries,
            max_age_s=args.max_age,
        )
        print(json.dumps(config, indent=2))
    elif action == "show":
        print(json.dumps(client.get_destination(args.function), indent=2))
    else:
        client.delete_destination(args.function)
        print(f"deleted the async settings of {args.function}")
    return 0
