"""Every error discodsl raises on purpose, one subclass per layer.

::

    DiscoDSLError                  root: catch this to catch them all
     ├── JobpackError              a jobpack could not be encoded or was refused on decoding
     ├── ProtocolError             a worker-protocol frame was malformed or out of order
     │    ├── LocalProtocolError   we tried to send what the protocol forbids (a bug of ours)
     │    └── RemoteProtocolError  the peer sent a bad frame, or a message out of order
     ├── DataError                 an input or record file is unreadable, corrupt or truncated
     │    ├── MalformedRecord      a reader could not parse a record (not retried)
     │    ├── BadURL               an input URL no worker can read, e.g. a tag (not retried)
     │    └── DamagedInput         an input's bytes are damaged, e.g. a cut .gz (not retried)
     ├── StageError                user code failed inside a worker (worker side)
     ├── Retry                     raised by stage code: run the task again (worker side)
     ├── JobError                  a job was declared wrongly, could not ship, or failed
     │    ├── PicklingError        a stage cannot be shipped to a node (names the object)
     │    ├── TaskFailed           a task failed; ``__cause__`` holds the worker's traceback
     │    └── InputRunFailed       a run whose inputs are another run's results did not start:
     │                             that run failed; ``__cause__`` holds its error
     ├── ClientError               the Disco master or DDFS refused or could not be reached
     │    ├── RequestFailed        no answer: the connection failed, dropped, timed out (url, who)
     │    │    └── Unreachable     nothing sent: connection refused, no such host, connect timeout
     │    ├── BadAnswer            an error status, or an answer of a wrong shape (endpoint, status)
     │    │    └── Unauthorized    401: DDFS refused the token
     │    ├── NoSuchJob            the master knows no such job: 404, or "unknown job" (jobname)
     │    ├── JobActive            the job still runs: no results yet, or a wait timed out (jobname)
     │    ├── JobpackRefused       the master refused a submitted jobpack (reason)
     │    ├── TagNotFound          DDFS has no such tag (tag)
     │    └── JobDead              a job on the cluster died or was killed (jobname, events)
     └── SettingsError             an option or setting is invalid (names field, value, fix)

``ProtocolError`` and its two kinds, ``DataError``, ``MalformedRecord``, ``BadURL``,
``DamagedInput``, ``StageError`` and ``Retry`` are defined in :mod:`discodsl.worker.errors`,
which ships to Disco nodes and so imports only the standard library; the ones users meet
are re-exported here so they need one module. Every message says what happened and what to do; a
subclass says which of those things happened, for code (the command line's hints, a run's
events) that must not read messages. Any other ClientError is a request
refused before it was sent (a bad tag name, an unknown setting).
"""

from __future__ import annotations

import inspect
import os

from discodsl.worker.errors import (
    BadURL,
    DamagedInput,
    DataError,
    DiscoDSLError,
    MalformedRecord,
    ProtocolError,
    Retry,
    StageError,
)

__all__ = [
    "BadAnswer",
    "BadURL",
    "ClientError",
    "DamagedInput",
    "DataError",
    "DiscoDSLError",
    "InputRunFailed",
    "JobActive",
    "JobDead",
    "JobError",
    "JobpackError",
    "JobpackRefused",
    "MalformedRecord",
    "NoSuchJob",
    "PicklingError",
    "ProtocolError",
    "RemoteTraceback",
    "RequestFailed",
    "Retry",
    "SettingWarning",
    "SettingsError",
    "StageError",
    "TagNotFound",
    "TaskFailed",
    "Unauthorized",
    "Unreachable",
]


class JobpackError(DiscoDSLError):
    """A jobpack could not be built, or bytes given as one are not a valid jobpack."""


class JobError(DiscoDSLError):
    """A job or stage was declared wrongly, could not be shipped, or failed to run."""


class PicklingError(JobError):
    """A stage (or something it refers to) cannot be loaded on a node."""


class InputRunFailed(JobError):
    """A run whose inputs are another run's results did not start: that run failed (its
    error is this one's ``__cause__``), or it did not end within this run's ``timeout=``."""


