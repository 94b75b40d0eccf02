"""Disco 0.5.4's worker protocol (version "1.1") as a sans-I/O codec for both ends.

What it holds:

- the frame codec: :func:`encode_frame` and the incremental :class:`FrameDecoder`
  (``NAME SP LEN SP JSON \\n``);
- the payloads the master sends, as frozen types: :class:`TaskInfo` (TASK reply),
  :class:`InputEntry` with :func:`parse_input_reply` / :func:`input_reply_payload`;
- the legal order as tables, in the manner of h11's ``_state.py``:
  :data:`TRANSITIONS` (state x worker message -> next state) and
  :data:`REPLIES_OWED` (worker message -> the replies that answer it);
- the two ends: :class:`WorkerSide` checks and encodes what a worker sends and
  checks the master's replies; :class:`MasterSide` accepts or rejects worker
  messages as the 0.5.4 master does and encodes its replies (for the local
  runner and test masters).

What it does not do: read or write pipes, start processes, time out, or
rate-limit MSG. Bytes in, frames out; frames in, bytes out: the caller moves
the bytes. It imports only the standard library because it ships to Disco
nodes.

Error texts start like the master's own events (``worker_protocol.erl``,
``worker_runtime.erl``), so a failure here reads like the one the cluster
would log; :attr:`ProtocolError.fatal` says what the master does about it:
``True`` kills the job, ``False`` fails (and retries) the task.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .errors import ProtocolError

__all__ = [
    "MAX_NAME",
    "MAX_PAYLOAD",
    "REPLIES_OWED",
    "TRANSITIONS",
    "Frame",
    "FrameDecoder",
    "InputEntry",
    "MasterSide",
    "Owed",
    "State",
    "TaskInfo",
    "WorkerSide",
    "encode_frame",
    "input_reply_payload",
    "parse_input_reply",
]

MAX_PAYLOAD = 100 * 1024 * 1024
MAX_NAME = 10
_MAX_LEN_DIGITS = 10  # worker_protocol.erl head/1: at most 10 bytes before the space
_MAX_HEADER = MAX_NAME + 1 + _MAX_LEN_DIGITS + 1
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = frozenset(chr(byte) for byte in _NAME_BYTES)
_DIGITS = frozenset(b"0123456789")
# header field -> (bytes allowed, most bytes, worker_protocol.erl's reason, what it holds)
_HEADER_FIELDS: dict[str, tuple[frozenset[int], int, str, str]] = {
    "NAME": (_NAME_BYTES, MAX_NAME, "invalid_type", "uppercase letters or underscores"),
    "LEN": (_DIGITS, _MAX_LEN_DIGITS, "invalid_length", "decimal digits"),
}
_SP, _NL = 0x20, 0x0A
_QUOTE = 120  # bytes of an offending frame quoted in an error
_COMPACT_AT = 1 << 16  # drop consumed bytes from the decoder's buffer past this
_SHAPE = (
    "a valid frame is NAME SP LEN SP JSON newline, e.g. b'MSG 4 \"hi\"\\n': NAME 1-10 "
    "uppercase letters or underscores, LEN the payload's length in bytes"
)


# --- Frames -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame as decoded: its NAME and its JSON payload as Python values."""

    name: str
    payload: Any


def encode_frame(name: str, payload: Any, *, compact: bool = False) -> bytes:
    """The bytes of one frame, ``NAME SP LEN SP JSON \\n``, LEN counting bytes.

    ``compact`` writes JSON without spaces, as the master does; workers (Disco's
    and ours) use json's default separators. Non-ASCII is escaped (json's and
    mochijson2's default), so the frame is ASCII.
    """
    _check_name(name)
    separators = (",", ":") if compact else None
    try:
        body = json.dumps(payload, separators=separators, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            f"{name} payload is not JSON ({exc}): send only str, int, float, bool, None, "
            "lists and dicts with string keys"
        ) from exc
    if len(body) > MAX_PAYLOAD:
        raise ProtocolError(
            f"{name} payload is {len(body)} bytes; the master refuses frames over "
            f"{MAX_PAYLOAD} bytes: put bulk data in files and send their names"
        )
    return b"%s %d %s\n" % (name.encode("ascii"), len(body), body)


