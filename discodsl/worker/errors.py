"""The errors the worker runtime can raise, standard library only.

These are the bottom of the tree drawn in :mod:`discodsl.errors`; they live
here because this subpackage ships to Disco nodes that cannot import the rest
of discodsl. Every message says what happened and what to do about it.
"""

from __future__ import annotations


class DiscoDSLError(Exception):
    """Root of every error discodsl raises on purpose."""


class ProtocolError(DiscoDSLError):
    """A worker-protocol frame was malformed, oversized or out of order.

    ``fatal`` says what the Disco 0.5.4 master does about it: ``True`` kills
    the whole job (unknown message, bad JSON, bad payload, bad version),
    ``False`` fails only the task, which is retried (bytes that are not a
    frame, an absolute OUTPUT path, exiting without DONE). ``data`` holds (a
    bounded prefix of) the offending bytes, when there are some.
    """

    def __init__(self, message: str, *, fatal: bool = True, data: bytes = b""):
        super().__init__(message)
        self.fatal = fatal
        self.data = data


class DataError(DiscoDSLError):
    """An input or record file could not be read: corrupt, truncated or unreachable.

    ``url`` names the input and ``span`` the byte range, when known.
    """

    def __init__(self, message: str, url: str = "", span: tuple[int, int] | None = None):
        super().__init__(message)
        self.url = url
        self.span = span


class StageError(DiscoDSLError):
    """User code failed inside a task; says where: stage, input URL, record number.

    ``exc_type`` names the type of the user's exception (the ``__cause__``).
    """

    def __init__(
        self, message: str, stage: str = "", url: str = "", record: int = -1, exc_type: str = ""
    ):
        super().__init__(message)
        self.stage = stage
        self.url = url
        self.record = record
        self.exc_type = exc_type
