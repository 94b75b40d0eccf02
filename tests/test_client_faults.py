"""Client errors under a misbehaving master or node: each names what happened and gives
advice that works as printed (probe BE's faults 4, 5, 6, 7, 10 and 11).

Every server here is a :class:`~tests.loopback.LoopbackHTTPServer` on 127.0.0.1 (or a
socket that listens and never reads), stopped at the test's end.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from discodsl.client import Master
from discodsl.ddfs import DDFS
from discodsl.errors import BadAnswer, ClientError, JobActive, JobDead, TagNotFound
from discodsl.jobstatus import command_line, dead_job, ready_results
from discodsl.worker.errors import DataError, MalformedRecord
from discodsl.worker.inputs import Cursor, iter_input
from discodsl.worker.opening import Node
from discodsl.worker.records import read_records
from tests.http_replay import stalled_server
from tests.loopback import LoopbackHTTPServer

#: What a handler does with a request: (handler, method, body) -> None (it answers).
Answer = Callable[[BaseHTTPRequestHandler, str, bytes], None]


def reply(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@contextmanager
def serving(answer: Answer) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A server on 127.0.0.1 answering each request with ``answer``: its URL, and the
    (method, path) of each request it got."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: each connection closed, as said
        def log_message(self, *args: object) -> None:
            pass

        def _do(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            seen.append((self.command, self.path))
            answer(self, self.command, body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _do

    server = LoopbackHTTPServer(Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def fake_master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
    """A Disco master's answers to version and job/new (disco-spec section 5)."""
    if h.path == "/disco/version":
        reply(h, 200, b'"0.5.4"')
    elif method == "POST" and h.path == "/disco/job/new" and body == b"jobpack":
        reply(h, 200, b'["ok", "wc@1:2:3"]')
    else:
        reply(h, 404, b"Not found.", {"Content-Type": "text/plain"})


