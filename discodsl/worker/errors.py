"""The errors the worker runtime can raise, standard library only.

These are the bottom of the tree drawn in :mod:`discodsl.errors`; they live
here because this subpackage ships to Disco nodes that cannot import the rest
of discodsl. Every message says what happened and what to do about it.
"""

from __future__ import annotations


class DiscoDSLError(Exception):
    """Root of every error discodsl raises on purpose."""


class ProtocolError(DiscoDSLError):
    """A worker-protocol frame was malformed, oversized or out of order."""


class DataError(DiscoDSLError):
    """An input or record file could not be read: corrupt, truncated or unreachable.

    ``url`` names the input and ``span`` the byte range, when known.
    """

    def __init__(self, message: str, url: str = "", span: tuple[int, int] | None = None):
        super().__init__(message)
        self.url = url
        self.span = span


class StageError(DiscoDSLError):
    """User code failed inside a task; carries where it failed."""

    def __init__(self, message: str, stage: str = "", url: str = "", record: int = -1):
        super().__init__(message)
        self.stage = stage
        self.url = url
        self.record = record
