"""How a failed task describes itself in an ERROR or FATAL message, and how a runner reads it back.

The text is for people first (a Disco master shows it as an event): a
summary line naming the stage, input and record, then the worker's
traceback. The last line, ``discodsl-error: {json}``, repeats the facts for
a runner to rebuild the error on the user's side.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any

from discodsl.worker.messages import EVENT_TEXT_LIMIT

MARKER = "discodsl-error: "
# A Disco 0.5.4 master keeps only the start of a long event (see messages.EVENT_TEXT_LIMIT):
# a failure's text keeps within TEXT_LIMIT bytes, so that its last line, the facts, reaches
# the client. Of a long exception message (SUMMARY_LIMIT characters) and traceback, the
# start and end are kept.
TEXT_LIMIT = EVENT_TEXT_LIMIT
SUMMARY_LIMIT = 600
# The facts line's bytes at most: with a summary of SUMMARY_LIMIT characters of 4 bytes, it
# leaves the traceback 2,000 bytes of TEXT_LIMIT.
FACTS_LIMIT = 2600
_LINE_LEAST = 60  # a line of a summary keeps this much at least, or the summary is cut whole


@dataclass(frozen=True)
class Failure:
    """What a runner needs to re-raise a worker's failure."""

    summary: str
    exc_type: str = ""
    stage: str = ""
    taskid: int = -1
    url: str = ""
    record: int = -1
    traceback: str = ""
    retry: bool = True


def describe(exc: BaseException, *, stage: str, taskid: int, retry: bool = True) -> Failure:
    """The Failure for ``exc``, raised in ``stage`` of task ``taskid``.

    A StageError wraps the user's exception: that one's type and traceback are
    what the user needs. Any other error is reported as itself.
    """
    wrapped = getattr(exc, "exc_type", "") and exc.__cause__ is not None
    cause = exc.__cause__ if wrapped and exc.__cause__ is not None else exc
    return Failure(
        summary=_summary(str(exc) or type(exc).__name__, SUMMARY_LIMIT),
        exc_type=getattr(exc, "exc_type", "") or type(exc).__name__,
        stage=getattr(exc, "stage", "") or stage,
        taskid=taskid,
        url=getattr(exc, "url", "") or "",
        record=_int(getattr(exc, "record", -1)),
        traceback="".join(traceback.format_exception(type(cause), cause, cause.__traceback__)),
        retry=retry,
    )


def _summary(text: str, limit: int) -> str:
    """``text`` in ``limit`` characters. A message of several lines (a failover's, a line
    per replica) keeps the start of each, the longest lines cut first; one line, or lines
    too many for that, keeps its start and end."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    longest = _longest_line(sorted(map(len, lines)), limit - (len(lines) - 1))
    if len(lines) == 1 or longest < _LINE_LEAST:
        return _cut(text, limit)
    return "\n".join(line[: longest - 3] + "..." if len(line) > longest else line for line in lines)


def _longest_line(lengths: list[int], room: int) -> int:
    """How long a line may be for lines of these ``lengths`` (ascending) to take ``room``
    characters at most, only those longer than that cut."""
    for index, length in enumerate(lengths):
        left = len(lengths) - index  # lines of this length or longer
        if length * left > room:
            return room // left
        room -= length
    return lengths[-1]


def _cut(text: str, limit: int) -> str:
    """``text``, or its start and end with a note of how much was cut between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}[... {len(text) - 2 * half} characters cut ...]{text[-half:]}"


def _fit(text: str, room: int) -> str:
    """``text``, cut (start and end kept) until its UTF-8 takes ``room`` bytes or fewer."""
    limit = room
    while len(text.encode("utf-8", "surrogatepass")) > room and limit > 0:
        text = _cut(text, max(0, limit - 60))  # the note takes about 40 characters
        limit //= 2
    return text


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


def encode(failure: Failure) -> str:
    """The ERROR/FATAL message text for ``failure``."""
    summary, line = _facts(failure)
    used = len(f"{summary}\n\n{line}".encode("utf-8", "surrogatepass"))
    body = _fit(failure.traceback.rstrip("\n"), TEXT_LIMIT - used)
    return f"{summary}\n{body}\n{line}"


def _facts(failure: Failure) -> tuple[str, str]:
    """The summary and the facts line for ``failure``, the longer of the summary and the
    URL cut until the line takes FACTS_LIMIT bytes at most (JSON escapes a character in up
    to 12 bytes)."""
    limits = {"summary": len(failure.summary), "url": len(failure.url)}
    while True:
        summary, url = (
            _summary(failure.summary, limits["summary"]),
            _cut(failure.url, limits["url"]),
        )
        line = MARKER + json.dumps(
            {
                "summary": summary,
                "exc_type": failure.exc_type,
                "stage": failure.stage,
                "taskid": failure.taskid,
                "url": url,
                "record": failure.record,
                "retry": failure.retry,
            }
        )
        if len(line) <= FACTS_LIMIT or max(limits.values()) < _LINE_LEAST:
            return summary, line
        longer = "url" if len(json.dumps(url)) > len(json.dumps(summary)) else "summary"
        limits[longer] = limits[longer] * 2 // 3


def decode(text: str) -> Failure:
    """Read back a message made by :func:`encode`; any other text becomes a bare summary."""
    head, _, last = text.rstrip("\n").rpartition("\n")
    if not last.startswith(MARKER):
        return Failure(summary=text.strip())
    try:
        facts = json.loads(last[len(MARKER) :])
    except ValueError:
        return Failure(summary=text.strip())
    if not isinstance(facts, dict):
        return Failure(summary=text.strip())
    summary = str(facts.get("summary", ""))
    body = head[len(summary) + 1 :] if summary and head.startswith(summary) else head
    return Failure(
        summary=summary or head.partition("\n")[0],
        exc_type=str(facts.get("exc_type", "")),
        stage=str(facts.get("stage", "")),
        taskid=_int(facts.get("taskid", -1)),
        url=str(facts.get("url", "")),
        record=_int(facts.get("record", -1)),
        traceback=body,
        retry=facts.get("retry") is not False,
    )
