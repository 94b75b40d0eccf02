"""What a worker sends in Disco 0.5.4's worker protocol, as typed, frozen messages.

What it holds:

- :class:`Message`, the base of every message either way: its frame ``NAME``
  and its payload, to and from JSON values (byte for byte as the recordings);
- the worker's messages, one class each: :class:`Worker`, :class:`Task`,
  :class:`Input`, :class:`InputErr`, :class:`Msg`, :class:`Output`,
  :class:`Done`, :class:`Error`, :class:`Fatal`; each is checked when built,
  as the 0.5.4 master checks it (``worker_runtime:payload_type/1``, then
  ``do_handle/2`` for the WORKER version and the OUTPUT location);
- :func:`request_from_frame`, and the small payload checks
  :mod:`.replies` shares.

What it does not: the master's replies (:mod:`.replies`), frames
(:mod:`.frames`), the legal order (:mod:`.sides`). No I/O, standard library only.

A message that cannot be built raises :class:`LocalProtocolError`, whoever
builds it: as in h11, the side that decoded it from the peer's bytes turns it
into :class:`RemoteProtocolError`. ``fatal`` says what the master does with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .errors import LocalProtocolError
from .frames import Frame

__all__ = [
    "EVENT_TEXT_LIMIT",
    "REQUESTS",
    "Done",
    "Error",
    "Fatal",
    "Input",
    "InputErr",
    "Message",
    "Msg",
    "Output",
    "Request",
    "Task",
    "Worker",
    "request_from_frame",
]


# --- Payload checks, shared with the replies ---------------------------------------------


def is_int(value: Any) -> bool:
    """A JSON integer; ``bool`` is not one, as for the master's json_validator."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_int_list(value: Any) -> bool:
    """A list (or tuple) of JSON integers."""
    return isinstance(value, (list, tuple)) and all(is_int(item) for item in value)


def is_id_and_name(value: Any) -> bool:
    """An (int, str) pair as a JSON list or a tuple: a group or a replica."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and is_int(value[0])
        and isinstance(value[1], str)
    )


def show(value: Any) -> str:
    """A short repr of a payload value, for error messages."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


# --- The base ---------------------------------------------------------------------------


class Message:
    """A protocol message: its frame ``NAME`` and its payload as JSON values."""

    NAME: ClassVar[str]

    def to_payload(self) -> Any:
        """The payload as JSON values, as the frame carries it."""
        raise NotImplementedError

    def to_frame(self) -> Frame:
        """The frame that carries this message."""
        return Frame(self.NAME, self.to_payload())


def _listed(value: Any) -> Any:
    """A tuple as the JSON list it stands for, in error texts; anything else as it is."""
    return list(value) if isinstance(value, tuple) else value


def _bad_body(name: str, problem: str) -> LocalProtocolError:
    """The master's complaint about a worker message's payload (it kills the job)."""
    return LocalProtocolError(f"Invalid message body (type '{name}'): {problem}")


# --- The worker's messages --------------------------------------------------------------


@dataclass(frozen=True)
class Worker(Message):
    """``WORKER {"version": "1.1", "pid": pid}``: first, once; the master SIGKILLs ``pid``."""

    NAME: ClassVar[str] = "WORKER"
    pid: int
    version: str = "1.1"

    def __post_init__(self) -> None:
        """Refuse a wrongly typed field, then any version but 1.1 (both fatal)."""
        if not isinstance(self.version, str):
            raise _bad_body(self.NAME, f'"version" must be a string, got {show(self.version)}')
        if not is_int(self.pid):
            raise _bad_body(self.NAME, f'"pid" must be an integer, got {show(self.pid)}')
        if self.version != "1.1":
            raise LocalProtocolError(
                f"Invalid worker version: <<{json.dumps(self.version)}>>: the 0.5.4 master "
                'speaks worker protocol 1.1 only; send {"version": "1.1", "pid": ...}'
            )

    @classmethod
    def from_payload(cls, payload: Any) -> Worker:
        """Read ``{"version": ..., "pid": ...}`` (other keys are ignored, as by the master)."""
        if not isinstance(payload, dict):
            raise _bad_body(
                cls.NAME, f'expected {{"version": string, "pid": integer}}, got {show(payload)}'
            )
        return cls(pid=payload.get("pid"), version=payload.get("version"))  # type: ignore[arg-type]

    def to_payload(self) -> dict[str, Any]:
        return {"version": self.version, "pid": self.pid}


