"""Greets whoever the event names: the README's first function."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"saying hello to {name}")
    return {"message": f"Hello, {name}!", "request_id": context.aws_request_id}
