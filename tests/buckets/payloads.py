"""Notifications as S3-compatible servers push them, written by hand from their documentation.

MINIO_WEBHOOK: MinIO's webhook target POSTs ``{"EventName", "Key", "Records"}``; the record is
the example of MinIO's "Bucket Notification Guide" (docs.min.io, "Publish Events to Webhook":
``eventVersion`` 2.0, ``eventSource`` ``minio:s3``, ``s3:``-prefixed ``eventName``, the
``contentType``/``userDefined``/``versionId`` object fields and the ``source`` block).

CEPH_RGW_PUSH: Ceph RGW's HTTP push endpoint receives ``{"Records": [...]}`` with the record of
the Ceph Object Gateway "Bucket Notifications" / "Event record" documentation
(docs.ceph.com/en/latest/radosgw/notifications/, ``eventSource`` ``ceph:s3``, the size as a
string, ``metadata``/``tags`` lists, ``eventId`` and ``opaqueData``).
"""

from __future__ import annotations

from typing import Any, Final

MINIO_WEBHOOK: Final[dict[str, Any]] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "images/photo 1.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-11-30T09:22:31.113Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {
                "principalId": "minioadmin",
                "region": "",
                "sourceIPAddress": "192.168.1.130",
            },
            "responseElements": {
                "content-length": "0",
                "x-amz-request-id": "17C9A3A5E6D0C3F2",
                "x-minio-deployment-id": "0d0d3e3c-6f22-4c1f-9d8e-0ad6f1c4c1aa",
                "x-minio-origin-endpoint": "http://192.168.1.10:9000",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "images",
                    "ownerIdentity": {"principalId": "minioadmin"},
                    "arn": "arn:aws:s3:::images",
                },
                "object": {
                    "key": "photo+1.jpg",
                    "size": 488,
                    "eTag": "f22d66a7d0dbbc4a7cf1122eeeb1a106",
                    "contentType": "image/jpeg",
                    "userDefined": {"content-type": "image/jpeg"},
                    "versionId": "1",
                    "sequencer": "17C9A3A5E6F1D2B4",
                },
            },
            "source": {
                "host": "192.168.1.130",
                "port": "",
                "userAgent": "MinIO (linux; amd64) minio-go/v7.0.63 mc/RELEASE.2023-10-14",
            },
        }
    ],
}

CEPH_RGW_PUSH: Final[dict[str, Any]] = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "ceph:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2019-11-22T13:47:35.124724Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "tester"},
            "requestParameters": {"sourceIPAddress": ""},
            "responseElements": {
                "x-amz-request-id": "503a4c37-85eb-47cd-8681-2817e80b4281.5330.903595",
                "x-amz-id-2": "14d2-zone1-zonegroup1",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "mynotif1",
                "bucket": {
                    "name": "mybucket1",
                    "ownerIdentity": {"principalId": "tester"},
                    "arn": "arn:aws:s3:us-east-1::mybucket1",
                    "id": "503a4c37-85eb-47cd-8681-2817e80b4281.5332.38",
                },
                "object": {
                    "key": "myimage1.jpg",
                    "size": "1024",
                    "eTag": "37b51d194a7513e45b56f6524f2d51f2",
                    "versionId": "",
                    "sequencer": "F7E6D75DC742D108",
                    "metadata": [],
                    "tags": [],
                },
            },
            "eventId": "",
            "opaqueData": "me@example.com",
        }
    ]
}