@dataclass(frozen=True)
class _Text(Message):
    """A message whose payload is a string.

    Its subclasses add no field, so they take its ``__init__``, ``__eq__`` (which tells
    them apart by class), ``__repr__`` and ``__hash__`` as they are, without a
    ``@dataclass`` of their own: on Python 3.11 each costs a millisecond at import, in every
    worker's start.
    """

    text: str = ""

    def __post_init__(self) -> None:
        """Refuse a text that is not a string."""
        if not isinstance(self.text, str):
            raise _bad_body(self.NAME, f"expected a string, got {show(self.text)}")

    @classmethod
    def from_payload(cls: type[_T], payload: Any) -> _T:
        """Read the payload: the text."""
        return cls(payload)

    def to_payload(self) -> str:
        return self.text


_T = TypeVar("_T", bound=_Text)


class Task(_Text):
    """``TASK ""``: ask what this task is; the reply is a :class:`~.replies.TaskInfo`.

    The text is ignored by the master; workers send ``""``.
    """

    NAME: ClassVar[str] = "TASK"


# A Disco 0.5.4 master formats a worker's MSG, ERROR or FATAL into an event ("MSG: [stage:N]
# text", disco:format: lager's safe_format, 8192) that keeps 8182 bytes and ends the rest
# with "..." (measured: with "MSG: [probe:5] ", 8167 bytes of text come whole, 8168 do
# not). A text of at most EVENT_TEXT_LIMIT bytes comes whole under a stage name of up to
# a thousand characters.
EVENT_TEXT_LIMIT = 7000


class Msg(_Text):
    """``MSG``: a line for the job's events; keep under 5 a second (10 a second is fatal) and
    within EVENT_TEXT_LIMIT bytes (a Disco master keeps only the start of a longer one)."""

    NAME: ClassVar[str] = "MSG"


class Done(_Text):
    """``DONE``: the task succeeded. No reply: the master kills the worker."""

    NAME: ClassVar[str] = "DONE"


class Error(_Text):
    """``ERROR``: the task failed and will be retried. No reply."""

    NAME: ClassVar[str] = "ERROR"


class Fatal(_Text):
    """``FATAL``: the whole job must die. No reply."""

    NAME: ClassVar[str] = "FATAL"


_INPUT_SHAPE = '"" or ["exclude" or "include", [input_id, ...]]'


@dataclass(frozen=True)
class Input(Message):
    """``INPUT``: ask for all inputs (``Input()``), all but ``exclude``, or only ``include``.

    The reply is an :class:`~.replies.InputReply`. Input ids are stored as tuples.
    """

    NAME: ClassVar[str] = "INPUT"
    exclude: tuple[int, ...] | None = None
    include: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        """Refuse both lists at once, or ids that are not integers; store tuples."""
        if self.exclude is not None and self.include is not None:
            raise LocalProtocolError(
                "INPUT takes exclude or include, not both: send one INPUT per question"
            )
        how, ids = ("exclude", self.exclude) if self.include is None else ("include", self.include)
        if ids is None:
            return
        if not is_int_list(ids):
            raise _bad_body(self.NAME, f"expected {_INPUT_SHAPE}, got {show([how, _listed(ids)])}")
        object.__setattr__(self, how, tuple(ids))

    @classmethod
    def from_payload(cls, payload: Any) -> Input:
        """Read ``""`` or ``[how, [input_id, ...]]``."""
        if payload == "":
            return cls()
        if not (
            isinstance(payload, list)
            and len(payload) == 2
            and payload[0] in ("exclude", "include")
            and isinstance(payload[1], list)
        ):
            raise _bad_body(cls.NAME, f"expected {_INPUT_SHAPE}, got {show(payload)}")
        ids = tuple(payload[1])
        return cls(exclude=ids) if payload[0] == "exclude" else cls(include=ids)

    def to_payload(self) -> str | list[Any]:
        if self.exclude is not None:
            return ["exclude", list(self.exclude)]
        if self.include is not None:
            return ["include", list(self.include)]
        return ""


