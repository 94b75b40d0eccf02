"""Turning a failed task's ERROR/FATAL text into the one error the user sees."""

from __future__ import annotations

from discodsl import tracebacks
from discodsl.errors import RemoteTraceback, TaskFailed
from discodsl.worker import report


NOT_RETRIED = (
    " (not retried: an exception from stage code fails the job at once; "
    "raise discodsl.Retry for a failure worth another try)"
)


def task_failed(text: str, *, stage: str, taskid: int, why: str) -> TaskFailed:
    """A TaskFailed for a worker's message ``text``; its traceback becomes ``__cause__``."""
    failure = report.decode(text)
    where = f" on input {failure.url!r}" if failure.url else ""
    where += f", record {failure.record}" if failure.url and failure.record >= 0 else ""
    kind = (
        f"{failure.exc_type}: "
        if failure.exc_type and failure.exc_type not in failure.summary
        else ""
    )
    error = TaskFailed(
        f"{why}: {kind}{failure.summary}"
        + ("" if where and where in failure.summary else where)
        + ("" if failure.retry else NOT_RETRIED),
        stage=failure.stage or stage,
        taskid=taskid,
        url=failure.url,
        record=failure.record,
        exc_type=failure.exc_type,
        remote_traceback=tracebacks.restore(failure.traceback),  # the user's files named
    )
    if error.remote_traceback:
        error.__cause__ = RemoteTraceback(error.remote_traceback)
    return error
