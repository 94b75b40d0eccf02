"""The tests' HTTP server (tests/loopback.py) shuts down even when a connection vanished."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler

from tests.loopback import ACCEPT_TIMEOUT, LoopbackHTTPServer


class _Hello(BaseHTTPRequestHandler):
    timeouts: list[float | None] = []  # each accepted connection's, as the handler found it

    def do_GET(self) -> None:
        self.timeouts.append(self.connection.gettimeout())
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_accept_with_no_connection_waiting_gives_up() -> None:
    """What the loop does when select() said a connection waits that its client dropped:
    accept() with none there. It used to block until the next client, so shutdown() hung."""
    server = LoopbackHTTPServer(_Hello)
    try:
        handling = threading.Thread(target=server._handle_request_noblock, daemon=True)
        started = time.monotonic()
        handling.start()
        handling.join(10)
        assert not handling.is_alive(), "accept() blocked with no connection waiting"
        assert time.monotonic() - started < ACCEPT_TIMEOUT + 5
    finally:
        server.server_close()


def test_it_answers_and_its_connections_stay_blocking() -> None:
    server = LoopbackHTTPServer(_Hello)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (200, b"hello")
        connection.close()
        assert _Hello.timeouts == [None]  # blocking: a slow client is not cut off at 0.5 s
    finally:
        server.shutdown()
        server.server_close()
        serving.join(10)
    assert not serving.is_alive()
