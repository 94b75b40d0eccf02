"""The frames of Disco 0.5.4's worker protocol: ``NAME SP LEN SP JSON \\n``, both ways.

What it holds: :class:`Frame` (a NAME and its JSON payload as Python
values), :func:`encode_frame` and the incremental :class:`FrameDecoder`, and
the bounds the master enforces (:data:`MAX_NAME`, :data:`MAX_PAYLOAD`).

What it does not: know which names exist or what their payloads mean
(:mod:`.messages`, :mod:`.replies`), nor which order is legal (:mod:`.sides`).
It does no I/O and imports only the standard library.

Encoding what we send raises :class:`LocalProtocolError`; decoding what the
peer sent raises :class:`RemoteProtocolError`. Framing errors name the reason
``worker_protocol.erl`` gives and carry ``fatal`` as the master acts on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["MAX_NAME", "MAX_PAYLOAD", "Frame", "FrameDecoder", "encode_frame"]

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
        if b"\\ud" in body:  # a surrogate: a character past U+FFFF, or a lone one
            body = json.dumps(_encodable(payload), separators=separators).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(
            f"{name} payload is not JSON ({exc}): send only str, int, float, bool, None, "
            "lists and dicts with string keys"
        ) from exc
    if len(body) > MAX_PAYLOAD:
        raise LocalProtocolError(
            f"{name} payload is {len(body)} bytes; the master refuses frames over "
            f"{MAX_PAYLOAD} bytes: put bulk data in files and send their names"
        )
    return b"%s %d %s\n" % (name.encode("ascii"), len(body), body)


def _encodable(value: Any) -> Any:
    """``value`` with each lone surrogate in its text (a file name decoded with
    ``surrogateescape``) written as its escape, ``\\udcff``: a Disco master refuses the
    whole frame ("Payload is not valid JSON"), and with it the error it carried."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    return value


def _check_name(name: str) -> None:
    """Refuse a NAME the master's parser or our decoder would not take."""
    if not (0 < len(name) <= MAX_NAME and all(c in _NAME_CHARS for c in name)):
        raise LocalProtocolError(
            f"Frame NAME {name!r} is not 1-{MAX_NAME} ASCII uppercase letters or underscores"
        )


class FrameDecoder:
    """Turns a byte stream into :class:`Frame` objects, incrementally and in O(n) overall.

    :meth:`feed` bytes as they arrive, then call :meth:`next_frame` until it
    returns ``None`` (it needs more bytes); call :meth:`eof` when the stream
    ends. A header is refused as soon as it cannot be valid (no more than 22
    bytes are ever looked at) and a LEN over :data:`MAX_PAYLOAD` before its
    body is waited for. Errors raise :class:`RemoteProtocolError` and the decoder
    stays failed. Framing errors name the reason ``worker_protocol.erl`` gives
    (``invalid_type``, ``invalid_length``, ``message_too_big``, ``invalid_body``)
    and carry ``fatal=False``: the master fails the task. A payload that is not
    JSON carries ``fatal=True``, like the master's "Payload is not valid JSON".
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # where the next frame begins in _buf
        self._header: tuple[str, int, int] | None = None  # its name, LEN, header size
        self._failed: RemoteProtocolError | None = None
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
        except RemoteProtocolError as exc:
            self._failed = exc
            raise

    def eof(self) -> None:
        """Call when the stream ends: RemoteProtocolError if it ended inside a frame."""
        if self._failed is not None:
            raise self._failed
        pending = bytes(self._buf[self._start : self._start + _QUOTE])
        if pending:
            raise RemoteProtocolError(
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


def _not_a_frame(reason: str, data: bytes, why: str) -> RemoteProtocolError:
    """The error for bytes that are not a frame: a task failure for the 0.5.4 master."""
    quoted = data[:_QUOTE]
    return RemoteProtocolError(
        f"Not a valid frame ({reason}): {quoted!r}: {why}; {_SHAPE}", fatal=False, data=quoted
    )


def _loads(name: str, body: bytearray, raw: bytes) -> Any:
    """The JSON value of a payload; RemoteProtocolError (fatal, as for the master) if not JSON."""
    try:
        value = _JSON.decode(body.decode("utf-8"))
        if b"\\ud" in body:  # a lone surrogate escape, which the master's parser refuses,
            json.dumps(value, ensure_ascii=False).encode("utf-8")  # and no UTF-8 encodes
        return value
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RemoteProtocolError(
            f"Payload is not valid JSON: type '{name}', frame {raw!r}: {exc}; "
            "encode payloads with json.dumps",
            data=raw,
        ) from exc


def _refuse_constant(constant: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON: the master's parser refuses them."""
    raise ValueError(f"{constant} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)  # one, not one per frame
