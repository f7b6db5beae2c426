"""The ``http`` scenario's no-op, run by lambdad (msgpack and HTTP) and by serverless-offline.

It returns ``{}`` rather than None: serverless-offline's Python runner waits for a truthy
result line and never answers an invocation whose handler returned None (measured with
serverless-offline 13.10: a 504 "Lambda timeout" after 6 s).
"""


def handler(event, context):
    return {}