def _check_name(name: str) -> None:
    """Refuse a NAME the master's parser or our decoder would not take."""
    if not (0 < len(name) <= MAX_NAME and all(c in _NAME_CHARS for c in name)):
        raise ProtocolError(
            f"Frame NAME {name!r} is not 1-{MAX_NAME} ASCII uppercase letters or underscores"
        )


class FrameDecoder:
    """Turns a byte stream into :class:`Frame` objects, incrementally and in O(n) overall.

    :meth:`feed` bytes as they arrive, then call :meth:`next_frame` until it
    returns ``None`` (it needs more bytes); call :meth:`eof` when the stream
    ends. A header is refused as soon as it cannot be valid (no more than 22
    bytes are ever looked at) and a LEN over :data:`MAX_PAYLOAD` before its
    body is waited for. Errors raise :class:`ProtocolError` and the decoder
    stays failed. Framing errors name the reason ``worker_protocol.erl`` gives
    (``invalid_type``, ``invalid_length``, ``message_too_big``, ``invalid_body``)
    and carry ``fatal=False``: the master fails the task. A payload that is not
    JSON carries ``fatal=True``, like the master's "Payload is not valid JSON".
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # where the next frame begins in _buf
        self._header: tuple[str, int, int] | None = None  # its name, LEN, header size
        self._failed: ProtocolError | None = None
        self._last_raw = b""

    @property
    def last_raw(self) -> bytes:
        """A bounded prefix of the last frame decoded, for quoting in error messages."""
        return self._last_raw

    def feed(self, data: bytes) -> None:
        """Append bytes read from the peer; decode them with :meth:`next_frame`."""
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or ``None`` until more bytes are fed."""
        if self._failed is not None:
            raise self._failed
        try:
            return self._next_frame()
        except ProtocolError as exc:
            self._failed = exc
            raise

    def eof(self) -> None:
        """Call when the stream ends: ProtocolError if it ended inside a frame."""
        if self._failed is not None:
            raise self._failed
        pending = bytes(self._buf[self._start : self._start + _QUOTE])
        if pending:
            raise ProtocolError(
                f"The stream ended inside a partial frame, {len(self._buf) - self._start} "
                f"bytes pending: {pending!r}; {_SHAPE}. The 0.5.4 master waits for the rest, "
                "then fails the task when the worker exits ('Worker died. Last words: ...')",
                fatal=False,
                data=pending,
            )

    def _next_frame(self) -> Frame | None:
        """Decode the frame at ``_start`` if all of it is buffered."""
        if self._header is None:
            self._header = _parse_header(self._buf, self._start)
            if self._header is None:
                return None
        name, length, head = self._header
        end = self._start + head + length  # where the closing newline must be
        if len(self._buf) <= end:
            return None
        self._last_raw = bytes(self._buf[self._start : min(end + 1, self._start + _QUOTE)])
        newline, body = self._buf[end], self._buf[self._start + head : end]
        self._advance(end + 1)
        if newline != _NL:
            raise _not_a_frame("invalid_body", self._last_raw, f"no newline after {length} bytes")
        return Frame(name, _loads(name, body, self._last_raw))

    def _advance(self, start: int) -> None:
        """Move past a frame, dropping consumed bytes now and then (amortised O(n))."""
        self._start, self._header = start, None
        if self._start >= len(self._buf):
            self._buf.clear()
            self._start = 0
        elif self._start > _COMPACT_AT and 2 * self._start > len(self._buf):
            del self._buf[: self._start]
            self._start = 0


def _parse_header(buf: bytearray, start: int) -> tuple[str, int, int] | None:
    """NAME, LEN and header size of the frame at ``buf[start:]``; None if not all there yet."""
    window = bytes(buf[start : start + _MAX_HEADER])
    name_end = _field_end(window, 0, "NAME")
    if name_end is None:
        return None
    len_end = _field_end(window, name_end + 1, "LEN")
    if len_end is None:
        return None
    length = int(window[name_end + 1 : len_end])
    if length > MAX_PAYLOAD:
        raise _not_a_frame("message_too_big", window, f"LEN {length} is over {MAX_PAYLOAD}")
    return window[:name_end].decode("ascii"), length, len_end + 1


