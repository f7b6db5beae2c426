"""AWS SAM templates: ``lambdad deploy --template template.yaml [--param K=V]... [--prune]``.

Client side (it runs in the CLI, talking to the daemon through :class:`lambdad.client.Client`):
:func:`plan` reads the template with **cfn-lint**'s CloudFormation YAML loader (the short
forms ``!Ref``, ``!Sub``, ``!GetAtt`` become their ``Fn::`` maps there; no tag parsing here),
applies ``Parameters`` and ``Globals``, resolves the intrinsics that resolve locally, and
returns what to deploy; :func:`apply` deploys it. Everything the template asks for that
lambdad cannot do is collected and refused in **one** message before anything is deployed.

What a template maps to (docs/triggers-http.md, "SAM templates"):

* ``AWS::Serverless::Function`` → a function (``FunctionName`` or the logical id): CodeUri,
  Handler, Runtime (``python3.x`` → ``python3``), MemorySize, Timeout,
  Environment.Variables, Layers, ReservedConcurrentExecutions (concurrency),
  ProvisionedConcurrencyConfig (min_warm); FunctionUrlConfig → a url trigger;
* its ``Events``: ``HttpApi`` → an http trigger (payload 2.0 unless PayloadFormatVersion),
  ``Api`` → an http trigger with ``api = "rest"`` (payload 1.0), ``Schedule`` /
  ``ScheduleV2`` → a schedule trigger, ``S3`` → an s3 trigger (``Bucket: !Ref B``, ``Events``,
  ``Filter.S3Key.Rules`` prefix/suffix; docs/triggers-buckets.md). Trigger names:
  ``FUNCTION-EVENTID``;
* ``AWS::S3::Bucket`` → a lambdad bucket (``BucketName`` or the logical id in lower case),
  created if missing and never removed by ``--prune`` (it holds data).

Idempotent: a function whose code and configuration did not change is not re-deployed (the
daemon compares), a trigger whose settings did not change is kept. A record of what the stack
deployed is kept beside the template (``.lambdad-stack-STACK.json``) so that ``--prune``
removes the functions and triggers the template no longer has.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.errors import InvalidParameterValue

REGION: Final = "us-east-1"
ACCOUNT: Final = "000000000000"
FUNCTION: Final = "AWS::Serverless::Function"
SUPPORTED_PROPERTIES: Final = frozenset({
    "FunctionName", "CodeUri", "Handler", "Runtime", "MemorySize", "Timeout", "Environment",
    "Layers", "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig", "Events",
    "FunctionUrlConfig", "Description", "Architectures", "Tags",
})  # fmt: skip
EVENT_TYPES: Final = frozenset({"HttpApi", "Api", "Schedule", "ScheduleV2", "S3"})
BUCKET: Final = "AWS::S3::Bucket"


@dataclass
class FunctionPlan:
    logical_id: str
    name: str
    code: str  # a directory or zip, absolute
    options: dict[str, Any]  # Client.deploy keyword arguments


@dataclass
class TriggerPlan:
    kind: str
    name: str
    function: str
    settings: dict[str, Any]
    enabled: bool = True


@dataclass
class Plan:
    stack: str
    directory: str
    functions: list[FunctionPlan] = field(default_factory=list)
    triggers: list[TriggerPlan] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)  # lambdad buckets, created if missing
    unsupported: list[str] = field(default_factory=list)


class TemplateError(InvalidParameterValue):
    """The template cannot be deployed; the message lists every reason."""


def _load(path: str) -> dict[str, Any]:
    try:
        from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - an install without the extra
        raise TemplateError(
            "deploy --template needs cfn-lint (pip install 'lambdad[sam]')", field="template"
        ) from exc
    try:
        doc = cfn_yaml.load(path)
    except Exception as exc:  # cfn-lint raises its own and yaml's errors
        raise TemplateError(
            f"{path}: not a CloudFormation template: {exc}", field="template"
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise TemplateError(f"{path}: no Resources section", field="template")
    return dict(doc)


def _merge(base: Any, over: Any) -> Any:
    """Globals under a resource's own properties: maps merge, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


