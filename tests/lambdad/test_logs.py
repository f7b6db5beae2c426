"""Log streams on a temporary directory: the record format, durability points, the log_tail
ring, rotation, disk caps and retention, queries and cursors, rendering."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lambdad.logs import (
    LINE_MAX,
    TAIL_BYTES,
    LogEvent,
    LogLimits,
    LogQuery,
    LogStore,
    LogStream,
    compile_pattern,
    neutralise,
    parse_records,
    render,
    time_ms,
    wire_cursor,
)

RECORD = re.compile(rb"^[PF]\d{13} [^\n]*$")


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., LogStore]]:
    """LogStores under tmp_path whose open files are closed after the test."""
    stores: list[LogStore] = []

    def make(**limits: float) -> LogStore:
        store = LogStore(str(tmp_path / "logs"), 0, 0, limits=LogLimits(**limits))  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield make
    for store in stores:
        for stream in list(store.streams):
            stream.close()


@pytest.fixture
def store(make_store: Callable[..., LogStore]) -> LogStore:
    return make_store()


def raw(stream: LogStream) -> bytes:
    return Path(stream.path).read_bytes()


def events(stream: LogStream) -> list[LogEvent]:
    return list(parse_records(raw(stream)))


def texts(stream: LogStream) -> list[tuple[str, bytes]]:
    return [(e.source, e.message) for e in events(stream)]


def invocation(stream: LogStream, rid: str, output: bytes = b"") -> None:
    stream.platform(f"START RequestId: {rid} Version: 1")
    stream.write(output)
    stream.platform(f"END RequestId: {rid}")
    stream.platform(f"REPORT RequestId: {rid}\tDuration: 1.00 ms\t")


# ---------------------------------------------------------------------------------------------
# The record format


def test_stream_names_follow_lambda(store: LogStore) -> None:
    stream = store.open_stream("fn", "3", "ab12")

    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[3\]ab12", stream.name)
    assert stream.path == os.path.join(store.root, "fn", stream.name.replace("/", "-") + ".log")
    assert not os.path.exists(stream.path)  # created by the first flush
    stream.platform("START RequestId: x Version: 3")
    stream.flush()
    assert os.stat(stream.path).st_mode & 0o777 == 0o600


def test_every_line_is_one_tagged_record(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    invocation(stream, "r1", b"hello\nworld\n")
    stream.flush()

    lines = raw(stream).split(b"\n")
    assert lines[-1] == b""
    assert all(RECORD.match(line) for line in lines[:-1]), lines
    assert texts(stream) == [
        ("platform", b"START RequestId: r1 Version: 1"),
        ("function", b"hello"),
        ("function", b"world"),
        ("platform", b"END RequestId: r1"),
        ("platform", b"REPORT RequestId: r1\tDuration: 1.00 ms\t"),
    ]
    assert {e.request_id for e in events(stream)} == {"r1"}


def test_handler_output_cannot_forge_platform_records(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    forged = (
        b"REPORT RequestId: r1\tDuration: 0.01 ms\n"
        b"P1700000000000 END RequestId: r1\n"  # our own record syntax, printed by the handler
        b"\nP1700000000000 REPORT RequestId: r1\tDuration: 0.01 ms\n"
    )
    invocation(stream, "r1", forged)
    stream.flush()

    platform = [e.message for e in events(stream) if e.source == "platform"]
    assert platform == [
        b"START RequestId: r1 Version: 1",
        b"END RequestId: r1",
        b"REPORT RequestId: r1\tDuration: 1.00 ms\t",
    ]
    text = render(events(stream))
    assert len(re.findall(r"^REPORT RequestId", text, re.M)) == 1
    assert len(re.findall(r"^END RequestId", text, re.M)) == 1
    assert "[function] REPORT RequestId: r1\tDuration: 0.01 ms" in text


def test_platform_lines_start_on_a_new_line(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.platform("START RequestId: r1 Version: 1")
    stream.write(b"no newline at the end")
    stream.platform("END RequestId: r1")
    stream.flush()

    assert texts(stream)[1:] == [
        ("function", b"no newline at the end"),
        ("platform", b"END RequestId: r1"),
    ]


def test_a_line_split_across_pipe_reads_is_one_record(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"hel")
    stream.write(b"lo\nwor")
    stream.write(b"ld\n")
    stream.flush()
    assert texts(stream) == [("function", b"hello"), ("function", b"world")]


def test_an_endless_line_is_cut(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"x" * (LINE_MAX + 10))
    stream.flush()
    assert texts(stream) == [("function", b"x" * (LINE_MAX + 10))]
    assert not stream.dirty  # nothing held back


def test_newlines_in_platform_text_do_not_make_lines(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.platform("RequestId: r Error: one\nREPORT RequestId: r\r")
    stream.flush()
    assert texts(stream) == [("platform", b"RequestId: r Error: one REPORT RequestId: r ")]


def test_error_lines_are_function_output_on_their_own_lines(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"partial")
    stream.write_lines(b"[ERROR] E: msg\nREPORT RequestId: fake\n")
    stream.flush()
    assert texts(stream) == [
        ("function", b"partial"),
        ("function", b"[ERROR] E: msg"),
        ("function", b"REPORT RequestId: fake"),
    ]


def test_torn_and_foreign_lines_read_as_function_output() -> None:
    data = b"P1700000000000 START RequestId: r Version: 1\nP17000 torn\ngarbage line\n"
    parsed = parse_records(data)
    assert [(e.source, e.message) for e in parsed] == [
        ("platform", b"START RequestId: r Version: 1"),
        ("platform", b"torn"),  # a whole, well-formed record (only the daemon writes P)
        ("function", b"garbage line"),
    ]
    assert parse_records(b"Pxyz START RequestId: r\n")[0].source == "function"


def test_request_ids_of_function_lines() -> None:
    data = (
        b"F1700000000000 init output\n"
        b"P1700000000001 START RequestId: r1 Version: 1\n"
        b"F1700000000002 during r1\n"
        b"P1700000000003 END RequestId: r1\n"
        b"P1700000000004 REPORT RequestId: r1\tDuration: 1 ms\n"
        b"F1700000000005 between\n"
    )
    assert [e.request_id for e in parse_records(data)] == [None, "r1", "r1", "r1", "r1", None]


# ---------------------------------------------------------------------------------------------
# Buffering, durability points, holds


def test_writes_are_buffered_until_flushed(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.platform("START RequestId: x Version: 1")
    assert stream.dirty
    assert not os.path.exists(stream.path)
    stream.flush()
    assert not stream.dirty
    assert texts(stream) == [("platform", b"START RequestId: x Version: 1")]


def test_a_full_buffer_is_written_at_once(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"y" * 100 + b"\n")
    assert not os.path.exists(stream.path)
    stream.write((b"z" * 1000 + b"\n") * 70)  # past FLUSH_AT
    assert os.path.getsize(stream.path) > 64 * 1024


def test_a_held_stream_outlives_close_later(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.hold()
    stream.platform("START RequestId: r Version: 1")
    stream.close_later()  # the sandbox died mid-invocation
    stream.platform("END RequestId: r")  # the invocation still writes its records
    stream.platform("REPORT RequestId: r\t")
    stream.release()
    assert stream not in store.streams
    assert [m for _, m in texts(stream)][-1] == b"REPORT RequestId: r\t"
    stream.platform("ignored")
    assert len(texts(stream)) == 3


def test_close_flushes_and_forgets_the_stream(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"bye")
    stream.close()
    stream.close()
    assert texts(stream) == [("function", b"bye")]
    assert stream not in store.streams


def test_close_later_writes_at_the_next_flush(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "late")
    stream.write(b"last words\n")
    stream.close_later()
    stream.write(b"ignored\n")
    assert not os.path.exists(stream.path)
    store.flush_all()
    assert texts(stream) == [("function", b"last words")]
    assert stream not in store.streams


# ---------------------------------------------------------------------------------------------
# log_tail: a ring of the last 4 KB


def test_tail_is_a_bounded_ring(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.platform("START RequestId: r Version: 1")
    stream.start_tail()
    for i in range(2000):
        stream.write(b"%05d " % i + b"w" * 2000 + b"\n")
        assert stream.tail is not None and len(stream.tail) <= 4 * TAIL_BYTES + 3
    stream.platform("END RequestId: r")
    stream.platform("REPORT RequestId: r\tDuration: 1.00 ms\t")
    tail = stream.take_tail()

    assert len(tail.encode()) <= TAIL_BYTES
    assert tail.endswith("END RequestId: r\nREPORT RequestId: r\tDuration: 1.00 ms\t\n")
    assert "01999 www" in tail
    assert stream.tail is None


def test_a_cut_in_the_ring_never_yields_a_platform_line(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.start_tail()
    # One long function line, sized so that the ring's cut (it keeps the last 8 KB when it
    # passes 16 KB) lands exactly on our own record syntax printed by the handler.
    forged = b"P1700000000000 REPORT RequestId: forged\t"
    filler = b"b" * (2 * TAIL_BYTES - 1 - len(forged))
    stream.write(b"a" * 20_000 + forged + filler + b"\n")
    assert stream.tail is not None
    kept = parse_records(bytes(stream.tail))
    assert kept[0].message.startswith(b"P1700000000000 REPORT RequestId: forged")
    assert {e.source for e in kept} == {"function"}
    tail = stream.take_tail()
    assert tail.startswith("[...]b") and tail.endswith("b\n") and len(tail) <= TAIL_BYTES


# ---------------------------------------------------------------------------------------------
# Rotation, caps, retention


def test_rotation_keeps_keep_files(make_store: Callable[..., LogStore]) -> None:
    store = make_store(stream_bytes=200, keep=2)
    stream = store.open_stream("fn", "1", "a")
    base = os.path.basename(stream.path)
    for i in range(20):
        stream.write(b"line %02d " % i + b"x" * 40 + b"\n")
        stream.flush()
    stream.write(b"last\n")
    stream.flush()

    names = sorted(os.listdir(os.path.dirname(stream.path)))
    assert names == [base, f"{base}.1", f"{base}.2"]
    assert all(os.path.getsize(os.path.join(store.function_dir("fn"), n)) <= 260 for n in names)


def test_the_function_cap_removes_the_oldest_files(make_store: Callable[..., LogStore]) -> None:
    store = make_store(function_bytes=10_000, stream_bytes=2_000, keep=100)
    streams = [store.open_stream("fn", "1", f"s{i}") for i in range(8)]
    for stream in streams:  # crashing invocations: a fresh stream each
        for _ in range(30):
            stream.write(b"x" * 99 + b"\n")
            stream.flush()
        stream.close()

    on_disk = sum(p.stat().st_size for p in Path(store.function_dir("fn")).iterdir())
    assert on_disk <= 10_000
    assert store.function_bytes["fn"] == on_disk
    # The newest stream survives; the oldest went first.
    assert os.path.exists(streams[-1].path)
    assert not os.path.exists(streams[0].path)


def test_the_file_count_cap(make_store: Callable[..., LogStore]) -> None:
    store = make_store(function_files=10)
    for i in range(50):
        stream = store.open_stream("fn", "1", f"s{i:02d}")
        stream.write(b"boom\n")
        stream.close()
    assert len(os.listdir(store.function_dir("fn"))) <= 10
    assert store.function_files["fn"] <= 10


def test_the_global_cap_spans_functions(make_store: Callable[..., LogStore]) -> None:
    store = make_store(total_bytes=5_000)
    for fn in ("a", "b", "c"):
        for i in range(10):
            stream = store.open_stream(fn, "1", f"s{i}")
            stream.write(b"y" * 299 + b"\n")
            stream.close()
    total = sum(p.stat().st_size for p in Path(store.root).rglob("*.log*"))
    assert total <= 5_000 and store.total_bytes == total
    assert os.listdir(store.function_dir("c"))  # the newest function's files remain


def test_a_live_stream_over_the_cap_starts_a_new_file(make_store: Callable[..., LogStore]) -> None:
    store = make_store(function_bytes=1_000, stream_bytes=10**9)
    stream = store.open_stream("fn", "1", "live")
    for _ in range(50):
        stream.write(b"z" * 99 + b"\n")
        stream.flush()
    assert os.path.getsize(stream.path) <= 1_000
    stream.write(b"still writing\n")
    stream.flush()
    assert texts(stream)[-1] == ("function", b"still writing")


def test_retention_removes_old_files_at_start(make_store: Callable[..., LogStore]) -> None:
    first = make_store()
    old, new = first.open_stream("fn", "1", "old"), first.open_stream("fn", "1", "new")
    for stream in (old, new):
        stream.write(b"x\n")
        stream.close()
    month_ago = datetime.datetime.now().timestamp() - 30 * 86400
    os.utime(old.path, (month_ago, month_ago))

    second = make_store(retention_s=7 * 86400)

    assert not os.path.exists(old.path) and os.path.exists(new.path)
    assert second.removed_files == 1


def test_the_index_survives_a_restart(make_store: Callable[..., LogStore]) -> None:
    first = make_store()
    stream = first.open_stream("fn", "1", "a")
    stream.write(b"x" * 99 + b"\n")
    stream.close()
    second = make_store()
    assert second.function_bytes["fn"] == os.path.getsize(stream.path)
    assert second.function_files["fn"] == 1


def test_delete_function_removes_its_files_and_only_its(store: LogStore) -> None:
    doomed = [store.open_stream("fn", "1", "a"), store.open_stream("fn", "2", "b")]
    kept = store.open_stream("other", "1", "c")
    for stream in (*doomed, kept):
        stream.write(b"line\n")

    store.delete_function("fn")

    assert not os.path.exists(store.function_dir("fn"))
    assert store.streams == {kept}
    assert "fn" not in store.function_bytes
    doomed[0].write(b"late output\n")  # a sandbox still finishing: dropped, no error
    store.flush_all()
    assert not os.path.exists(store.function_dir("fn"))
    assert [e.message for e in store.query(LogQuery("other")).events] == [b"line"]


# ---------------------------------------------------------------------------------------------
# Queries


def _timeline(store: LogStore) -> list[str]:
    """Three invocations in one stream with known timestamps, written as raw records."""
    directory = Path(store.function_dir("fn"))
    directory.mkdir(parents=True)
    (directory / "2026-12-01-[1]a.log.1").write_bytes(
        b"P1000 START RequestId: r1 Version: 1\n"
        b"F1001 old output ERROR one\n"
        b"P1002 END RequestId: r1\n"
        b"P1003 REPORT RequestId: r1\tDuration: 1 ms\n"
    )
    (directory / "2026-12-01-[1]a.log").write_bytes(
        b"P2000 START RequestId: r2 Version: 1\n"
        b"F2001 middle output\n"
        b"P2002 END RequestId: r2\n"
        b"P2003 REPORT RequestId: r2\tDuration: 1 ms\n"
        b"P3000 START RequestId: r3 Version: 1\n"
        b"F3001 new output ERROR two\n"
        b"P3002 END RequestId: r3\n"
        b"P3003 REPORT RequestId: r3\tDuration: 1 ms\n"
    )
    return ["r1", "r2", "r3"]


def _messages(store: LogStore, **q: object) -> list[bytes]:
    return [e.message for e in store.query(LogQuery("fn", **q)).events]  # type: ignore[arg-type]


def test_query_reaches_rotated_files(store: LogStore) -> None:
    _timeline(store)
    page = store.query(LogQuery("fn"))
    assert [e.timestamp for e in page.events] == sorted(e.timestamp for e in page.events)
    assert page.events[0].message == b"START RequestId: r1 Version: 1"
    assert len(page.events) == 12 and not page.truncated
    assert page.events[0].stream == "2026/12/01/[1]a"


def test_query_by_time_request_and_pattern(store: LogStore) -> None:
    _timeline(store)
    assert _messages(store, since_ms=2000, until_ms=2003) == [
        b"START RequestId: r2 Version: 1",
        b"middle output",
        b"END RequestId: r2",
        b"REPORT RequestId: r2\tDuration: 1 ms",
    ]
    assert _messages(store, request_id="r1")[1] == b"old output ERROR one"
    assert _messages(store, pattern="ERROR") == [b"old output ERROR one", b"new output ERROR two"]
    assert _messages(store, pattern="ERROR -two") == [b"old output ERROR one"]
    assert _messages(store, pattern="?middle ?two") == [b"middle output", b"new output ERROR two"]
    assert _messages(store, pattern='"output ERROR t"') == [b"new output ERROR two"]
    assert _messages(store, pattern="%^REPORT.*r[23]%") == [
        b"REPORT RequestId: r2\tDuration: 1 ms",
        b"REPORT RequestId: r3\tDuration: 1 ms",
    ]


def test_query_limit_keeps_the_newest(store: LogStore) -> None:
    _timeline(store)
    page = store.query(LogQuery("fn", limit=2))
    assert [e.message for e in page.events] == [
        b"END RequestId: r3",
        b"REPORT RequestId: r3\tDuration: 1 ms",
    ]
    assert page.truncated
    page = store.query(LogQuery("fn", max_bytes=40))
    assert page.truncated and sum(len(e.message) for e in page.events) <= 40


def test_cursor_reads_return_only_new_records(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    invocation(stream, "r1")
    stream.flush()
    page = store.query(LogQuery("fn"))
    assert len(page.events) == 3

    invocation(stream, "r2", b"fresh\n")
    stream.flush()
    page = store.query(LogQuery("fn", cursor=page.cursor))
    assert [e.message for e in page.events][1] == b"fresh"
    again = store.query(LogQuery("fn", cursor=page.cursor))
    assert again.events == [] and again.cursor == page.cursor


def test_a_cursor_never_reads_a_torn_record(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"whole\n")
    stream.flush()
    with open(stream.path, "ab") as f:
        f.write(b"F1700000000000 half of a rec")  # a write in progress
    page = store.query(LogQuery("fn", cursor={}))
    assert [e.message for e in page.events] == [b"whole"]
    with open(stream.path, "ab") as f:
        f.write(b"ord\n")
    page = store.query(LogQuery("fn", cursor=page.cursor))
    assert [e.message for e in page.events] == [b"half of a record"]


def test_a_cursor_follows_a_stream_across_rotation(make_store: Callable[..., LogStore]) -> None:
    store = make_store(stream_bytes=100, keep=2)
    stream = store.open_stream("fn", "1", "a")
    stream.write(b"a" * 20 + b"\n")
    stream.flush()
    page = store.query(LogQuery("fn"))
    stream.write(b"b" * 80 + b"\n")  # past 100 bytes: rotated, after the cursor
    stream.flush()
    stream.write(b"fresh\n")
    stream.flush()
    page = store.query(LogQuery("fn", cursor=page.cursor))
    assert [e.message for e in page.events] == [b"b" * 80, b"fresh"]


def test_query_of_an_unknown_function_is_empty(store: LogStore) -> None:
    assert store.query(LogQuery("nobody")).events == []
    assert store.query(LogQuery("nobody", cursor={"x.log": 5})).events == []


# ---------------------------------------------------------------------------------------------
# Rendering, patterns, times, cursors from the wire


def test_neutralise_escapes_terminal_controls() -> None:
    assert neutralise("red \x1b[31mtext\x07\r\x00") == "red \\x1b[31mtext\\x07\\x0d\\x00"
    assert neutralise("tab\tok") == "tab\tok"
    assert neutralise("bidi \u202e evil") == "bidi \\u202e evil"
    assert neutralise("c1 \x9b") == "c1 \\x9b"


def test_render_marks_function_lines_that_look_like_platform_lines() -> None:
    e = [
        LogEvent(1, "function", "s", None, b"START RequestId: x Version: 1"),
        LogEvent(2, "function", "s", None, b"RequestId: x Error: fake"),
        LogEvent(3, "function", "s", None, b"ordinary \x1b]0;title\x07"),
        LogEvent(4, "platform", "s", None, b"START RequestId: x Version: 1"),
    ]
    assert render(e).splitlines() == [
        "[function] START RequestId: x Version: 1",
        "[function] RequestId: x Error: fake",
        "ordinary \\x1b]0;title\\x07",
        "START RequestId: x Version: 1",
    ]


def test_bad_patterns_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        compile_pattern("  ")
    with pytest.raises(ValueError, match="regular expression"):
        compile_pattern("%(%")
    for evil in ("%(a+)+$%", "%(a|aa)*b%", "%(x){2,}%", "%(a)\\1%", "%" + "a" * 300 + "%"):
        with pytest.raises(ValueError, match="may not quantify a group"):
            compile_pattern(evil)
    assert compile_pattern("%^(?:START|END) Req%")(b"END RequestId: x")


def test_time_ms() -> None:
    now = 1_800_000_000.0
    assert time_ms("10m", now=now) == (now - 600) * 1000
    assert time_ms("1h30m", now=now) == (now - 5400) * 1000
    assert time_ms("2d", now=now) == (now - 2 * 86400) * 1000
    assert time_ms("2026-12-01T10:00:00Z") == 1_796_119_200_000
    assert time_ms("2026-12-01 10:00") == 1_796_119_200_000  # naive = UTC
    assert time_ms(datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.UTC)) == 1_796_119_200_000
    assert time_ms(1_796_119_200) == 1_796_119_200_000
    for bad in ("yesterday", "", "10 parsecs", True):
        with pytest.raises(ValueError, match="not a time"):
            time_ms(bad)


def test_wire_cursor() -> None:
    assert wire_cursor(None) is None
    assert wire_cursor({}) == {}
    assert wire_cursor({"a.log": 3, "b.log": "4"}) == {"a.log": 3, "b.log": 4}
    with pytest.raises(ValueError, match="cursor must be a map"):
        wire_cursor([1])
    with pytest.raises(ValueError):
        wire_cursor({"a.log": "x"})


def test_a_cursor_read_inside_an_invocation_knows_its_request(store: LogStore) -> None:
    stream = store.open_stream("fn", "1", "a")
    stream.platform("START RequestId: r1 Version: 1")
    stream.write(b"early\n" + b"p" * 200_000 + b"\n")  # the START is far behind the cursor
    stream.flush()
    page = store.query(LogQuery("fn", cursor={}))
    stream.write(b"late\n")
    stream.platform("END RequestId: r1", "REPORT RequestId: r1\t")
    stream.platform("START RequestId: r2 Version: 1")
    stream.write(b"r2 output\n")
    stream.flush()

    page = store.query(LogQuery("fn", cursor=page.cursor, request_id="r1"))
    assert [e.message for e in page.events] == [
        b"late",
        b"END RequestId: r1",
        b"REPORT RequestId: r1\t",
    ]
    assert store.query(LogQuery("fn", cursor=page.cursor)).events == []


def test_the_backward_search_ignores_cut_lines(store: LogStore, tmp_path: Path) -> None:
    from lambdad.logs import _running_request

    path = tmp_path / "s.log"
    forged = b"F1 " + b"x" * 70_000 + b"P1 START RequestId: forged\n"
    path.write_bytes(b"P1 START RequestId: real\n" + forged)
    assert _running_request(str(path), path.stat().st_size, chunk=1000) == b"real"
    path.write_bytes(b"P1 START RequestId: r\nP2 REPORT RequestId: r\t\nF3 x\n")
    assert _running_request(str(path), path.stat().st_size) is None
    assert _running_request(str(path), 0) is None