# --------------------------------------------------------------------------
# Fault 4: a redirected POST is refused, naming where it leads
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_post_is_refused_naming_where_it_leads(status: int) -> None:
    with serving(fake_master) as (real, seen):

        def moved(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
            reply(h, status, headers={"Location": real + h.path})

        with serving(moved) as (old, _):
            master = Master(old, timeout=5, retries=0)
            assert master.version() == "0.5.4"  # a GET follows the redirect
            with pytest.raises(BadAnswer) as caught:
                master.submit(b"jobpack")
    message = str(caught.value)
    assert message.startswith(f"POST {old}/disco/job/new: ")
    assert f"{old} redirects ({status}" in message, message
    assert f"to {real}/disco/job/new" in message
    assert f"set DISCO_MASTER to {real}" in message
    assert "307 and 308 included" in message  # the choice made, said
    assert "not a Disco master" not in message and "is not one" not in message
    assert caught.value.status == status
    assert seen == [("GET", "/disco/version")], "the POST went nowhere else"


def test_a_redirected_put_to_a_ddfs_node_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"x\n")

    def node(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        reply(h, 302, headers={"Location": "/login"})

    with serving(node) as (node_url, _):
        put = f"{node_url}/ddfs/data$1-2-3"

        def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
            reply(h, 200, json.dumps([put]).encode())

        with serving(master) as (master_url, _), pytest.raises(BadAnswer) as caught:
            DDFS(master_url, timeout=5, retries=0).push("data:x", [path])
    message = str(caught.value)
    assert f"the DDFS node at {node_url} redirects (302" in message, message
    assert f"to {node_url}/login" in message
    assert "DISCO_MASTER" not in message  # the master handed out the URL: not the fix


# --------------------------------------------------------------------------
# Fault 5: advised commands carry --master
# --------------------------------------------------------------------------


def test_a_missing_tag_advises_listing_tags_of_that_master(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        if h.path.startswith("/ddfs/tag/"):
            reply(h, 404, b"Tag not found.", {"Content-Type": "text/plain"})
        else:
            reply(h, 200, b'["data:here"]')

    for name in ("DISCO_MASTER", "DISCO_MASTER_HOST", "DISCO_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISCO_SETTINGS_FILE", "/dev/null")
    with serving(master) as (url, _):
        with pytest.raises(TagNotFound) as caught:
            DDFS(url, timeout=5, retries=0).blobs("tag://data:nope")
        advised = f"discodsl --master {url} ddfs ls"
        assert f"list tags with `{advised}`" in str(caught.value), caught.value
        from discodsl.cli import main

        assert main(advised.split()[1:]) == 0  # it works as printed
    assert "data:here" in capsys.readouterr().out


def test_job_status_errors_advise_commands_of_that_master() -> None:
    url = "http://master:8989"
    with pytest.raises(JobDead) as dead:
        ready_results(url, "wc@1:2:3", "dead", [])
    assert f"`{command_line('events wc@1:2:3', url)}`" in str(dead.value)
    with pytest.raises(JobActive) as active:
        ready_results(url, "wc@1:2:3", "active", [])
    assert f"`discodsl --master {url} wait wc@1:2:3`" in str(active.value)
    died = dead_job(url, "wc@1:2:3", [("t", "master", "FATAL: [map:0] boom")])
    assert f"all of them with `discodsl --master {url} events wc@1:2:3`" in str(died)


# --------------------------------------------------------------------------
# Fault 11: failures after the server was reached are named for what they are
# --------------------------------------------------------------------------

REACHABILITY = ("is it running?", "URL right", "connection closed")


def test_a_stalled_upload_says_no_progress_was_made_sending_it() -> None:
    with stalled_server() as url:
        master = Master(url, timeout=1, retries=2)
        start = time.monotonic()
        with pytest.raises(ClientError) as caught:
            master.submit(b"x" * 20_000_000)  # more than the socket buffers hold
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "no progress sending the request within 1s" in message, message
    assert not any(words in message for words in REACHABILITY), message
    # Fault 5: the state to check, on that master, with a command that works as printed.
    assert f"`discodsl --master {url} jobs`" in message


def test_an_answer_that_is_not_in_its_claimed_encoding_is_named() -> None:
    def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        reply(h, 200, b'"0.5.4"', {"Content-Encoding": "gzip"})

    with serving(master) as (url, _), pytest.raises(ClientError) as caught:
        Master(url, timeout=5, retries=1, backoff=0.01).version()
    message = str(caught.value)
    assert "claims Content-Encoding: gzip" in message, message
    assert not any(words in message for words in REACHABILITY), message


def test_a_redirect_loop_is_named() -> None:
    def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        reply(h, 302, headers={"Location": h.path})

    with serving(master) as (url, _), pytest.raises(ClientError) as caught:
        Master(url, timeout=5, retries=1, backoff=0.01).version()
    message = str(caught.value)
    assert "redirects in a loop" in message, message
    assert f"`curl -sIL {url}/disco/version`" in message
    assert not any(words in message for words in REACHABILITY), message


# --------------------------------------------------------------------------
# Fault 6: a DDFS node's errors are the node's
# --------------------------------------------------------------------------


@contextmanager
def ddfs_with_node(answer: Answer) -> Iterator[tuple[DDFS, str]]:
    """A DDFS whose master hands out put URLs on a node answering with ``answer``."""
    with serving(answer) as (node_url, _):

        def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
            reply(h, 200, json.dumps([f"{node_url}/ddfs/data$1-2-3"]).encode())

        with serving(master) as (master_url, _):
            yield DDFS(master_url, timeout=1, retries=0), node_url


def test_a_ddfs_node_that_fails_is_named_not_the_master(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"x\n")

    def node(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        reply(h, 500, b"<html><body>disk full</body></html>", {"Content-Type": "text/html"})

    with ddfs_with_node(node) as (ddfs, node_url), pytest.raises(BadAnswer) as caught:
        ddfs.push("data:x", [path])
    message = str(caught.value)
    assert f"the DDFS node at {node_url} failed (500 <html>" in message, message
    assert "master" not in message, message


def test_a_ddfs_node_that_does_not_answer_gets_the_callers_hint(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"x\n")

    def node(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        time.sleep(2.5)  # past the client's 1 s timeout

    with ddfs_with_node(node) as (ddfs, node_url), pytest.raises(ClientError) as caught:
        ddfs.push("data:x", [path])
    message = str(caught.value)
    assert "no answer within 1s" in message, message
    assert f"try `curl -I {node_url}/ddfs/data$1-2-3`" in message
    assert "/disco/version" not in message  # a node's put port does not serve it


# --------------------------------------------------------------------------
# Fault 7: a read's timeout advice fits where the read happens
# --------------------------------------------------------------------------


def slow(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
    time.sleep(2)


@pytest.mark.parametrize(
    ("host", "setting", "not_said"),
    [
        ("", "in this program's environment or settings file", "env="),
        ("node1", "in the job's env=", "settings file"),
    ],
    ids=["client", "worker"],
)
def test_a_read_that_times_out_names_the_timeout_setting_that_applies(
    host: str, setting: str, not_said: str
) -> None:
    with serving(slow) as (url, _):
        node = Node(host=host, timeout=0.5)
        with pytest.raises(DataError) as caught:
            list(iter_input([f"{url}/disco/node1/out/add-1-0"], "all", node, Cursor()))
    message = str(caught.value)
    assert f"timeout 0.5 s: DISCODSL_HTTP_TIMEOUT {setting} sets it" in message, message
    assert not_said not in message


# --------------------------------------------------------------------------
# Fault 10: bytes that are no record file are not called the legacy format
# --------------------------------------------------------------------------

URL = "disco://node1/disco/node1/2b/wc@1:2:3/out/add-1-0"


def records_of(data: bytes) -> list[object]:
    return list(read_records(io.BytesIO(data), URL))


def test_an_html_page_is_not_a_record_file() -> None:
    with pytest.raises(MalformedRecord) as caught:
        records_of(b"<html><body><h1>Proxy authentication required</h1></body></html>")
    message = str(caught.value)
    assert message.startswith(f"{URL}: ")
    assert "not a record file" in message and "b'<html><b'" in message, message
    assert "HTML page" in message
    assert "legacy" not in message and "netstring" not in message
    assert caught.value.span == (0, 14)


def test_a_decimal_length_is_still_named_the_legacy_format() -> None:
    with pytest.raises(MalformedRecord, match="legacy netstring record format"):
        records_of(b"5 apple 1 3\n")


def test_a_local_text_file_read_as_records_is_said_to_be_text_not_a_servers_answer() -> None:
    with pytest.raises(MalformedRecord) as caught:
        list(read_records(io.BytesIO(b"hello world\n"), "file:///data/notes.txt"))
    assert str(caught.value) == (
        "file:///data/notes.txt: bytes [0, 12) start with b'hello wo': not a record file (one "
        "starts with byte 0x81): read it as text, or give the record files a job wrote"
    )


# --------------------------------------------------------------------------
# Probe BR: an answer sent byte by byte, and one nested past the JSON parser's depth
# --------------------------------------------------------------------------


def trickling(sized: bool) -> Answer:
    """A master sending headers at once, then a body of 100,000 bytes at a byte every 0.2 s,
    with its length, or (``sized`` false) ended by closing the connection."""

    def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if sized:
            h.send_header("Content-Length", "100000")
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        try:
            h.wfile.write(b'[[0, "active", "job@1"]')
            for _ in range(50):  # 10 s at most: the server's own end
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client hung up, as it should
            pass

    return master


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "until-closed"])
@pytest.mark.parametrize("ask", ["joblist", "parameters"])
def test_an_answer_that_trickles_in_fails_once_the_read_timeout_has_passed(
    sized: bool, ask: str
) -> None:
    # Each byte came well within the read timeout, which bounds one read from the socket:
    # run() waited for ever, whatever its timeout= and DISCODSL_HTTP_TIMEOUT. An answer
    # ended by the connection's close was then cut by the timer and taken as whole.
    with serving(trickling(sized)) as (url, _):
        master = Master(url, timeout=1, retries=0)
        start = time.monotonic()
        with pytest.raises(ClientError) as caught:
            master.joblist() if ask == "joblist" else master.parameters("job@1")
        took = time.monotonic() - start
    assert took < 4, took
    assert "did not arrive whole within 1s" in str(caught.value), str(caught.value)


def test_an_answer_nested_too_deep_to_parse_is_a_bad_answer() -> None:
    def master(h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        reply(h, 200, b"[" * 100_000)

    with serving(master) as (url, _), pytest.raises(BadAnswer) as caught:
        Master(url, timeout=5, retries=0).joblist()
    assert "is this a Disco 0.5.4 master" in str(caught.value) or "JSON" in str(caught.value)


def test_an_unreachable_master_url_of_no_port_says_which_port_was_tried() -> None:
    # master="http://localhost" is port 80, master="localhost" 8989: adding the scheme to
    # a host changed the port without a word.
    from discodsl.http import MASTER, _reachable

    said = _reachable("http://master", MASTER)
    assert "names no port, so 80 was tried" in said and "http://master:8989" in said, said
    assert "no port" not in _reachable("http://master:8989", MASTER)