class _Resolver:
    def __init__(self, params: dict[str, Any], names: dict[str, str], stack: str) -> None:
        self.params = params
        self.names = names  # logical id -> function name (or bucket name, for those in buckets)
        self.buckets: set[str] = set()  # logical ids of AWS::S3::Bucket resources
        self.stack = stack
        self.problems: list[str] = []

    def ref(self, name: str, where: str) -> Any:
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": self.stack,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.names:
            return self.names[name]
        self.problems.append(f"{where}: !Ref {name}: no such parameter or resource")
        return ""

    def get_att(self, target: str, attr: str, where: str) -> Any:
        if target in self.buckets and attr == "Arn":
            return f"arn:aws:s3:::{self.names[target]}"
        if target in self.names and attr == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.names[target]}"
        self.problems.append(f"{where}: !GetAtt {target}.{attr} does not resolve locally")
        return ""

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(str(arg), where)
            if key == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
                return self.get_att(str(parts[0]), str(parts[1]), where)
            if key == "Fn::Sub":
                return self.sub(arg, where)
            if key.startswith("Fn::"):
                self.problems.append(f"{where}: {key} is not supported (only Ref, Sub, GetAtt)")
                return ""
        return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}

    def sub(self, arg: Any, where: str) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name], where))
            if "." in name:
                target, attr = name.split(".", 1)
                return str(self.get_att(target, attr, where))
            return str(self.ref(name, where))

        return re.sub(r"\$\{([^}]+)\}", one, str(template))


