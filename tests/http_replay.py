"""Replay exchanges recorded from a real Disco 0.5.4 master over real HTTP.

:class:`ReplayServer` is an HTTP server on 127.0.0.1 (a port of its own) that
is loaded with recorded exchanges (``disco-reference/**/http.jsonl``, format
in its README) and answers each request with the first not-yet-served
exchange whose method, path, query, body and port match: the recorded
status, reason, headers and body, or a closed connection where the master
dropped it (a ``Range: bytes=N-`` request gets 206 and the recorded body
from byte N, as the master serves files). Exchanges are consumed in order,
so a sequence of calls replays a sequence of master states (jobinfo of a job
before and after ``clean_job``).

Recorded answers name the master as ``vm`` (``http://vm:8990/ddfs/...``,
``disco://vm/...``); :meth:`ReplayServer.session` returns a
``requests.Session`` that sends every ``http://vm:PORT`` URL to the server
and tells it the port, so a client under test uses the recorded URLs as is.

Also here: :func:`closed_port` (connections refused), :func:`stalled_server`
(connections accepted, never answered) and :func:`closing_server` (each
connection closed after one answer, or before any).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from tests.loopback import LoopbackHTTPServer

#: Short names for the recording files: ``"endpoints#13"`` is line 13 (from 0).
ALIASES = {
    "endpoints": "http-api/endpoints.jsonl",
    "settings": "http-api/settings.jsonl",
    "ddfs": "ddfs/http.jsonl",
}
MASTER_PORT = 8989  # the recordings' master; the port of a request without X-Replay-Host
_HOST_HEADER = "X-Replay-Host"


@dataclass
class Exchange:
    """One recorded request and the answer to give it."""

    ref: str
    note: str
    method: str
    path: str  # percent-decoded
    query: list[tuple[str, str]]  # decoded, sorted
    port: int
    body: bytes | None  # the exact request body, when recorded
    body_len: int | None  # its length, when only that was recorded (jobpacks)
    status: int | None  # None: the master closed the connection without answering
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    answer: bytes = b""
    served: int = 0

    def matches(
        self, method: str, path: str, query: list[tuple[str, str]], port: int, body: bytes
    ) -> bool:
        return (
            self.method == method
            and self.path == path
            and self.query == query
            and self.port == port
            and (self.body is None or self.body == body)
            and (self.body_len is None or self.body_len == len(body))
        )


def recording_path(reference: Path, name: str) -> Path:
    """The file behind an alias (``endpoints``) or a path under disco-reference."""
    return reference / ALIASES.get(name, name)


def read_recording(reference: Path, name: str) -> list[dict[str, Any]]:
    """All exchanges of one recording file, as recorded."""
    lines = recording_path(reference, name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _body_bytes(body: dict[str, Any] | None) -> bytes | None:
    if body is None:
        return None
    if "latin1" in body:
        return str(body["latin1"]).encode("latin-1")
    text = body.get("text", body.get("text_truncated"))
    return None if text is None else str(text).encode("utf-8")


def _split(target: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(target)
    return unquote(parts.path), sorted(parse_qsl(parts.query, keep_blank_values=True))


def exchange(reference: Path, ref: str) -> Exchange:
    """The exchange named ``ref`` (``"endpoints#13"``, ``"error-fatal/http.jsonl#3"``)."""
    name, _, index = ref.rpartition("#")
    record = read_recording(reference, name)[int(index)]
    return exchange_from_record(record, ref)


def exchange_from_record(record: dict[str, Any], ref: str) -> Exchange:
    """An :class:`Exchange` from a record in the recordings' format (or a synthetic one)."""
    request, response = record["request"], record.get("response")
    path, query = _split(request["path"])
    port = int(request.get("host", f"x:{MASTER_PORT}").rpartition(":")[2])
    ex = Exchange(
        ref=ref,
        note=record.get("note", ""),
        method=request["method"],
        path=path,
        query=query,
        port=port,
        body=_body_bytes(request.get("body")),
        body_len=request.get("body_len"),
        status=None if response is None else int(response["status"]),
    )
    if response is not None:
        ex.reason = response.get("reason", "")
        ex.headers = [(k, v) for k, v in response.get("headers", [])]
        ex.answer = _body_bytes(response.get("body")) or b""
    return ex


def synthetic(
    method: str,
    path: str,
    status: int | None,
    answer: Any = None,
    *,
    request_body: Any = None,
    port: int = MASTER_PORT,
    ref: str = "",
) -> Exchange:
    """An exchange that was not recorded (JSON ``answer``), for cases the master can't show."""
    body = None if request_body is None else {"text": json.dumps(request_body)}
    record: dict[str, Any] = {
        "note": "synthetic",
        "request": {"method": method, "path": path, "host": f"vm:{port}", "body": body},
        "response": None
        if status is None
        else {
            "status": status,
            "reason": "",
            "headers": [["Content-Type", "application/json"]],
            "body": {"text": json.dumps(answer)},
        },
    }
    return exchange_from_record(record, ref or f"synthetic {method} {path}")


