# Powertools' documented SQS batch processing with partial batch responses.
import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

processor = BatchProcessor(event_type=EventType.SQS)
logger = Logger()


def record_handler(record: SQSRecord):
    order = json.loads(record.body)
    if order["amount"] < 0:
        raise ValueError(f"negative amount in order {order['order_id']}")
    logger.info("processed", extra={"order_id": order["order_id"]})


@logger.inject_lambda_context
def lambda_handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
