"""Always raises: shows a Handled function error with Lambda's error shape."""


class InsufficientFunds(Exception):
    pass


def handler(event, context):
    amount = (event or {}).get("amount", 100)
    raise InsufficientFunds(f"cannot withdraw {amount}")
