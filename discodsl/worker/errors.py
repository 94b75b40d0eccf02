"""The errors the worker runtime can raise, standard library only.

These are the bottom of the tree drawn in :mod:`discodsl.errors`; they live
here because this subpackage ships to Disco nodes that cannot import the rest
of discodsl. Every message says what happened and what to do about it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import reprlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


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


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids: a bug in the code sending it.

    Raised, changing nothing, by a side's ``send`` and by a message built with
    a wrong field; ``fatal`` still says what the master would do on receipt.
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a frame, a message it may not send, or one out of order.

    Raised only by a side's ``next_event`` and ``eof`` (and by the frame
    decoder); the side stays failed. ``fatal`` says what the master does.
    """


class DataError(DiscoDSLError):
    """An input or record file could not be read: corrupt, truncated or unreachable.

    ``url`` names the input, ``span`` the byte range and ``record`` the
    0-based record (line) number, when known.
    """

    def __init__(
        self,
        message: str,
        url: str = "",
        span: tuple[int, int] | None = None,
        record: int = -1,
    ):
        super().__init__(message)
        self.url = url
        self.span = span
        self.record = record

    status = 0  # the HTTP status a server answered the read with, if it answered one


class MalformedRecord(DataError):
    """A record of an input could not be parsed by the stage's reader (a JSON line, a CSV
    row, a short fixed-size record), or needs a class this process cannot import;
    ``url``, ``record`` and ``span`` say where.

    Unlike other DataErrors it is not retried, nor read from another replica:
    the same bytes would fail again. The job fails at once (Disco's FATAL).
    ``needed`` says which class or module, as the unpickling said it, if one is missing.
    """

    needed = ""


class BadURL(DataError):
    """A task input's URL that no worker can read, however often it tries: a DDFS tag
    (resolved to its blobs before a job runs), a scheme no worker reads, a URL with no
    path. The input's other replicas are still read; when none can be, the task is not
    retried (Disco's FATAL), as the same URLs would fail again.
    """


class DamagedInput(DataError):
    """An input whose bytes are damaged: compressed data cut short or corrupt, or not the
    data its name says (``x.gz`` holding text). The input's other replicas are still read
    (another copy may be whole); when none can be, the task is not retried (Disco's
    FATAL), as the same bytes would fail the same way.
    """


class Retry(DiscoDSLError):
    """Raise from stage code to have the task retried, as Disco retries an I/O error.

    Any other exception from stage code is taken for a bug and fails the job
    at once (Disco's FATAL). ``Retry`` (like :class:`DataError`, ``OSError``
    and ``MemoryError``) is reported as Disco's ERROR instead: the task runs
    again, up to the local runner's ``max_failures`` or the Disco master's
    ``max_failure_rate``. Use it for a flaky service: ``raise Retry("busy")``.
    """


RETRIED = (DataError, OSError, MemoryError, Retry)


def retryable(exc: BaseException) -> bool:
    """Whether a task that failed with ``exc`` is worth running again (Disco's ERROR).

    A :class:`StageError` wrapping the user's exception is judged by that
    exception; a StageError of its own (a record of the wrong shape) is a bug.
    """
    if isinstance(exc, StageError):
        cause = exc.__cause__
        return cause is not None and not isinstance(cause, StageError) and retryable(cause)
    # (io.UnsupportedOperation, an OSError: the same call fails the same way again)
    never = (MalformedRecord, BadURL, DamagedInput, io.UnsupportedOperation)
    return isinstance(exc, RETRIED) and not isinstance(exc, never)


class StageError(DiscoDSLError):
    """User code failed inside a task; says where: stage, input URL, record number.

    ``exc_type`` names the type of the user's exception (the ``__cause__``); ``written``
    says the record at fault failed as its batch was written, so it came at ``record`` or
    before.
    """

    def __init__(
        self, message: str, stage: str = "", url: str = "", record: int = -1, exc_type: str = ""
    ):
        super().__init__(message)
        self.stage = stage
        self.url = url
        self.record = record
        self.exc_type = exc_type
        self.written = False


# What a worker's failure to load the job says (runtime.py), as a runner tells it apart.
LOAD_FAILURE = "cannot load the job's stages"
# What a load failure says when the stages need discodsl's client, which no node has: the
# runner then has its cause, and a pre-flight (which imports from elsewhere) has no better.
CLIENT_NEEDED = "discodsl's client"
# What a load failure says when a module the stages name cannot be imported here: a
# runner's pre-flight then names the stage and the global.
MISSING_HERE = "a module the stages use by reference is missing here"


