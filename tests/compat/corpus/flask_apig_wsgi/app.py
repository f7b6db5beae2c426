# Flask through apig-wsgi, as its README wires it (API Gateway REST API).
from apig_wsgi import make_lambda_handler
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/todos/<int:todo_id>")
def todo(todo_id):
    return jsonify(id=todo_id, verbose=request.args.get("verbose"), host=request.host)


lambda_handler = make_lambda_handler(app)
