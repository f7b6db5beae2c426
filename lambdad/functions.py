"""Functions: the deployable unit, its validation and its versions.

A :class:`FunctionConfig` is what a deploy asks for; a :class:`Version` is an immutable,
content-addressed snapshot (code + configuration) of it. ``$LATEST`` is the newest version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from lambdad.errors import InvalidParameterValue
from lambdad.hostbudget import MAX_PIDS_PER_SANDBOX
from sandbox import runtimes

NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HANDLER_RE: Final = re.compile(
    r"^(?:[A-Za-z_][A-Za-z0-9_]*/)*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    r"\.[A-Za-z_][A-Za-z0-9_]*$"
)
ENV_KEY_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MOUNT_TARGET_RE: Final = re.compile(r"^/mnt/(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$")
MAX_MOUNTS: Final = 5
RUNTIMES: Final = runtimes.function_names()  # the one registry: sandbox.runtimes.RUNTIMES
NETWORK_MODES: Final = ("none", "egress")
LOG_FORMATS: Final = ("Text", "JSON")
APPLICATION_LOG_LEVELS: Final = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARN")
MEMORY_RANGE: Final = (64, 10240)
TIMEOUT_MAX: Final = 900.0
TMP_RANGE: Final = (16, 10240)
ENV_MAX_BYTES: Final = 4096
ARCHITECTURES: Final = ("x86_64", "arm64")  # Lambda's spellings; stored, not emulated
MAX_LAYERS: Final = 5
LAYER_ARN_RE: Final = re.compile(
    r"^arn:[a-zA-Z0-9-]+:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]{1,140}:[0-9]{1,10}$"
)
# The command line's short form, NAME:VERSION; the service turns it into the version's ARN.
LAYER_REF_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,140}:[0-9]{1,10}$")
# Lambda's limit for a function's code and all its layers together, unzipped (262,144,000).
MAX_UNZIPPED_WITH_LAYERS: Final = 250 * 1024 * 1024
# Lambda refuses to let a function override these; so do we.
RESERVED_ENV: Final = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


@dataclass(frozen=True)
class FunctionConfig:
    """Everything a deploy sets besides the code. Defaults are Lambda's."""

    name: str
    handler: str = "app.handler"  # module.func, the module relative to the code root
    runtime: str = "python3"  # which zygote serves it
    memory_mb: int = 128  # memory limit (64-10240); CPU share is proportional
    timeout_s: float = 3.0  # wall-clock limit per invocation (up to 900)
    env: Mapping[str, str] = field(default_factory=dict)  # variables, 4 KB total
    concurrency: int | None = None  # reserved concurrency; None = share the global pool
    network: str = "none"  # "none": loopback only; "egress": outbound through NAT
    tmp_mb: int = 512  # size of the private /tmp
    min_warm: int = 0  # provisioned concurrency: sandboxes kept initialized
    pids_max: int = 64  # processes/threads in the sandbox
    # Shown by the Lambda API, not acted on by the core (docs/lambda-api.md says which):
    description: str = ""  # CreateFunction's Description
    role: str = ""  # the execution role's ARN: stored and shown, never assumed
    architectures: tuple[str, ...] = ("x86_64",)  # stored and shown; the host's own CPU runs it
    layers: tuple[str, ...] = ()  # layer version ARNs, in order, merged at /opt (later wins)
    lambda_runtime: str = ""  # Runtime as the API caller spelled it ("python3.11"); "" = runtime
    # Lambda's LoggingConfig: LogFormat, ApplicationLogLevel, SystemLogLevel (levels: JSON only)
    log_format: str = "Text"  # "Text" | "JSON": the python runtime's root-logger format
    application_log_level: str = ""  # "" | TRACE | DEBUG | INFO | WARN | ERROR | FATAL
    system_log_level: str = ""  # "" | DEBUG | INFO | WARN (accepted and stored)
    # host directories at /mnt/NAME (Lambda's EFS): source, target, read_only, uid/gid = the
    # POSIX owner the sandbox acts as on them (the directory's owner at deploy)
    mounts: tuple[Mapping[str, Any], ...] = ()
    # Function templates (SnapStart): after the first Init of a version, new sandboxes are
    # copies forked from an initialized template (sandbox/template.py). Python runtimes only.
    template: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["env"] = dict(self.env)
        d["architectures"] = list(self.architectures)
        d["layers"] = list(self.layers)
        d["mounts"] = [dict(m) for m in self.mounts]
        return d