def defined_at(function: Callable[..., Any]) -> str:
    """`` (FILE, line N)``: where the user's ``function`` (a stage, a reader, a hook) is
    defined, for the errors about it; "" if not known, or if it is one of ours."""
    target = function.func if isinstance(function, functools.partial) else function
    code = getattr(target, "__code__", None)
    if code is None or (getattr(target, "__module__", None) or "").startswith("discodsl."):
        return ""
    return f" ({file_named(code.co_filename)}, line {code.co_firstlineno})"


def file_named(filename: str) -> str:
    """A file as its user knows it: a notebook cell's as IPython names it (``cell In[3]``),
    else its base name."""
    cell = notebook_cells().get(filename)
    return f"cell In[{cell}]" if cell is not None else os.path.basename(filename)


def notebook_cells() -> dict[str, int]:
    """The files IPython compiled a notebook's cells into, each with its execution count, in
    a process that runs IPython's shell ({} elsewhere: a worker)."""
    ipython = sys.modules.get("IPython")
    get_shell = getattr(ipython, "get_ipython", None)
    shell = get_shell() if callable(get_shell) else None
    cells = getattr(getattr(shell, "compile", None), "_filename_map", None)
    return dict(cells) if isinstance(cells, dict) else {}


def named(function: Any) -> str:
    """What ``function`` (a stage's, a hook, a reader) is called in an error: its qualified
    name, else a partial's function's, else its class's (a callable object)."""
    for candidate in (function, getattr(function, "func", None)):
        name = getattr(candidate, "__qualname__", None)
        if isinstance(name, str):
            return name
    return type(function).__qualname__


def a_type(value: Any) -> str:
    """``value``'s type with its article, as a message says it: "an int", "a str"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def brief(value: Any, most: int) -> str:
    """``repr(value)`` for an error message, cut to ``most`` characters with "..." where it
    was cut (a cut path or key that looks whole misleads)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    except Exception as exc:  # a class of the user's whose __repr__ fails
        text = _past_digit_limit(value, exc, most) or (
            f"<a {type(value).__name__} whose repr() raised {type(exc).__name__}>"
        )
    return text if len(text) <= most else text[: max(0, most - 3)] + "..."


def _past_digit_limit(value: Any, exc: Exception, most: int) -> str | None:
    """``value`` shown though it holds an int of more than 4,300 digits, which repr()
    refuses from Python 3.11 (a ValueError): an int by its first digits and length, what
    holds one by a repr of about ``most`` characters showing such ints so (making the whole
    text would take time quadratic in the digits); None if that was not the failure."""
    if not isinstance(exc, ValueError) or not hasattr(sys, "set_int_max_str_digits"):
        return None
    if isinstance(value, int):
        return _long_int(value)
    shown = _LongInts()
    shown.maxstring = shown.maxlong = shown.maxother = max(most, 20)
    shown.maxtuple = shown.maxlist = shown.maxset = shown.maxfrozenset = max(6, most // 8)
    shown.maxdict = shown.maxdeque = shown.maxarray = max(4, most // 16)
    try:
        return shown.repr(value)
    except Exception:
        return None


class _LongInts(reprlib.Repr):
    """reprlib's repr, bounded in its items and levels, with ints too long for repr()
    shown by their first digits and length."""

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:
            return _long_int(x)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:  # reprlib's own words for it would hide why
            return f"<a {type(x).__name__} whose repr() raised {type(exc).__name__}>"
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."


@contextlib.contextmanager
def digits_unlimited() -> Iterator[None]:
    """No limit to the digits of an int read or written as text, in the block (Python's
    is 4,300 from 3.11, none before; it is the process's, so another thread goes without
    it meanwhile too)."""
    if not hasattr(sys, "set_int_max_str_digits"):  # Python 3.10: no limit to lift
        yield
        return
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


def _long_int(number: int) -> str:
    """An int too long for repr() (Python 3.11 and later refuse more than 4,300 digits): its
    first digits and how many it has, found with no conversion to text of the whole."""
    size = abs(int(number))
    digits = max(1, int(size.bit_length() * 0.30103))  # log10(2): one under, or right
    while size >= 10**digits:
        digits += 1
    first = size // 10 ** (digits - 12)
    return f"{'-' if number < 0 else ''}{first}... (an int of {digits} digits)"
