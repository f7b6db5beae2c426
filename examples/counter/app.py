"""Counts its invocations in a module global: proves a warm sandbox keeps its state."""

import os

COUNT = 0
STARTED_IN = os.getpid()


def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": STARTED_IN}
