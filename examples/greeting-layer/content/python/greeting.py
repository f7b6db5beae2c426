"""A layer's package: on Lambda's path at /opt/python, shared by every function that uses it."""


def greet(name: str) -> str:
    return f"Hello, {name}, from a layer!"
