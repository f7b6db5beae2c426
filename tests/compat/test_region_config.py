"""The daemon's ``region`` setting: what functions see as AWS_REGION."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdad import config
from lambdad.errors import InvalidParameterValue


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"])
def test_real_region_names_are_accepted(tmp_path: Path, region: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[daemon]\nregion = "{region}"\n')
    assert config.load(str(path)).region == region


@pytest.mark.parametrize("region", ["local", "", "US-EAST-1", "us-east", 5, "us-east-1\\n"])
def test_anything_else_is_refused_by_name(tmp_path: Path, region: object) -> None:
    path = tmp_path / "c.toml"
    value = f'"{region}"' if isinstance(region, str) else str(region)
    path.write_text(f"[daemon]\nregion = {value}\n")  # "\\n": a TOML escape, a newline
    with pytest.raises(InvalidParameterValue, match="region must be an AWS region name"):
        config.load(str(path))


def test_default_is_us_east_1() -> None:
    assert config.DaemonConfig().region == "us-east-1"
