"""Fixtures of the template tests: the escape battery's own (``client`` on the module's
shared daemon, ``threads``, and the daemon-environment canary the battery checks for)."""

from tests.security.conftest import client  # noqa: F401
from tests.security.test_escape import daemon_environment_canary, threads  # noqa: F401
