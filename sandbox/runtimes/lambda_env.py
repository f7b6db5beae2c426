"""The environment variables of a Python function, as Lambda sets them, and X-Ray trace ids.

Reference: AWS's "Defined runtime environment variables" for python3.11 (reserved ones first,
then the unreserved ones a function may extend: ``PATH``, ``LD_LIBRARY_PATH``, ``PYTHONPATH``,
``LANG``, ``TZ``, ``AWS_XRAY_*``). No credentials: lambdad holds none to hand out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from sandbox.runtimes.python_layout import LANG_DIR, RUNTIME_DIR, pyver

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "000000000000"  # lambdad has no AWS account: a placeholder of the right shape
# Values of AWS_LAMBDA_INITIALIZATION_TYPE: Init for a request, for provisioned concurrency
# (min_warm), and SnapStart's value, for a sandbox forked from an initialized template.
ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
SNAP_START = "snap-start"
LOG_FORMATS = ("Text", "JSON")
XRAY_DAEMON = "169.254.79.129:2000"  # Lambda's; nothing listens there in a sandbox


def function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"


def lambda_environment(
    function: Mapping[str, Any],
    log_stream: str,
    task_root: str,
    region: str = DEFAULT_REGION,
    initialization_type: str = ON_DEMAND,
) -> dict[str, str]:
    """The environment of a handler: Lambda's variables, then the function's own (which
    cannot override the reserved ones: deploy refuses them), then ``LoggingConfig``'s."""
    name = str(function["name"])
    version = pyver()
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["memory_mb"]),
        "AWS_LAMBDA_FUNCTION_VERSION": str(function["version"]),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(function["timeout_s"])),
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": XRAY_DAEMON,
        "_AWS_XRAY_DAEMON_ADDRESS": XRAY_DAEMON.partition(":")[0],
        "_AWS_XRAY_DAEMON_PORT": XRAY_DAEMON.partition(":")[2],
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "_HANDLER": str(function["handler"]),
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": f"{LANG_DIR}/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": f"{LANG_DIR}/lib:/lib64:/usr/lib64:{RUNTIME_DIR}:{RUNTIME_DIR}/lib:"
        f"{task_root}:{task_root}/lib:/opt/lib",
        "PYTHONPATH": RUNTIME_DIR,
        "SHLVL": "0",
    }
    env.update({str(k): str(v) for k, v in dict(function.get("env") or {}).items()})
    env["AWS_LAMBDA_LOG_FORMAT"] = str(function.get("log_format") or "Text")
    level = str(function.get("application_log_level") or "")
    if level:
        env["AWS_LAMBDA_LOG_LEVEL"] = level
    return env


def new_trace_id(now: float | None = None) -> str:
    """An X-Ray trace header as Lambda gives an untraced invocation: a root id whose first
    part is the epoch second in hex, a parent segment id, not sampled."""
    seconds = int(time.time() if now is None else now)
    rand = os.urandom(20).hex()
    return f"Root=1-{seconds:08x}-{rand[:24]};Parent={rand[24:]};Sampled=0"
