# A Chalice app as `chalice new-project` writes it; the handler is the app object itself.
from chalice import Chalice

app = Chalice(app_name="helloworld")


@app.route("/todos/{todo_id}")
def get_todo(todo_id):
    params = app.current_request.query_params or {}
    return {"todo": todo_id, "verbose": params.get("verbose")}
