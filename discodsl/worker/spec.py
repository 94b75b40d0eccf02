"""Plain descriptions of a job as a worker sees it: what the jobpack's jobdata carries.

These stdlib dataclasses, the user's functions and nothing else are pickled
into the jobpack (a node cannot import pydantic models or the rest of
discodsl). ``encode_jobdata`` / ``decode_jobdata`` frame the pickle with a
header naming the client's Python, so a node with another minor version can
say which Python the job needs instead of failing inside ``pickle``.

Stage kinds and what their ``function`` is called with:

- ``map``: ``function(record[, params])`` once per input record, where a
  record is a line (``str``, without its newline) of a text input or a
  ``(key, value)`` pair of a record file, or what the stage's ``reader``
  (:mod:`discodsl.worker.readers`) makes of the input; yields or returns
  ``(key, value)``.
- ``reduce``: ``function(key, values[, params])`` once per distinct key,
  ``values`` an iterator; input is grouped by sorting (or by hashing when
  ``sort`` is false).
- ``stage``: ``function(records[, params])`` once per task with an iterator
  over all the task's records.

Whether a function takes ``params``, and how, is decided once, by
:func:`params_passing` (the decorators and combiners all ask it); :func:`positional_arity`
says how many positional arguments a hook accepts.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, TypeGuard

JOBDATA_MAGIC = b"DISCODSL-JOBDATA 1\n"

# Disco 0.5.4's groupings (spec section 2); the jobpack checks and the decorators use these.
GROUPINGS = ("split", "group_label", "group_all", "group_node", "group_node_label")
# A stage's name, as a Disco 0.5.4 node can name its files after it: ASCII but spaces and
# '/' (the node writes a task's index under the name's UTF-8 read as Latin-1: a stage
# after one named otherwise finds no input), and as the files' URLs are fetched over HTTP
# from a master that unquotes them: not '#', '?', '%', '+' or '\' (a fragment, a query,
# an escape, a space, refused: a real master answered 404, and failed save_results).
_URL_SPECIAL = "#?%+\\"
_STAGE_CHARS = "".join(  # a character class: the printable ASCII but those
    re.escape(chr(code)) for code in range(0x21, 0x7F) if chr(code) not in "/" + _URL_SPECIAL
)
_STAGE_NAME = re.compile(f"[{_STAGE_CHARS}]+")
_NOT_STAGE_CHAR = re.compile(f"[^{_STAGE_CHARS}]")
# Names a directory has for itself and its parent: an inline run makes a directory named
# after each stage, and one named ".." wrote its files outside its run, where another read them.
_PATH_NAMES = frozenset({".", ".."})
# The longest job name prefix a Disco 0.5.4 master runs: with 200 characters (216 with its
# "@..." suffix) each task's DONE failed on a real master's node (error:badarg), retried.
PREFIX_MAX = 199
# The longest stage name: a node names the stage's files after it (with up to 33 more
# characters, "-TASK-LABEL-PID.partial"), and a file name holds 255 bytes.
STAGE_NAME_MAX = 128
STAGE_NAME_RULE = (
    f"at most {STAGE_NAME_MAX} ASCII letters, digits and punctuation other than "
    "/ # ? % + \\, without spaces, and not . or .."
)


def plain_function(function: Callable[..., Any]) -> Callable[..., Any]:
    """What a stage object becomes in a jobpack (see :class:`ShippedAsFunction`): the plain
    function it wraps, as callable as the stage was, where no decorator is installed (a
    node)."""
    return function


class ClientOnly:
    """An object of the client's that no jobpack holds (a declared job, which a stage
    cannot run: a node has the worker runtime, not the client)."""

    name: str


class ShippedAsFunction:
    """A declared stage (``discodsl.model.Stage``), which a job ships as :func:`plain_function`
    of its function (another stage's code may call it): a node has the worker runtime, not
    the stage's class. Pickled otherwise, it is itself."""

    @property
    def function(self) -> Callable[..., Any]:
        raise NotImplementedError


# A job name's prefix: what the master takes, less what breaks the worker command on a node
# (a space, a shell character), and no longer than PREFIX_MAX.
PREFIX_PATTERN = r"^[A-Za-z0-9_]+$"
_NOT_PREFIX_CHAR = re.compile(r"[^A-Za-z0-9_]")


def cleaned_prefix(name: str) -> str:
    """``name`` as a job name prefix: its letters made plain as a stage name's are
    (:func:`cleaned_stage_name`), what a prefix may not hold else turned into ``_``, cut
    to PREFIX_MAX with a hash of the whole (two names alike up to the cut stay apart)."""
    cleaned = _NOT_PREFIX_CHAR.sub("_", _ascii(name)) or "job"
    if len(cleaned) <= PREFIX_MAX:
        return cleaned
    import hashlib  # here: the client names jobs, a worker never does

    digest = hashlib.sha1(cleaned.encode()).hexdigest()[:8]
    return f"{cleaned[: PREFIX_MAX - 9]}_{digest}"  # apart from another cut alike


def stage_name_ok(name: Any) -> TypeGuard[str]:
    """Whether ``name`` is a stage name every runner and a Disco 0.5.4 node take."""
    return (
        isinstance(name, str)
        and len(name) <= STAGE_NAME_MAX
        and _STAGE_NAME.fullmatch(name) is not None
        and name not in _PATH_NAMES
    )


def cleaned_stage_name(name: str) -> str:
    """``name`` with what a stage name may not hold turned into ``_``, letters with accents
    first made plain ("zählen" is "zahlen", not "z_hlen", which "zöhlen" would be too), and
    other characters that are no ASCII written as their code points (a Greek sigma is
    "u03c3": it and a pi were both "_")."""
    cleaned = _NOT_STAGE_CHAR.sub("_", _ascii(name)) or "stage"
    return "_" if cleaned in _PATH_NAMES else cleaned


def function_stage_name(written: str) -> str:
    """The name of a stage named after its function ``written`` (:func:`cleaned_stage_name`),
    cut to STAGE_NAME_MAX with a hash of the whole where it is long only as its letters are
    escaped, apart from its namesakes; as long as it is written if that is too long."""
    cleaned = cleaned_stage_name(written)
    if len(cleaned) <= STAGE_NAME_MAX or len(written) > STAGE_NAME_MAX:
        return cleaned
    import hashlib  # here: the client names stages, a worker never does

    digest = hashlib.sha1(cleaned.encode()).hexdigest()[:8]
    return f"{cleaned[: STAGE_NAME_MAX - 9]}_{digest}"


def _ascii(name: str) -> str:
    """``name`` with its accented ASCII letters made plain, and every other character that
    is no ASCII as ``uXXXX``, vowel signs and marks of other scripts included: distinct
    names stay distinct (Devanagari's din and deen both were "u0926_u0928")."""
    import unicodedata  # here: the client names stages and jobs, a worker never does

    written: list[str] = []
    accented = False  # whether a mark here is on an ASCII letter (dropped: an accent)
    for char in unicodedata.normalize("NFKD", name):
        if char.isascii():
            written.append(char)
            accented = char.isalpha()
        elif not (accented and unicodedata.combining(char)):
            written.append(_escaped(char))
            accented = False
    return "".join(written)


def _escaped(letter: str) -> str:
    """``letter`` as Python escapes it, backslash aside: ``u03c3``, or ``U0002c000`` past
    the 65,536 first (u2c000 would also be U+2C00 then a 0)."""
    code = ord(letter)
    return f"u{code:04x}" if code <= 0xFFFF else f"U{code:08x}"


Partitioner = Callable[[Any, int], int]


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline, as the worker runs it."""

    name: str
    kind: str
    grouping: str
    function: Callable[..., Any]
    takes_params: bool = False
    init: Callable[..., Any] | None = None
    done: Callable[..., Any] | None = None
    combine: bool = False
    combiner: Callable[..., Any] | None = None
    partitioner: Partitioner | None = None
    sort: bool = True
    concurrent: bool = False
    # What the first records it yields are checked against (worker.typecheck.Yields), or None.
    yields: Any = None
    # How the first stage's input bytes become records (worker.readers); None: text lines
    # or record files.
    reader: Callable[..., Any] | None = None


@dataclass(frozen=True)
class JobSpec:
    """A whole job: its stages in order and the options the worker needs."""

    name: str
    stages: tuple[StageSpec, ...]
    partitions: int = 1
    params: Any = None
    memory_budget: int = 256 * 1024 * 1024
    compress: bool = False
    python: tuple[int, int] = field(default_factory=lambda: sys.version_info[:2])
    env: Mapping[str, str] = field(default_factory=dict)
    # Classes shipped by value with the jobs whose results are its inputs: their records may
    # hold them, and a worker must name them to read those (worker.shipped_classes).
    carried: tuple[type, ...] = ()
    # The files of earlier jobs' results among its inputs (as its tasks are given them), with
    # the size the index listing each gave and what gave it: a file of another size is not
    # the one its task wrote (worker.inputs checks them as a read of the index does).
    listed: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def stage(self, name: str) -> tuple[int, StageSpec]:
        """The index and spec of the stage called ``name``; KeyError if none."""
        for index, spec in enumerate(self.stages):
            if spec.name == name:
                return index, spec
        raise KeyError(name)


def takes_params(function: Callable[..., Any], before: int) -> bool:
    """Whether ``function`` is called with the job's ``params`` after ``before`` arguments.

    It is when it has a parameter called ``params`` that a call can fill: see
    :func:`params_passing`. A signature that cannot be read (a builtin) has none.
    """
    return params_passing(function, before) is not None


def params_passing(function: Callable[..., Any], before: int) -> str | None:
    """How ``function`` is given the job's ``params`` after ``before`` positional arguments:
    ``"keyword"``, ``"positional"`` (right after them), or None if it takes none.

    Its parameter called ``params`` takes them: right after those arguments (``def
    words(line, params)``, ``def words(line, params, /)``, ``def init(params)``), or
    later, or keyword-only, when every parameter between has a default (``def words(line,
    params=None, verbose=False)``, ``def words(line, *, params=None)``). They go by
    keyword where the function itself takes that keyword, positionally where it does not
    (a decorator's ``wrapper(*args)``, whose signature is the wrapped function's).
    """
    if _binds_params(function):
        return None  # a partial filling in params itself: its own, as called by hand
    try:
        wrapped = call_signature(function)
        own = inspect.signature(function, follow_wrapped=False)
    except (TypeError, ValueError):
        return None
    parameter = wrapped.parameters.get("params")
    if parameter is None and _takes_keyword(own, "params") and _inner_takes_params(function):
        return "keyword"  # a wrapper(line, **kwargs) passing them on to what it wraps
    if parameter is None or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        return None
    positional = [p for p in wrapped.parameters.values() if p.kind in _POSITIONAL]
    index = positional.index(parameter) if parameter in positional else len(positional)
    if index < before or any(p.default is p.empty for p in positional[before:index]):
        return None
    if _takes_keyword(own, "params"):
        return "keyword"
    return "positional" if index == before else None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _inner_takes_params(function: Callable[..., Any]) -> bool:
    """Whether the function ``function`` wraps (``functools.wraps``) names ``params``."""
    if not hasattr(function, "__wrapped__"):
        return False
    try:
        return "params" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


_FORWARDING = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def call_signature(function: Callable[..., Any]) -> inspect.Signature:
    """How ``function`` is called: the signature of what it wraps (``functools.wraps``)
    when it only passes on what it is given (``wrapper(*args, **kwargs)``), else its own (a
    decorator's ``wrapper(line)`` or ``wrapper(line, **kwargs)`` that fills in another
    argument itself, or one that takes ``params`` and gives the function it wraps none).
    TypeError or ValueError if neither can be read."""
    try:
        own = inspect.signature(function, follow_wrapped=False)
    except (TypeError, ValueError):
        return inspect.signature(function)  # an lru_cache's C wrapper: as it calls through
    parameters = own.parameters.values()
    if parameters and all(p.kind in _FORWARDING for p in parameters):
        return inspect.signature(function)
    return own


def _binds_params(function: Any) -> bool:
    """Whether ``function`` is a ``functools.partial`` (at any depth) that fills in
    ``params`` by keyword: the job's params replaced that value, silently (its signature
    shows it as a keyword-only parameter with a default, as any other)."""
    while isinstance(function, functools.partial):
        if "params" in function.keywords:
            return True
        function = function.func
    return False


def _takes_keyword(signature: inspect.Signature, name: str) -> bool:
    """Whether a call with the signature can pass ``name`` by keyword."""
    parameter = signature.parameters.get(name)
    if parameter is not None:
        return parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def positional_arity(function: Callable[..., Any]) -> int | None:
    """How many positional arguments ``function`` takes; None for any number (``*args``,
    or a signature that cannot be read)."""
    try:
        parameters = call_signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def nested_code(code: CodeType) -> Iterator[CodeType]:
    """``code``, and the code of the functions and comprehensions inside it, at any depth."""
    pending = [code]
    while pending:
        each = pending.pop()
        pending += [const for const in each.co_consts if isinstance(const, CodeType)]
        yield each


def python_tag(version: tuple[int, int]) -> str:
    """``(3, 11)`` -> ``"3.11"``."""
    return f"{version[0]}.{version[1]}"


def encode_jobdata(job: JobSpec, pickled: bytes) -> bytes:
    """Frame ``pickled`` (the cloudpickled ``job``) with a header naming its Python, and the
    pickle's length and CRC-32 (a jobpack has no checksum of its own)."""
    header = json.dumps(
        {
            "python": python_tag(job.python),
            "job": job.name,
            "size": len(pickled),
            "crc32": zlib.crc32(pickled),
        }
    )
    return JOBDATA_MAGIC + header.encode() + b"\n" + pickled


