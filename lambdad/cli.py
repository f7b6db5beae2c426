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

from lambdad import __version__, cli_queues
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

    d = verb("deploy", "deploy or update a function")
    d.add_argument("name")
    d.add_argument("--code", required=True, help="a directory or a zip file")
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
    _layer_parser(verb("layer", "publish, list and delete layers (shared code for /opt)"))
    cli_queues.add_parsers(verb)  # queue, trigger (queue mappings), destination
    return p


def _layer_parser(la: argparse.ArgumentParser) -> None:
    sub = la.add_subparsers(dest="layer_verb", required=True, metavar="ACTION")
    pub = sub.add_parser("publish", help="publish the next version of a layer; prints its number")
    pub.add_argument("name")
    pub.add_argument("--code", required=True, help="a directory or a zip file")
    pub.add_argument(
        "--compatible-runtime", action="append", default=[], metavar="R", dest="runtimes"
    )
    pub.add_argument(
        "--compatible-architecture",
        action="append",
        default=[],
        choices=["x86_64", "arm64"],
        dest="architectures",
    )
    pub.add_argument("--description", default="")
    pub.add_argument("--license-info", default="")
    ls = sub.add_parser("ls", help="every layer's newest version, or every version of NAME")
    ls.add_argument("name", nargs="?")
    rm = sub.add_parser("rm", help="delete a layer version (functions using it keep it)")
    rm.add_argument("ref", metavar="NAME:VERSION")


def _layer_verb(client: Any, args: argparse.Namespace) -> int:
    if args.layer_verb == "publish":
        layer = client.publish_layer(
            args.name,
            args.code,
            compatible_runtimes=args.runtimes,
            compatible_architectures=args.architectures,
            description=args.description,
            license_info=args.license_info,
        )
        print(layer["version"])
        print(f"published {layer['arn']}", file=sys.stderr)
        return 0
    if args.layer_verb == "ls":
        layers = client.list_layers(args.name)
        cols = ("name", "version", "compatible_runtimes", "unzipped_size", "created",
                "description")  # fmt: skip
        header = ["NAME", "VERSION", "RUNTIMES", "UNZIPPED", "CREATED", "DESCRIPTION"]
        rows = [
            [",".join(v) if isinstance(v, list) else str(v) for v in (la[c] for c in cols)]
            for la in layers
        ]
        rows = [[cell or "-" for cell in row] for row in rows]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(cols))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return 0
    name, sep, number = args.ref.rpartition(":")
    if not sep or not name or not number.isdigit():
        raise InvalidRequest(f"layer rm wants NAME:VERSION, got {args.ref!r}")
    client.delete_layer(name, int(number))
    print(f"deleted {name}:{number}")
    return 0


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
        args.config, socket_path=args.socket, state_dir=args.state_dir, strict=args.strict
    )

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
        if args.verb == "deploy":
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
        if args.verb == "layer":
            return _layer_verb(client, args)
        done = cli_queues.run(client, args)
        if done is not None:
            return done
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
