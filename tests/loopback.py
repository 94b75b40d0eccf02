"""HTTP servers for tests: on 127.0.0.1, each request in a thread, and a shutdown that ends.

socketserver's loop accepts a connection once select() says one is waiting.
When the client drops it in between (seen under load, with the suite's
clients giving up on a busy server), ``accept()`` blocks until another comes,
and ``shutdown()``, waiting for the loop, hangs the test's teardown for good:
it stalled CI for 90 minutes. Here ``accept()`` gives up after
:data:`ACCEPT_TIMEOUT` seconds and the loop goes on.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCEPT_TIMEOUT = 0.5


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on ``127.0.0.1:port`` (0: any free port), daemon threads."""

    daemon_threads = True
    # Connections waiting to be accepted: socketserver's 5 is soon full when a job's tasks
    # and its client all ask at once.
    request_queue_size = 128

    def __init__(self, handler: type[BaseHTTPRequestHandler] | Any, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.socket.settimeout(ACCEPT_TIMEOUT)  # accepted connections stay blocking

    def serve_forever(self, poll_interval: float = 0.01) -> None:
        """Serve until shutdown(), which then returns within ``poll_interval`` (the
        standard half second, at each test's end, cost the suite a minute)."""
        super().serve_forever(poll_interval)

    @property
    def port(self) -> int:
        return int(self.server_address[1])
