"""The two ends of Disco 0.5.4's worker protocol, sans I/O, and the legal order as tables.

What it holds: the order, in the manner of h11's ``_state.py``:
:data:`TRANSITIONS` (state x worker message type -> next state) and
:data:`REPLIES_OWED` (worker message type -> the reply types that answer
it); and both ends, in the manner of h11's ``Connection``:
:class:`WorkerSide` sends worker messages and reads the master's replies,
:class:`MasterSide` reads worker messages as the 0.5.4 master does and sends
its replies (for the local runner and test masters). Each has
``send(message) -> bytes``, ``receive_data(bytes)`` and
``next_event() -> message | None``.

What it does not: read or write pipes, start processes, time out, or
rate-limit MSG (the caller moves the bytes); know payload shapes
(:mod:`.messages`, :mod:`.replies`) or frames (:mod:`.frames`).

Errors, as in h11: ``send`` raises :class:`LocalProtocolError` and changes
nothing (we broke the protocol: a bug); ``next_event`` and ``eof`` raise
:class:`RemoteProtocolError` (the peer broke it), and the side stays failed.
Texts start like the master's own events (``worker_protocol.erl``,
``worker_runtime.erl``); ``fatal`` says what the master does: ``True`` kills
the job, ``False`` fails (and retries) the task.
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .frames import Frame, FrameDecoder, encode_frame
from .messages import (
    Done,
    Error,
    Fatal,
    Input,
    InputErr,
    Msg,
    Output,
    Request,
    Task,
    Worker,
    request_from_frame,
)
from .replies import REPLIES, Fail, InputReply, Ok, Reply, Retry, TaskInfo

__all__ = ["REPLIES_OWED", "TRANSITIONS", "MasterSide", "Owed", "State", "WorkerSide"]


class State(enum.Enum):
    """Where the worker's side of the dialogue stands; both ends track the same state."""

    START = "START"  # nothing sent yet: WORKER must come first
    READY = "READY"  # WORKER sent: any request may follow, in any order
    CLOSED = "CLOSED"  # DONE, ERROR or FATAL sent: the master kills the worker now


# state -> worker message type legal in it -> the state it leads to
TRANSITIONS: dict[State, dict[type[Request], State]] = {
    State.START: {Worker: State.READY},
    State.READY: {
        Task: State.READY,
        Input: State.READY,
        InputErr: State.READY,
        Msg: State.READY,
        Output: State.READY,
        Done: State.CLOSED,
        Error: State.CLOSED,
        Fatal: State.CLOSED,
    },
    State.CLOSED: {},
}

# worker message type -> the reply types that answer it (none: the master ends the task)
REPLIES_OWED: dict[type[Request], frozenset[type[Reply]]] = {
    Worker: frozenset({Ok}),
    Task: frozenset({TaskInfo}),
    Input: frozenset({InputReply}),
    InputErr: frozenset({Retry, Fail}),
    Msg: frozenset({Ok}),
    Output: frozenset({Ok}),
    Done: frozenset(),
    Error: frozenset(),
    Fatal: frozenset(),
}

_STATE_TEXT: dict[State, str] = {
    State.START: "before WORKER (a worker sends WORKER first, exactly once)",
    State.READY: "once WORKER was sent (it is sent exactly once, first)",
    State.CLOSED: "after DONE, ERROR or FATAL (the master kills the worker after them)",
}


@dataclass(frozen=True)
class Owed:
    """A worker message still waiting for its reply, and the reply types that answer it."""

    request: Request
    replies: frozenset[type[Reply]]

    def names(self) -> list[str]:
        """The frame names of the replies that answer it, sorted."""
        return sorted(reply.NAME for reply in self.replies)


def _quoted(raw: bytes) -> str:
    """`` (raw bytes)`` for an error text, or nothing when there are none."""
    return f" ({raw!r})" if raw else ""


class _Dialogue:
    """The worker's message stream as either end sees it: its state and the replies owed.

    Its checks raise LocalProtocolError and change nothing; the sides turn
    them into RemoteProtocolError when the peer's bytes broke the order.
    """

    def __init__(self) -> None:
        self.state = State.START
        self.owed: deque[Owed] = deque()

    def request(self, message: Request, raw: bytes) -> None:
        """Record a worker message, or raise (changing nothing) if it is illegal now."""
        legal = TRANSITIONS[self.state]
        if type(message) not in legal:
            raise LocalProtocolError(
                f"{message.NAME}{_quoted(raw)} is not legal {_STATE_TEXT[self.state]}; legal "
                f"now: {', '.join(kind.NAME for kind in legal) or 'nothing'}",
                data=raw,
            )
        self.state = legal[type(message)]
        if REPLIES_OWED[type(message)]:
            self.owed.append(Owed(message, REPLIES_OWED[type(message)]))

    def expect(self, name: str, raw: bytes) -> None:
        """Raise unless a ``name`` reply answers the oldest unanswered message."""
        if not self.owed:
            raise LocalProtocolError(f"{name} reply{_quoted(raw)}, but no reply is owed", data=raw)
        oldest = self.owed[0]
        if name not in oldest.names():
            raise LocalProtocolError(
                f"{name} reply{_quoted(raw)}, but the oldest unanswered message, "
                f"{oldest.request.NAME}, is owed {' or '.join(oldest.names())}",
                data=raw,
            )

    def answered(self) -> None:
        """The oldest owed reply was given."""
        self.owed.popleft()


