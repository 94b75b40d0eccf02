"""A failed task's ERROR/FATAL text (discodsl.worker.report): what the client rebuilds the error
from comes through a Disco 0.5.4 master, which keeps 8192 characters of an event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discodsl.worker import report
from discodsl.worker.errors import brief


def _raised(message: str, depth: int) -> BaseException:
    def down(n: int) -> None:
        if n == 0:
            raise ValueError(message)
        down(n - 1)

    try:
        down(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("not raised")  # pragma: no cover


@given(message=st.text(max_size=3000), depth=st.integers(0, 300))
def test_the_text_fits_a_masters_event_and_its_facts_read_back(message: str, depth: int) -> None:
    failure = report.describe(_raised(message, depth), stage="m", taskid=3, retry=False)
    text = report.encode(failure)
    assert len(("FATAL: [m:3] " + text).encode("utf-8", "surrogatepass")) <= 8192
    back = report.decode(text)
    assert (back.exc_type, back.stage, back.taskid, back.retry) == ("ValueError", "m", 3, False)
    assert back.summary == failure.summary
    assert back.traceback.startswith("Traceback (most recent call last):")


@pytest.mark.parametrize("depth", [0, 500])
def test_a_long_message_and_traceback_keep_their_start_and_end(depth: int) -> None:
    failure = report.describe(_raised("start " + "é" * 50_000 + " end", depth), stage="m", taskid=0)
    back = report.decode(report.encode(failure))
    assert back.summary.startswith("start éé") and back.summary.endswith("éé end")
    assert "characters cut ...]" in back.summary
    assert back.traceback.rstrip().endswith("é end")


@given(st.one_of(st.text(), st.binary(), st.lists(st.integers())), st.integers(3, 200))
def test_a_value_cut_short_for_a_message_says_so(value: object, most: int) -> None:
    """A key, record or path in an error is cut to fit, and shows where: a path cut
    short and shown as if whole names another file."""
    shown, whole = brief(value, most), repr(value)
    assert len(shown) <= most
    if len(whole) <= most:
        assert shown == whole
    else:
        assert shown.endswith("...") and whole.startswith(shown[:-3])
