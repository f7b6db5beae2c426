# Powertools' documented Logger example: structured JSON logs with the Lambda context.
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="payment")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict, context: LambdaContext) -> dict:
    logger.info("Collecting payment", extra={"order_id": event["order_id"]})
    logger.append_keys(customer=event["customer"])
    logger.info("Payment collected")
    return {"statusCode": 200, "body": "paid"}