def _remote(exc: ProtocolError, raw: bytes) -> RemoteProtocolError:
    """``exc`` as the peer's fault, quoting ``raw`` as its offending bytes if it has none."""
    if isinstance(exc, RemoteProtocolError):
        remote = exc
    else:
        remote = RemoteProtocolError(str(exc), fatal=exc.fatal, data=exc.data)
    if not remote.data:
        remote.data = raw
    return remote


class _Side:
    """What both ends share: a decoder for the peer's bytes, the dialogue, failing for good."""

    def __init__(self) -> None:
        self._dialogue = _Dialogue()
        self._decoder = FrameDecoder()
        self._failed: RemoteProtocolError | None = None

    @property
    def state(self) -> State:
        """Where the dialogue stands (see :data:`TRANSITIONS`)."""
        return self._dialogue.state

    @property
    def owed(self) -> tuple[Owed, ...]:
        """Worker messages still waiting for their reply, oldest first."""
        return tuple(self._dialogue.owed)

    def receive_data(self, data: bytes) -> None:
        """Take bytes read from the peer; read them with :meth:`next_event`."""
        self._decoder.feed(data)

    def _next_frame(self) -> Frame | None:
        """The peer's next frame, or None; after a RemoteProtocolError, raise it again."""
        if self._failed is not None:
            raise self._failed
        return self._decoder.next_frame()

    @contextlib.contextmanager
    def _peer_errors(self) -> Iterator[None]:
        """Around reading the peer: the one place errors turn remote; the side stays failed."""
        try:
            yield
        except LocalProtocolError as exc:
            self._failed = _remote(exc, self._decoder.last_raw)
            raise self._failed from exc
        except RemoteProtocolError as exc:
            self._failed = _remote(exc, self._decoder.last_raw)
            raise


class WorkerSide(_Side):
    """The worker's end: checks and encodes what it sends, checks what the master replies.

    :meth:`send` a message and write the bytes it returns. Feed what the
    master writes to :meth:`receive_data` and call :meth:`next_event` until
    ``None``: each reply comes back typed (:class:`~.replies.TaskInfo`,
    :class:`~.replies.InputReply`, ...), checked to be the one owed next
    (pipelining is fine: replies come in order).
    """

    def send(self, message: Request) -> bytes:
        """The bytes of a worker message, if the master would accept it now.

        Raises LocalProtocolError, changing nothing, for a message out of
        order (WORKER first, once; nothing after DONE, ERROR or FATAL) or too
        big. Remembers the reply owed, if any. Payloads were checked when the
        message was built.
        """
        data = encode_frame(message.NAME, message.to_payload())
        self._dialogue.request(message, b"")
        return data

    def next_event(self) -> Reply | None:
        """The master's next reply, checked against the reply owed; None until more bytes."""
        with self._peer_errors():
            frame = self._next_frame()
            if frame is None:
                return None
            self._dialogue.expect(frame.name, self._decoder.last_raw)
            reply = REPLIES[frame.name].from_payload(frame.payload)
        self._dialogue.answered()
        return reply

    def eof(self) -> None:
        """Call when the master's stream ends: RemoteProtocolError inside a frame or if owed."""
        self._decoder.eof()
        if self._dialogue.owed:
            oldest = self._dialogue.owed[0].request.NAME
            raise RemoteProtocolError(
                f"The master's stream ended with {len(self._dialogue.owed)} replies owed "
                f"(the oldest for {oldest})",
                fatal=False,
            )


class MasterSide(_Side):
    """The master's end, behaving as Disco 0.5.4 does; for the local runner and test masters.

    Feed what the worker writes (stdout and stderr merged) to
    :meth:`receive_data` and call :meth:`next_event` until ``None``; each
    worker message comes back typed. Answer with :meth:`send`, oldest
    message first; :attr:`owed` lists what still waits, so an INPUT reply
    can be held until more inputs exist. A message the master would reject
    raises RemoteProtocolError whose ``fatal`` says what the master does:
    True kills the job (unknown name, PING, bad JSON, bad payload, bad
    version, out of order), False fails the task (not a frame, absolute
    OUTPUT path). The side then stays failed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None

    def next_event(self) -> Request | None:
        """The worker's next message, checked as the master checks it; None until more bytes."""
        with self._peer_errors():
            frame = self._next_frame()
            if frame is None:
                return None
            message = request_from_frame(frame)
            self._dialogue.request(message, self._decoder.last_raw)
        if isinstance(message, Worker):
            self.pid = message.pid
        return message

    def send(self, reply: Reply) -> bytes:
        """Compact bytes of the reply to the oldest unanswered message.

        Raises LocalProtocolError, changing nothing, if that message is not
        owed a reply of this type.
        """
        self._dialogue.expect(reply.NAME, b"")
        data = encode_frame(reply.NAME, reply.to_payload(), compact=True)
        self._dialogue.answered()
        return data

    def eof(self) -> None:
        """Call when the worker's output ends: RemoteProtocolError (a task failure) before DONE."""
        self._decoder.eof()
        if self.state is not State.CLOSED:
            raise RemoteProtocolError(
                "The worker's output ended without DONE, ERROR or FATAL: the 0.5.4 master "
                "reports 'Worker crashed!' and retries the task; end every task with DONE",
                fatal=False,
            )
