"""Fixtures of the Lambda API tests."""

from __future__ import annotations

import botocore.auth
import pytest

from tests.api.signing import NOW


@pytest.fixture
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at NOW; the verifier is given NOW explicitly."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