@dataclass
class Received:
    """A request the server received."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class ReplayServer:
    """Answers requests from loaded exchanges; see the module docstring."""

    def __init__(self, reference: Path):
        self.reference = reference
        self.exchanges: list[Exchange] = []
        self.received: list[Received] = []
        self.misses: list[str] = []
        self._lock = threading.Lock()
        self._httpd = LoopbackHTTPServer(self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def load(self, *refs: str | Exchange) -> ReplayServer:
        """Add exchanges (by ref, or built), to be served in this order."""
        for ref in refs:
            self.exchanges.append(
                ref if isinstance(ref, Exchange) else exchange(self.reference, ref)
            )
        return self

    def session(self) -> requests.Session:
        """A session sending ``http://vm:PORT/...`` here (telling the server the port)."""
        session = requests.Session()
        session.mount("http://vm:", _ToReplay(self.url))
        session.mount("http://vm/", _ToReplay(self.url))
        return session

    def served(self, ref: str) -> int:
        return sum(ex.served for ex in self.exchanges if ex.ref == ref)

    def check(self) -> None:
        """Every loaded exchange was served, and no request went unanswered."""
        unserved = [f"{ex.ref} ({ex.note})" for ex in self.exchanges if not ex.served]
        assert not self.misses, f"requests matching no loaded exchange: {self.misses}"
        assert not unserved, f"loaded exchanges never requested: {unserved}"

    def __enter__(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _answer_for(self, method: str, target: str, port: int, body: bytes) -> Exchange | None:
        path, query = _split(target)
        with self._lock:
            for ex in self.exchanges:
                if not ex.served and ex.matches(method, path, query, port, body):
                    ex.served += 1
                    return ex
            self.misses.append(f"{method} :{port}{target} body={body[:120]!r}")
            return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each small answer waits ~40 ms for an ACK

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                with server._lock:
                    server.received.append(Received(self.command, self.path, headers, body))
                original = self.headers.get(_HOST_HEADER, f"x:{MASTER_PORT}")
                port = int(original.rpartition(":")[2] or MASTER_PORT)
                ex = server._answer_for(self.command, self.path, port, body)
                if ex is None:
                    self._send(599, "No Recording", [], b"replay: no recorded exchange matches")
                elif ex.status is None:
                    self.close_connection = True  # as the master did: no answer at all
                elif ex.status == 200 and self.headers.get("Range", "").startswith("bytes="):
                    self._send_range(ex)
                else:
                    self._send(ex.status, ex.reason, ex.headers, ex.answer)

            def _send_range(self, ex: Exchange) -> None:
                """``Range: bytes=N-`` as mochiweb honours it: 206 and the rest from N."""
                first = int(self.headers["Range"][len("bytes=") :].split("-")[0])
                size = len(ex.answer)
                headers = [*ex.headers, ("Content-Range", f"bytes {first}-{size - 1}/{size}")]
                self._send(206, "Partial Content", headers, ex.answer[first:])

            def _send(
                self, status: int, reason: str, headers: list[tuple[str, str]], answer: bytes
            ) -> None:
                self.send_response_only(status, reason)
                for name, value in headers:
                    if name.lower() != "content-length":  # recomputed: some bodies are cut
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class _ToReplay(HTTPAdapter):
    """Sends a request for ``http://vm:PORT/...`` to the replay server instead."""

    def __init__(self, base: str):
        super().__init__()
        self.netloc = urlsplit(base).netloc

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.headers[_HOST_HEADER] = parts.netloc if parts.port else f"{parts.netloc}:80"
        request.url = urlunsplit(("http", self.netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextmanager
def stalled_server() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes connections; nobody reads them
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


#: How long :func:`closing_server` waits for a client's next bytes or its close.
LINGER_S = 2.0


@contextmanager
def closing_server(answer: bytes = b'"0.5.4"', *, answer_requests: bool = True) -> Iterator[str]:
    """A URL whose server closes the connection after each answer, as Disco's MochiWeb does.

    Each answer is ``HTTP/1.1 200 OK`` with ``answer`` as a JSON body and no
    ``Connection`` header. The server then waits (at most :data:`LINGER_S`)
    for the client's next bytes or its close before closing, so a client
    that reuses the connection always finds it closed, never only by chance.
    With ``answer_requests=False`` it reads each request and closes without
    answering (a master that crashed on it).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    reply = (
        b"HTTP/1.1 200 OK\r\nServer: MochiWeb/1.0 (Any of you quaids got a smint?)\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
    )

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(LINGER_S)
            try:
                _read_request(conn)
                if answer_requests:
                    conn.sendall(reply)
                    conn.recv(1)  # the client's next request (reusing the connection), or EOF
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _read_request(conn: socket.socket) -> None:
    """Read one request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    missing = (lengths[0] if lengths else 0) - len(body)
    while missing > 0:
        chunk = conn.recv(min(missing, 65536))
        if not chunk:
            return
        missing -= len(chunk)