def _field_end(window: bytes, begin: int, field: str) -> int | None:
    """Index of the space ending header ``field`` at ``window[begin:]``; None if not there yet."""
    allowed, limit, reason, what = _HEADER_FIELDS[field]
    for at in range(begin, min(len(window), begin + limit + 1)):
        if window[at] == _SP and at > begin:
            return at
        if window[at] not in allowed or at == begin + limit:
            raise _not_a_frame(reason, window, f"{field} must be 1-{limit} {what}, then a space")
    return None


def _not_a_frame(reason: str, data: bytes, why: str) -> ProtocolError:
    """The error for bytes that are not a frame: a task failure for the 0.5.4 master."""
    quoted = data[:_QUOTE]
    return ProtocolError(
        f"Not a valid frame ({reason}): {quoted!r}: {why}; {_SHAPE}", fatal=False, data=quoted
    )


def _loads(name: str, body: bytearray, raw: bytes) -> Any:
    """The JSON value of a payload; ProtocolError, fatal as for the master, if it is not JSON."""
    try:
        return _JSON.decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(
            f"Payload is not valid JSON: type '{name}', frame {raw!r}: {exc}; "
            "encode payloads with json.dumps",
            data=raw,
        ) from exc


def _refuse_constant(constant: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON: the master's parser refuses them."""
    raise ValueError(f"{constant} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)  # one, not one per frame


# --- What the master sends --------------------------------------------------------------


def _is_int(value: Any) -> bool:
    """A JSON integer; ``bool`` is not one, as for the master's json_validator."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_list(value: Any) -> bool:
    """A JSON list of integers."""
    return isinstance(value, list) and all(_is_int(item) for item in value)


def _is_pair(value: Any) -> bool:
    """An (int, str) pair as a JSON list or a tuple: a group or a replica."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and _is_int(value[0])
        and isinstance(value[1], str)
    )


def _show(value: Any) -> str:
    """A short repr of a payload value, for error messages."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


# field type (as annotated) -> (check, what the field must be)
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "str": (lambda value: isinstance(value, str), "a string"),
    "tuple[int, str]": (_is_pair, "[label, host] (integer, string)"),
}


@dataclass(frozen=True)
class TaskInfo:
    """What the TASK reply tells a worker about its task; fields in the master's order.

    Build it from the wire with :meth:`from_payload`; :meth:`to_payload` gives
    the payload back, keys in the same order. ``group`` is ``(label, host)``.
    """

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
        """Refuse a wrongly typed field (ProtocolError naming it); store ``group`` as a tuple."""
        for field in fields(self):
            check, what = _FIELD_CHECKS[str(field.type)]
            value = getattr(self, field.name)
            if not check(value):
                raise ProtocolError(
                    f"Invalid TASK reply: field '{field.name}' must be {what}, got {_show(value)}"
                )
        object.__setattr__(self, "group", (self.group[0], self.group[1]))

    @classmethod
    def from_payload(cls, payload: Any) -> TaskInfo:
        """Read a TASK reply payload; ProtocolError naming the field if it has the wrong shape."""
        if not isinstance(payload, dict):
            raise ProtocolError(f"Invalid TASK reply: expected a JSON object, got {_show(payload)}")
        names = [field.name for field in fields(cls)]
        for name in names:
            if name not in payload:
                raise ProtocolError(f"Invalid TASK reply: field '{name}' is missing")
        for key in payload:
            if key not in names:
                raise ProtocolError(
                    f"Invalid TASK reply: unexpected field '{key}'; 0.5.4 sends exactly {names}"
                )
        return cls(**payload)

    def to_payload(self) -> dict[str, Any]:
        """The TASK reply payload: keys in the master's order, ``group`` as a 2-list."""
        payload = {field.name: getattr(self, field.name) for field in fields(self)}
        payload["group"] = list(self.group)
        return payload


_INPUT_FLAGS = ("more", "done")


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
        """Refuse a wrongly typed field (ProtocolError); store replicas as tuples."""
        problem = _input_entry_problem(self)
        if problem:
            raise ProtocolError(f"Invalid INPUT reply entry: {problem}")
        replicas = tuple((rid, url) for rid, url in self.replicas)
        object.__setattr__(self, "replicas", replicas)

    @classmethod
    def from_payload(cls, item: Any) -> InputEntry:
        """Read one ``[input_id, status, label, [[replica_id, url], ...]]`` item."""
        if not (isinstance(item, list) and len(item) == 4):
            raise ProtocolError(
                "Invalid INPUT reply entry: expected [input_id, status, label, "
                f"[[replica_id, url], ...]], got {_show(item)}"
            )
        return cls(item[0], item[1], item[2], item[3])

    def to_payload(self) -> list[Any]:
        """The entry as the master sends it."""
        replicas = [[rid, url] for rid, url in self.replicas]
        return [self.input_id, self.status, self.label, replicas]


def _input_entry_problem(entry: InputEntry) -> str:
    """What is wrong with an INPUT reply entry, or "" if nothing."""
    if not _is_int(entry.input_id):
        return f"input_id must be an integer, got {_show(entry.input_id)}"
    if not isinstance(entry.status, str):
        return f"status must be a string, got {_show(entry.status)}"
    if not (_is_int(entry.label) or entry.label == "all"):
        return f'label must be an integer or "all", got {_show(entry.label)}'
    replicas = entry.replicas
    if not (isinstance(replicas, (list, tuple)) and all(_is_pair(r) for r in replicas)):
        return f"replicas must be [[replica_id, url], ...], got {_show(replicas)}"
    return ""


def parse_input_reply(payload: Any) -> tuple[str, list[InputEntry]]:
    """Read an INPUT reply: its flag and its entries.

    Flag ``"done"``: the task's input set is final; ``"more"``: ask again
    (``INPUT ["exclude", ids seen]``) until ``"done"``.
    """
    if not (
        isinstance(payload, list)
        and len(payload) == 2
        and payload[0] in _INPUT_FLAGS
        and isinstance(payload[1], list)
    ):
        raise ProtocolError(
            'Invalid INPUT reply: expected ["more" or "done", [[input_id, status, label, '
            f"[[replica_id, url], ...]], ...]], got {_show(payload)}"
        )
    return payload[0], [InputEntry.from_payload(item) for item in payload[1]]


def input_reply_payload(flag: str, entries: Sequence[InputEntry]) -> list[Any]:
    """The INPUT reply payload for ``flag`` (``"more"`` or ``"done"``) and ``entries``."""
    if flag not in _INPUT_FLAGS:
        raise ProtocolError(f'Invalid INPUT reply: flag must be "more" or "done", got {flag!r}')
    return [flag, [entry.to_payload() for entry in entries]]


# --- What the worker sends: shapes and rules, as the 0.5.4 master checks them -----------


def _string_body(payload: Any) -> str:
    """What is wrong with a payload that must be a string, or ""."""
    return "" if isinstance(payload, str) else f"expected a string, got {_show(payload)}"


def _worker_body(payload: Any) -> str:
    """What is wrong with a WORKER payload, or ""."""
    if not isinstance(payload, dict):
        return f'expected {{"version": string, "pid": integer}}, got {_show(payload)}'
    if not isinstance(payload.get("version"), str):
        return f'"version" must be a string, got {_show(payload.get("version"))}'
    if not _is_int(payload.get("pid")):
        return f'"pid" must be an integer, got {_show(payload.get("pid"))}'
    return ""


def _input_body(payload: Any) -> str:
    """What is wrong with an INPUT request payload, or ""."""
    if payload == "" or (
        isinstance(payload, list)
        and len(payload) == 2
        and payload[0] in ("exclude", "include")
        and _is_int_list(payload[1])
    ):
        return ""
    return f'expected "" or ["exclude" or "include", [input_id, ...]], got {_show(payload)}'


def _input_err_body(payload: Any) -> str:
    """What is wrong with an INPUT_ERR payload, or ""."""
    if (
        isinstance(payload, list)
        and len(payload) == 2
        and _is_int(payload[0])
        and _is_int_list(payload[1])
    ):
        return ""
    return f"expected [input_id, [replica_id, ...]] (integers), got {_show(payload)}"


def _output_body(payload: Any) -> str:
    """What is wrong with an OUTPUT payload, or ""."""
    if (
        isinstance(payload, list)
        and len(payload) == 3
        and _is_int(payload[0])
        and isinstance(payload[1], str)
        and _is_int(payload[2])
    ):
        return ""
    return f"expected [label, location, size] (integer, string, integer), got {_show(payload)}"


# worker message -> what is wrong with its payload ("" if nothing); worker_runtime:payload_type/1
_REQUEST_SHAPES: dict[str, Callable[[Any], str]] = {
    "WORKER": _worker_body,
    "TASK": _string_body,
    "INPUT": _input_body,
    "INPUT_ERR": _input_err_body,
    "MSG": _string_body,
    "OUTPUT": _output_body,
    "DONE": _string_body,
    "ERROR": _string_body,
    "FATAL": _string_body,
}

_PING = (
    "Unknown message type 'PING': the 0.5.4 master has no PING in payload_type/1, so it "
    'treats PING as an unknown message and kills the job (its OK "pong" clause is '
    "unreachable); never send PING"
)


def _check_version(payload: Any) -> None:
    """The master accepts only worker protocol "1.1" (fatal otherwise)."""
    version = payload["version"]
    if version != "1.1":
        raise ProtocolError(
            f"Invalid worker version: <<{json.dumps(version)}>>: the 0.5.4 master speaks "
            'worker protocol 1.1 only; send {"version": "1.1", "pid": ...}'
        )


def _check_output_location(payload: Any) -> None:
    """An absolute OUTPUT path fails the task ({invalid_output, Path}); it is not fatal."""
    location = payload[1]
    if location.startswith("/"):
        raise ProtocolError(
            f"OUTPUT location {location!r} is an absolute path: the 0.5.4 master fails the "
            f"task with {{invalid_output,<<{json.dumps(location)}>>}}; send a path relative "
            "to the job home, or a URL",
            fatal=False,
        )


# worker message -> a further check of its (well-shaped) payload; worker_runtime:do_handle/2
_REQUEST_RULES: dict[str, Callable[[Any], None]] = {
    "WORKER": _check_version,
    "OUTPUT": _check_output_location,
}


def _unknown(name: str, payload: Any) -> str:
    """The master's complaint about a message name it does not know."""
    return (
        f"Unknown message type '{name}', body: {_show(payload)}; the 0.5.4 master knows only "
        f"{', '.join(_REQUEST_SHAPES)} and kills the job for anything else"
    )


def _check_request(name: str, payload: Any) -> None:
    """Raise ProtocolError unless the 0.5.4 master accepts this worker message (order aside)."""
    shape = _REQUEST_SHAPES.get(name)
    if shape is None:
        raise ProtocolError(_PING if name == "PING" else _unknown(name, payload))
    problem = shape(payload)
    if problem:
        raise ProtocolError(f"Invalid message body (type '{name}'): {problem}")
    rule = _REQUEST_RULES.get(name)
    if rule is not None:
        rule(payload)


# --- What the master replies ------------------------------------------------------------


def _ok_reply(payload: Any) -> None:
    """OK always carries "ok" (the "pong" for PING is unreachable in 0.5.4)."""
    if payload != "ok":
        raise ProtocolError(
            f"Invalid reply body (type 'OK'): expected \"ok\", got {_show(payload)}"
        )


def _retry_reply(payload: Any) -> None:
    """RETRY carries the replicas left to try: a non-empty [[replica_id, url], ...]."""
    if not (isinstance(payload, list) and payload and all(_is_pair(r) for r in payload)):
        raise ProtocolError(
            "Invalid reply body (type 'RETRY'): expected [[replica_id, url], ...], "
            f"got {_show(payload)}"
        )


def _fail_reply(payload: Any) -> None:
    """FAIL carries ""."""
    if payload != "":
        raise ProtocolError(
            f"Invalid reply body (type 'FAIL'): expected \"\", got {_show(payload)}"
        )


# master reply -> its payload check (raises ProtocolError; the result, if any, is the parsed form)
_REPLY_SHAPES: dict[str, Callable[[Any], object]] = {
    "OK": _ok_reply,
    "TASK": TaskInfo.from_payload,
    "INPUT": parse_input_reply,
    "RETRY": _retry_reply,
    "FAIL": _fail_reply,
}


# --- The legal order --------------------------------------------------------------------


class State(enum.Enum):
    """Where the worker's side of the dialogue stands; both ends track the same state."""

    START = "START"  # nothing sent yet: WORKER must come first
    READY = "READY"  # WORKER sent: any request may follow, in any order
    CLOSED = "CLOSED"  # DONE, ERROR or FATAL sent: the master kills the worker now


# state -> worker message legal in it -> the state it leads to
TRANSITIONS: dict[State, dict[str, State]] = {
    State.START: {"WORKER": State.READY},
    State.READY: {
        "TASK": State.READY,
        "INPUT": State.READY,
        "INPUT_ERR": State.READY,
        "MSG": State.READY,
        "OUTPUT": State.READY,
        "DONE": State.CLOSED,
        "ERROR": State.CLOSED,
        "FATAL": State.CLOSED,
    },
    State.CLOSED: {},
}

# worker message -> the master replies that answer it (none: the master ends the task)
REPLIES_OWED: dict[str, frozenset[str]] = {
    "WORKER": frozenset({"OK"}),
    "TASK": frozenset({"TASK"}),
    "INPUT": frozenset({"INPUT"}),
    "INPUT_ERR": frozenset({"RETRY", "FAIL"}),
    "MSG": frozenset({"OK"}),
    "OUTPUT": frozenset({"OK"}),
    "DONE": frozenset(),
    "ERROR": frozenset(),
    "FATAL": frozenset(),
}

_STATE_TEXT: dict[State, str] = {
    State.START: "before WORKER (a worker sends WORKER first, exactly once)",
    State.READY: "once WORKER was sent (it is sent exactly once, first)",
    State.CLOSED: "after DONE, ERROR or FATAL (the master kills the worker after them)",
}


@dataclass(frozen=True)
class Owed:
    """A worker message still waiting for its reply, and the reply names that answer it."""

    request: Frame
    replies: frozenset[str]


class _Dialogue:
    """The worker's message stream as either end sees it: its state and the replies owed."""

    def __init__(self) -> None:
        self.state = State.START
        self.owed: deque[Owed] = deque()

    def request(self, frame: Frame, raw: bytes) -> None:
        """Record a worker message, or raise ProtocolError (changing nothing) if illegal now."""
        legal = TRANSITIONS[self.state]
        if frame.name not in legal:
            quoted = f" ({raw!r})" if raw else ""
            raise ProtocolError(
                f"{frame.name}{quoted} is not legal {_STATE_TEXT[self.state]}; legal now: "
                f"{', '.join(legal) or 'nothing'}",
                data=raw,
            )
        self.state = legal[frame.name]
        if REPLIES_OWED[frame.name]:
            self.owed.append(Owed(frame, REPLIES_OWED[frame.name]))

    def expect(self, name: str, raw: bytes) -> None:
        """Raise ProtocolError unless a ``name`` reply answers the oldest unanswered message."""
        quoted = f" ({raw!r})" if raw else ""
        if not self.owed:
            raise ProtocolError(f"{name} reply{quoted}, but no reply is owed", data=raw)
        oldest = self.owed[0]
        if name not in oldest.replies:
            raise ProtocolError(
                f"{name} reply{quoted}, but the oldest unanswered message, "
                f"{oldest.request.name}, is owed {' or '.join(sorted(oldest.replies))}",
                data=raw,
            )

    def answered(self) -> None:
        """The oldest owed reply was given."""
        self.owed.popleft()


def _with_data(exc: ProtocolError, raw: bytes) -> ProtocolError:
    """``exc``, quoting ``raw`` as its offending bytes if it has none yet."""
    if not exc.data:
        exc.data = raw
    return exc


class _Side:
    """What both ends share: a decoder for the peer's bytes, the dialogue, failing for good."""

    def __init__(self) -> None:
        self._dialogue = _Dialogue()
        self._decoder = FrameDecoder()
        self._failed: ProtocolError | None = None

    @property
    def state(self) -> State:
        """Where the dialogue stands (see :data:`TRANSITIONS`)."""
        return self._dialogue.state

    @property
    def owed(self) -> tuple[Owed, ...]:
        """Worker messages still waiting for their reply, oldest first."""
        return tuple(self._dialogue.owed)

    def receive_data(self, data: bytes) -> None:
        """Take bytes read from the peer; decode them with the side's ``next_*`` method."""
        self._decoder.feed(data)

    def _next(self) -> Frame | None:
        """The peer's next frame, accepted, or None; after a ProtocolError, raise it again."""
        if self._failed is not None:
            raise self._failed
        try:
            frame = self._decoder.next_frame()
            if frame is not None:
                self._accept(frame)
        except ProtocolError as exc:
            self._failed = _with_data(exc, self._decoder.last_raw)
            raise
        return frame

    def _accept(self, frame: Frame) -> None:
        """Check a decoded frame from the peer and record it (per side)."""
        raise NotImplementedError


# --- The worker's end -------------------------------------------------------------------


class WorkerSide(_Side):
    """The worker's end: checks and encodes what it sends, checks what the master replies.

    Call :meth:`send` (or a builder: :meth:`worker`, :meth:`task`,
    :meth:`input`, ...) and write the bytes it returns. Feed what the master
    writes to :meth:`receive_data` and call :meth:`next_reply` until ``None``.
    Replies come back as :class:`Frame` with their JSON payload, each checked
    to be the one owed next (pipelining is fine: replies come in order). The
    TASK reply is also kept, parsed, as :attr:`task_info`; read an INPUT
    reply with :func:`parse_input_reply`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.task_info: TaskInfo | None = None

    def send(self, name: str, payload: Any) -> bytes:
        """The bytes of a worker message, if the master would accept it now.

        Raises ProtocolError, changing nothing, for a message out of order
        (WORKER first, once; nothing after DONE, ERROR or FATAL), a payload
        the master would refuse, or PING (fatal in 0.5.4). Remembers the reply
        owed, if any.
        """
        _check_request(name, payload)
        data = encode_frame(name, payload)
        self._dialogue.request(Frame(name, payload), b"")
        return data

    def next_reply(self) -> Frame | None:
        """The master's next reply, checked against the reply owed; None until more bytes."""
        return self._next()

    def eof(self) -> None:
        """Call when the master's stream ends: ProtocolError inside a frame or with replies owed."""
        self._decoder.eof()
        if self._dialogue.owed:
            oldest = self._dialogue.owed[0].request.name
            raise ProtocolError(
                f"The master's stream ended with {len(self._dialogue.owed)} replies owed "
                f"(the oldest for {oldest})",
                fatal=False,
            )

    def _accept(self, frame: Frame) -> None:
        """A reply is legal if it is the one owed next and its payload has the right shape."""
        self._dialogue.expect(frame.name, self._decoder.last_raw)
        parsed = _REPLY_SHAPES[frame.name](frame.payload)
        self._dialogue.answered()
        if isinstance(parsed, TaskInfo):
            self.task_info = parsed

    def worker(self, pid: int) -> bytes:
        """``WORKER {"version": "1.1", "pid": pid}``: first, once; the master SIGKILLs ``pid``."""
        return self.send("WORKER", {"version": "1.1", "pid": pid})

    def task(self) -> bytes:
        """``TASK ""``: ask what this task is (reply: TASK, see :attr:`task_info`)."""
        return self.send("TASK", "")

    def input(
        self, *, exclude: Sequence[int] | None = None, include: Sequence[int] | None = None
    ) -> bytes:
        """``INPUT``: ask for all inputs, all but ``exclude``, or only ``include`` (input ids)."""
        if exclude is not None and include is not None:
            raise ProtocolError("INPUT takes exclude or include, not both")
        if exclude is not None:
            return self.send("INPUT", ["exclude", list(exclude)])
        if include is not None:
            return self.send("INPUT", ["include", list(include)])
        return self.send("INPUT", "")

    def input_err(self, input_id: int, replica_ids: Sequence[int]) -> bytes:
        """``INPUT_ERR``: replicas failed. In 0.5.4 real ids crash the master: fail over locally."""
        return self.send("INPUT_ERR", [input_id, list(replica_ids)])

    def msg(self, text: str) -> bytes:
        """``MSG``: a line for the job's events; keep under 5 a second (10 a second is fatal)."""
        return self.send("MSG", text)

    def output(self, label: int, location: str, size: int) -> bytes:
        """``OUTPUT``: a result file, relative to the job home (or a URL), with its label."""
        return self.send("OUTPUT", [label, location, size])

    def done(self, text: str = "") -> bytes:
        """``DONE``: the task succeeded. No reply: the master kills the worker."""
        return self.send("DONE", text)

    def error(self, text: str) -> bytes:
        """``ERROR``: the task failed and will be retried. No reply."""
        return self.send("ERROR", text)

    def fatal(self, text: str) -> bytes:
        """``FATAL``: the whole job must die. No reply."""
        return self.send("FATAL", text)


# --- The master's end -------------------------------------------------------------------


class MasterSide(_Side):
    """The master's end, behaving as Disco 0.5.4 does; for the local runner and test masters.

    Feed what the worker writes (stdout and stderr merged) to
    :meth:`receive_data` and call :meth:`next_message` until ``None``. Answer
    with :meth:`reply` (or :meth:`ok`, :meth:`task`, :meth:`input`,
    :meth:`retry`, :meth:`fail`), oldest message first; :attr:`owed` lists
    what still waits, so an INPUT reply can be held until more inputs exist.
    A message the master would reject raises ProtocolError whose ``fatal``
    says what the master does: True kills the job (unknown name, PING, bad
    JSON, bad payload, bad version, out of order), False fails the task (not
    a frame, absolute OUTPUT path). The side then stays failed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None

    def next_message(self) -> Frame | None:
        """The worker's next message, checked as the master checks it; None until more bytes."""
        return self._next()

    def reply(self, name: str, payload: Any) -> bytes:
        """Compact bytes of the reply to the oldest unanswered message.

        Raises ProtocolError, changing nothing, if that message is not owed a
        ``name`` reply or ``payload`` has the wrong shape. A :class:`TaskInfo`
        may be given as the TASK payload.
        """
        if isinstance(payload, TaskInfo):
            payload = payload.to_payload()
        self._dialogue.expect(name, b"")
        _REPLY_SHAPES[name](payload)
        data = encode_frame(name, payload, compact=True)
        self._dialogue.answered()
        return data

    def eof(self) -> None:
        """Call when the worker's output ends: ProtocolError (a task failure) before DONE etc."""
        self._decoder.eof()
        if self.state is not State.CLOSED:
            raise ProtocolError(
                "The worker's output ended without DONE, ERROR or FATAL: the 0.5.4 master "
                "reports 'Worker crashed!' and retries the task; end every task with DONE",
                fatal=False,
            )

    def _accept(self, frame: Frame) -> None:
        """Check a worker message as worker_runtime:handle/2 does, then its order."""
        _check_request(frame.name, frame.payload)
        self._dialogue.request(frame, self._decoder.last_raw)
        if frame.name == "WORKER":
            self.pid = frame.payload["pid"]

    def ok(self) -> bytes:
        """``OK "ok"``: the answer to WORKER, MSG and OUTPUT."""
        return self.reply("OK", "ok")

    def task(self, info: TaskInfo) -> bytes:
        """``TASK {...}``: the answer to TASK."""
        return self.reply("TASK", info.to_payload())

    def input(self, flag: str, entries: Sequence[InputEntry]) -> bytes:
        """``INPUT [flag, entries]``: the answer to INPUT ("more": not final, "done": final)."""
        return self.reply("INPUT", input_reply_payload(flag, entries))

    def retry(self, replicas: Sequence[tuple[int, str]]) -> bytes:
        """``RETRY [[replica_id, url], ...]``: an answer to INPUT_ERR, the replicas left."""
        return self.reply("RETRY", [[rid, url] for rid, url in replicas])

    def fail(self) -> bytes:
        """``FAIL ""``: an answer to INPUT_ERR, no replica left."""
        return self.reply("FAIL", "")
