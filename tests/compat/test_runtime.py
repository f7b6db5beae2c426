"""The python runtime as Lambda's: imports, SDK, environment, context, logging, errors.

Every test deploys a handler to a real daemon and looks at what it saw or what it answered;
the numbers in the names are issue 10's points.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue
from tests.conftest import DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

SDK_PINS = {
    line.split("==")[0]: line.split("==")[1]
    for line in (Path(__file__).parents[2] / "sandbox/runtimes/python-sdk.txt").read_text().split()
    if "==" in line
}


def _run(c: Client, tmp: Path, name: str, source: str, event: Any = None, **deploy: Any) -> Any:
    c.deploy(name, write_function(tmp / name, source), **deploy)
    inv = c.invoke(name, event if event is not None else {})
    assert inv.error is None, inv.error
    return inv.result


def _log(c: Client, name: str, needle: str) -> str:
    text = wait_for(lambda: (t := c.logs(name)[0]) and needle in t and t)
    assert isinstance(text, str)
    return text


STDLIB_SUBMODULES = (
    "importlib.metadata",
    "importlib.resources",
    "urllib.request",
    "logging.config",
    "logging.handlers",
    "json.tool",
    "encodings.idna",
    "email.mime.text",
    "concurrent.futures",
    "xml.etree.ElementTree",
    "sqlite3",
    "zoneinfo",
)


def test_1_stdlib_submodules_import(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "import importlib, sys\n"
        "def handler(event, context):\n"
        "    out = {}\n"
        "    for name in event['modules']:\n"
        "        try:\n"
        "            m = importlib.import_module(name)\n"
        "            out[name] = getattr(m, '__file__', None) or ''\n"
        "        except Exception as exc:\n"
        "            out[name] = 'FAILED ' + repr(exc)\n"
        "    out['idna'] = 'bücher.example'.encode('idna').decode()\n"
        "    import zoneinfo\n"
        "    out['tz'] = str(zoneinfo.ZoneInfo('Europe/Paris'))\n"
        "    out['prefix'] = [sys.prefix, sys.base_prefix, sys.executable]\n"
        "    import site, sysconfig\n"
        "    out['site'] = site.getsitepackages() + [sysconfig.get_paths()['stdlib'],\n"
        "                   sysconfig.get_config_var('LIBDIR')]\n"
        "    import logging, json\n"
        "    out['loaded'] = [logging.__file__, json.__file__, logging.__path__[0]]\n"
        "    return out\n"
    )
    with shared_daemon.client() as c:
        out = _run(c, tmp_path, "stdlib", source, {"modules": list(STDLIB_SUBMODULES)})
    for name in STDLIB_SUBMODULES:
        assert out[name].startswith("/var/lang/lib/python3"), (name, out[name])
    assert out["idna"] == "xn--bcher-kva.example"
    assert out["tz"] == "Europe/Paris"
    assert out["prefix"][0] == out["prefix"][1] == "/var/lang"
    assert out["prefix"][2].startswith("/var/lang/bin/python3")
    assert out["site"] == [
        "/var/lang/lib/python3.11/site-packages",
        "/var/lang/lib/python3.11",
        "/var/lang/lib",
    ]
    assert all(p.startswith("/var/lang/lib/python3") for p in out["loaded"]), out["loaded"]


def test_6_lambdads_own_packages_are_not_importable(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = (
        "import importlib, sys, os\n"
        "def handler(event, context):\n"
        "    out = {'meta_path': [type(f).__name__ if not isinstance(f, type) else f.__name__\n"
        "                         for f in sys.meta_path]}\n"
        "    for name in ['msgpack', 'numpy', 'trio', 'lambdad', 'sandbox', 'dateutil.tz',\n"
        "                 'pytest', 'simplejson', 'uvloop', 'IPython', 'awslambdaric']:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "            out[name] = 'imported'\n"
        "        except ImportError:\n"
        "            out[name] = 'ImportError'\n"
        "    out['path'] = sys.path\n"
        "    out['site'] = os.listdir('/var/lang/lib/python3.11/site-packages')\n"
        "    out['runtime'] = sorted(os.listdir('/var/runtime'))\n"
        "    return out\n"
    )
    with shared_daemon.client() as c:
        out = _run(c, tmp_path, "isolated", source)
    for name in ("msgpack", "numpy", "trio", "lambdad", "sandbox", "pytest", "simplejson"):
        assert out[name] == "ImportError", (name, out)
    for name in ("uvloop", "IPython", "awslambdaric"):
        assert out[name] == "ImportError", (name, out)
    # dateutil is part of the runtime-provided SDK (botocore needs it), as on Lambda.
    assert out["dateutil.tz"] == "imported"
    assert out["path"][:4] == [
        "/var/task",
        "/opt/python/lib/python3.11/site-packages",
        "/opt/python",
        "/var/runtime",
    ]
    inside = ("/var/lang/lib/", "/var/task", "/opt/", "/var/runtime")
    assert all(p.startswith(inside) for p in out["path"]), out["path"]
    assert out["meta_path"] == ["BuiltinImporter", "FrozenImporter", "PathFinder"]
    assert out["site"] == []  # the host interpreter's pip installs are masked
    assert "boto3" in out["runtime"] and "venv" not in out["runtime"]


def test_4_runtime_provided_boto3_and_vendored_override(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = (
        "import boto3, botocore\n"
        "def handler(event, context):\n"
        "    s3 = boto3.client('s3')\n"
        "    return {'boto3': [boto3.__version__, boto3.__file__],\n"
        "            'botocore': botocore.__version__, 'region': s3.meta.region_name,\n"
        "            'endpoint': s3.meta.endpoint_url}\n"
    )
    with shared_daemon.client() as c:
        out = _run(c, tmp_path, "sdk", source)
        # A function's own copy wins (Lambda puts /var/task first on sys.path).
        vendored = write_function(tmp_path / "vendored", source)
        (vendored / "boto3").mkdir()
        (vendored / "boto3" / "__init__.py").write_text(
            "__version__ = '0.0.1-vendored'\n"
            "def client(name):\n"
            "    class M: region_name = 'vendored'; endpoint_url = None\n"
            "    class C: meta = M\n"
            "    return C\n"
        )
        c.deploy("vendored", vendored)
        mine = c.invoke("vendored", {})
    assert out["boto3"] == [SDK_PINS["boto3"], "/var/runtime/boto3/__init__.py"]
    assert out["botocore"] == SDK_PINS["botocore"]
    assert out["region"] == "us-east-1"
    assert out["endpoint"] == "https://s3.amazonaws.com"
    assert mine.error is None, mine.error
    assert mine.result["boto3"] == ["0.0.1-vendored", "/var/task/boto3/__init__.py"]


def test_9_a_functions_own_pythonpath_is_honoured(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(
        tmp_path / "pypath",
        "import sys, vendored_dep\n"
        "def handler(event, context):\n"
        "    return [vendored_dep.WHERE, sys.path[:6]]\n",
    )
    (code / "vendor").mkdir()
    (code / "vendor" / "vendored_dep.py").write_text("WHERE = __file__\n")
    with shared_daemon.client() as c:
        c.deploy("pypath", code, env={"PYTHONPATH": "/var/task/vendor"})
        inv = c.invoke("pypath", {})
    assert inv.error is None, inv.error
    where, path = inv.result
    assert where == "/var/task/vendor/vendored_dep.py"
    assert path[3:5] == ["/var/task/vendor", "/var/runtime"]


def test_6_main_and_argv_are_not_lambdads(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "import __main__, sys\n"
        "def handler(event, context):\n"
        "    return [getattr(__main__, '__file__', None), sorted(vars(__main__)),\n"
        "            sys.argv, sys.orig_argv]\n"
    )
    with shared_daemon.client() as c:
        main_file, names, argv, orig_argv = _run(c, tmp_path, "mainmod", source)
    assert main_file is None and "Zygote" not in names and "main" not in names
    assert argv == ["/var/runtime/bootstrap.py"]
    assert orig_argv == ["/var/lang/bin/python3.11", "/var/runtime/bootstrap.py"]


def test_4_runtime_dir_is_read_only(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "def handler(event, context):\n"
        "    try:\n"
        "        open('/var/runtime/boto3/evil.py', 'w')\n"
        "    except OSError as exc:\n"
        "        return exc.errno\n"
        "    return 'writable'\n"
    )
    with shared_daemon.client() as c:
        assert _run(c, tmp_path, "rosdk", source) == 30  # EROFS


def test_9_environment_as_lambda_sets_it(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = "import os\ndef handler(event, context):\n    return dict(os.environ)\n"
    with shared_daemon.client() as c:
        env = _run(c, tmp_path, "envfn", source, memory_mb=256, env={"MINE": "1"})
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/envfn"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime" and env["PYTHONPATH"] == "/var/runtime"
    assert env["LD_LIBRARY_PATH"].startswith("/var/lang/lib:")
    assert env["TZ"] == ":UTC" and env["LANG"] == "en_US.UTF-8"
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "169.254.79.129:2000"
    assert env["MINE"] == "1"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0",
                        env["_X_AMZN_TRACE_ID"])  # fmt: skip


def test_9_initialization_type_of_provisioned_concurrency(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = (
        "import os\ndef handler(event, context):\n"
        "    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"
    )
    with shared_daemon.client() as c:
        c.deploy("provisioned-env", write_function(tmp_path / "p", source), min_warm=1)
        wait_for(lambda: c.stats("provisioned-env")["sandboxes"]["warm"] == 1, timeout=30)
        provisioned = c.invoke("provisioned-env", {})
        on_demand = c.invoke("provisioned-env", {}, force_cold=True)
    assert provisioned.report is not None and not provisioned.report.cold
    assert provisioned.result == "provisioned-concurrency"
    assert on_demand.result == "on-demand"


def test_9_region_is_configurable(tmp_path: Path) -> None:
    from tests.conftest import TEST_CONFIG, running_daemon

    source = (
        "import os\ndef handler(event, context):\n"
        "    return [os.environ['AWS_REGION'], context.invoked_function_arn]\n"
    )
    for d in running_daemon(TEST_CONFIG + 'region = "eu-west-3"\n'):
        with d.client() as c:
            out = _run(c, tmp_path, "regional", source)
    assert out == ["eu-west-3", "arn:aws:lambda:eu-west-3:000000000000:function:regional"]


def test_5_trace_id_is_new_for_every_invocation(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = "import os\ndef handler(event, context):\n    return os.environ['_X_AMZN_TRACE_ID']\n"
    with shared_daemon.client() as c:
        first = _run(c, tmp_path, "traced", source)
        second = c.invoke("traced", {}).result
    assert first != second
    stamp = int(first.split("-")[1].split(";")[0], 16)
    assert abs(stamp - time.time()) < 300


def test_8_context_field_by_field(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "def handler(event, context):\n"
        "    return {'mem': context.memory_limit_in_mb, 'version': context.function_version,\n"
        "            'identity': [context.identity.cognito_identity_id,\n"
        "                         context.identity.cognito_identity_pool_id],\n"
        "            'client_context': context.client_context, 'tenant': context.tenant_id,\n"
        "            'arn': context.invoked_function_arn, 'repr': repr(context),\n"
        "            'w3c': context.w3c(), 'remaining': context.get_remaining_time_in_millis()}\n"
    )
    with shared_daemon.client() as c:
        out = _run(c, tmp_path, "ctxfields", source, memory_mb=512, timeout_s=7)
    assert out["mem"] == "512" and out["version"] == "1"
    assert out["identity"] == [None, None]
    assert out["client_context"] is None and out["tenant"] is None and out["w3c"] == {}
    assert out["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:ctxfields"
    assert out["repr"].startswith("LambdaContext([aws_request_id=")
    assert "identity=CognitoIdentity([cognito_identity_id=None," in out["repr"]
    assert 0 < out["remaining"] <= 7000


def test_7_results_are_marshalled_as_lambda_does(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = (
        "import collections, decimal\n"
        "Point = collections.namedtuple('Point', 'x y')\n"
        "def handler(event, context):\n"
        "    return {'price': decimal.Decimal('19.990'), 'big': decimal.Decimal('1E+3'),\n"
        "            'point': Point(1, 2), 'raw': b'bytes', 'tuple': (1, 2),\n"
        "            'text': 'café', 'nan': float('nan')}\n"
    )
    with shared_daemon.client() as c:
        c.deploy("marshal", write_function(tmp_path / "marshal", source))
        inv = c.invoke("marshal", {})
        c.deploy("rawbytes", write_function(
            tmp_path / "rawbytes", "def handler(e, c):\n    return b'[1, 2]'\n"))  # fmt: skip
        raw = c.invoke("rawbytes", {})
    assert inv.error is None, inv.error
    r = inv.result
    assert r["point"] == {"x": 1, "y": 2} and r["raw"] == "bytes" and r["tuple"] == [1, 2]
    assert r["price"] == 19.99 and r["big"] == 1000 and r["text"] == "café"
    assert r["nan"] != r["nan"]
    assert raw.error is None and raw.result == [1, 2]


def test_3_root_logger_has_lambdas_handler(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "import logging\n"
        "logger = logging.getLogger()\n"
        "logger.setLevel(logging.INFO)\n"
        "def handler(event, context):\n"
        "    logger.info('processing %s', event['id'])\n"
        "    logging.getLogger('child').debug('hidden')\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError:\n"
        "        logger.exception('it broke')\n"
        "    return 'ok'\n"
    )
    with shared_daemon.client() as c:
        c.deploy("logtext", write_function(tmp_path / "logtext", source))
        inv = c.invoke("logtext", {"id": 42})
        text = _log(c, "logtext", f"END RequestId: {inv.request_id}")
    line = next(x for x in text.splitlines() if "processing 42" in x)
    assert re.fullmatch(
        rf"\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{inv.request_id}\tprocessing 42",
        line,
    ), line
    assert "hidden" not in text
    assert "[ERROR]\t" in text and "\tit broke" in text
    assert 'File "/var/task/app.py", line 8, in handler' in text
    assert "ZeroDivisionError: division by zero" in text


def test_3_json_log_format_and_level(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "import logging\n"
        "logger = logging.getLogger('app')\n"
        "def handler(event, context):\n"
        "    logger.debug('dbg', extra={'order': 7})\n"
        "    logger.info({'structured': True})\n"
        "    try:\n"
        "        {}['k']\n"
        "    except KeyError:\n"
        "        logger.exception('lookup failed')\n"
        "    return 'ok'\n"
    )
    with shared_daemon.client() as c:
        c.deploy(
            "logjson",
            write_function(tmp_path / "logjson", source),
            log_format="JSON",
            application_log_level="DEBUG",
        )
        inv = c.invoke("logjson", {})
        text = _log(c, "logjson", f"END RequestId: {inv.request_id}")
    records = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    by_level = {r["level"]: r for r in records}
    assert by_level["DEBUG"]["message"] == "dbg" and by_level["DEBUG"]["order"] == 7
    assert by_level["DEBUG"]["requestId"] == inv.request_id
    assert by_level["DEBUG"]["logger"] == "app"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_level["DEBUG"]["timestamp"])
    assert by_level["INFO"]["message"] == {"structured": True}
    err = by_level["ERROR"]
    assert err["errorType"] == "KeyError" and err["errorMessage"] == "'k'"
    assert err["location"] == "/var/task/app.py:handler:9"
    assert any('File "/var/task/app.py", line 7' in f for f in err["stackTrace"])


def test_10_init_failure_is_logged_like_lambda(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("initfail", write_function(tmp_path / "initfail", "import requests_missing\n"))
        inv = c.invoke("initfail", {})
        text = _log(c, "initfail", "Traceback")
        c.deploy(
            "initraise",
            write_function(tmp_path / "initraise", "import json\nCONFIG = json.loads('{')\n"),
        )
        raised = c.invoke("initraise", {})
        raised_text = _log(c, "initraise", "Traceback")
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ImportModuleError"
    lines = text.splitlines()
    i = lines.index(
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': "
        "No module named 'requests_missing'"
    )
    assert lines[i + 1] == "Traceback (most recent call last):"
    assert any("LAMBDA_WARNING: Unhandled exception." in x for x in lines[:i])
    # A module that raises at import: Lambda reports the exception itself, with its frames.
    assert raised.error is not None and raised.error["errorType"] == "JSONDecodeError"
    trace = raised.error["stackTrace"]
    assert any('File "/var/task/app.py", line 2, in <module>' in f for f in trace)
    assert any('File "/var/lang/lib/python3.11/json/__init__.py"' in f for f in trace)
    assert "[ERROR] JSONDecodeError: Expecting property name" in raised_text
    assert '\u00a0\u00a0File "/var/task/app.py", line 2, in <module>' in raised_text


def test_10_no_host_path_in_any_stack_trace(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = "import json\ndef handler(event, context):\n    return json.loads(event['text'])\n"
    with shared_daemon.client() as c:
        c.deploy("hostpaths", write_function(tmp_path / "hostpaths", source))
        inv = c.invoke("hostpaths", {"text": "{"})
        text = _log(c, "hostpaths", f"END RequestId: {inv.request_id}")
    assert inv.error is not None and inv.error["errorType"] == "JSONDecodeError"
    trace = inv.error["stackTrace"]
    assert trace[0].startswith('  File "/var/task/app.py", line 3, in handler')
    files = [re.match(r'  File "([^"]+)"', f).group(1) for f in trace]  # type: ignore[union-attr]
    assert all(f.startswith(("/var/task/", "/var/lang/")) for f in files), files
    root = str(Path(__file__).parents[2])
    for leaked in ("/root/", root, "/.venv/", "sandbox/runtimes"):
        assert leaked not in json.dumps(inv.error) and leaked not in text, leaked


def test_12_raised_exception_is_unhandled(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    source = (
        "class OrderError(Exception):\n    pass\n"
        "def handler(event, context):\n"
        "    raise OrderError('order 7 is invalid')\n"
    )
    with shared_daemon.client() as c:
        c.deploy("unhandled", write_function(tmp_path / "unhandled", source))
        inv = c.invoke("unhandled", {})
        text = _log(c, "unhandled", f"END RequestId: {inv.request_id}")
    assert inv.function_error == "Unhandled"
    assert inv.error is not None
    assert set(inv.error) == {"errorMessage", "errorType", "stackTrace"}
    assert inv.error["errorType"] == "OrderError"
    assert inv.error["stackTrace"] == [
        '  File "/var/task/app.py", line 4, in handler\n'
        "    raise OrderError('order 7 is invalid')\n"
    ]
    lines = text.splitlines()
    i = lines.index("[ERROR] OrderError: order 7 is invalid")
    assert lines[i + 1] == "Traceback (most recent call last):"
    assert lines[i + 2] == '\u00a0\u00a0File "/var/task/app.py", line 4, in handler'


def test_10_tracebacks_a_function_prints_name_sandbox_paths(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = (
        "import json, traceback\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        json.loads('{')\n"
        "    except ValueError:\n"
        "        return traceback.format_exc()\n"
    )
    with shared_daemon.client() as c:
        text = _run(c, tmp_path, "printedtb", source)
    assert 'File "/var/lang/lib/python3.11/json/decoder.py"' in text, text
    assert "/root/" not in text and str(Path(__file__).parents[2]) not in text
    assert "obj, end = self.scan_once(s, idx)" in text  # the source line: the file is there


def test_3_logging_config_from_the_command_line(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    from tests.integration.test_cli import lambdad

    code = write_function(
        tmp_path / "clilog",
        "import logging\n"
        "def handler(event, context):\n"
        "    logging.getLogger('cli').debug('from the cli')\n"
        "    return 1\n",
    )
    s = shared_daemon.socket
    bad = lambdad(s, "deploy", "clilog", "--code", str(code), "--log-level", "DEBUG")
    assert bad.returncode != 0 and "needs log_format 'JSON'" in bad.stderr + bad.stdout
    ok = lambdad(s, "deploy", "clilog", "--code", str(code), "--log-format", "JSON",
                 "--log-level", "DEBUG")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    described = json.loads(ok.stdout)
    assert (described["log_format"], described["application_log_level"]) == ("JSON", "DEBUG")
    with shared_daemon.client() as c:
        inv = c.invoke("clilog", {})
        text = _log(c, "clilog", f"END RequestId: {inv.request_id}")
    record = next(json.loads(x) for x in text.splitlines() if "from the cli" in x)
    assert record["level"] == "DEBUG" and record["requestId"] == inv.request_id


def test_5_callers_trace_id_and_client_context_reach_the_handler(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """The socket's ``trace_id`` is the handler's ``_X_AMZN_TRACE_ID`` and the report's;
    a sampled one gets Lambda's ``XRAY TraceId`` line; ``client_context`` (base64 JSON) is
    ``context.client_context``."""
    source = (
        "import os\n"
        "def handler(event, context):\n"
        "    cc = context.client_context\n"
        "    return {'trace': os.environ['_X_AMZN_TRACE_ID'],\n"
        "            'cc': None if cc is None else [cc.custom, cc.env, cc.client is None]}\n"
    )
    root = "1-6b0e9dcb-ae2d79d2bb3951ce5bd9c02e"
    trace = f"Root={root};Parent=a25b544a682b3da4;Sampled=1"
    cc = base64.b64encode(json.dumps({"custom": {"k": "v"}, "env": {"e": "1"}}).encode())
    with shared_daemon.client() as c:
        c.deploy("tracecc", write_function(tmp_path / "tracecc", source))
        body = c.call(
            "invoke", name="tracecc", payload=b"{}", trace_id=trace, client_context=cc.decode()
        )
        plain = c.invoke("tracecc", {})
        for bad in ({"trace_id": "x" * 257}, {"trace_id": "Root=1\n"},
                    {"client_context": "bm90IGpzb24="}, {"client_context": "%%%"}):
            with pytest.raises(InvalidParameterValue) as raised:
                c.call("invoke", name="tracecc", payload=b"{}", **bad)
            assert raised.value.details.get("field") == next(iter(bad)), raised.value
        log = _log(c, "tracecc", plain.request_id)
    out = json.loads(body["result"])
    assert out == {"trace": trace, "cc": [{"k": "v"}, {"e": "1"}, True]}
    assert body["report"]["trace_id"] == trace
    assert plain.result["cc"] is None
    assert plain.report is not None and plain.report.trace_id == plain.result["trace"]
    assert plain.report.trace_id.endswith(";Sampled=0")
    lines = log.splitlines()
    report = f"REPORT RequestId: {body['request_id']}"
    i = next(n for n, line in enumerate(lines) if line.startswith(report))
    assert lines[i + 1] == f"XRAY TraceId: {root}\tSegmentId: a25b544a682b3da4\tSampled: true"
    assert not any(line.startswith("XRAY") and plain.result["trace"].split(";")[0][5:] in line
                   for line in lines)
