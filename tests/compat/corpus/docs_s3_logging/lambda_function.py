# The shape of AWS's "Using an Amazon S3 trigger to invoke a Lambda function" tutorial: a
# module-level client, the root logger at INFO, the key URL-decoded from the event.
import json
import logging
import urllib.parse

import boto3

logger = logging.getLogger()
logger.setLevel(logging.INFO)

s3 = boto3.client("s3")


def lambda_handler(event, context):
    logger.info("Received event: %s", json.dumps(event)[:80])
    record = event["Records"][0]
    bucket = record["s3"]["bucket"]["name"]
    key = urllib.parse.unquote_plus(record["s3"]["object"]["key"], encoding="utf-8")
    logger.info("New object s3://%s/%s (%d bytes)", bucket, key, record["s3"]["object"]["size"])
    return {"bucket": bucket, "key": key, "region": s3.meta.region_name}