def _int(args: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParameterValue(
            f"{key} must be an integer between {lo} and {hi}, got {value!r}", field=key
        )
    return value


def validate(args: Mapping[str, Any]) -> FunctionConfig:
    """Build a :class:`FunctionConfig` from request arguments, naming the first bad field.

    Raises:
        InvalidParameterValue: with ``field`` set to the offending argument.
    """
    name = args.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidParameterValue(
            f"name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}", field="name"
        )
    handler = args.get("handler", "app.handler")
    if not isinstance(handler, str) or not HANDLER_RE.fullmatch(handler) or len(handler) > 128:
        raise InvalidParameterValue(
            f"handler must look like 'module.function', got {handler!r}", field="handler"
        )
    runtime = args.get("runtime", "python3")
    if runtime not in RUNTIMES:
        raise InvalidParameterValue(
            f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}", field="runtime"
        )
    memory_mb = _int(args, "memory_mb", 128, *MEMORY_RANGE)
    timeout = args.get("timeout_s", 3.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= TIMEOUT_MAX
    ):
        raise InvalidParameterValue(
            f"timeout_s must be a number in (0, {TIMEOUT_MAX:g}], got {timeout!r}",
            field="timeout_s",
        )
    env = args.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise InvalidParameterValue("env must map strings to strings", field="env")
    for key in env:
        if not ENV_KEY_RE.fullmatch(key):
            raise InvalidParameterValue(f"env key {key!r} is not a valid name", field="env")
        if key in RESERVED_ENV:
            raise InvalidParameterValue(f"env key {key!r} is reserved", field="env")
        if "\0" in env[key]:  # execve() could not pass it
            raise InvalidParameterValue(f"env value of {key!r} contains a NUL", field="env")
    # Lambda's 4 KB counts bytes, not characters.
    env_bytes = sum(len(f"{k}{v}".encode("utf-8", "surrogatepass")) for k, v in env.items())
    if env_bytes > ENV_MAX_BYTES:
        raise InvalidParameterValue(
            f"env is larger than {ENV_MAX_BYTES} bytes in total", field="env"
        )
    concurrency = args.get("concurrency")
    if concurrency is not None:
        concurrency = _int(args, "concurrency", 0, 0, 100_000)
    network = args.get("network", "none")
    if network not in NETWORK_MODES:
        raise InvalidParameterValue(
            f"network must be 'none' or 'egress', got {network!r}", field="network"
        )
    tmp_mb = _int(args, "tmp_mb", 512, *TMP_RANGE)
    min_warm = _int(args, "min_warm", 0, 0, 1000)
    # At most Lambda's quota of tasks per execution environment: a sandbox's pids_max is booked
    # against a share of the host's pid_max (lambdad/hostbudget.py).
    pids_max = _int(args, "pids_max", 64, 8, MAX_PIDS_PER_SANDBOX)
    texts = {}
    for key, limit in (("description", 256), ("role", 2048), ("lambda_runtime", 64)):
        value = args.get(key, "")
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidParameterValue(
                f"{key} must be a string of at most {limit} characters", field=key
            )
        texts[key] = value
    architectures = tuple(args.get("architectures") or ("x86_64",))
    if len(architectures) != 1 or architectures[0] not in ARCHITECTURES:
        raise InvalidParameterValue(
            f"architectures must be one of {', '.join(ARCHITECTURES)}, got {list(architectures)!r}",
            field="architectures",
        )
    layers = args.get("layers") or ()
    if not isinstance(layers, list | tuple):
        raise InvalidParameterValue("layers must be a list of layer version ARNs", field="layers")
    for arn in layers:
        if not isinstance(arn, str) or not (
            LAYER_ARN_RE.fullmatch(arn) or LAYER_REF_RE.fullmatch(arn)
        ):
            raise InvalidParameterValue(
                f"layers must be layer version ARNs or NAME:VERSION, got {arn!r}", field="layers"
            )
    if len(layers) > MAX_LAYERS:
        raise InvalidParameterValue(
            f"a function may use at most {MAX_LAYERS} layers", field="layers"
        )
    log_format = args.get("log_format", "Text")
    if log_format not in LOG_FORMATS:
        raise InvalidParameterValue(
            f"log_format must be 'Text' or 'JSON', got {log_format!r}", field="log_format"
        )
    levels: dict[str, str] = {}
    for key, allowed in (
        ("application_log_level", APPLICATION_LOG_LEVELS),
        ("system_log_level", SYSTEM_LOG_LEVELS),
    ):
        level = args.get(key) or ""
        if level and level not in allowed:
            raise InvalidParameterValue(
                f"{key} must be one of {', '.join(allowed)}, got {level!r}", field=key
            )
        if level and log_format != "JSON":
            raise InvalidParameterValue(f"{key} needs log_format 'JSON' (as on Lambda)", field=key)
        levels[key] = level
    mounts = _mounts(args.get("mounts"))
    template = args.get("template", False)
    if not isinstance(template, bool):
        raise InvalidParameterValue(
            f"template must be true or false, got {template!r}", field="template"
        )
    if template and not runtime.startswith("python"):
        raise InvalidParameterValue(
            f"template = true needs a python runtime (SnapStart's); {runtime} has no templates",
            field="template",
        )
    if template and network != "none":
        raise InvalidParameterValue(
            "template = true needs network = 'none': a template's copies make their own "
            "network namespaces, where the daemon does not wire egress",
            field="template",
        )
    return FunctionConfig(
        name=name,
        handler=handler,
        runtime=runtime,
        memory_mb=memory_mb,
        timeout_s=float(timeout),
        env=dict(env),
        concurrency=concurrency,
        network=network,
        tmp_mb=tmp_mb,
        min_warm=min_warm,
        pids_max=pids_max,
        description=texts["description"],
        role=texts["role"],
        architectures=architectures,
        layers=tuple(layers),
        lambda_runtime=texts["lambda_runtime"],
        log_format=log_format,
        **levels,
        mounts=mounts,
        template=template,
    )


