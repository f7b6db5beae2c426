"""Request and trace ids drawn from the pooled random bytes (lambdad.invoke._RandomPool)."""

from __future__ import annotations

import os
import re
import uuid

from lambdad.invoke import _RandomPool, new_request_id, new_trace_id

TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$")


def test_request_ids_are_distinct_version_4_uuids_across_pool_refills() -> None:
    # 16 bytes each: 3 x 4096 / 16 ids pass the pool's end twice.
    ids = [new_request_id() for _ in range(3 * _RandomPool.SIZE // 16)]
    assert len(set(ids)) == len(ids)
    for text in ids[:: 97]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_trace_ids_have_lambdas_shape_and_differ() -> None:
    ids = [new_trace_id(now=0x5F000000) for _ in range(500)]
    assert all(TRACE.match(t) for t in ids), ids[0]
    assert ids[0].startswith("Root=1-5f000000-")
    assert len(set(ids)) == len(ids)


def test_pool_takes_are_disjoint_and_a_request_larger_than_the_pool_is_served() -> None:
    pool = _RandomPool()
    a, b = pool.take(16), pool.take(16)
    assert len(a) == len(b) == 16 and a != b
    big = pool.take(_RandomPool.SIZE + 1)
    assert len(big) == _RandomPool.SIZE + 1


def test_a_forked_child_never_hands_out_its_parents_next_ids() -> None:
    new_request_id()  # the pool holds bytes the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_id = os.read(read, 100).decode()
    os.close(read)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert uuid.UUID(child_id).version == 4
    assert new_request_id() != child_id
