"""A function whose Init costs something: it imports a batch of the standard library (as a
real function imports its SDK and libraries), then behaves like ``stamp``.

Event: {"ms": 100} holds for 0.1 s. Returns {"started_ns": ...}.
"""

import asyncio  # noqa: F401
import csv  # noqa: F401
import email.parser  # noqa: F401
import http.client  # noqa: F401
import logging.handlers  # noqa: F401
import sqlite3  # noqa: F401
import time
import unittest  # noqa: F401
import urllib.request  # noqa: F401
import xml.etree.ElementTree  # noqa: F401
from typing import Any


def handler(event: Any, context: Any) -> dict[str, int]:
    started = time.monotonic_ns()
    time.sleep(float((event or {}).get("ms", 0)) / 1000)
    return {"started_ns": started}
