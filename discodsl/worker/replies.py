"""What the master replies in Disco 0.5.4's worker protocol, as typed, frozen messages.

What it holds: one class per reply, each checked when built and read from
and written to its payload byte for byte as the recordings show:
:class:`Ok` (to WORKER, MSG, OUTPUT), :class:`TaskInfo` (to TASK),
:class:`InputReply` of :class:`InputEntry` (to INPUT), :class:`Retry` and
:class:`Fail` (to INPUT_ERR); :data:`REPLIES` maps frame names to them.

What it does not: the worker's messages (:mod:`.messages`), frames, the legal
order (:mod:`.sides`). No I/O, standard library only. As there, a reply that
cannot be built raises :class:`LocalProtocolError`; the worker's side turns
it into :class:`RemoteProtocolError` when it came from the master's bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .errors import LocalProtocolError
from .messages import Message, is_id_and_name, is_int, show

__all__ = ["REPLIES", "Fail", "InputEntry", "InputReply", "Ok", "Reply", "Retry", "TaskInfo"]


def _bad_reply(name: str, problem: str) -> LocalProtocolError:
    """A reply whose payload has the wrong shape."""
    return LocalProtocolError(f"Invalid reply body (type '{name}'): {problem}")


@dataclass(frozen=True)
class Ok(Message):
    """``OK "ok"``: the answer to WORKER, MSG and OUTPUT (the "pong" for PING is unreachable)."""

    NAME: ClassVar[str] = "OK"

    @classmethod
    def from_payload(cls, payload: Any) -> Ok:
        """Read the payload: always ``"ok"``."""
        if payload != "ok":
            raise _bad_reply(cls.NAME, f'expected "ok", got {show(payload)}')
        return cls()

    def to_payload(self) -> str:
        return "ok"


@dataclass(frozen=True)
class Fail(Message):
    """``FAIL ""``: an answer to INPUT_ERR, no replica left."""

    NAME: ClassVar[str] = "FAIL"

    @classmethod
    def from_payload(cls, payload: Any) -> Fail:
        """Read the payload: always ``""``."""
        if payload != "":
            raise _bad_reply(cls.NAME, f'expected "", got {show(payload)}')
        return cls()

    def to_payload(self) -> str:
        return ""


@dataclass(frozen=True)
class Retry(Message):
    """``RETRY [[replica_id, url], ...]``: an answer to INPUT_ERR, the replicas left to try."""

    NAME: ClassVar[str] = "RETRY"
    replicas: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        """Refuse no replicas or ill-typed ones; store tuples."""
        replicas = self.replicas
        if not (
            isinstance(replicas, (list, tuple)) and replicas and all(map(is_id_and_name, replicas))
        ):
            raise _bad_reply(self.NAME, f"expected [[replica_id, url], ...], got {show(replicas)}")
        object.__setattr__(self, "replicas", tuple((rid, url) for rid, url in replicas))

    @classmethod
    def from_payload(cls, payload: Any) -> Retry:
        """Read ``[[replica_id, url], ...]``."""
        return cls(payload)

    def to_payload(self) -> list[Any]:
        return [[rid, url] for rid, url in self.replicas]


# field type (as annotated) -> (check, what the field must be)
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (is_int, "an integer"),
    "str": (lambda value: isinstance(value, str), "a string"),
    "tuple[int, str]": (is_id_and_name, "[label, host] (integer, string)"),
}


@dataclass(frozen=True)
class TaskInfo(Message):
    """``TASK {...}``: what the master tells a worker about its task; fields in its order.

    :meth:`from_payload` reads it, :meth:`to_payload` gives the payload back,
    keys in the same order. ``group`` is ``(label, host)``.
    """

    NAME: ClassVar[str] = "TASK"
    taskid: int
    master: str
    disco_port: int
    put_port: int
    ddfs_data: str
    disco_data: str
    stage: str
    grouping: str
    group: tuple[int, str]
    jobfile: str
    jobname: str
    host: str

    def __post_init__(self) -> None:
        """Refuse a wrongly typed field (naming it); store ``group`` as a tuple."""
        for field in fields(self):
            check, what = _FIELD_CHECKS[str(field.type)]
            value = getattr(self, field.name)
            if not check(value):
                raise LocalProtocolError(
                    f"Invalid TASK reply: field '{field.name}' must be {what}, got {show(value)}"
                )
        object.__setattr__(self, "group", (self.group[0], self.group[1]))

    @classmethod
    def from_payload(cls, payload: Any) -> TaskInfo:
        """Read a TASK reply payload, naming the field if it has the wrong shape."""
        if not isinstance(payload, dict):
            raise LocalProtocolError(
                f"Invalid TASK reply: expected a JSON object, got {show(payload)}"
            )
        names = [field.name for field in fields(cls)]
        for name in names:
            if name not in payload:
                raise LocalProtocolError(f"Invalid TASK reply: field '{name}' is missing")
        for key in payload:
            if key not in names:
                raise LocalProtocolError(
                    f"Invalid TASK reply: unexpected field '{key}'; 0.5.4 sends exactly {names}"
                )
        return cls(**payload)

    def to_payload(self) -> dict[str, Any]:
        """The TASK reply payload: keys in the master's order, ``group`` as a 2-list."""
        payload = {field.name: getattr(self, field.name) for field in fields(self)}
        payload["group"] = list(self.group)
        return payload


