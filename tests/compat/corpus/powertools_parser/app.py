# Powertools' documented parser example: a pydantic model inside an EventBridge envelope.
from typing import List, Optional

from aws_lambda_powertools.utilities.parser import BaseModel, envelopes, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext


class OrderItem(BaseModel):
    id: int
    quantity: int
    description: str


class Order(BaseModel):
    id: int
    description: str
    items: List[OrderItem]
    optional_field: Optional[str] = None


@event_parser(model=Order, envelope=envelopes.EventBridgeEnvelope)
def handler(event: Order, context: LambdaContext):
    return {
        "order": event.id,
        "quantity": sum(item.quantity for item in event.items),
        "descriptions": [item.description for item in event.items],
    }
