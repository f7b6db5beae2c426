"""The command line's ``bucket`` verb and the ``s3`` kind of ``trigger`` (issue 16's fixed forms):

    lambdad bucket create NAME [--path DIR] ; lambdad bucket ls [--json] ; lambdad bucket rm NAME
    lambdad trigger add s3 NAME FUNCTION --bucket B [--events 's3:ObjectCreated:*']...
            [--prefix P] [--suffix S]
    lambdad trigger add s3 NAME FUNCTION --push [--secret S]   (MinIO / Ceph RGW notifications)

A client of the socket like every other verb; it never imports the core.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

Verb = Callable[[str, str], argparse.ArgumentParser]


def add_parsers(verb: Verb) -> None:
    b = verb("bucket", "buckets: directories whose object events trigger functions")
    bs = b.add_subparsers(dest="bucket_verb", required=True, metavar="ACTION")
    c = bs.add_parser("create", help="create a bucket (a directory)")
    c.add_argument("name")
    c.add_argument(
        "--path", metavar="DIR", help="an existing directory (default: one in the state directory)"
    )
    ls = bs.add_parser("ls", help="buckets, their directories and watch states")
    ls.add_argument("--json", action="store_true")
    rm = bs.add_parser("rm", help="remove a bucket (its own directory only when empty)")
    rm.add_argument("name")
    for sp in (c, ls, rm):
        sp.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's socket")


def add_s3_kind(kinds: Any, socket_option: Callable[[argparse.ArgumentParser], None]) -> None:
    s3 = kinds.add_parser("s3", help="object events of a bucket (S3 event records)")
    socket_option(s3)
    s3.add_argument("name")
    s3.add_argument("function", help="FUNCTION or FUNCTION:QUALIFIER")
    s3.add_argument("--bucket", help="the lambdad bucket whose objects fire it")
    s3.add_argument("--events", action="append", default=None, metavar="TYPE",
                    help="s3:ObjectCreated:* (default), s3:ObjectCreated:Put, "
                         "s3:ObjectRemoved:*, s3:ObjectRemoved:Delete")  # fmt: skip
    s3.add_argument("--prefix", help="only keys starting with this")
    s3.add_argument("--suffix", help="only keys ending with this")
    s3.add_argument("--push", action="store_true",
                    help="take notifications that MinIO / Ceph RGW POST")  # fmt: skip
    s3.add_argument("--secret", help="the push secret (default: generated, printed)")
    s3.add_argument("--json", action="store_true", help="print the trigger as JSON")


def add_s3_trigger(client: Any, args: argparse.Namespace) -> int:
    function, _, qualifier = args.function.partition(":")
    settings = {
        "bucket": args.bucket,
        "events": args.events,
        "prefix": args.prefix,
        "suffix": args.suffix,
        "push": args.push or None,
        "secret": args.secret,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    trigger = client.trigger_add("s3", args.name, function, qualifier or None, **settings)
    if args.json:
        print(json.dumps(trigger, indent=2, sort_keys=True))
    elif args.push:
        endpoint = trigger.get("endpoint") or "(no gateway: start the daemon with --gateway)"
        print(f"endpoint {endpoint}")
        print(f"secret {trigger['settings']['secret']}")
    else:
        print(f"added s3 trigger {args.name} -> {trigger['function']} (bucket {args.bucket})")
    return 0


def describe_s3(trigger: dict[str, Any]) -> str:
    """The ``trigger ls`` column of an s3 trigger."""
    s = trigger["settings"]
    if s.get("push"):
        return str(trigger.get("endpoint") or "push")
    return f"{s['bucket']}/{s['prefix']}*{s['suffix']}"


def run(client: Any, args: argparse.Namespace) -> int | None:
    if args.verb != "bucket":
        return None
    if args.bucket_verb == "create":
        bucket = client.create_bucket(args.name, args.path)
        print(f"created bucket {bucket['name']} at {bucket['path']}")
        return 0
    if args.bucket_verb == "rm":
        client.delete_bucket(args.name)
        print(f"removed bucket {args.name}")
        return 0
    buckets = client.list_buckets()
    if args.json:
        print(json.dumps(buckets, indent=2, sort_keys=True))
        return 0
    for b in buckets:
        triggers = ",".join(b["triggers"]) or "-"
        state = b["state"] + (f" ({b['reason']})" if b.get("reason") else "")
        print(f"{b['name']:<24} {b['path']:<40} {state:<10} triggers={triggers}")
    return 0