@dataclass(frozen=True)
class InputEntry:
    """One input in an INPUT reply: its id in this task, status, label and replicas.

    ``label`` is an integer, or ``"all"`` for a ``dir://`` input of a
    group_all or group_node task (then every line of the index counts).
    ``replicas`` are ``(replica_id, url)``, least recently failed first.
    """

    input_id: int
    status: str
    label: int | str
    replicas: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        """Refuse a wrongly typed field; store replicas as tuples."""
        problem = _input_entry_problem(self)
        if problem:
            raise LocalProtocolError(f"Invalid INPUT reply entry: {problem}")
        replicas = tuple((rid, url) for rid, url in self.replicas)
        object.__setattr__(self, "replicas", replicas)

    @classmethod
    def from_payload(cls, item: Any) -> InputEntry:
        """Read one ``[input_id, status, label, [[replica_id, url], ...]]`` item."""
        if not (isinstance(item, list) and len(item) == 4):
            raise LocalProtocolError(
                "Invalid INPUT reply entry: expected [input_id, status, label, "
                f"[[replica_id, url], ...]], got {show(item)}"
            )
        return cls(item[0], item[1], item[2], item[3])

    def to_payload(self) -> list[Any]:
        """The entry as the master sends it."""
        replicas = [[rid, url] for rid, url in self.replicas]
        return [self.input_id, self.status, self.label, replicas]


def _input_entry_problem(entry: InputEntry) -> str:
    """What is wrong with an INPUT reply entry, or "" if nothing."""
    if not is_int(entry.input_id):
        return f"input_id must be an integer, got {show(entry.input_id)}"
    if not isinstance(entry.status, str):
        return f"status must be a string, got {show(entry.status)}"
    if not (is_int(entry.label) or entry.label == "all"):
        return f'label must be an integer or "all", got {show(entry.label)}'
    replicas = entry.replicas
    if not (isinstance(replicas, (list, tuple)) and all(is_id_and_name(r) for r in replicas)):
        return f"replicas must be [[replica_id, url], ...], got {show(replicas)}"
    return ""


_INPUT_FLAGS = ("more", "done")


@dataclass(frozen=True)
class InputReply(Message):
    """``INPUT [flag, entries]``: the answer to INPUT.

    ``flag`` ``"done"``: the task's input set is final; ``"more"``: ask again
    (``Input(exclude=ids seen)``) until ``"done"``.
    """

    NAME: ClassVar[str] = "INPUT"
    flag: str
    entries: tuple[InputEntry, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a flag but "more" or "done", or entries that are not InputEntry; store a tuple."""
        if self.flag not in _INPUT_FLAGS:
            raise LocalProtocolError(
                f'Invalid INPUT reply: flag must be "more" or "done", got {self.flag!r}'
            )
        if not all(isinstance(entry, InputEntry) for entry in self.entries):
            raise LocalProtocolError(
                f"Invalid INPUT reply: entries must be InputEntry, got {show(self.entries)}"
            )
        object.__setattr__(self, "entries", tuple(self.entries))

    @classmethod
    def from_payload(cls, payload: Any) -> InputReply:
        """Read ``[flag, [[input_id, status, label, [[replica_id, url], ...]], ...]]``."""
        if not (
            isinstance(payload, list)
            and len(payload) == 2
            and payload[0] in _INPUT_FLAGS
            and isinstance(payload[1], list)
        ):
            raise LocalProtocolError(
                'Invalid INPUT reply: expected ["more" or "done", [[input_id, status, label, '
                f"[[replica_id, url], ...]], ...]], got {show(payload)}"
            )
        return cls(payload[0], tuple(InputEntry.from_payload(item) for item in payload[1]))

    def to_payload(self) -> list[Any]:
        return [self.flag, [entry.to_payload() for entry in self.entries]]


Reply = Ok | TaskInfo | InputReply | Retry | Fail

# frame NAME -> the master reply it carries
REPLIES: dict[str, type[Reply]] = {cls.NAME: cls for cls in (Ok, TaskInfo, InputReply, Retry, Fail)}
