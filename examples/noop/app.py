"""Does nothing: the benchmark's no-op function."""


def handler(event, context):
    return None
