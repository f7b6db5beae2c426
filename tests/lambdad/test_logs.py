"""Log streams on a temporary directory: buffering, tail and cursor reads, rotation, delete."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lambdad.logs import LogStore, LogStream, wire_cursor


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., LogStore]]:
    """LogStores under tmp_path whose open files are closed after the test."""
    stores: list[LogStore] = []

    def make(max_bytes: int = 1024 * 1024, keep: int = 2) -> LogStore:
        stores.append(LogStore(str(tmp_path / "logs"), max_bytes=max_bytes, keep=keep))
        return stores[-1]

    yield make
    for store in stores:
        for stream in list(store.streams):
            stream.close()


@pytest.fixture
def store(make_store: Callable[..., LogStore]) -> LogStore:
    return make_store()


@pytest.fixture
def small_store(make_store: Callable[..., LogStore]) -> LogStore:
    """Rotates past 50 bytes, keeps 2 rotated files."""
    return make_store(max_bytes=50, keep=2)


def files(stream: LogStream) -> list[str]:
    return sorted(os.listdir(os.path.dirname(stream.path)))


def test_stream_names_follow_lambda(store: LogStore) -> None:
    stream = store.open_stream("fn", "3", "ab12")

    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[3\]ab12", stream.name)
    assert stream.path == os.path.join(store.root, "fn", stream.name.replace("/", "-") + ".log")
    assert not os.path.exists(stream.path)  # created by the first flush, off the request path
    stream.write(b"x\n")
    stream.flush()
    assert os.path.exists(stream.path)
    assert stream in store.streams


def test_writes_are_buffered_until_flushed(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"START RequestId: x\n")

    assert stream.dirty
    assert not os.path.exists(stream.path)  # still in the buffer

    stream.flush()

    assert not stream.dirty
    assert Path(stream.path).read_bytes() == b"START RequestId: x\n"


def test_empty_writes_are_ignored(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"")
    assert not stream.dirty


def test_read_flushes_and_returns_the_tail_with_a_cursor(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"one\n")
    stream.write(b"two\n")

    data, cursor = store.read("fn", None)

    assert data == b"one\ntwo\n"
    assert _offsets(cursor) == {os.path.basename(stream.path): 8}
    assert not stream.dirty


def test_cursor_reads_return_only_new_data(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"old\n")
    _, cursor = store.read("fn", None)

    stream.write(b"new 1\n")
    data, cursor = store.read("fn", cursor)
    assert data == b"new 1\n"

    data, again = store.read("fn", cursor)
    assert data == b""
    assert again == cursor

    stream.write(b"new 2\n")
    data, cursor = store.read("fn", cursor)
    assert data == b"new 2\n"
    assert _offsets(cursor) == {os.path.basename(stream.path): 16}


def test_a_cursor_picks_up_a_stream_it_has_not_seen(store: LogStore) -> None:
    first = store.open_stream("fn", "1", "a")
    first.write(b"a\n")
    _, cursor = store.read("fn", None)

    second = store.open_stream("fn", "1", "b")
    second.write(b"b\n")
    data, cursor = store.read("fn", cursor)

    assert data == b"b\n"
    assert set(_offsets(cursor)) == {os.path.basename(first.path), os.path.basename(second.path)}


def test_tail_is_cut_at_a_line_boundary(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    lines = [f"line {i:02d}\n".encode() for i in range(100)]  # 8 bytes each
    for line in lines:
        stream.write(line)

    data, _ = store.read("fn", None, tail_bytes=50)

    # The last 50 bytes start mid-line; the partial line is dropped.
    assert data == b"".join(lines[-6:])


def test_streams_are_read_oldest_first(store: LogStore) -> None:
    older = store.open_stream("fn", "1", "a")
    newer = store.open_stream("fn", "2", "b")
    newer.write(b"from b\n")
    older.write(b"from a\n")
    store.flush_all()
    os.utime(older.path, ns=(10**18, 10**18))
    os.utime(newer.path, ns=(2 * 10**18, 2 * 10**18))

    data, _ = store.read("fn", None)

    assert data == b"from a\nfrom b\n"


def test_read_of_an_unknown_function_is_empty(store: LogStore) -> None:
    assert store.read("nobody", None) == (b"", {})
    assert store.read("nobody", {"x.log": 5}) == (b"", {})


# ---------------------------------------------------------------------------------------------
# Rotation


def test_rotation_keeps_keep_files(small_store: LogStore) -> None:
    store = small_store
    stream = store.open_stream("fn", "1", "a")
    base = os.path.basename(stream.path)

    stream.write(b"a" * 30)
    stream.flush()
    assert files(stream) == [base]
    stream.write(b"b" * 30)  # 60 > 50: rotate

    assert files(stream) == [base, f"{base}.1"]
    assert Path(f"{stream.path}.1").read_bytes() == b"a" * 30 + b"b" * 30
    assert Path(stream.path).read_bytes() == b""

    for chunk in (b"c" * 51, b"d" * 51, b"e" * 51):
        stream.write(chunk)

    assert files(stream) == [base, f"{base}.1", f"{base}.2"]
    assert Path(f"{stream.path}.1").read_bytes() == b"e" * 51
    assert Path(f"{stream.path}.2").read_bytes() == b"d" * 51

    stream.write(b"tail\n")
    stream.flush()
    assert Path(stream.path).read_bytes() == b"tail\n"


def test_keep_zero_keeps_no_rotated_file(make_store: Callable[..., LogStore]) -> None:
    store = make_store(max_bytes=50, keep=0)
    stream = store.open_stream("fn", "1", "a")

    stream.write(b"x" * 60)
    stream.write(b"y" * 60)
    stream.write(b"z\n")
    stream.flush()

    assert files(stream) == [os.path.basename(stream.path)]
    assert Path(stream.path).read_bytes() == b"z\n"


def test_rotation_counts_what_the_file_already_held(small_store: LogStore) -> None:
    store = small_store
    first = store.open_stream("fn", "1", "a")
    first.write(b"x" * 40)
    first.close()

    reopened = store.open_stream("fn", "1", "a")  # same day, same sandbox: same file
    assert reopened.path == first.path
    reopened.write(b"y" * 20)
    reopened.flush()

    assert Path(f"{reopened.path}.1").read_bytes() == b"x" * 40 + b"y" * 20


def test_a_cursor_follows_a_stream_across_rotation(small_store: LogStore) -> None:
    store = small_store
    stream = store.open_stream("fn", "1", "a")
    name = os.path.basename(stream.path)
    stream.write(b"a" * 29 + b"\n")
    _, cursor = store.read("fn", None)
    assert cursor[name] == 30

    stream.write(b"b" * 29 + b"\n")  # 60 > 50: rotated away, after the cursor
    stream.write(b"fresh\n")
    data, cursor = store.read("fn", cursor)

    # Nothing is lost: the rest of the rotated file, then the new one.
    assert data == b"b" * 29 + b"\n" + b"fresh\n"
    assert cursor[name] == 6
    assert cursor[name + "@inode"] == os.stat(stream.path).st_ino


def test_rotated_files_are_not_read_as_streams(small_store: LogStore) -> None:
    store = small_store
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"r" * 60)
    stream.write(b"live\n")

    data, cursor = store.read("fn", None)

    assert data == b"live\n"
    assert list(_offsets(cursor)) == [os.path.basename(stream.path)]


# ---------------------------------------------------------------------------------------------
# Closing and deleting


def test_close_flushes_and_forgets_the_stream(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"bye\n")

    stream.close()
    stream.close()  # twice is fine

    assert Path(stream.path).read_bytes() == b"bye\n"
    assert stream not in store.streams
    stream.write(b"ignored\n")
    assert Path(stream.path).read_bytes() == b"bye\n"


def test_delete_function_removes_its_files_and_only_its(store: LogStore) -> None:
    doomed = [store.open_stream("fn", "1", "a"), store.open_stream("fn", "2", "b")]
    kept = store.open_stream("other", "1", "c")
    for stream in (*doomed, kept):
        stream.write(b"line\n")

    store.delete_function("fn")

    assert not os.path.exists(store.function_dir("fn"))
    assert store.streams == {kept}
    assert store.read("fn", None) == (b"", {})
    doomed[0].write(b"late output\n")  # a sandbox still finishing: dropped, no error
    assert not os.path.exists(store.function_dir("fn"))
    assert store.read("other", None)[0] == b"line\n"


def test_delete_of_a_function_without_logs(store: LogStore) -> None:
    store.delete_function("never-ran")
    assert os.listdir(store.root) == []


# ---------------------------------------------------------------------------------------------
# Cursors from the wire


def test_wire_cursor() -> None:
    assert wire_cursor(None) is None
    assert wire_cursor({}) == {}
    assert wire_cursor({"a.log": 3, "b.log": "4"}) == {"a.log": 3, "b.log": 4}
    with pytest.raises(ValueError, match="cursor must be a map"):
        wire_cursor([1])
    with pytest.raises(ValueError):
        wire_cursor({"a.log": "x"})


def _offsets(cursor: dict[str, int]) -> dict[str, int]:
    """The offset entries of a cursor (it also records each stream's inode)."""
    return {k: v for k, v in cursor.items() if not k.endswith("@inode")}


def test_close_later_writes_at_the_next_flush(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "late")
    stream.write(b"last words\n")
    stream.close_later()
    stream.write(b"ignored\n")  # closed: no more writes
    assert not os.path.exists(stream.path)  # nothing on the file system yet
    store.flush_all()
    assert Path(stream.path).read_bytes() == b"last words\n"
    assert stream not in store.streams


def test_deleting_a_function_drops_what_it_had_not_written(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "gone")
    stream.write(b"unwritten\n")
    stream.close_later()
    store.delete_function("fn")
    store.flush_all()
    assert not os.path.exists(store.function_dir("fn"))