def _parameters(doc: dict[str, Any], given: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    declared = doc.get("Parameters") or {}
    problems = [f"--param {k}: the template declares no such parameter"
                for k in given if k not in declared]  # fmt: skip
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            values[name] = given[name]
        elif isinstance(spec, Mapping) and "Default" in spec:
            values[name] = spec["Default"]
        else:
            problems.append(f"parameter {name} has no Default: pass --param {name}=VALUE")
            continue
        allowed = spec.get("AllowedValues") if isinstance(spec, Mapping) else None
        if allowed and str(values[name]) not in [str(a) for a in allowed]:
            problems.append(f"parameter {name}={values[name]!r} is not one of {allowed}")
    return values, problems


def _runtime(value: Any) -> str | None:
    text = str(value or "python3")
    return "python3" if re.fullmatch(r"python3(\.\d+)?", text) else None


def plan(path: str, params: Mapping[str, str] | None = None, stack: str | None = None) -> Plan:
    """What deploying the template at ``path`` means.

    Raises:
        TemplateError: listing every unsupported resource, property, event and intrinsic.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    doc = _load(path)
    stack = stack or os.path.basename(directory) or "stack"
    values, problems = _parameters(doc, params or {})
    resources: dict[str, Any] = doc["Resources"]
    names: dict[str, str] = {}
    for logical_id, res in resources.items():
        if isinstance(res, Mapping) and res.get("Type") == FUNCTION:
            props = res.get("Properties") or {}
            fn_name = props.get("FunctionName", logical_id)
            names[logical_id] = fn_name if isinstance(fn_name, str) else logical_id
        elif isinstance(res, Mapping) and res.get("Type") == BUCKET:
            bucket_name = (res.get("Properties") or {}).get("BucketName", logical_id.lower())
            names[logical_id] = bucket_name if isinstance(bucket_name, str) else logical_id.lower()
    resolver = _Resolver(values, names, stack)
    resolver.buckets = {k for k, r in resources.items() if isinstance(r, Mapping)
                        and r.get("Type") == BUCKET}  # fmt: skip
    for logical_id, res in resources.items():
        if isinstance(res, Mapping) and res.get("Type") == FUNCTION:
            fn_name = (res.get("Properties") or {}).get("FunctionName")
            if fn_name is not None:
                names[logical_id] = str(resolver.resolve(fn_name, f"{logical_id}.FunctionName"))
    globals_fn = ((doc.get("Globals") or {}).get("Function")) or {}
    result = Plan(stack, directory)
    for logical_id, res in resources.items():
        rtype = res.get("Type") if isinstance(res, Mapping) else None
        if rtype == BUCKET:
            extra = sorted(set(res.get("Properties") or {}) - {"BucketName"})
            if extra:
                problems.append(f"{logical_id}: bucket properties {extra} are not supported")
            result.buckets.append(names[logical_id])
            continue
        if rtype != FUNCTION:
            problems.append(f"{logical_id}: resource type {rtype} is not supported")
            continue
        props = resolver.resolve(_merge(globals_fn, res.get("Properties") or {}), logical_id)
        _function(logical_id, names[logical_id], props, directory, result, problems)
    problems.extend(resolver.problems)
    if problems:
        raise TemplateError(
            f"{path}: cannot deploy:\n  " + "\n  ".join(problems), field="template",
            problems=problems,
        )  # fmt: skip
    return result


def _function(logical_id: str, name: str, props: dict[str, Any], directory: str, result: Plan,
              problems: list[str]) -> None:  # fmt: skip
    for key in props:
        if key not in SUPPORTED_PROPERTIES:
            problems.append(f"{logical_id}: property {key} is not supported")
    code_uri = props.get("CodeUri")
    if not isinstance(code_uri, str):
        problems.append(f"{logical_id}: CodeUri must be a local directory or zip")
        return
    code = os.path.normpath(os.path.join(directory, code_uri))
    if not os.path.exists(code):
        problems.append(f"{logical_id}: CodeUri {code_uri!r} does not exist ({code})")
    runtime = _runtime(props.get("Runtime"))
    if runtime is None:
        problems.append(f"{logical_id}: runtime {props.get('Runtime')!r} is not supported")
    options: dict[str, Any] = {"handler": props.get("Handler", "app.handler"),
                               "runtime": runtime or "python3"}  # fmt: skip
    if "MemorySize" in props:
        options["memory_mb"] = int(props["MemorySize"])
    if "Timeout" in props:
        options["timeout_s"] = float(props["Timeout"])
    env = (props.get("Environment") or {}).get("Variables")
    if env:
        options["env"] = {str(k): str(v) for k, v in env.items()}
    if props.get("Layers"):
        options["layers"] = [str(layer) for layer in props["Layers"]]
    if props.get("ReservedConcurrentExecutions") is not None:
        options["concurrency"] = int(props["ReservedConcurrentExecutions"])
    provisioned = props.get("ProvisionedConcurrencyConfig")
    if provisioned:
        options["min_warm"] = int(provisioned.get("ProvisionedConcurrentExecutions", 0))
    result.functions.append(FunctionPlan(logical_id, name, code, options))
    url = props.get("FunctionUrlConfig")
    if url is not None:
        auth = url.get("AuthType", "AWS_IAM")
        extra = set(url) - {"AuthType", "Cors"}
        if extra:
            problems.append(f"{logical_id}.FunctionUrlConfig: {sorted(extra)} not supported")
        settings: dict[str, Any] = {"auth_type": auth}
        if url.get("Cors"):
            settings["cors"] = _cors(url["Cors"])
        result.triggers.append(TriggerPlan("url", f"{name}-url", name, settings))
    for event_id, event in (props.get("Events") or {}).items():
        _event(logical_id, name, event_id, event, result, problems)


def _cors(c: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "allow_origins": list(c.get("AllowOrigins", [])),
        "allow_methods": list(c.get("AllowMethods", [])),
        "allow_headers": list(c.get("AllowHeaders", [])),
        "expose_headers": list(c.get("ExposeHeaders", [])),
        "max_age": int(c.get("MaxAge", 0)),
        "allow_credentials": bool(c.get("AllowCredentials", False)),
    }


def _event(logical_id: str, function: str, event_id: str, event: Any, result: Plan,
           problems: list[str]) -> None:  # fmt: skip
    where = f"{logical_id}.Events.{event_id}"
    etype = event.get("Type") if isinstance(event, Mapping) else None
    if etype not in EVENT_TYPES:
        problems.append(f"{where}: event type {etype} is not supported (HttpApi, Api, Schedule,"
                        " ScheduleV2, S3)")  # fmt: skip
        return
    p = event.get("Properties") or {}
    name = f"{function}-{event_id}"
    if etype in ("HttpApi", "Api"):
        path, method = p.get("Path"), p.get("Method")
        if etype == "HttpApi" and path is None and method is None:
            route = "$default"
        else:
            verb = str(method or "ANY").upper()
            route = f"{'ANY' if verb == 'X-AMAZON-APIGATEWAY-ANY-METHOD' else verb} {path or '/'}"
        settings: dict[str, Any] = {"route": route}
        if etype == "Api":
            settings["api"] = "rest"
        elif p.get("PayloadFormatVersion"):
            settings["payload_format"] = str(p["PayloadFormatVersion"])
        result.triggers.append(TriggerPlan("http", name, function, settings))
        return
    if etype == "S3":
        _s3_event(where, name, function, p, result, problems)
        return
    expression = p.get("Schedule") if etype == "Schedule" else p.get("ScheduleExpression")
    settings = {"expression": expression}
    if etype == "ScheduleV2" and p.get("ScheduleExpressionTimezone"):
        settings["timezone"] = p["ScheduleExpressionTimezone"]
    if p.get("Input") is not None:
        settings["input"] = p["Input"] if isinstance(p["Input"], str) else json.dumps(p["Input"])
    enabled = p.get("Enabled", True) is not False and p.get("State", "ENABLED") != "DISABLED"
    result.triggers.append(TriggerPlan("schedule", name, function, settings, enabled))


def _s3_event(where: str, name: str, function: str, p: Mapping[str, Any], result: Plan,
              problems: list[str]) -> None:  # fmt: skip
    """SAM's ``S3`` event: ``Bucket`` (a ``!Ref`` to a bucket of the template, or a lambdad
    bucket's name), ``Events`` (one or a list), ``Filter.S3Key.Rules`` (prefix, suffix)."""
    bucket = p.get("Bucket")
    if not isinstance(bucket, str) or not bucket:
        problems.append(f"{where}: Bucket must be a !Ref to an AWS::S3::Bucket or a bucket name")
        return
    events = p.get("Events", "s3:ObjectCreated:*")
    events = [events] if isinstance(events, str) else events
    settings: dict[str, Any] = {"bucket": bucket, "events": events}
    rules = (((p.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
    for rule in rules:
        key = str(rule.get("Name", "")).lower() if isinstance(rule, Mapping) else ""
        if key not in ("prefix", "suffix"):
            problems.append(f"{where}: filter rule {rule!r} is not a prefix or suffix rule")
            continue
        settings[key] = str(rule.get("Value", ""))
    result.triggers.append(TriggerPlan("s3", name, function, settings))


def _record_path(p: Plan) -> str:
    return os.path.join(p.directory, f".lambdad-stack-{p.stack}.json")


def apply(client: Any, p: Plan, prune: bool = False) -> list[str]:
    """Deploy ``p`` through ``client``; returns one line per change, for the CLI."""
    lines: list[str] = []
    if p.buckets:
        have = {b["name"] for b in client.list_buckets()}
        for bucket in p.buckets:
            if bucket not in have:
                client.create_bucket(bucket)
                lines.append(f"bucket {bucket}: created")
    for fn in p.functions:
        before = {f["name"]: f["sha256"] for f in client.list()}.get(fn.name)
        info = client.deploy(fn.name, fn.code, **fn.options)
        state = "unchanged" if before == info["sha256"] else "deployed"
        lines.append(f"function {fn.name}: {state} (version {info['version']})")
    existing = {t["name"]: t for t in client.trigger_list()}
    for t in p.triggers:
        current = existing.get(t.name)
        if current is not None:
            wanted = {**current["settings"], **t.settings}
            if (current["kind"], current["function"], current["settings"]) == (
                    t.kind, t.function, wanted) and current["enabled"] == t.enabled:  # fmt: skip
                lines.append(f"trigger {t.name}: unchanged")
                continue
            client.trigger_delete(t.name)
        client.trigger_add(t.kind, t.name, t.function, **t.settings)
        if not t.enabled:
            client.trigger_disable(t.name)
        lines.append(f"trigger {t.name}: {'updated' if current else 'created'}")
    record = {"functions": sorted(f.name for f in p.functions),
              "triggers": sorted(t.name for t in p.triggers)}  # fmt: skip
    try:
        with open(_record_path(p)) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {"functions": [], "triggers": []}
    gone_triggers = sorted(set(previous.get("triggers", [])) - set(record["triggers"]))
    gone_functions = sorted(set(previous.get("functions", [])) - set(record["functions"]))
    if prune:
        for name in gone_triggers:
            if name in existing:
                client.trigger_delete(name)
                lines.append(f"trigger {name}: removed (--prune)")
        for name in gone_functions:
            client.delete(name)
            lines.append(f"function {name}: removed (--prune)")
    else:
        record["functions"] = sorted({*record["functions"], *gone_functions})
        record["triggers"] = sorted({*record["triggers"], *gone_triggers})
        for name in gone_functions:
            lines.append(f"function {name}: no longer in the template (kept; --prune removes it)")
    from lambdad.registry import atomic_write

    atomic_write(_record_path(p), json.dumps(record, indent=1).encode())
    return lines


__all__ = ["Plan", "TemplateError", "apply", "plan"]
