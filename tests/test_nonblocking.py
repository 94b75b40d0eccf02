"""Whole lines to a non-blocking descriptor: waited for while it takes some, counted once
it takes nothing for a while."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from discodsl import nonblocking


@pytest.fixture
def pipe() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A non-blocking pipe's reading end, and its writing end as a text stream."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    stream = io.TextIOWrapper(io.FileIO(write, "w"), encoding="utf-8", write_through=True)
    yield read, stream
    stream.close()
    os.close(read)


def test_a_stream_that_blocks_is_left_to_its_writer() -> None:
    assert nonblocking.write_whole(io.StringIO(), "a\n") is None
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        assert nonblocking.write_whole(stream, "a\n") is None
    os.close(read)


def test_what_a_full_pipe_nobody_reads_refuses_is_counted_by_lines(
    pipe: tuple[int, io.TextIOWrapper], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nonblocking, "STALLED", 0.2)
    read, stream = pipe
    line = "y" * 99 + "\n"  # 100 bytes
    cut = nonblocking.write_whole(stream, line * 2000)  # 200 KB, where a pipe holds 64 KB
    assert cut is not None and 0 < cut < 2000
    taken = b""
    while len(taken) < 200_000 and (chunk := _read_some(read)):
        taken += chunk
    whole = taken.count(b"\n")
    assert whole + cut == 2000  # the line cut short is among those counted
    assert nonblocking.write_whole(stream, "z\n") == 0  # it takes again, once read


def test_a_closed_reader_counts_every_line() -> None:
    read, write = os.pipe()
    os.set_blocking(write, False)
    os.close(read)
    with io.TextIOWrapper(io.FileIO(write, "w"), write_through=True) as stream:
        assert nonblocking.write_whole(stream, "a\nb\nc") == 3


def _read_some(descriptor: int) -> bytes:
    os.set_blocking(descriptor, False)
    try:
        return os.read(descriptor, 1 << 16)
    except BlockingIOError:
        return b""


def test_a_bar_drawn_before_stderr_turned_non_blocking_is_closed_and_lines_go_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lines went through the bar's own writes, which lose what a non-blocking stream
    # refuses, uncounted: 1,873 of 16,000 shown (probe EI F3).
    from discodsl.runners.progress import Progress

    read, write = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write, "w"), encoding="utf-8", write_through=True)
    monkeypatch.setattr("sys.stderr", stream)
    progress = Progress("job", enabled=True)
    try:
        progress._show("stage", {"stage": "map", "tasks": 2})
        assert progress._bar is not None
        os.set_blocking(write, False)
        progress._show("msg", {"text": "[map] a line"})
        assert progress._bar is None  # closed, not written through
        os.set_blocking(read, False)
        assert b"[map] a line\n" in os.read(read, 1 << 16)
    finally:
        stream.close()
        os.close(read)


def test_what_is_left_when_a_runs_end_gave_up_on_stderr_is_counted_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The display thread wrote on after run() had returned, among the program's own output
    # (probe EI F2): once its end gives up, the rest is counted, and the count said.
    from discodsl.runners import progress

    monkeypatch.setattr(progress, "STALLED", 0.2)
    read, write = os.pipe()  # blocking, and read only after the run's end gave up
    stream = io.TextIOWrapper(io.FileIO(write, "w"), encoding="utf-8", write_through=True)
    monkeypatch.setattr("sys.stderr", stream)
    shown = progress.Progress("job", enabled=False)
    try:
        for i in range(300):  # 300 KB, where a pipe holds 64 KB
            shown("msg", {"stage": "map", "text": f"{i:03d} " + "y" * 1000})
        shown.close()  # gives up: nobody reads
        taken = b""
        while b"were not shown" not in taken and taken.count(b"\n") < 300:
            taken += os.read(read, 1 << 16)
        assert taken.endswith(b"were not shown: stderr took none for a while\n")
        assert shown._display is not None
        shown._display.join(10)
        lines = taken.decode().splitlines()
        told = int(lines[-1].split()[1])
        assert 0 < told < 300 and len(lines) - 1 + told == 300, lines[-1]
    finally:
        stream.close()
        os.close(read)