def split_jobdata(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the pickle of framed jobdata; ValueError saying what is wrong."""
    if not data.startswith(JOBDATA_MAGIC):
        raise ValueError(
            "jobdata does not start with the discodsl header: "
            "this jobpack was not built by discodsl, or was damaged; rebuild it"
        )
    end = data.find(b"\n", len(JOBDATA_MAGIC))
    if end < 0:
        raise ValueError("jobdata header is not terminated: rebuild the jobpack")
    try:
        header = json.loads(data[len(JOBDATA_MAGIC) : end])
    except ValueError as exc:
        raise ValueError(f"jobdata header is not JSON ({exc}): rebuild the jobpack") from exc
    if not isinstance(header, dict) or not isinstance(header.get("python"), str):
        raise ValueError("jobdata header lacks the 'python' field: rebuild the jobpack")
    pickled = data[end + 1 :]
    if "crc32" in header and (header["crc32"], header.get("size")) != (
        zlib.crc32(pickled),
        len(pickled),
    ):
        raise ValueError(
            f"the job's pickle in the jobdata is damaged ({len(pickled)} bytes, CRC-32 "
            f"{zlib.crc32(pickled)}, where its header says {header.get('size')!r} bytes "
            f"and {header['crc32']!r}): build the jobpack again"
        )
    return header, pickled
