# FastAPI behind Mangum, as Mangum's README deploys it (API Gateway HTTP API, payload 2.0).
from typing import Optional

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/items/{item_id}")
def read_item(item_id: int, q: Optional[str] = None, limit: int = 10):
    return {"item_id": item_id, "q": q, "limit": limit}


handler = Mangum(app, lifespan="off")
