"""What a job's status on the master means to a client: its results, or the error to raise.

``get_results`` answers ``ready``, ``active``, ``dead`` or ``unknown job``
(disco-spec section 5). :func:`ready_results` is the one mapping from a
status to results or an error (:class:`~discodsl.errors.NoSuchJob`,
:class:`~discodsl.errors.JobActive`, :class:`~discodsl.errors.JobDead`);
the other functions build those errors where a caller knows more (a wait
that timed out, a dead job's events, a 404, a refused jobpack).

It sends no request: :class:`~discodsl.client.Master` calls it with what
the master answered, and :mod:`discodsl.runners.cluster` turns a dead job
into the failing task's error. The patterns of the master's events that
clients read (a stage scheduled, a task assigned, done, failed or printing)
are here too: the cluster runner reads a real master's, and the registry of
local runs reads the local runner's, which words them the same way
(:mod:`discodsl.runners.handle`).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from discodsl.errors import JobActive, JobDead, JobpackRefused, NoSuchJob, SettingsError

if TYPE_CHECKING:  # discodsl.http imports requests, which a local run never needs
    from discodsl.http import ErrorFor

__all__ = [
    "STAGE_SCHEDULED",
    "TASK_ASSIGNED",
    "TASK_DONE",
    "TASK_ERROR",
    "TASK_MSG",
    "Event",
    "command_line",
    "dead_job",
    "no_job_status",
    "ready_results",
    "still_active",
    "submit_refused",
    "unknown_job",
]

Event = tuple[str, str, str]  # (time, host, message)

# A master's events about stages and tasks (Disco 0.5.4's words); a task is STAGE:ID.
# A stage name has no space, but may hold ':' and ']': a task's name is the longest run of
# characters that are no space before its last ":N" (greedy), as in "[x:1:0]" or "[a]b:0]".
STAGE_SCHEDULED = re.compile(r"Stage (\S+) scheduled with (\d+) tasks")
TASK_ASSIGNED = re.compile(r"(\S+):(\d+) assigned to (\S+)")
TASK_DONE = re.compile(r"DONE: \[(\S+):(\d+)\] Task finished")
TASK_ERROR = re.compile(r"(WARNING|FATAL): \[(\S+):(\d+)\] (.*)", re.DOTALL)
TASK_MSG = re.compile(r"MSG: \[(\S+):(\d+)\] (.*)", re.DOTALL)


def ready_results(
    master_url: str, jobname: str, status: str, results: list[list[str]]
) -> list[list[str]]:
    """``results`` if ``status`` is ``ready``; else the error that status means."""
    if status == "ready":
        return results
    if status == "dead":
        events = command_line(f"events {jobname}", master_url)
        raise JobDead(
            f"job {jobname!r} is dead and has no results: see why with `{events}`",
            jobname=jobname,
        )
    if status == "active":
        wait = command_line(f"wait {jobname}", master_url)
        raise JobActive(
            f"job {jobname!r} is still active, so it has no results yet: wait for it with `{wait}`",
            jobname=jobname,
        )
    raise unknown_job(master_url, jobname, status)


def unknown_job(master_url: str, jobname: str, status: str) -> NoSuchJob:
    """The error for ``unknown job`` (or any status the master should not give)."""
    return NoSuchJob(
        f"the master at {master_url} knows no job named {jobname!r} ({status}): it may "
        f"have been cleaned or purged; list jobs with `{command_line('jobs', master_url)}`",
        jobname=jobname,
    )


def no_job_status(master_url: str, jobname: str) -> dict[int, ErrorFor]:
    """The error for a 404 from a ``/disco/ctrl`` endpoint asked about ``jobname``."""

    def error(body: str) -> NoSuchJob:
        return NoSuchJob(
            f"no job named {jobname!r} on the master at {master_url} ({body}): it may have "
            f"been cleaned or purged; list jobs with `{command_line('jobs', master_url)}`",
            jobname=jobname,
        )

    return {404: error}


def command_line(words: str, master_url: str = "") -> str:
    """The ``discodsl`` command ``words`` (``kill NAME``), of the master at ``master_url``
    (or of this machine's local runs): what a message tells to run, which must work as
    printed."""
    given = f"--master {master_url} " if master_url else ""
    return f"discodsl {given}{words}"


def wait_limit(timeout: Any) -> float | None:
    """A wait's ``timeout`` in seconds, checked: None (or infinity) to wait as long as it
    takes, else a number >= 0; SettingsError otherwise."""
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if timeout is None or (number and timeout == math.inf):
        return None
    if not number or not timeout >= 0:  # NaN fails this too
        raise SettingsError(
            f"timeout={timeout!r}: pass the seconds to wait as a number >= 0, or None to "
            "wait as long as it takes (on the command line, leave --timeout out)"
        )
    return float(timeout)


def still_active(jobname: str, elapsed: float, timeout_s: float, master_url: str = "") -> JobActive:
    """The error for a job still active when a wait for it timed out (on the master at
    ``master_url``, or a local run)."""
    kill = command_line(f"kill {jobname}", master_url)
    return JobActive(
        f"job {jobname!r} is still active after {elapsed:.1f}s (timeout={timeout_s:g}s): "
        f"it keeps running; wait again, or stop it with `{kill}`",
        jobname=jobname,
        timed_out=True,
    )


def no_answer_in_time(jobname: str, elapsed: float, timeout_s: float, master_url: str) -> JobActive:
    """The error for a wait with a timeout whose master did not answer in that time (what
    failed is its ``__cause__``)."""
    kill = command_line(f"kill {jobname}", master_url)
    return JobActive(
        f"stopped waiting for job {jobname!r} after {elapsed:.1f}s (timeout={timeout_s:g}s): "
        f"the master at {master_url} did not answer in that time; the job may run on: wait "
        f"again (a longer timeout=, or none), or stop it with `{kill}`",
        jobname=jobname,
        timed_out=True,
    )


def dead_job(master_url: str, jobname: str, events: list[Event]) -> JobDead:
    """The error for a job that died, from its events (newest first): the first error's words."""
    lines = [" ".join(e) for e in reversed(events)]  # oldest first
    why = [m for _, _, m in events if m.startswith(("FATAL:", "ERROR:", "WARNING:"))]
    reason = why[0] if why else "no error event was recorded"
    if len(why) > 1:
        reason += f" (before that: {why[1]})"
    return JobDead(
        f"job {jobname!r} died: {reason}; its last events are in .events, all of them "
        f"with `{command_line(f'events {jobname}', master_url)}` (or at "
        f"{master_url}/disco/ctrl/jobevents?"
        f"name={quote(jobname)})",
        jobname=jobname,
        events=lines,
    )


def submit_refused(reason: str) -> JobpackRefused:
    """The error for ``["error", reason]`` from ``/disco/job/new``, with what to do."""
    return JobpackRefused(
        f"the master refused the job: {reason}: {_submit_hint(reason)}", reason=reason
    )


_SUBMIT_HINTS = [
    ("invalid header", "the jobpack is truncated or not a jobpack; rebuild it"),
    ("unsupported version", "the master reads jobpack version 2 only"),
    ("missing key", "the jobdict lacks a required key; rebuild the jobpack"),
    ("invalid prefix", "job name prefixes may not contain '.' or '/'"),
    ("invalid grouping", "use split, group_label, group_all, group_node or group_node_label"),
    ("repeated_pipeline_stages", "give each stage of the pipeline its own name"),
    ("Invalid job pipeline", "each stage is [name, grouping, concurrent (a boolean)]"),
    ("invalid_job_inputs", "inputs are [[label, [url, ...]], ...] or lists of replica URLs"),
    ("invalid payload", "the jobdict or jobenvs is not valid JSON of the right shape"),
]


def _submit_hint(reason: str) -> str:
    """What to do about a job/new refusal (reasons: disco-spec section 1)."""
    for needle, hint in _SUBMIT_HINTS:
        if needle in reason:
            return hint
    return (
        "the master's own words say why; `discodsl jobpack show FILE` shows what a jobpack "
        "holds, and `discodsl jobpack build` makes one the master takes"
    )