def parse_mount(spec: str) -> dict[str, Any]:
    """``HOSTDIR:/mnt/NAME[:ro|:rw]`` -> a mount, its owner read from the directory now.

    Raises:
        InvalidParameterValue: malformed, or the directory does not exist.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise InvalidParameterValue(
            f"a mount must look like HOSTDIR:/mnt/NAME[:ro], got {spec!r}", field="mounts"
        )
    source = parts[0]
    _check_source(source)
    try:
        st = os.stat(source)
    except OSError as exc:
        raise InvalidParameterValue(
            f"mount source {source!r}: {exc.strerror}", field="mounts"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidParameterValue(f"mount source {source!r} is not a directory", field="mounts")
    return {
        "source": source,
        "target": parts[1],
        "read_only": len(parts) == 3 and parts[2] == "ro",
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _check_source(source: str) -> None:
    if not source.startswith("/") or os.path.normpath(source) != source or source == "/":
        raise InvalidParameterValue(
            f"mount source must be an absolute, normalised directory other than /, "
            f"got {source!r}",
            field="mounts",
        )
    if os.path.realpath(source) != source:
        raise InvalidParameterValue(
            f"mount source {source!r} goes through a symlink (it resolves to "
            f"{os.path.realpath(source)!r}); name the directory itself",
            field="mounts",
        )


def _mounts(raw: Any) -> tuple[dict[str, Any], ...]:
    """The ``mounts`` argument: spec strings (deploy) or the stored maps (a version loaded)."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) > MAX_MOUNTS:
        raise InvalidParameterValue(
            f"mounts must be a list of at most {MAX_MOUNTS} HOSTDIR:/mnt/NAME[:ro]",
            field="mounts",
        )
    out: list[dict[str, Any]] = []
    for item in raw:
        if isinstance(item, str):
            mount = parse_mount(item)
        elif isinstance(item, dict):
            mount = {
                "source": item.get("source"),
                "target": item.get("target"),
                "read_only": item.get("read_only", False),
                "uid": item.get("uid"),
                "gid": item.get("gid"),
            }
            if not isinstance(mount["source"], str) or not isinstance(mount["read_only"], bool):
                raise InvalidParameterValue(f"malformed mount {item!r:.200}", field="mounts")
            for key in ("uid", "gid"):
                value = mount[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidParameterValue(f"malformed mount {item!r:.200}", field="mounts")
            _check_source(mount["source"])
        else:
            raise InvalidParameterValue(f"malformed mount {item!r:.200}", field="mounts")
        target = mount["target"]
        if not isinstance(target, str) or not MOUNT_TARGET_RE.fullmatch(target):
            raise InvalidParameterValue(
                f"a mount's target must be /mnt/NAME (NAME: letters, digits, _ . -), "
                f"got {target!r}",
                field="mounts",
            )
        if any(m["target"] == target for m in out):
            raise InvalidParameterValue(f"two mounts at {target}", field="mounts")
        out.append(mount)
    return tuple(out)


def check_host_support(config: FunctionConfig, *, egress_unavailable: str | None) -> None:
    """Refuse a deploy that this host cannot run, rather than accept it and fail every cold
    start. ``egress_unavailable``: why ``network = "egress"`` cannot be set up here (None: it
    can).

    Raises:
        InvalidParameterValue: ``network = "egress"`` on a host without egress, naming the
            cause; a runtime this host lacks (``nodejs22.x`` with node 20), naming what it has.
    """
    missing = runtimes.unavailable(config.runtime)
    if missing is not None:
        raise InvalidParameterValue(missing, field="runtime")
    if config.network == "egress" and egress_unavailable is not None:
        raise InvalidParameterValue(
            f"network = 'egress' is unavailable on this host: {egress_unavailable}",
            field="network",
        )


def check_unzipped_size(code_bytes: int, layer_bytes: Sequence[int]) -> None:
    """Lambda's 250 MB limit on a function's code plus its layers, unzipped.

    The layer store calls this at deploy (and when a function's layers change) with the
    unzipped size of the code and of each layer version, in the function's order.

    Raises:
        InvalidParameterValue: more than :data:`MAX_LAYERS` layers, or over the limit
            (Lambda's own wording, with the actual size).
    """
    if len(layer_bytes) > MAX_LAYERS:
        raise InvalidParameterValue(
            f"a function may use at most {MAX_LAYERS} layers, got {len(layer_bytes)}",
            field="layers",
        )
    total = code_bytes + sum(layer_bytes)
    if total > MAX_UNZIPPED_WITH_LAYERS:
        raise InvalidParameterValue(
            "Function code combined with layers exceeds the maximum allowed size of "
            f"{MAX_UNZIPPED_WITH_LAYERS} bytes. The actual size is {total} bytes.",
            field="layers" if layer_bytes else "code",
        )


@dataclass(frozen=True)
class Version:
    """One immutable deploy of a function."""

    number: int  # 1, 2, ... in deploy order
    config: FunctionConfig
    code_sha256: str  # content address of the code tree (the store's directory name)
    sha256: str  # content address of code + configuration: same deploy, same version
    created: float  # unix time

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "config": self.config.to_dict(),
            "code_sha256": self.code_sha256,
            "sha256": self.sha256,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Version:
        return cls(
            number=int(d["number"]),
            config=validate(d["config"]),
            code_sha256=str(d["code_sha256"]),
            sha256=str(d["sha256"]),
            created=float(d["created"]),
        )

    @property
    def key(self) -> str:
        """What a warm sandbox is specialized for: the number *and* the content address.

        The number alone is not enough: an unpublished ``$LATEST`` is always number 0, so two
        UpdateFunctionCode calls without a publish would both be "version 0"."""
        return f"{self.number}:{self.sha256}"


# Fields added after versions were first stored: left out of the content address while they
# have their default value, so a version stored before they existed keeps its address.
_LATER_FIELDS: Final = {
    "description": "", "role": "", "architectures": ["x86_64"], "layers": [], "lambda_runtime": "",
    "template": False,
}  # fmt: skip


def version_sha256(config: FunctionConfig, code_sha256: str) -> str:
    d = config.to_dict()
    for key, default in _LATER_FIELDS.items():
        if d.get(key) == default:
            del d[key]
    blob = json.dumps({"config": d, "code": code_sha256}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
