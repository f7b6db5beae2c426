"""The ``lambdad`` command: ``serve`` runs the daemon; every other verb is a client.

Exit status: 0 success; 1 the function failed (its error JSON is on stdout); 2 a platform
refusal or bad usage (the message is on stderr); 3 the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambdad.service import Service

from lambdad import __version__, cli_buckets, cli_queues
from lambdad.errors import DaemonUnreachable, InvalidRequest, LambdadError
from lambdad.logs import LogEvent, render, time_ms

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
        "--api",
        metavar="HOST:PORT",
        help="also serve the Lambda HTTP API (SigV4; keys from `lambdad keys create`) here",
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
    d.add_argument("--template-sandboxes", action="store_true",
                   help="function templates (SnapStart): new sandboxes are forked from an "
                   "initialized one, skipping Init (python, network none)")  # fmt: skip
    d.add_argument("--log-format", default="Text", choices=["Text", "JSON"],
                   help="Lambda's LoggingConfig.LogFormat: the root logger's records")  # fmt: skip
    d.add_argument("--log-level", default="", metavar="LEVEL",
                   help="ApplicationLogLevel (TRACE..FATAL; needs --log-format JSON)")  # fmt: skip
    d.add_argument("--layer", action="append", default=[], metavar="NAME:VERSION",
                   help="a layer version merged at /opt, in order (later wins)")  # fmt: skip
    d.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOSTDIR:/mnt/NAME[:ro]",
        help="a host directory at /mnt/NAME, used as the directory's owner (admin only)",
    )

    i = verb("invoke", "invoke a function; result on stdout, REPORT on stderr")
    i.add_argument("name", help="NAME, or NAME:QUALIFIER (a version number, $LATEST or an alias)")
    i.add_argument("stdin", nargs="?", choices=["-"], help="read the payload from standard input")
    i.add_argument("--payload", help="JSON text, or @FILE")
    i.add_argument(
        "--async", dest="async_", action="store_true", help="queue it (Event invocation)"
    )
    i.add_argument("--dry-run", action="store_true", help="validate only")
    i.add_argument(
        "--log-tail", action="store_true", help="print the last 4 KB of its log on stderr"
    )

    pb = verb("publish", "publish $LATEST as a new numbered version")
    pb.add_argument("name")
    pb.add_argument("--description", default="")

    al = verb("alias", "create, change, list or remove a function's aliases")
    al_sub = al.add_subparsers(dest="alias_verb", required=True, metavar="ACTION")
    for action, text in (("create", "create an alias"), ("update", "change an alias")):
        ap = al_sub.add_parser(action, help=text, description=text)
        ap.add_argument("name")
        ap.add_argument("alias")
        if action == "create":
            ap.add_argument("version", help="a published version number or $LATEST")
        else:
            ap.add_argument("--version", help="a published version number or $LATEST")
        ap.add_argument(
            "--weight",
            metavar="VERSION=WEIGHT",
            help="route WEIGHT (0..1) of the invocations to VERSION; 'none' removes routing",
        )
        ap.add_argument("--description")
    ap = al_sub.add_parser("ls", help="list aliases")
    ap.add_argument("name")
    ap = al_sub.add_parser("rm", help="remove an alias")
    ap.add_argument("name")
    ap.add_argument("alias")

    ky = verb("keys", "API keys of the Lambda HTTP API (admin)")
    ky_sub = ky.add_subparsers(dest="keys_verb", required=True, metavar="ACTION")
    kc = ky_sub.add_parser(
        "create", help="make a key; prints its secret, once", description="make a key"
    )
    kc.add_argument("--admin", action="store_true", help="may change state, not just invoke")
    kc.add_argument("--name", help="a name for it (default: its id)")
    ky_sub.add_parser("ls", help="list keys (never their secrets)")
    kr = ky_sub.add_parser("rm", help="remove a key: requests signed with it fail from now on")
    kr.add_argument("key", help="access key id or name")

    verb("ls", "list functions")
    r = verb("rm", "delete a function")
    r.add_argument("name")
    lg = verb("logs", "print a function's log (the newest records; rotated files included)")
    lg.add_argument("name")
    lg.add_argument("-f", "--follow", action="store_true", help="then print new records")
    lg.add_argument("--since", help="from this time: a duration ago (10m, 2h, 1d) or ISO 8601")
    lg.add_argument("--until", help="up to this time: a duration ago or ISO 8601")
    lg.add_argument("--request-id", help="only this invocation's records")
    lg.add_argument(
        "--filter",
        help='CloudWatch-style pattern: terms (all must occur), "a phrase", -excluded, '
        "?any-of, %%regex%%",
    )
    lg.add_argument("--limit", type=int, help="at most N records, the newest (default 1000)")
    lg.add_argument("--json", action="store_true", help="one JSON object per record")
    st = verb("stats", "metrics, global or for one function")
    st.add_argument("name", nargs="?")
    st.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="per-minute history of the last DURATION (90s, 15m, 1h, 7d; kept across restarts)",
    )
    dl = verb("dlq", "list async events that failed every retry")
    dl.add_argument("name", nargs="?")
    rd = verb("redrive", "re-queue dead letters (all of a function's, or one event)")
    rd.add_argument("name", nargs="?")
    rd.add_argument("--event", help="one event id")
    _layer_parser(verb("layer", "publish, list and delete layers (shared code for /opt)"))
    _trigger_parser(verb("trigger", "HTTP routes, function URLs, schedules, queues, buckets"))
    cli_queues.add_parsers(verb)  # queue, destination
    cli_buckets.add_parsers(verb)  # bucket
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
    cli_queues.add_queue_kind(add, _socket_option)  # trigger add queue: an event-source mapping
    cli_buckets.add_s3_kind(add, _socket_option)  # trigger add s3: object events
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
    for action in (pub, ls, rm):
        _socket_option(action)


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
        args.config, socket_path=args.socket, state_dir=args.state_dir, strict=args.strict,
        api_address=args.api, gateway_address=args.gateway,
    )  # fmt: skip

    examples = args.examples

    def ready(daemon: Daemon) -> None:
        if examples:
            daemon.spawn_task(_deploy_examples(daemon.service, examples))

    loops.run(serve(cfg, ready))
    return 0


async def _deploy_examples(service: Service, directory: str) -> None:
    import asyncio

    from lambdad.buckets import examples as bucket_examples
    from lambdad.client import zip_code
    from lambdad.errors import InvalidParameterValue
    from lambdad.functions import check_host_support, validate

    layers = await _publish_example_layers(service, directory)
    # Examples naming a layer built by pip ({"pip": [...]} in its layer.json: seconds of
    # install) come last, and the layer is built when the first of them is reached: the
    # others do not wait for it.
    pip_layers = await _publish_example_layers(service, directory, pip=None)

    def uses_pip(name: str) -> bool:
        try:
            with open(os.path.join(directory, name, "function.json")) as f:
                return bool(set(json.load(f).get("layers", [])) & set(pip_layers))
        except (OSError, ValueError, AttributeError):
            return False

    for name in sorted(os.listdir(directory), key=lambda n: (uses_pip(n), n)):
        path = os.path.join(directory, name)
        # A Python example is an app.py; any other says its runtime and handler in
        # function.json ({"runtime": "nodejs20.x", "handler": "index.handler"}), and may
        # name example layers ({"layers": ["greeting"]}: its version published at start).
        settings: dict[str, Any] = {}
        if os.path.isfile(os.path.join(path, "function.json")):
            with open(os.path.join(path, "function.json")) as f:
                settings = json.load(f)
        elif not os.path.isfile(os.path.join(path, "app.py")):
            continue
        code = await asyncio.to_thread(zip_code, path)
        if set(settings.get("layers", [])) & set(pip_layers) - set(layers):
            layers.update(await _publish_example_layers(service, directory, pip=True))
        try:
            if "layers" in settings:
                settings["layers"] = [layers.get(ref, ref) for ref in settings["layers"]]
            # buckets.json: the example's buckets (made first: its bucket: mounts name them).
            settings = await bucket_examples.prepare(service, path, settings)
            config = validate({**settings, "name": name})
            check_host_support(config, egress_unavailable=None)
        except InvalidParameterValue as exc:
            print(f"lambdad: example {name!r} skipped: {exc}", file=sys.stderr)
            continue
        deployment = await service.deploy(config, code)
        state = "deployed" if deployment.created else "unchanged"
        print(
            f"lambdad: example {name!r} {state} (version {deployment.function.version})",
            file=sys.stderr,
        )
        for trigger in bucket_examples.bind(service, path, name):  # buckets.json's s3 triggers
            print(f"lambdad: example trigger {trigger!r} added", file=sys.stderr)


async def _publish_example_layers(
    service: Service, directory: str, pip: bool | None = False
) -> dict[str, str]:
    """Each ``DIR/*/layer.json`` ({"layer": NAME, ...}) with its files in ``content/``: a new
    version of layer NAME, unless its newest has the same zip. Returns NAME -> NAME:VERSION.
    ``pip``: False, the layers with files; True, those whose layer.json says ``"pip"``
    (installed now); None, only the names of the latter (NAME -> NAME), nothing published."""
    import asyncio
    import base64
    import hashlib

    from lambdad.client import zip_code
    from lambdad.layers import PublishRequest

    found: dict[str, str] = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not os.path.isfile(os.path.join(path, "layer.json")):
            continue
        with open(os.path.join(path, "layer.json")) as f:
            settings = json.load(f)
        name = str(settings["layer"])
        if ("pip" in settings) is not (pip is not False):
            continue
        if pip is None:
            found[name] = name
            continue
        content_dir = os.path.join(path, "content")
        if "pip" in settings:  # {"pip": ["pillow>=10"]}: installed from PyPI now, not committed
            content_dir = os.path.join(service.config.state_dir, "example-layers", entry)
            if not await _pip_layer(content_dir, settings["pip"]):
                continue
        content = await asyncio.to_thread(zip_code, content_dir)
        sha = base64.b64encode(hashlib.sha256(content).digest()).decode()
        versions = service.layers.list_versions(name)
        if versions and versions[0].code_sha256 == sha:
            version, state = versions[0], "unchanged"
        else:
            request = PublishRequest.make(
                name,
                content,
                description=settings.get("description", ""),
                compatible_runtimes=settings.get("compatible_runtimes", ()),
            )
            version, state = await service.layers.publish(request), "published"
        found[name] = f"{name}:{version.number}"
        print(f"lambdad: example layer {found[name]} {state}", file=sys.stderr)
    return found


async def _pip_layer(content_dir: str, requirements: list[str]) -> bool:
    """``pip install --target content_dir/python`` with the daemon's interpreter (the python3
    runtime's), once: a finished install leaves a marker. False (printed) if pip fails."""
    import asyncio

    marker = os.path.join(content_dir, ".installed")
    if os.path.isfile(marker):
        return True
    target = os.path.join(content_dir, "python")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", target, *requirements,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:  # the daemon is stopping: no pip left behind
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        print(f"lambdad: example layer skipped: pip install {' '.join(requirements)}: "
              f"{tail[0]}", file=sys.stderr)  # fmt: skip
        return False
    with open(marker, "w"):
        pass
    return True


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
                log_format=args.log_format,
                application_log_level=args.log_level,
                **({"mounts": args.mount} if args.mount else {}),
                **({"layers": args.layer} if args.layer else {}),
                **({"template": True} if args.template_sandboxes else {}),
            )
            print(json.dumps(fn, indent=2, sort_keys=True))
            return 0
        if args.verb == "invoke":
            return _invoke(client, args)
        if args.verb == "ls":
            _print_table(client.list())
            return 0
        if args.verb == "publish":
            published = client.call("publish", name=args.name, description=args.description)
            print(json.dumps(published))
            return 0
        if args.verb == "alias":
            return _alias(client, args)
        if args.verb == "keys":
            return _keys(client, args)
        if args.verb == "rm":
            client.delete(args.name)
            print(f"deleted {args.name}")
            return 0
        if args.verb == "logs":
            return _logs(client, args)
        if args.verb == "stats":
            if args.since is not None:
                history = client.stats_since(args.since, args.name)
                print(json.dumps(history, indent=2, sort_keys=True))
                return 0
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
        if args.verb == "trigger":
            return _trigger(client, args)
        done = cli_queues.run(client, args)
        if done is not None:
            return done
        done = cli_buckets.run(client, args)
        if done is not None:
            return done
    raise AssertionError(args.verb)


def _alias(client: Any, args: argparse.Namespace) -> int:
    if args.alias_verb == "ls":
        print(json.dumps(client.call("aliases", name=args.name)["aliases"], indent=2))
        return 0
    if args.alias_verb == "rm":
        client.call("alias_delete", name=args.name, alias=args.alias)
        print(f"deleted alias {args.alias} of {args.name}")
        return 0
    call: dict[str, Any] = {"name": args.name, "alias": args.alias}
    if args.version is not None:
        call["version"] = args.version
    if args.description is not None:
        call["description"] = args.description
    if args.weight is not None:
        call["weights"] = _parse_weight(args.weight)
    op = "alias_create" if args.alias_verb == "create" else "alias_update"
    print(json.dumps(client.call(op, **call)["alias"], indent=2, sort_keys=True))
    return 0


def _parse_weight(item: str) -> dict[str, float]:
    if item == "none":
        return {}
    version, sep, weight = item.partition("=")
    try:
        if not sep:
            raise ValueError
        return {version: float(weight)}
    except ValueError:
        raise InvalidRequest(f"--weight wants VERSION=WEIGHT (or none), got {item!r}") from None


def _keys(client: Any, args: argparse.Namespace) -> int:
    if args.keys_verb == "create":
        call: dict[str, Any] = {"admin": args.admin}
        if args.name is not None:
            call["key_name"] = args.name
        print(json.dumps(client.call("keys_create", **call)["key"], indent=2))
        return 0
    if args.keys_verb == "ls":
        print(json.dumps(client.call("keys_list")["keys"], indent=2))
        return 0
    removed = client.call("keys_remove", key=args.key)["removed"]
    print(f"removed key {removed['AccessKeyId']} ({removed['Name']})")
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` → seconds (for ``stats --since``)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a positive number with s, m, h or d (15m, 1h)"
        )
    return value


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
    name, _, qualifier = args.name.partition(":")
    inv = client.invoke(
        name, _payload(args), type=kind, log_tail=args.log_tail, qualifier=qualifier or None
    )
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


def _logs(client: Any, args: argparse.Namespace) -> int:
    for value in (args.since, args.until):
        try:
            if value is not None:
                time_ms(value)  # checked here for a clear message; the client converts
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    query = {
        "since": args.since,
        "until": args.until,
        "request_id": args.request_id,
        "filter": args.filter,
        "limit": args.limit,
    }
    page = client.log_events(args.name, **query)
    _print_records(page.events, args.json)
    if page.truncated and not args.json:
        print(
            f"lambdad: more records matched; showing the newest {len(page.events)} "
            "(narrow with --since/--until/--filter, or raise --limit)",
            file=sys.stderr,
        )
    cursor = page.cursor
    follow = {k: v for k, v in query.items() if k in ("request_id", "filter")}
    while args.follow:
        time.sleep(0.3)
        page = client.log_events(args.name, cursor, **follow)
        cursor = page.cursor
        _print_records(page.events, args.json)
    return 0


def _print_records(events: list[LogEvent], as_json: bool) -> None:
    if as_json:
        for e in events:
            line = {
                "timestamp": datetime.datetime.fromtimestamp(e.timestamp / 1000, datetime.UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "source": e.source,
                "stream": e.stream,
                "request_id": e.request_id,
                "message": e.message.decode("utf-8", "replace"),
            }
            sys.stdout.write(json.dumps(line) + "\n")  # ASCII: control characters escaped
    else:
        sys.stdout.write(render(events))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())


def _trigger(client: Any, args: argparse.Namespace) -> int:
    """``trigger`` covers the trigger model (http, url, schedule) and queue event-source
    mappings (kind ``queue``): ``ls`` lists both; ``rm``/``enable``/``disable`` find NAME in
    either (a mapping's name is also accepted as its UUID)."""
    if args.action == "add" and args.kind == "queue":
        return cli_queues.add_queue_trigger(client, args)
    if args.action == "add" and args.kind == "s3":
        return cli_buckets.add_s3_trigger(client, args)
    if args.action in ("rm", "enable", "disable") and cli_queues.is_mapping(client, args.name):
        return cli_queues.change_queue_trigger(client, args.action, args.name)
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
        mappings = client.list_mappings(args.function)
        if args.json:
            listed = [*triggers, *({**m, "kind": "queue"} for m in mappings)]
            print(json.dumps(listed, indent=2, sort_keys=True))
            return 0
        for t in triggers:
            s = t["settings"]
            what = {
                "http": s.get("route"),
                "url": t.get("url") or s.get("auth_type"),
                "schedule": s.get("expression"),
                "s3": cli_buckets.describe_s3(t) if t["kind"] == "s3" else None,
            }[t["kind"]]
            target = t["function"] + (f":{t['qualifier']}" if t["qualifier"] else "")
            c = t["counters"]
            state = "enabled" if t["enabled"] else f"disabled ({t['disabled_reason']})"
            print(
                f"{t['name']:<20} {t['kind']:<8} {target:<20} {what:<28} {state}  "
                f"received={c['received']} invoked={c['invoked']} failed={c['failed']}"
            )
        cli_queues.print_queue_triggers(mappings)
        return 0
    if args.action == "rm":
        client.trigger_delete(args.name)
        print(f"removed trigger {args.name}")
        return 0
    switch = client.trigger_enable if args.action == "enable" else client.trigger_disable
    trigger = switch(args.name)
    print(f"trigger {args.name} {'enabled' if trigger['enabled'] else 'disabled'}")
    return 0
