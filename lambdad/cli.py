"""The ``lambdad`` command: ``serve`` runs the daemon; every other verb is a client.

Exit status: 0 success; 1 the function failed (its error JSON is on stdout); 2 a platform
refusal or bad usage (the message is on stderr); 3 the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambdad.service import Service

from lambdad import __version__
from lambdad.errors import DaemonUnreachable, InvalidRequest, LambdadError

EXIT_FUNCTION_ERROR = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lambdad", description="Lambda's execution model on your own Linux host."
    )
    p.add_argument("--version", action="version", version=f"lambdad {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument(
            "--socket", help="the daemon's socket (default: $LAMBDAD_SOCKET or the standard path)"
        )
        return sp

    s = verb("serve", "run the daemon in the foreground")
    s.add_argument(
        "--state-dir",
        help="registry, code, logs and events (default: $LAMBDAD_STATE_DIR or the standard path)",
    )
    s.add_argument("--config", help="TOML configuration file")
    s.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="refuse to start if any isolation mechanism is unavailable",
    )
    s.add_argument(
        "--examples", metavar="DIR", help="deploy every subdirectory of DIR as a function at start"
    )
    s.add_argument("--gateway", metavar="HOST:PORT", help="serve the HTTP gateway (triggers)")

    d = verb("deploy", "deploy or update a function, or an AWS SAM template")
    d.add_argument("name", nargs="?")
    d.add_argument("--code", help="a directory or a zip file")
    d.add_argument("--template", help="an AWS SAM template.yaml (docs/triggers-http.md)")
    d.add_argument("--param", action="append", default=[], metavar="K=V", help="template parameter")
    d.add_argument("--prune", action="store_true", help="remove what the template no longer has")
    d.add_argument("--stack", help="the template's stack name (default: its directory's name)")
    d.add_argument("--handler", default="app.handler")
    d.add_argument("--runtime", default="python3")
    d.add_argument("--memory", type=int, default=128, help="MB (64-10240)")
    d.add_argument("--timeout", type=float, default=3.0, help="seconds (up to 900)")
    d.add_argument("--env", action="append", default=[], metavar="K=V")
    d.add_argument("--concurrency", type=int, default=None, help="reserved concurrency")
    d.add_argument("--network", default="none", choices=["none", "egress"])
    d.add_argument("--min-warm", type=int, default=0, help="provisioned concurrency")
    d.add_argument("--tmp", type=int, default=512, help="MB of /tmp")

    i = verb("invoke", "invoke a function; result on stdout, REPORT on stderr")
    i.add_argument("name")
    i.add_argument("stdin", nargs="?", choices=["-"], help="read the payload from standard input")
    i.add_argument("--payload", help="JSON text, or @FILE")
    i.add_argument(
        "--async", dest="async_", action="store_true", help="queue it (Event invocation)"
    )
    i.add_argument("--dry-run", action="store_true", help="validate only")
    i.add_argument(
        "--log-tail", action="store_true", help="print the last 4 KB of its log on stderr"
    )

    verb("ls", "list functions")
    r = verb("rm", "delete a function")
    r.add_argument("name")
    lg = verb("logs", "print a function's log")
    lg.add_argument("name")
    lg.add_argument("-f", "--follow", action="store_true")
    st = verb("stats", "metrics, global or for one function")
    st.add_argument("name", nargs="?")
    dl = verb("dlq", "list async events that failed every retry")
    dl.add_argument("name", nargs="?")
    rd = verb("redrive", "re-queue dead letters (all of a function's, or one event)")
    rd.add_argument("name", nargs="?")
    rd.add_argument("--event", help="one event id")
    _trigger_parser(verb("trigger", "HTTP routes, function URLs and schedules"))
    return p


def _trigger_parser(t: argparse.ArgumentParser) -> None:
    sub = t.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a trigger").add_subparsers(
        dest="kind", required=True, metavar="KIND"
    )
    kinds = {
        "http": add.add_parser("http", help="an HTTP API route on the gateway"),
        "url": add.add_parser("url", help="a function URL (prints it)"),
        "schedule": add.add_parser("schedule", help="an EventBridge schedule"),
    }
    for kp in kinds.values():
        _socket_option(kp)
        kp.add_argument("name")
        kp.add_argument("function", help="FUNCTION or FUNCTION:QUALIFIER")
        kp.add_argument("--json", action="store_true", help="print the trigger as JSON")
    h = kinds["http"]
    h.add_argument("--route", required=True, help="'GET /items/{id}', 'ANY /{proxy+}', '$default'")
    h.add_argument("--payload-format", choices=["2.0", "1.0"])
    h.add_argument("--api", choices=["http", "rest"], help="HTTP API (default) or REST API")
    for kp in (h, kinds["url"]):
        kp.add_argument("--cors-origin", action="append", default=[], metavar="O")
        kp.add_argument("--cors-method", action="append", default=[], metavar="M")
        kp.add_argument("--cors-header", action="append", default=[], metavar="H")
    kinds["url"].add_argument("--auth", choices=["NONE", "AWS_IAM"], default="NONE")
    sch = kinds["schedule"]
    sch.add_argument("--expression", required=True, help="rate(...), cron(...) or at(...)")
    sch.add_argument("--timezone")
    sch.add_argument("--input", help="constant JSON input instead of the Scheduled Event")
    sch.add_argument("--catch-up", choices=["none", "last", "all"])
    sch.add_argument("--overlap", choices=["allow", "skip"])
    ls = sub.add_parser("ls", help="list triggers with their counters")
    _socket_option(ls)
    ls.add_argument("--function")
    ls.add_argument("--json", action="store_true")
    for action in ("rm", "enable", "disable"):
        ap = sub.add_parser(action, help=f"{action} a trigger")
        _socket_option(ap)
        ap.add_argument("name")


def _socket_option(sp: argparse.ArgumentParser) -> None:
    """``--socket`` after the nested sub-commands too (SUPPRESS: an absent one does not
    override the verb's)."""
    sp.add_argument("--socket", default=argparse.SUPPRESS, help="the daemon's socket")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.verb == "serve":
            return _serve(args)
        return _client_verb(args)
    except DaemonUnreachable as exc:
        print(f"lambdad: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LambdadError as exc:
        extra = {k: v for k, v in exc.details.items()}
        print(
            f"lambdad: {exc.type}: {exc.message}" + (f" {extra}" if extra else ""), file=sys.stderr
        )
        return EXIT_REFUSED
    except KeyboardInterrupt:  # Ctrl-C before the daemon's own signal handling is in place
        print("lambdad: interrupted", file=sys.stderr)
        return 130


def _serve(args: argparse.Namespace) -> int:
    # A Ctrl-C or SIGTERM while the daemon is still importing and setting up stays pending
    # until serve() has its own handlers (then it drains like any other): never a traceback
    # from the middle of an import. Unblocked before any zygote is started.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from lambdad import config, loops
    from lambdad.daemon import Daemon, serve

    if args.config:
        os.environ["LAMBDAD_CONFIG_FILE"] = os.path.abspath(args.config)
    cfg = config.load(
        args.config, socket_path=args.socket, state_dir=args.state_dir, strict=args.strict,
        gateway_address=args.gateway,
    )  # fmt: skip

    examples = args.examples

    def ready(daemon: Daemon) -> None:
        if examples:
            daemon.spawn_task(_deploy_examples(daemon.service, examples))

    loops.run(serve(cfg, ready))
    return 0


async def _deploy_examples(service: Service, directory: str) -> None:
    import asyncio

    from lambdad.client import zip_code
    from lambdad.functions import validate

    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(os.path.join(path, "app.py")):
            continue
        code = await asyncio.to_thread(zip_code, path)
        deployment = await service.deploy(validate({"name": name}), code)
        state = "deployed" if deployment.created else "unchanged"
        print(
            f"lambdad: example {name!r} {state} (version {deployment.function.version})",
            file=sys.stderr,
        )


def _client_verb(args: argparse.Namespace) -> int:
    from lambdad.client import Client

    with Client(args.socket) as client:
        if args.verb == "deploy" and args.template:
            from lambdad.triggers import sam

            params = dict(_parse_env(item) for item in args.param)
            for line in sam.apply(client, sam.plan(args.template, params, args.stack), args.prune):
                print(line)
            return 0
        if args.verb == "deploy":
            if not args.name or not args.code:
                raise InvalidRequest("deploy needs NAME and --code (or --template FILE)")
            env = dict(_parse_env(item) for item in args.env)
            fn = client.deploy(
                args.name,
                args.code,
                handler=args.handler,
                runtime=args.runtime,
                memory_mb=args.memory,
                timeout_s=args.timeout,
                env=env,
                concurrency=args.concurrency,
                network=args.network,
                min_warm=args.min_warm,
                tmp_mb=args.tmp,
            )
            print(json.dumps(fn, indent=2, sort_keys=True))
            return 0
        if args.verb == "invoke":
            return _invoke(client, args)
        if args.verb == "ls":
            _print_table(client.list())
            return 0
        if args.verb == "rm":
            client.delete(args.name)
            print(f"deleted {args.name}")
            return 0
        if args.verb == "logs":
            return _logs(client, args.name, args.follow)
        if args.verb == "stats":
            print(json.dumps(client.stats(args.name), indent=2, sort_keys=True))
            return 0
        if args.verb == "dlq":
            print(json.dumps(client.dead_letters(args.name), indent=2))
            return 0
        if args.verb == "redrive":
            if not args.name and not args.event:
                raise InvalidRequest("redrive needs a function name or --event ID")
            print(f"re-queued {client.redrive(args.name, args.event)} event(s)")
            return 0
        if args.verb == "trigger":
            return _trigger(client, args)
    raise AssertionError(args.verb)


def _parse_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InvalidRequest(f"--env wants K=V, got {item!r}")
    return key, value


def _payload(args: argparse.Namespace) -> bytes:
    if args.stdin == "-":
        raw = sys.stdin.buffer.read()
    elif args.payload is None:
        raw = b"{}"
    elif args.payload.startswith("@"):
        with open(args.payload[1:], "rb") as f:
            raw = f.read()
    else:
        raw = args.payload.encode()
    try:
        json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"the payload is not valid JSON: {exc}") from None
    return raw


def _invoke(client: Any, args: argparse.Namespace) -> int:
    kind = "async" if args.async_ else "dryrun" if args.dry_run else "sync"
    inv = client.invoke(args.name, _payload(args), type=kind, log_tail=args.log_tail)
    if kind != "sync":
        print(json.dumps({"status": inv.status, "event_id": inv.event_id}))
        return 0
    if inv.log_tail:
        sys.stderr.write(inv.log_tail)
    elif inv.report is not None:
        print(inv.report.line(), file=sys.stderr)
    if inv.error is not None:
        print(json.dumps(inv.error))
        return EXIT_FUNCTION_ERROR
    sys.stdout.write((inv.raw_result or b"null").decode() + "\n")
    return 0


def _print_table(functions: list[dict[str, Any]]) -> None:
    cols = ("name", "version", "runtime", "memory_mb", "timeout_s", "handler", "concurrency")
    rows = [[str(fn.get(c) if fn.get(c) is not None else "-") for c in cols] for fn in functions]
    header = ["NAME", "VERSION", "RUNTIME", "MEMORY", "TIMEOUT", "HANDLER", "CONCURRENCY"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(cols))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _logs(client: Any, name: str, follow: bool) -> int:
    text, cursor = client.logs(name)
    sys.stdout.write(text)
    sys.stdout.flush()
    while follow:
        time.sleep(0.3)
        text, cursor = client.logs(name, cursor)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _trigger(client: Any, args: argparse.Namespace) -> int:
    if args.action == "add":
        function, _, qualifier = args.function.partition(":")
        settings: dict[str, Any] = {}
        if args.kind == "http":
            settings = {"route": args.route, "payload_format": args.payload_format,
                        "api": args.api}  # fmt: skip
        elif args.kind == "schedule":
            settings = {
                "expression": args.expression,
                "timezone": args.timezone,
                "input": args.input,
                "catch_up": args.catch_up,
                "overlap": args.overlap,
            }
        else:
            settings = {"auth_type": args.auth}
        if args.kind in ("http", "url") and (args.cors_origin or args.cors_method or
                                              args.cors_header):  # fmt: skip
            settings["cors"] = {"allow_origins": args.cors_origin,
                                "allow_methods": args.cors_method,
                                "allow_headers": args.cors_header}  # fmt: skip
        settings = {k: v for k, v in settings.items() if v is not None}
        trigger = client.trigger_add(args.kind, args.name, function, qualifier or None, **settings)
        if args.json:
            print(json.dumps(trigger, indent=2, sort_keys=True))
        elif args.kind == "url":
            print(trigger.get("url") or "(no gateway: start the daemon with --gateway)")
        else:
            print(f"added {args.kind} trigger {args.name} -> {trigger['function']}")
        return 0
    if args.action == "ls":
        triggers = client.trigger_list(args.function)
        if args.json:
            print(json.dumps(triggers, indent=2, sort_keys=True))
            return 0
        for t in triggers:
            s = t["settings"]
            what = {
                "http": s.get("route"),
                "url": t.get("url") or s.get("auth_type"),
                "schedule": s.get("expression"),
            }[t["kind"]]
            target = t["function"] + (f":{t['qualifier']}" if t["qualifier"] else "")
            c = t["counters"]
            state = "enabled" if t["enabled"] else f"disabled ({t['disabled_reason']})"
            print(
                f"{t['name']:<20} {t['kind']:<8} {target:<20} {what:<28} {state}  "
                f"received={c['received']} invoked={c['invoked']} failed={c['failed']}"
            )
        return 0
    if args.action == "rm":
        client.trigger_delete(args.name)
        print(f"removed trigger {args.name}")
        return 0
    switch = client.trigger_enable if args.action == "enable" else client.trigger_disable
    trigger = switch(args.name)
    print(f"trigger {args.name} {'enabled' if trigger['enabled'] else 'disabled'}")
    return 0
