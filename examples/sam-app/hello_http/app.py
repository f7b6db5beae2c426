"""An HTTP API function (payload format 2.0): GET /hello/{name} behind the gateway."""

import json


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    greeting = (event.get("queryStringParameters") or {}).get("greeting", "Hello")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "cookies": [f"last_name={name}; Path=/"],
        "body": json.dumps({"message": f"{greeting}, {name}!", "route": event["routeKey"]}),
    }
