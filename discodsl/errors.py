"""Every error discodsl raises on purpose, one subclass per layer.

::

    DiscoDSLError                 root: catch this to catch them all
     ├── JobpackError             a jobpack could not be encoded or was refused on decoding
     ├── ProtocolError            a worker-protocol frame was malformed or out of order
     ├── DataError                an input or record file is unreadable, corrupt or truncated
     ├── StageError               user code failed inside a worker (worker side)
     ├── Retry                    raised by stage code: run the task again (worker side)
     ├── JobError                 a job was declared wrongly, could not ship, or failed
     │    ├── PicklingError       a stage cannot be shipped to a node (names the object)
     │    └── TaskFailed          a task failed; ``__cause__`` holds the worker's traceback
     ├── ClientError              the Disco master or DDFS refused or could not be reached
     │    └── JobDead             a job on the cluster died or was killed
     └── SettingsError            an option or setting is invalid (names field, value, fix)

``ProtocolError``, ``DataError``, ``StageError`` and ``Retry`` are defined in
:mod:`discodsl.worker.errors`, which ships to Disco nodes and so imports only
the standard library; they are re-exported here so users need one module.
Every message says what happened and what to do.
"""

from __future__ import annotations

from discodsl.worker.errors import DataError, DiscoDSLError, ProtocolError, Retry, StageError

__all__ = [
    "ClientError",
    "DataError",
    "DiscoDSLError",
    "JobDead",
    "JobError",
    "JobpackError",
    "PicklingError",
    "ProtocolError",
    "RemoteTraceback",
    "Retry",
    "SettingsError",
    "StageError",
    "TaskFailed",
]


class JobpackError(DiscoDSLError):
    """A jobpack could not be built, or bytes given as one are not a valid jobpack."""


class JobError(DiscoDSLError):
    """A job or stage was declared wrongly, could not be shipped, or failed to run."""


class PicklingError(JobError):
    """A stage (or something it refers to) cannot be loaded on a node."""


class TaskFailed(JobError):
    """A task of a job failed; the worker's traceback is this error's ``__cause__``.

    Attributes name where: ``stage``, ``taskid``, ``url`` (the input being
    read), ``record`` (its record number, -1 if unknown) and ``exc_type``
    (the worker-side exception's type name).
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
    ):
        super().__init__(message)
        self.stage = stage
        self.taskid = taskid
        self.url = url
        self.record = record
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback


class ClientError(DiscoDSLError):
    """The Disco master or DDFS could not be reached, or refused a request."""


class JobDead(ClientError):
    """A job on a Disco master died or was killed; carries its last events."""

    def __init__(self, message: str, *, jobname: str = "", events: list[str] | None = None):
        super().__init__(message)
        self.jobname = jobname
        self.events = events or []


class SettingsError(DiscoDSLError):
    """An option or a cluster setting is invalid."""


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
