"""Buckets: directories as S3 buckets, and object triggers that deliver S3 event records.

* :mod:`~lambdad.buckets.records` — S3 event notification records, key encoding, filters (pure);
* :mod:`~lambdad.buckets.store` — the bucket records (name -> directory), persisted;
* :mod:`~lambdad.buckets.index` — what was delivered, per object (SQLite), for the rescan;
* :mod:`~lambdad.buckets.watcher` — inotify watches over each bucket's tree, polling fallback;
* :mod:`~lambdad.buckets.component` — :class:`Buckets`, the component that ties them to
  ``s3`` triggers and stores each event through :meth:`Service.enqueue`;
* :mod:`~lambdad.buckets.push` — S3 notifications pushed by MinIO / Ceph RGW to the gateway;
* :mod:`~lambdad.buckets.wire` — the socket's ``bucket_*`` ops and ``bucket:`` mounts.

See docs/triggers-buckets.md.
"""
