# A DynamoDB Streams consumer as AWS's examples write it: boto3's TypeDeserializer turns the
# stream image into Python values (numbers become Decimal) and the items are returned as-is.
import logging

from boto3.dynamodb.types import TypeDeserializer

logger = logging.getLogger()
logger.setLevel(logging.INFO)
deserializer = TypeDeserializer()


def handler(event, context):
    items = []
    for record in event["Records"]:
        logger.info("%s %s", record["eventName"], record["dynamodb"]["Keys"])
        image = record["dynamodb"]["NewImage"]
        item = {k: deserializer.deserialize(v) for k, v in image.items()}
        item["Tags"] = sorted(item["Tags"])
        items.append(item)
    return {"processed": len(items), "items": items}
