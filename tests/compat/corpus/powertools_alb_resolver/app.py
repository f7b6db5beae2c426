# Powertools' documented ALB event handler, with a POST body and a custom status code.
from http import HTTPStatus

from aws_lambda_powertools.event_handler import ALBResolver, Response, content_types

app = ALBResolver()


@app.post("/orders")
def create_order():
    order = app.current_event.json_body
    return Response(
        status_code=HTTPStatus.CREATED.value,
        content_type=content_types.APPLICATION_JSON,
        body={"item": order["item"], "quantity": order["quantity"], "status": "created"},
    )


def lambda_handler(event, context):
    return app.resolve(event, context)
