"""A tenant's function with a secret in its environment (the control-plane tests).

``print``: writes the secret to the log, as careless handlers do; ``fail``: raises with it, so
a failed async event's dead letter carries it; ``ok``: returns without touching it.
"""

import os


def handler(event, context):
    mode = (event or {}).get("mode", "ok")
    if mode == "print":
        print("using key", os.environ["API_KEY"])
    elif mode == "fail":
        raise RuntimeError(f"the upstream refused key {os.environ['API_KEY']}")
    return {"ok": True}
