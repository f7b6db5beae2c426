"""AWS SAM templates: ``lambdad deploy --template template.yaml [--param K=V]... [--prune]``.

Client side (it runs in the CLI, talking to the daemon through :class:`lambdad.client.Client`):
:func:`plan` reads the template with **cfn-lint**'s CloudFormation YAML loader (the short
forms ``!Ref``, ``!Sub``, ``!GetAtt`` become their ``Fn::`` maps there; no tag parsing here),
applies ``Parameters`` and ``Globals``, resolves the intrinsics that resolve locally, and
returns what to deploy; :func:`apply` deploys it. Everything the template asks for that
lambdad cannot do is collected and refused in **one** message before anything is deployed.

What a template maps to (docs/triggers-http.md, "SAM templates"):

* ``AWS::Serverless::Function`` → a function (``FunctionName`` or the logical id): CodeUri,
  Handler, Runtime (any runtime lambdad has: ``python3.x``, ``nodejs20.x``, ``provided.al2023``),
  MemorySize, Timeout, Environment.Variables, Layers, ReservedConcurrentExecutions
  (concurrency), ProvisionedConcurrencyConfig (min_warm), AutoPublishAlias (a version published
  when the code or configuration changed, and the alias moved to it; the function's triggers
  then target the alias, as SAM's do); FunctionUrlConfig → a url trigger;
* its ``Events``: ``HttpApi`` → an http trigger (payload 2.0 unless PayloadFormatVersion),
  ``Api`` → an http trigger with ``api = "rest"`` (payload 1.0), ``Schedule`` /
  ``ScheduleV2`` → a schedule trigger, ``SQS`` → a queue event-source mapping, ``S3`` → an s3
  trigger (``Bucket: !Ref B``, ``Events``, ``Filter.S3Key.Rules`` prefix/suffix;
  docs/triggers-buckets.md). Trigger names: ``FUNCTION-EVENTID``;
* ``AWS::Serverless::LayerVersion`` → a layer (``LayerName`` or the logical id) from
  ``ContentUri``, published only when its content changed; ``!Ref`` of it is that version;
* ``AWS::SQS::Queue`` → an embedded queue (``QueueName`` or the logical id;
  VisibilityTimeout, MessageRetentionPeriod, RedrivePolicy); ``!GetAtt Q.Arn``, ``!Ref Q``.
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
LAYER: Final = "AWS::Serverless::LayerVersion"
QUEUE: Final = "AWS::SQS::Queue"
SUPPORTED_PROPERTIES: Final = frozenset({
    "FunctionName", "CodeUri", "Handler", "Runtime", "MemorySize", "Timeout", "Environment",
    "Layers", "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig", "Events",
    "FunctionUrlConfig", "Description", "Architectures", "Tags", "AutoPublishAlias",
})  # fmt: skip
LAYER_PROPERTIES: Final = frozenset({
    "LayerName", "ContentUri", "CompatibleRuntimes", "CompatibleArchitectures", "Description",
    "LicenseInfo", "RetentionPolicy",
})  # fmt: skip
QUEUE_PROPERTIES: Final = frozenset(
    {"QueueName", "VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy"}
)
SQS_EVENT_PROPERTIES: Final = frozenset({
    "Queue", "BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "Enabled",
    "ScalingConfig",
})  # fmt: skip
EVENT_TYPES: Final = frozenset({"HttpApi", "Api", "Schedule", "ScheduleV2", "SQS", "S3"})
BUCKET: Final = "AWS::S3::Bucket"
# What ``!Ref`` of a layer resolves to in the plan; apply() replaces it with NAME:VERSION.
LAYER_REF: Final = "lambdad-sam-layer:"


@dataclass
class FunctionPlan:
    logical_id: str
    name: str
    code: str  # a directory or zip, absolute
    options: dict[str, Any]  # Client.deploy keyword arguments


    alias: str | None = None  # AutoPublishAlias


@dataclass
class TriggerPlan:
    kind: str  # http, url, schedule; queue: an event-source mapping
    name: str
    function: str
    settings: dict[str, Any]
    enabled: bool = True
    qualifier: str | None = None  # the function's AutoPublishAlias


@dataclass
class LayerPlan:
    logical_id: str
    name: str
    content: str  # a directory or zip, absolute
    options: dict[str, Any]  # Client.publish_layer keyword arguments


@dataclass
class QueuePlan:
    logical_id: str
    name: str
    settings: dict[str, Any]  # Client.create_queue keyword arguments


@dataclass
class Plan:
    stack: str
    directory: str
    functions: list[FunctionPlan] = field(default_factory=list)
    triggers: list[TriggerPlan] = field(default_factory=list)
    layers: list[LayerPlan] = field(default_factory=list)
    queues: list[QueuePlan] = field(default_factory=list)  # dead-letter queues first
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
        self.layers: dict[str, str] = {}  # logical id -> layer name
        self.queues: dict[str, str] = {}  # logical id -> queue name
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
        if name in self.layers:
            return LAYER_REF + name
        if name in self.queues:  # SQS's Ref is the queue URL
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.queues[name]}"
        self.problems.append(f"{where}: !Ref {name}: no such parameter or resource")
        return ""

    def get_att(self, target: str, attr: str, where: str) -> Any:
        if target in self.buckets and attr == "Arn":
            return f"arn:aws:s3:::{self.names[target]}"
        if target in self.names and attr == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.names[target]}"
        if target in self.queues and attr in ("Arn", "QueueName"):
            name = self.queues[target]
            return name if attr == "QueueName" else f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
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
    from sandbox import runtimes

    text = str(value or "python3")
    return text if text in runtimes.function_names() else None


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
        rtype = res.get("Type") if isinstance(res, Mapping) else None
        given = (res.get("Properties") or {}) if isinstance(res, Mapping) else {}
        if rtype == LAYER:
            resolver.layers[logical_id] = str(given.get("LayerName", logical_id))
        elif rtype == QUEUE:
            resolver.queues[logical_id] = str(given.get("QueueName", logical_id))
    for logical_id, res in resources.items():
        if isinstance(res, Mapping) and res.get("Type") == FUNCTION:
            fn_name = (res.get("Properties") or {}).get("FunctionName")
            if fn_name is not None:
                names[logical_id] = str(resolver.resolve(fn_name, f"{logical_id}.FunctionName"))
    globals_fn = ((doc.get("Globals") or {}).get("Function")) or {}
    result = Plan(stack, directory)
    for logical_id, res in resources.items():
        rtype = res.get("Type") if isinstance(res, Mapping) else None
        if rtype == LAYER:
            props = resolver.resolve(res.get("Properties") or {}, logical_id)
            _layer(logical_id, props, directory, result, problems)
            continue
        if rtype == QUEUE:
            props = resolver.resolve(res.get("Properties") or {}, logical_id)
            _queue(logical_id, resolver.queues[logical_id], props, resolver, result, problems)
            continue
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
    # A dead-letter queue is created before the queues that send to it.
    result.queues.sort(key=lambda q: q.settings.get("dead_letter") is not None)
    if problems:
        raise TemplateError(
            f"{path}: cannot deploy:\n  " + "\n  ".join(problems), field="template",
            problems=problems,
        )  # fmt: skip
    return result


def _local_path(logical_id: str, props: Mapping[str, Any], key: str, known: frozenset[str],
                directory: str, problems: list[str]) -> str | None:  # fmt: skip
    """Check a resource's properties against ``known``; its ``key`` (CodeUri, ContentUri) as
    an absolute path, or None when it is not a string (a problem is noted either way)."""
    for name in props:
        if name not in known:
            problems.append(f"{logical_id}: property {name} is not supported")
    value = props.get(key)
    if not isinstance(value, str):
        problems.append(f"{logical_id}: {key} must be a local directory or zip")
        return None
    path = os.path.normpath(os.path.join(directory, value))
    if not os.path.exists(path):
        problems.append(f"{logical_id}: {key} {value!r} does not exist ({path})")
    return path


def _function(logical_id: str, name: str, props: dict[str, Any], directory: str, result: Plan,
              problems: list[str]) -> None:  # fmt: skip
    code = _local_path(logical_id, props, "CodeUri", SUPPORTED_PROPERTIES, directory, problems)
    if code is None:
        return
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
    alias = props.get("AutoPublishAlias")
    if alias is not None and not (isinstance(alias, str) and re.fullmatch(r"[A-Za-z_-]+", alias)):
        problems.append(f"{logical_id}: AutoPublishAlias must be an alias name, got {alias!r}")
        alias = None
    result.functions.append(FunctionPlan(logical_id, name, code, options, alias))
    first_trigger = len(result.triggers)
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
    for trigger in result.triggers[first_trigger:]:
        trigger.qualifier = alias


def _layer(logical_id: str, props: dict[str, Any], directory: str, result: Plan,
           problems: list[str]) -> None:  # fmt: skip
    path = _local_path(logical_id, props, "ContentUri", LAYER_PROPERTIES, directory, problems)
    if path is None:
        return
    options = {
        "compatible_runtimes": [str(r) for r in props.get("CompatibleRuntimes") or ()],
        "compatible_architectures": [str(a) for a in props.get("CompatibleArchitectures") or ()],
        "description": str(props.get("Description", "")),
        "license_info": str(props.get("LicenseInfo", "")),
    }
    name = str(props.get("LayerName", logical_id))
    result.layers.append(LayerPlan(logical_id, name, path, options))


def _queue(logical_id: str, name: str, props: dict[str, Any], resolver: _Resolver,
           result: Plan, problems: list[str]) -> None:  # fmt: skip
    for key in props:
        if key not in QUEUE_PROPERTIES:
            problems.append(f"{logical_id}: property {key} is not supported")
    settings: dict[str, Any] = {}
    if "VisibilityTimeout" in props:
        settings["visibility_timeout_s"] = float(props["VisibilityTimeout"])
    if "MessageRetentionPeriod" in props:
        settings["retention_s"] = float(props["MessageRetentionPeriod"])
    redrive = props.get("RedrivePolicy")
    if redrive is not None:
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        target = str(redrive.get("deadLetterTargetArn", ""))
        settings["dead_letter"] = target.rpartition(":")[2]
        settings["max_receive_count"] = int(redrive.get("maxReceiveCount", 0))
    result.queues.append(QueuePlan(logical_id, name, settings))


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
                        " ScheduleV2, SQS, S3)")  # fmt: skip
        return
    p = event.get("Properties") or {}
    name = f"{function}-{event_id}"
    if etype == "SQS":
        extra = set(p) - SQS_EVENT_PROPERTIES
        if extra:
            problems.append(f"{where}: {sorted(extra)} not supported")
        queue = p.get("Queue")
        if not isinstance(queue, str) or not queue:
            problems.append(f"{where}: Queue must be a queue ARN (!GetAtt Q.Arn)")
            return
        types = p.get("FunctionResponseTypes") or ()
        mapping: dict[str, Any] = {
            "queue": queue,
            "batch_size": int(p.get("BatchSize", 10)),
            "window_s": float(p.get("MaximumBatchingWindowInSeconds", 0)),
            "report_batch_item_failures": "ReportBatchItemFailures" in types,
        }
        concurrency = (p.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if concurrency is not None:
            mapping["max_concurrency"] = int(concurrency)
        enabled = p.get("Enabled", True) is not False
        result.triggers.append(TriggerPlan("queue", name, function, mapping, enabled))
        return
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
    """Deploy ``p`` through ``client``; returns one line per change, for the CLI.

    Order: queues (dead-letter queues first), layers, functions (a layer's ``!Ref`` becomes
    the version just published or found unchanged), aliases, then triggers and mappings.
    """
    lines: list[str] = []
    if p.buckets:
        have = {b["name"] for b in client.list_buckets()}
        for bucket in p.buckets:
            if bucket not in have:
                client.create_bucket(bucket)
                lines.append(f"bucket {bucket}: created")
    for q in p.queues:
        known = {x["name"] for x in client.list_queues()}
        client.create_queue(q.name, **q.settings)  # the same settings again: unchanged
        lines.append(f"queue {q.name}: {'unchanged' if q.name in known else 'created'}")
    layer_refs: dict[str, str] = {}
    for layer in p.layers:
        layer_refs[LAYER_REF + layer.logical_id] = _publish_layer(client, layer, lines)
    for fn in p.functions:
        options = dict(fn.options)
        if "layers" in options:
            options["layers"] = [layer_refs.get(ref, ref) for ref in options["layers"]]
        before = {f["name"]: f["sha256"] for f in client.list()}.get(fn.name)
        info = client.deploy(fn.name, fn.code, **options)
        state = "unchanged" if before == info["sha256"] else "deployed"
        lines.append(f"function {fn.name}: {state} (version {info['version']})")
        if fn.alias is not None:
            lines.append(_move_alias(client, fn.name, fn.alias, str(info["version"])))
    existing = {t["name"]: t for t in client.trigger_list()}
    mappings = {m["name"]: m for m in client.list_mappings()}
    for t in p.triggers:
        if t.kind == "queue":
            lines.append(_apply_mapping(client, t, mappings.get(t.name)))
            continue
        current = existing.get(t.name)
        if current is not None:
            wanted = {**current["settings"], **t.settings}
            if (current["kind"], current["function"], current["qualifier"], current["settings"]) \
                    == (t.kind, t.function, t.qualifier, wanted) \
                    and current["enabled"] == t.enabled:  # fmt: skip
                lines.append(f"trigger {t.name}: unchanged")
                continue
            client.trigger_delete(t.name)
        client.trigger_add(t.kind, t.name, t.function, t.qualifier, **t.settings)
        if not t.enabled:
            client.trigger_disable(t.name)
        lines.append(f"trigger {t.name}: {'updated' if current else 'created'}")
    record = {"functions": sorted(f.name for f in p.functions),
              "triggers": sorted(t.name for t in p.triggers),
              "queues": sorted(q.name for q in p.queues)}  # fmt: skip
    try:
        with open(_record_path(p)) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {}
    gone = {key: sorted(set(previous.get(key, [])) - set(record[key])) for key in record}
    if prune:
        for name in gone["triggers"]:
            if name in existing:
                client.trigger_delete(name)
                lines.append(f"trigger {name}: removed (--prune)")
            elif name in mappings:
                client.delete_mapping(name)
                lines.append(f"trigger {name}: removed (--prune)")
        for name in gone["functions"]:
            client.delete(name)
            lines.append(f"function {name}: removed (--prune)")
        for name in gone["queues"]:
            client.delete_queue(name)
            lines.append(f"queue {name}: removed (--prune)")
    else:
        for key in record:
            record[key] = sorted({*record[key], *gone[key]})
        for name in gone["functions"]:
            lines.append(f"function {name}: no longer in the template (kept; --prune removes it)")
    from lambdad.registry import atomic_write

    atomic_write(_record_path(p), json.dumps(record, indent=1).encode())
    return lines


def _publish_layer(client: Any, layer: LayerPlan, lines: list[str]) -> str:
    """Publish ``layer`` unless its newest version has the same zip; its NAME:VERSION."""
    import base64
    import hashlib

    from lambdad.client import zip_code

    sha = base64.b64encode(hashlib.sha256(zip_code(layer.content)).digest()).decode()
    versions = client.list_layers(layer.name)
    if versions and versions[0]["code_sha256"] == sha:
        lines.append(f"layer {layer.name}: unchanged (version {versions[0]['version']})")
        return f"{layer.name}:{versions[0]['version']}"
    made = client.publish_layer(layer.name, layer.content, **layer.options)
    lines.append(f"layer {layer.name}: published (version {made['version']})")
    return f"{layer.name}:{made['version']}"


def _move_alias(client: Any, function: str, alias: str, version: str) -> str:
    """AutoPublishAlias: the alias points at the version the deploy made or found."""
    aliases = {a["name"]: a for a in client.call("aliases", name=function)["aliases"]}
    current = aliases.get(alias)
    if current is None:
        client.call("alias_create", name=function, alias=alias, version=version)
        return f"alias {function}:{alias}: created (version {version})"
    if current["version"] == version:
        return f"alias {function}:{alias}: unchanged (version {version})"
    client.call("alias_update", name=function, alias=alias, version=version)
    return f"alias {function}:{alias}: moved to version {version}"


def _apply_mapping(client: Any, t: TriggerPlan, current: dict[str, Any] | None) -> str:
    settings = dict(t.settings)
    queue = str(settings.pop("queue"))
    source = queue.rpartition(":")[2] if queue.startswith("arn:aws:sqs:") else queue
    target = t.function + (f":{t.qualifier}" if t.qualifier else "")
    if current is not None:
        same = (current["function"], current["qualifier"], current["source"]) == (
            t.function, t.qualifier, source,
        ) and all(current.get(k) == v for k, v in settings.items()) and (
            current["state"] == ("enabled" if t.enabled else "disabled")
        )  # fmt: skip
        if same:
            return f"trigger {t.name}: unchanged"
        client.delete_mapping(t.name)
    client.create_mapping(t.name, target, queue, enabled=t.enabled, **settings)
    return f"trigger {t.name}: {'updated' if current else 'created'}"


__all__ = ["Plan", "TemplateError", "apply", "plan"]
