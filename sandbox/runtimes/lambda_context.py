"""The ``context`` argument of a Python handler, field by field as Lambda's runtime has it.

Lambda's runtime interface client (``awslambdaric``, ``lambda_context.py``) is the reference:
strings where it has strings (``memory_limit_in_mb`` is the environment variable's text),
``identity`` always a :class:`CognitoIdentity` (its fields ``None`` unless the caller sent
one), ``client_context`` ``None`` unless the caller sent one, ``tenant_id``, ``log()``, and a
``__repr__`` of the same shape. ``tests/compat/test_context.py`` compares the two.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: Mapping[str, Any] | None = None) -> None:
        identity = identity or {}
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(["
            f"cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = (  # noqa: RUF023 (Lambda's order: __repr__ shows them in it)
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __init__(self, client: Mapping[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, client.get(name))

    def __repr__(self) -> str:
        fields = ",".join(f"{n}={getattr(self, n)}" for n in self.__slots__)
        return f"{type(self).__name__}([{fields}])"


class ClientContext:
    __slots__ = ("custom", "env", "client")  # noqa: RUF023 (Lambda's order)

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.custom = context.get("custom")
        self.env = context.get("env")
        client = context.get("client")
        self.client = Client(client) if isinstance(client, Mapping) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}([custom={self.custom},env={self.env},client={self.client}])"


class LambdaContext:
    """What ``handler(event, context)`` receives.

    ``deadline_ns`` is on the monotonic clock (the sandbox's clock for the invocation's
    timeout); Lambda's is an epoch deadline, which a wall-clock step would distort."""

    def __init__(
        self,
        request_id: str,
        env: Mapping[str, str],
        invoked_function_arn: str,
        deadline_ns: int,
        client_context: Mapping[str, Any] | None = None,
        cognito_identity: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        w3c: dict[str, str] = {}
        if isinstance(client_context, Mapping) and "w3c" in client_context:
            # Lambda takes the W3C trace context out of client_context (w3c() has it).
            client_context = dict(client_context)
            raw = client_context.pop("w3c")
            if isinstance(raw, Mapping):
                w3c = {k: raw[k] for k in W3C_FIELDS if isinstance(raw.get(k), str)}
        self._w3c = w3c
        self.client_context = (
            ClientContext(client_context) if isinstance(client_context, Mapping) else None
        )
        self.identity = CognitoIdentity(cognito_identity)
        self._deadline_ns = deadline_ns

    def get_remaining_time_in_millis(self) -> int:
        return max(0, (self._deadline_ns - time.monotonic_ns()) // 1_000_000)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context the caller sent (``traceparent``, ``tracestate``, ...)."""
        return dict(self._w3c)

    def log(self, msg: object) -> None:
        """Write to the function's log stream (through Lambda's handler when installed)."""
        for handler in logging.getLogger().handlers:
            sink = getattr(handler, "log_sink", None)
            if sink is not None:
                sink.log(str(msg))
                return
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )
