"""functions.validate: every field's bounds, and the ``field`` detail that names the bad one."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lambdad.errors import InvalidParameterValue
from lambdad.functions import (
    ENV_MAX_BYTES,
    RESERVED_ENV,
    FunctionConfig,
    Version,
    validate,
    version_sha256,
)


def refused(args: dict[str, Any]) -> InvalidParameterValue:
    with pytest.raises(InvalidParameterValue) as info:
        validate({"name": "f", **args})
    return info.value


def test_defaults_are_lambdas() -> None:
    cfg = validate({"name": "f"})

    assert cfg == FunctionConfig("f")
    assert (cfg.handler, cfg.runtime, cfg.memory_mb, cfg.timeout_s) == (
        "app.handler",
        "python3",
        128,
        3.0,
    )
    assert (cfg.env, cfg.concurrency, cfg.network, cfg.tmp_mb, cfg.min_warm, cfg.pids_max) == (
        {},
        None,
        "none",
        512,
        0,
        64,
    )


def test_every_field_is_carried_through() -> None:
    cfg = validate(
        {
            "name": "resize-images_2",
            "handler": "pkg/mod.run",
            "runtime": "python3",
            "memory_mb": 1769,
            "timeout_s": 30,
            "env": {"BUCKET": "b", "LOG_LEVEL": "debug"},
            "concurrency": 5,
            "network": "none",
            "tmp_mb": 1024,
            "min_warm": 2,
            "pids_max": 128,
            "layers": [],
        }
    )

    assert cfg == FunctionConfig(
        name="resize-images_2",
        handler="pkg/mod.run",
        memory_mb=1769,
        timeout_s=30.0,
        env={"BUCKET": "b", "LOG_LEVEL": "debug"},
        concurrency=5,
        tmp_mb=1024,
        min_warm=2,
        pids_max=128,
    )
    assert type(cfg.timeout_s) is float


# -- name -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 64, "0", "-_-"])
def test_good_names(name: str) -> None:
    assert validate({"name": name}).name == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "a b", "a.b", "a/b", "é", "fn\n", "\nfn", None, 5, ["f"]],
    ids=repr,
)
def test_bad_names(name: Any) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        validate({"name": name})
    assert info.value.details == {"field": "name"}
    assert f"got {name!r}" in info.value.message


def test_a_missing_name_is_refused() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        validate({})
    assert info.value.details == {"field": "name"}


# -- handler ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler", ["app.handler", "pkg/mod.func", "a.b.c", "_a._b", "src/pkg/m.sub.f", "A1.B2"]
)
def test_good_handlers(handler: str) -> None:
    assert validate({"name": "f", "handler": handler}).handler == handler


@pytest.mark.parametrize(
    "handler",
    [
        "app",
        ".x",
        "app.",
        "1app.h",
        "app.1h",
        "a..b",
        "pkg/app",
        "/abs.f",
        "../up.f",
        "a-b.c",
        "app.handler\n",
        "app.handler ",
        "",
        "m." + "f" * 127,  # 129 characters
        None,
        7,
    ],
    ids=repr,
)
def test_bad_handlers(handler: Any) -> None:
    exc = refused({"handler": handler})
    assert exc.details == {"field": "handler"}
    assert exc.message == f"handler must look like 'module.function', got {handler!r}"


def test_handler_length_limit() -> None:
    ok = "m." + "f" * 126
    assert len(ok) == 128
    assert validate({"name": "f", "handler": ok}).handler == ok


# -- runtime ----------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["node", "python2", "", None, ["python3"]], ids=repr)
def test_bad_runtimes(runtime: Any) -> None:
    exc = refused({"runtime": runtime})
    assert exc.details == {"field": "runtime"}
    assert "runtime must be one of python3" in exc.message


# -- memory, tmp, min_warm, pids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "lo", "hi"),
    [("memory_mb", 64, 10240), ("tmp_mb", 16, 10240), ("min_warm", 0, 1000), ("pids_max", 8, 1024)],
)
def test_integer_bounds(field: str, lo: int, hi: int) -> None:
    assert getattr(validate({"name": "f", field: lo}), field) == lo
    assert getattr(validate({"name": "f", field: hi}), field) == hi
    for bad in (lo - 1, hi + 1, True, float(lo), str(lo), None):
        exc = refused({field: bad})
        assert exc.details == {"field": field}, bad
        assert exc.message == f"{field} must be an integer between {lo} and {hi}, got {bad!r}"


@pytest.mark.parametrize(("memory", "ok"), [(63, False), (64, True), (10240, True), (10241, False)])
def test_memory_edges(memory: int, ok: bool) -> None:
    if ok:
        assert validate({"name": "f", "memory_mb": memory}).memory_mb == memory
    else:
        assert refused({"memory_mb": memory}).details == {"field": "memory_mb"}


# -- timeout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.001, 1, 3.0, 900, 900.0])
def test_good_timeouts(timeout: float) -> None:
    assert validate({"name": "f", "timeout_s": timeout}).timeout_s == float(timeout)


@pytest.mark.parametrize(
    "timeout", [0, -1, 900.0001, 901, True, False, math.nan, math.inf, "3", None], ids=repr
)
def test_bad_timeouts(timeout: Any) -> None:
    exc = refused({"timeout_s": timeout})
    assert exc.details == {"field": "timeout_s"}
    assert exc.message == f"timeout_s must be a number in (0, 900], got {timeout!r}"


# -- env --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"A": 1}, "env must map strings to strings"),
        ({1: "a"}, "env must map strings to strings"),
        ("A=1", "env must map strings to strings"),
        (["A=1"], "env must map strings to strings"),
        ([], "env must map strings to strings"),  # not silently taken for an empty map
        ({"1A": "x"}, "env key '1A' is not a valid name"),
        ({"A-B": "x"}, "env key 'A-B' is not a valid name"),
        ({"_X": "x"}, "env key '_X' is not a valid name"),
        ({"A\n": "x"}, "env key 'A\\n' is not a valid name"),
        ({"": "x"}, "env key '' is not a valid name"),
        ({"AWS_REGION": "x"}, "env key 'AWS_REGION' is reserved"),
        ({"_HANDLER": "x"}, "env key '_HANDLER' is not a valid name"),
        ({"OK": "a\0b"}, "env value of 'OK' contains a NUL"),
    ],
    ids=repr,
)
def test_bad_env(env: Any, message: str) -> None:
    exc = refused({"env": env})
    assert exc.details == {"field": "env"}
    assert exc.message == message


@pytest.mark.parametrize("key", sorted(RESERVED_ENV))
def test_every_reserved_key_is_refused(key: str) -> None:
    exc = refused({"env": {key: "x"}})
    assert exc.details == {"field": "env"}
    if not key.startswith("_"):  # those already fail the name rule
        assert exc.message == f"env key {key!r} is reserved"


def test_env_size_limit_counts_bytes() -> None:
    exact = {"K": "v" * (ENV_MAX_BYTES - 1)}
    assert validate({"name": "f", "env": exact}).env == exact

    exc = refused({"env": {"K": "v" * ENV_MAX_BYTES}})
    assert exc.details == {"field": "env"}
    assert exc.message == "env is larger than 4096 bytes in total"

    # 2,048 characters but 4,096 bytes of UTF-8, plus the key: over.
    assert refused({"env": {"K": "é" * 2048}}).details == {"field": "env"}
    many = {f"K{i:03d}": "x" * 36 for i in range(103)}  # 103 * 40 = 4,120 bytes
    assert refused({"env": many}).details == {"field": "env"}


def test_env_none_is_empty() -> None:
    assert validate({"name": "f", "env": None}).env == {}


# -- concurrency, network, layers -------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [None, 0, 1, 100_000])
def test_good_concurrency(concurrency: int | None) -> None:
    assert validate({"name": "f", "concurrency": concurrency}).concurrency == concurrency


@pytest.mark.parametrize("concurrency", [-1, 100_001, True, 1.0, "2"], ids=repr)
def test_bad_concurrency(concurrency: Any) -> None:
    exc = refused({"concurrency": concurrency})
    assert exc.details == {"field": "concurrency"}
    assert exc.message.startswith("concurrency must be an integer between 0 and 100000")


def test_egress_is_accepted() -> None:
    assert validate({"name": "f", "network": "egress"}).network == "egress"
    assert validate({"name": "f"}).network == "none"


@pytest.mark.parametrize("network", ["internet", "", None, 1], ids=repr)
def test_unknown_network_modes(network: Any) -> None:
    exc = refused({"network": network})
    assert exc.details == {"field": "network"}
    assert exc.message == f"network must be 'none' or 'egress', got {network!r}"


def test_layers_are_layer_version_arns() -> None:
    exc = refused({"layers": ["numpy"]})
    assert exc.details == {"field": "layers"}
    assert exc.message == "layers must be layer version ARNs or NAME:VERSION, got 'numpy'"
    assert validate({"name": "f", "layers": []}).layers == ()
    assert validate({"name": "f", "layers": None}).layers == ()
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:numpy:3"
    assert validate({"name": "f", "layers": [arn]}).layers == (arn,)
    assert refused({"layers": [arn] * 6}).message == "a function may use at most 5 layers"


def test_the_first_bad_field_is_named() -> None:
    exc = refused({"name": "bad name", "memory_mb": 1})
    assert exc.details == {"field": "name"}


# -- versions ---------------------------------------------------------------------------------


def test_version_round_trips_through_a_dict() -> None:
    cfg = validate({"name": "f", "env": {"A": "1"}, "concurrency": 3, "timeout_s": 10})
    version = Version(2, cfg, "c" * 64, version_sha256(cfg, "c" * 64), 1_700_000_000.5)

    assert Version.from_dict(version.to_dict()) == version


def test_version_sha_depends_on_config_and_code_only() -> None:
    a = validate({"name": "f", "env": {"A": "1", "B": "2"}})
    b = validate({"name": "f", "env": {"B": "2", "A": "1"}})  # same env, other order
    c = validate({"name": "f", "env": {"A": "1", "B": "3"}})

    assert version_sha256(a, "x") == version_sha256(b, "x")
    assert version_sha256(a, "x") != version_sha256(c, "x")
    assert version_sha256(a, "x") != version_sha256(a, "y")
    assert len(version_sha256(a, "x")) == 64


def test_code_plus_layers_over_250_mb_unzipped_is_refused_with_lambdas_message() -> None:
    from lambdad.functions import MAX_UNZIPPED_WITH_LAYERS, check_unzipped_size

    check_unzipped_size(MAX_UNZIPPED_WITH_LAYERS - 3, [1, 1, 1])  # exactly at the limit
    with pytest.raises(InvalidParameterValue) as info:
        check_unzipped_size(MAX_UNZIPPED_WITH_LAYERS - 3, [1, 1, 1, 1])
    assert str(info.value) == (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        "bytes. The actual size is 262144001 bytes."
    )
    assert info.value.details == {"field": "layers"}
    with pytest.raises(InvalidParameterValue) as too_many:
        check_unzipped_size(1, [1] * 6)
    assert "at most 5 layers" in str(too_many.value)
