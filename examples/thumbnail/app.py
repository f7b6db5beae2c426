"""The photo-resize pipeline: an upload to bucket ``uploads`` fires this function, which writes
a thumbnail (at most 128 px on its longer side) to bucket ``thumbnails``.

Both buckets are mounted (function.json): ``/mnt/uploads`` read-only, ``/mnt/thumbnails``
read-write. Pillow comes from the ``pillow`` example layer at /opt/python. The key in an S3
record is URL-encoded, as S3 sends it: ``unquote_plus`` it first.
"""

import os
import urllib.parse

from PIL import Image

MAX_PX = 128


def handler(event, context):
    made = []
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        source = os.path.join("/mnt/uploads", key)
        target = os.path.join("/mnt/thumbnails", key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".part")
        with Image.open(source) as image:
            image.thumbnail((MAX_PX, MAX_PX))
            size = image.size
            image.convert("RGB").save(partial, "JPEG", quality=85)
        os.replace(partial, target)  # readers never see a half-written thumbnail
        made.append({"key": key, "width": size[0], "height": size[1]})
    return {"thumbnails": made}
