# Flask through serverless-wsgi, as the Serverless Framework plugin's handler calls it.
import serverless_wsgi
from flask import Flask, request

app = Flask(__name__)


@app.route("/items/<int:item_id>")
def item(item_id):
    return {"item_id": item_id, "q": request.args["q"], "cookie": request.cookies.get("session")}


def handler(event, context):
    return serverless_wsgi.handle_request(app, event, context)