class TaskFailed(JobError):
    """A task of a job failed; the worker's traceback is this error's ``__cause__``.

    Attributes name where: ``stage``, ``taskid``, ``url`` (the input being
    read), ``record`` (its record number, -1 if unknown), ``exc_type``
    (the worker-side exception's type name) and ``jobname`` (the run's name, which
    ``discodsl status`` takes: the master's on a cluster; none inline).
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str = "",
        taskid: int = -1,
        url: str = "",
        record: int = -1,
        exc_type: str = "",
        remote_traceback: str = "",
        jobname: str = "",
    ):
        super().__init__(message)
        self.jobname = jobname
        self.stage = stage
        self.taskid = taskid
        self.url = url
        self.record = record
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback


class ClientError(DiscoDSLError):
    """The Disco master or DDFS could not be reached, or refused a request."""


class RequestFailed(ClientError):
    """No answer came: the connection failed, was dropped, or timed out.

    ``url`` is where the request went (scheme, host and port), ``who`` what
    was there (``"the Disco master"``, ``"the DDFS node"``).
    """

    def __init__(self, message: str, *, url: str = "", who: str = ""):
        super().__init__(message)
        self.url = url
        self.who = who


class Unreachable(RequestFailed):
    """Nothing reached the server: connection refused, host name not found, connect timeout."""


class BadAnswer(ClientError):
    """The server answered with an error status, or with a body of the wrong shape.

    ``endpoint`` is the request (``"GET http://host:8989/disco/version"``);
    ``status`` the answer's status, or None when the status was fine but the body was not.
    """

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class Unauthorized(BadAnswer):
    """DDFS refused the token (401): DDFS_READ_TOKEN / DDFS_WRITE_TOKEN is wrong."""


class NoSuchJob(ClientError):
    """The master knows no job of that name (never submitted, cleaned or purged)."""

    def __init__(self, message: str, *, jobname: str = ""):
        super().__init__(message)
        self.jobname = jobname


class JobActive(ClientError):
    """The job still runs: it has no results yet, or waiting for it timed out
    (``timed_out``: the wait's timeout= passed), or was stopped, or its master was lost
    (``lost``: no answer came, the job may have ended since)."""

    def __init__(
        self, message: str, *, jobname: str = "", timed_out: bool = False, lost: bool = False
    ):
        super().__init__(message)
        self.jobname = jobname
        self.timed_out, self.lost = timed_out, lost


class JobpackRefused(ClientError):
    """The master refused a submitted jobpack; ``reason`` is its words."""

    def __init__(self, message: str, *, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class TagNotFound(ClientError):
    """DDFS has no tag of that name (``tag``), perhaps one listed by another tag."""

    def __init__(self, message: str, *, tag: str = ""):
        super().__init__(message)
        self.tag = tag


class JobDead(ClientError):
    """A job on a Disco master died or was killed; carries its last events, and whether it
    is known to have been ``killed`` (by kill(), Ctrl-C, the program's end)."""

    def __init__(
        self,
        message: str,
        *,
        jobname: str = "",
        events: list[str] | None = None,
        killed: bool = False,
    ):
        super().__init__(message)
        self.jobname = jobname
        self.events = events or []
        self.killed = killed


class SettingsError(DiscoDSLError):
    """An option or a cluster setting is invalid."""


class SettingWarning(UserWarning):
    """A name in the environment or a settings file that no one reads: most likely a setting
    misspelt (``DISCO_MASTR``), whose value silently does not count."""


class RemoteTraceback(Exception):
    """A worker's traceback, as text: the ``__cause__`` of :class:`TaskFailed`.

    Printed under the local error the way CPython's ``concurrent.futures``
    shows a child process's traceback.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


def outside_discodsl() -> int:
    """The ``stacklevel`` of the first caller outside discodsl, for warnings.warn called by
    the function calling this one: the user's line that led to the warning."""
    frame, level = inspect.currentframe(), 0
    package = os.path.dirname(__file__)
    while frame is not None and (level < 2 or frame.f_code.co_filename.startswith(package)):
        frame, level = frame.f_back, level + 1
    return level
