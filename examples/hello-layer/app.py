import greeting  # from the layer examples/greeting-layer, mounted at /opt/python


def handler(event, context):
    return {"message": greeting.greet(event.get("name", "world"))}
