"""A failed task's ERROR/FATAL text (discodsl.worker.report): what the client rebuilds the error
from comes through a Disco 0.5.4 master, which keeps 8192 characters of an event."""

from __future__ import annotations

import operator
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discodsl.worker import report
from discodsl.worker.errors import brief, digits_unlimited


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


def _long(most: int) -> st.SearchStrategy[str]:
    """Any text, or one character repeated up to ``most`` times (hypothesis rarely makes
    long texts): one of 4 bytes of UTF-8 and 12 of escaped JSON, or 6 of escaped JSON."""
    wide = st.characters(min_codepoint=0x10000) | st.sampled_from('\0\x7f"é')
    return st.text(max_size=most) | st.builds(operator.mul, wide, st.integers(0, most))


@given(message=_long(700), url=_long(20_000))
def test_the_facts_of_any_summary_and_url_fit_the_event(message: str, url: str) -> None:
    """600 emoji, or a URL of 9,000 bytes, made the facts line longer than a master keeps:
    the client got the raw event, not the stage's error."""
    failure = report.Failure(
        summary=report._summary(message, report.SUMMARY_LIMIT) or "ValueError",
        exc_type="ValueError",
        stage="m",
        taskid=3,
        url=url,
        record=7,
        traceback="Traceback (most recent call last):\n" + '  File "x.py", line 1\n' * 500,
        retry=False,
    )
    text = report.encode(failure)
    assert len(("FATAL: [m:3] " + text).encode("utf-8", "surrogatepass")) <= 8182
    back = report.decode(text)
    assert (back.exc_type, back.stage, back.taskid, back.record, back.retry) == (
        "ValueError",
        "m",
        3,
        7,
        False,
    )
    assert back.summary == failure.summary or "characters cut ...]" in back.summary
    assert back.url == url or "characters cut ...]" in back.url
    assert back.traceback.startswith("Traceback (most recent call last):")


@pytest.mark.parametrize("depth", [0, 500])
def test_a_long_message_and_traceback_keep_their_start_and_end(depth: int) -> None:
    failure = report.describe(_raised("start " + "é" * 50_000 + " end", depth), stage="m", taskid=0)
    back = report.decode(report.encode(failure))
    assert back.summary.startswith("start éé") and back.summary.endswith("éé end")
    assert "characters cut ...]" in back.summary
    assert back.traceback.rstrip().endswith("é end")


LINE = st.text(st.characters(blacklist_characters="\n"), max_size=400)


@given(st.lists(LINE, min_size=2, max_size=8))
def test_a_summary_of_a_few_lines_keeps_the_start_of_each(lines: list[str]) -> None:
    """A failover's message names each replica on a line of its own: a summary cut to its
    start and end lost the replicas in the middle, and their reasons."""
    text = "\n".join(lines)
    summary = report.describe(ValueError(text), stage="m", taskid=0).summary
    if len(text) <= report.SUMMARY_LIMIT:
        assert summary == text
        return
    assert len(summary) <= report.SUMMARY_LIMIT
    kept = summary.split("\n")
    assert len(kept) == len(lines)
    for line, start in zip(lines, kept, strict=True):
        assert start == line or (start.endswith("...") and line.startswith(start[:-3]))
        assert len(start) >= min(len(line), 70)


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


@pytest.mark.parametrize(
    "number", [10**5000, -(10**5000) - 7, 2**20000], ids=["10**5000", "negative", "2**20000"]
)
def test_an_int_past_pythons_digit_limit_is_shown_by_its_first_digits_and_length(
    number: int,
) -> None:
    """repr() of an int of more than 4,300 digits raises (Python 3.11's limit): it was shown
    as "<a int whose repr() raised ValueError>", as if the user's int were broken."""
    with digits_unlimited():
        text = str(number)
    sign, whole = ("-", text[1:]) if text.startswith("-") else ("", text)
    expected = f"{sign}{whole[:12]}... (an int of {len(whole)} digits)"
    if not hasattr(sys, "set_int_max_str_digits"):  # Python 3.10: repr() has no limit
        expected = text[:77] + "..."
    assert brief(number, 80) == expected


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="3.10: no digit limit")
def test_a_key_holding_an_int_past_the_digit_limit_shows_it_as_an_int_alone_is_shown() -> None:
    """What holds such an int was shown by its whole repr() with the limit lifted, then
    cut: quadratic in the digits (a tuple holding a 375 KB int took 12 s to fail a task)."""
    key = ("big", 10**5000, [2**20000, {"nested": -(10**5000)}])
    assert brief(key, 300) == (
        "('big', 100000000000... (an int of 5001 digits), [398027684033... (an int of 6021 "
        "digits), {'nested': -100000000000... (an int of 5001 digits)}])"
    )
    assert brief(key, 30) == "('big', 100000000000... (an..."
    many = (*range(100), 10**5000)  # bounded in its items too, as reprlib shows them
    assert brief(many, 40) == "(0, 1, 2, 3, 4, 5, ...)"


def test_a_value_whose_repr_fails_is_shown_by_its_type() -> None:
    # A key nested too deeply for repr() turned a clear refusal into a bare RecursionError.
    deep: object = ("leaf",)
    for _ in range(100_000):
        deep = (deep,)

    class Broken:
        def __repr__(self) -> str:
            raise ValueError("no")

    assert brief(deep, 60) == "<a tuple nested too deeply to show>"
    assert brief(Broken(), 80) == "<a Broken whose repr() raised ValueError>"
