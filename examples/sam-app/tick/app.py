"""A scheduled function: receives EventBridge's Scheduled Event and prints when it was due."""


def handler(event, context):
    print(f"tick: scheduled for {event['time']} ({event['detail-type']})")
    return {"scheduled": event["time"]}