@dataclass(frozen=True)
class InputErr(Message):
    """``INPUT_ERR``: replicas failed. In 0.5.4 real ids crash the master: fail over locally."""

    NAME: ClassVar[str] = "INPUT_ERR"
    input_id: int
    replica_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        """Refuse ids that are not integers; store a tuple."""
        if not (is_int(self.input_id) and is_int_list(self.replica_ids)):
            raise _bad_body(
                self.NAME,
                "expected [input_id, [replica_id, ...]] (integers), got "
                f"{show([self.input_id, _listed(self.replica_ids)])}",
            )
        object.__setattr__(self, "replica_ids", tuple(self.replica_ids))

    @classmethod
    def from_payload(cls, payload: Any) -> InputErr:
        """Read ``[input_id, [replica_id, ...]]``."""
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], list)):
            raise _bad_body(
                cls.NAME,
                f"expected [input_id, [replica_id, ...]] (integers), got {show(payload)}",
            )
        return cls(payload[0], tuple(payload[1]))

    def to_payload(self) -> list[Any]:
        return [self.input_id, list(self.replica_ids)]


@dataclass(frozen=True)
class Output(Message):
    """``OUTPUT``: a result file, relative to the job home (or a URL), with its label."""

    NAME: ClassVar[str] = "OUTPUT"
    label: int
    location: str
    size: int

    def __post_init__(self) -> None:
        """Refuse wrongly typed fields (fatal), then an absolute path (a task failure)."""
        if not (is_int(self.label) and isinstance(self.location, str) and is_int(self.size)):
            raise _bad_body(
                self.NAME,
                "expected [label, location, size] (integer, string, integer), got "
                f"{show([self.label, self.location, self.size])}",
            )
        if self.location.startswith("/"):
            raise LocalProtocolError(
                f"OUTPUT location {self.location!r} is an absolute path: the 0.5.4 master "
                f"fails the task with {{invalid_output,<<{json.dumps(self.location)}>>}}; "
                "send a path relative to the job home, or a URL",
                fatal=False,
            )

    @classmethod
    def from_payload(cls, payload: Any) -> Output:
        """Read ``[label, location, size]``."""
        if not (isinstance(payload, list) and len(payload) == 3):
            raise _bad_body(
                cls.NAME,
                f"expected [label, location, size] (integer, string, integer), got {show(payload)}",
            )
        return cls(payload[0], payload[1], payload[2])

    def to_payload(self) -> list[Any]:
        return [self.label, self.location, self.size]


Request = Worker | Task | Input | InputErr | Msg | Output | Done | Error | Fatal

# frame NAME -> the worker message it carries; worker_runtime:payload_type/1
REQUESTS: dict[str, type[Request]] = {
    cls.NAME: cls for cls in (Worker, Task, Input, InputErr, Msg, Output, Done, Error, Fatal)
}

_PING = (
    "Unknown message type 'PING': the 0.5.4 master has no PING in payload_type/1, so it "
    'treats PING as an unknown message and kills the job (its OK "pong" clause is '
    "unreachable); never send PING"
)


def request_from_frame(frame: Frame) -> Request:
    """The worker message ``frame`` carries; LocalProtocolError if the master would refuse it."""
    cls = REQUESTS.get(frame.name)
    if cls is None:
        raise LocalProtocolError(_PING if frame.name == "PING" else _unknown(frame))
    return cls.from_payload(frame.payload)


def _unknown(frame: Frame) -> str:
    """The master's complaint about a message name it does not know."""
    return (
        f"Unknown message type '{frame.name}', body: {show(frame.payload)}; the 0.5.4 master "
        f"knows only {', '.join(REQUESTS)} and kills the job for anything else"
    )
