"""What runs inside a sandbox. ``python`` is the first runtime (forked from a zygote that has
already imported it); each runtime module exposes ``PRELOAD`` (modules the zygote imports)
and ``serve()`` (the sandbox's main loop after pool-time set-up)."""
