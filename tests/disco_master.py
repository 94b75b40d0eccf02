"""A test Disco 0.5.4 master over real HTTP on 127.0.0.1: the master's API, DDFS, and files.

Test support, not product. :class:`DiscoMaster` answers as the recordings
in ``disco-reference/`` show a real master answering (status codes, reasons,
content types, compact JSON, error strings; ``http-api/*.jsonl`` and each
``http.jsonl``), and runs submitted jobs for real through
:mod:`tests.disco_state`. One port serves the master's API, DDFS (its put
URLs too) and ``/disco/<path>`` files from its DISCO_DATA, so the
``dir://localhost/...`` and ``disco://localhost/...`` URLs of results are
read over HTTP. Start it with ``with DiscoMaster(tmp_path) as master:`` or the
``disco_master`` fixture of :mod:`tests.conftest_cluster`.

Failures behave as on the real master: a failed task waits 14.308 s, 15.308 s
... (min(n, 60) + 13.308 s) before it runs again, with the real events; past
``max_failure_rate`` (100, changed by ``save_settings`` and read at each
failure) or on FATAL the job is killed; kill_job ends a job at once, even in a
pause, and logs "WARN: Job killed" (:mod:`tests.disco_state`).

What still differs from a real Disco 0.5.4 master:

- **Time**: retry pauses pass on a :class:`~tests.disco_state.Clock`, by
  default 1000 times faster (events still say "Sleeping 14 seconds"; the
  ``Clock`` records the pauses); event stamps and durations are this
  machine's.
- **One node**, named ``localhost`` (the recordings' is ``vm``), on this
  machine: no ssh, no Erlang node to start, nodeinfo always ``connected``,
  no ``tasks`` entry in nodeinfo. The config table is stored and answered
  but not applied: every job has its own 2 worker slots, so concurrent jobs
  do not share them.
- **No real scheduler**: tasks run stage after stage in input order (the
  real master gave task 0 input 2), ``concurrent`` stages are not
  overlapped, a retried task runs on the same node (no "preferably on
  another host"), and :class:`~discodsl.runners.node.NodeMaster` starts
  spare workers ahead and holds their TASK replies.
- **Blacklists** are kept (hosts of the config table only, as
  ``make_blacklist``) and reported by get_blacklist and nodeinfo, but tasks
  still run on a blacklisted node.
- **Workers** are started by NodeMaster: their environment is this test
  process's plus the jobenvs (no empty Disco settings, no
  ``DISCO_MASTER_PID``), and their failures are detected, timed and worded
  by NodeMaster, as its own tests hold it to the recordings; ``INPUT_ERR``
  gets ``FAIL`` where 0.5.4 crashes (``badrecord``) and fails the task.
- **job/new** checks jobpacks with :func:`discodsl.jobpack.decode`, so it
  refuses some that 0.5.4 accepts and then fails or runs
  (``http-api/accepted-odd-jobpacks.jsonl``: jobhome not a ZIP, empty
  pipeline, odd prefixes, a missing worker file).
- **HTTP**: Python's ``http.server`` imitating MochiWeb (status lines,
  ``Server``, content types and bodies as recorded; other headers and
  error pages for malformed requests may differ). One port serves the
  master, DDFS and its put URLs (the real put port is separate); purge_job
  is synchronous.
- **DDFS**: tags in memory, one volume, no replication, no garbage
  collection, no tokens.
- **Events**: a jobevents filter is taken literally, where grep reads
  ``[\\]^`` as a pattern. (The event file itself is written as
  ``job_event.erl`` buffers it: every 2 s of real time, past 1,000 waiting,
  and when a job ends, except a save_results job or a killed one; see
  :mod:`tests.disco_state`.)
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from discodsl.errors import JobpackError
from tests.disco_ddfs import DDFS, HOST, DDFSRefused, Stamps, compact
from tests.disco_state import FAST, Clock, Jobs
from tests.loopback import LoopbackHTTPServer

SERVER = "MochiWeb/1.0 (Any of you quaids got a smint?)"
REASONS = {
    200: "OK",
    201: "Created",
    206: "Partial Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Object Not Found",
    416: "Requested Range Not Satisfiable",
    500: "Internal Server Error",
}
NO_NEW_JOBS = "No new jobs should be submitted to this cluster."
#: How long a connection stays open after its answer, waiting for the client to close it.
LINGER_S = 2.0


@dataclass
class Reply:
    """One answer; ``drop`` closes the connection without any (as the master does on a crash)."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


def ok(value: Any) -> Reply:
    return Reply(200, compact(value))


def text(status: int, body: str, content_type: str | None = "text/plain") -> Reply:
    return Reply(status, body.encode(), content_type)


NOT_FOUND = text(404, "Not found.")
CRASHED = text(500, "Internal server error", None)


class BadBody(Exception):
    """A POST body that fails the master's validation: 400 with a JSON string (json_validator)."""


def erlang(value: Any) -> str:
    """A JSON value as Erlang prints the term in validation errors (``<<"x">>``, ``[1,2]``)."""
    if isinstance(value, str):
        return '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(erlang(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{struct,[" + ",".join(f"{{{erlang(k)},{erlang(v)}}}" for k, v in value.items()) + "]}"
        )
    return json.dumps(value)


def expect(value: Any, kind: str) -> Any:
    checks: dict[str, Callable[[Any], bool]] = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list),
        "object/dict": lambda v: isinstance(v, dict),
    }
    if not checks[kind](value):
        raise BadBody(f"{kind} expected, '{erlang(value)}' received")
    return value


def erlang_string(reason: str) -> str:
    """``~p`` of a string: quoted, inner quotes and backslashes escaped."""
    return '"' + reason.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DiscoMaster:
    """The test master: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``jobs``, ``ddfs``.

    Retry pauses pass on ``clock``: by default 1000 times faster than real
    time (:data:`~tests.disco_state.FAST`); ``Clock()`` gives the real pauses.
    """

    def __init__(self, root: Path, clock: Clock | None = None):
        self.server = LoopbackHTTPServer(_Handler)
        self.server.block_on_close = False
        self.server.app = self  # type: ignore[attr-defined]
        self.port = self.server.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.stamps = Stamps()
        self.ddfs = DDFS(root / "ddfs", self.stamps)
        self.jobs = Jobs(
            root,
            self.ddfs,
            disco_port=self.port,
            master_url=self.url,
            clock=clock if clock is not None else Clock(scale=FAST),
        )
        self.config_table = [[HOST, "2"]]
        self.blacklists: dict[str, set[str]] = {"blacklist": set(), "gc_blacklist": set()}
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DiscoMaster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.jobs.stop()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    # -- routing -------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes | None) -> Reply:
        parts = urlsplit(target)
        path, query = unquote(parts.path), dict(parse_qsl(parts.query))
        if path.startswith("/disco/job/") and method == "POST":
            return self.job_new(body)
        if path.startswith("/disco/ctrl/"):
            return self.ctrl(method, path[len("/disco/ctrl/") :], query, headers, body)
        if path == "/disco/version" and method == "GET":
            return ok("0.5.4")
        if path.startswith("/ddfs/"):
            return self.ddfs_request(method, path, query, body)
        if path.startswith("/disco/") and method == "GET":
            return self.file(self.jobs.disco_data, path[len("/disco/") :])
        return NOT_FOUND

    def ctrl(
        self, method: str, op: str, query: dict[str, str], headers: Any, body: bytes | None
    ) -> Reply:
        if method == "GET" and op in _GETS:
            return _GETS[op](self, query, headers)
        if method != "POST" or op not in _POSTS:
            return NOT_FOUND
        try:
            value = json.loads(body or b"")
        except ValueError:
            return CRASHED
        try:
            return _POSTS[op](self, value)
        except BadBody as exc:
            return Reply(400, compact(str(exc)), None)

    # -- jobs ----------------------------------------------------------------------

    def job_new(self, body: bytes | None) -> Reply:
        if body is None:
            return CRASHED  # no Content-Length
        if not self.jobs.settings["accept_new_jobs"]:
            return text(403, NO_NEW_JOBS, None)
        try:
            name = self.jobs.submit(body)
        except JobpackError as exc:
            return ok(["error", f"Job failed to start: {erlang_string(str(exc))}"])
        return ok(["ok", name])

    def get_results(self, value: Any) -> Reply:
        if len(expect(value, "list")) != 2:
            raise BadBody(f"list of length 2 expected, '{erlang(value)}' received")
        timeout, names = value
        expect(timeout, "integer")
        for name in expect(names, "list"):
            expect(name, "string")
        return ok(self.jobs.results(names, max(0, timeout)))

    def jobinfo(self, query: dict[str, str], headers: Any) -> Reply:
        job = self.jobs.get(query.get("name", ""))
        return NOT_FOUND if job is None else ok(job.jobinfo())

    def joblist(self, query: dict[str, str], headers: Any) -> Reply:
        jobs = sorted(self.jobs.jobs.values(), key=lambda j: j.created, reverse=True)
        return ok([[int(j.created), j.status, j.name] for j in jobs])

    def jobevents(self, query: dict[str, str], headers: Any) -> Reply:
        job = self.jobs.get(query.get("name", ""))
        if job is None:
            return text(200, "")
        num = min(1000, int(query.get("num", "10")))
        if query.get("filter"):  # the event file's lines, comma-separated
            lines = job.grep(query["filter"], num)
            return Reply(200, b"[" + b",".join(lines) + b"]" if lines else b"", "text/plain")
        events = job.latest(num)
        lines = b"\n,".join(compact(list(e)) for e in events)
        return Reply(200, b"[" + lines + b"\n]" if events else b"", "text/plain")

    def rawevents(self, query: dict[str, str], headers: Any) -> Reply:
        job = self.jobs.get(query.get("name", ""))
        if job is None:
            return NOT_FOUND
        data = job.rawevents()
        match = re.fullmatch(r"bytes=(\d+)-", headers.get("Range", "") or "")
        if match is None:
            return Reply(200, data, "text/plain")
        start = int(match.group(1))
        if start >= len(data):
            return Reply(416, b"", "text/plain", [("Content-Range", f"bytes */{len(data)}")])
        content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return Reply(206, data[start:], "text/plain", [("Content-Range", content_range)])

    def parameters(self, query: dict[str, str], headers: Any) -> Reply:
        job = self.jobs.get(query.get("name", ""))
        return NOT_FOUND if job is None else Reply(200, job.data, "text/plain")

    def stageresults(self, query: dict[str, str], headers: Any) -> Reply:
        """A finished stage's outputs, a dead job's too (0.5.4 keeps each stage_ready's
        results until the job is purged: event_server.erl, job_event.erl)."""
        job = self.jobs.get(query.get("name", ""))
        if job is None or query.get("stage") not in job.stage_results:
            return NOT_FOUND
        return ok(job.stage_results[query["stage"]])

    def kill_job(self, value: Any) -> Reply:
        self.jobs.kill(expect(value, "string"))
        return ok("")

    def clean_job(self, value: Any) -> Reply:
        self.jobs.forget(expect(value, "string"), purge=False)
        return ok("")

    def purge_job(self, value: Any) -> Reply:
        self.jobs.forget(expect(value, "string"), purge=True)
        return ok("")

    # -- the cluster ---------------------------------------------------------------

    def save_settings(self, value: Any) -> Reply:
        """Known settings in order; one that list_to_integer cannot read crashes 0.5.4,
        which drops the connection (those before it are saved). Unknown ones are skipped."""
        for name, setting in expect(value, "object/dict").items():
            if name not in self.jobs.settings:
                continue
            if not isinstance(setting, str) or not re.fullmatch(r"[+-]?[0-9]+", setting):
                return Reply(0, drop=True)
            self.jobs.save_setting(name, int(setting))
        return ok("Settings saved")

    def save_config_table(self, value: Any) -> Reply:
        for row in expect(value, "list"):
            if not isinstance(row, list) or len(row) != 2:
                raise BadBody("invalid config")
            expect(row[0], "string")
            expect(row[1], "string")
        if len({row[0] for row in value}) != len(value):
            raise BadBody("duplicate nodes")
        self.config_table = value
        return ok("table saved!")

    # -- files and DDFS --------------------------------------------------------------

    @staticmethod
    def file(root: Path, relative: str) -> Reply:
        path = (root / relative).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            return NOT_FOUND
        return Reply(200, path.read_bytes(), "application/octet-stream")

    def ddfs_request(
        self, method: str, path: str, query: dict[str, str], body: bytes | None
    ) -> Reply:
        try:
            return self._ddfs(method, path, query, body)
        except DDFSRefused as exc:
            return text(exc.status, exc.text, None)

    def _ddfs(self, method: str, path: str, query: dict[str, str], body: bytes | None) -> Reply:
        parts = path.split("/")[2:]  # /ddfs/<parts...>
        if parts[0] == "tags" and method == "GET":
            return ok(self.ddfs.list_tags(parts[1] if len(parts) > 1 else ""))
        if parts[0] == "tag" and len(parts) in (2, 3):
            return self._tag(method, parts[1], parts[2] if len(parts) == 3 else "", query, body)
        if parts[0] == "new_blob" and len(parts) == 2 and method == "GET":
            replicas = int(query.get("replicas", "1"))
            return ok(self.ddfs.new_blob(parts[1], replicas, f"http://{HOST}:{self.port}"))
        if len(parts) == 1 and method == "PUT":
            return Reply(
                201,
                compact(self.ddfs.put_blob(parts[0], body or b"")),
                None,
                [("content-type", "application/json")],
            )
        if parts[0].startswith("vol") and method == "GET":
            return self.file(self.ddfs.root, "/".join(parts))
        return NOT_FOUND

    def _tag(
        self, method: str, name: str, attr: str, query: dict[str, str], body: bytes | None
    ) -> Reply:
        if method == "GET":
            return ok(self.ddfs.get_attr(name, attr) if attr else self.ddfs.get(name))
        if method == "DELETE" and not attr:
            self.ddfs.delete(name)
            return ok("deleted")
        try:
            value = json.loads(body or b"")
        except ValueError:
            return CRASHED
        if method == "PUT" and attr:
            return ok(self.ddfs.set_attr(name, attr, value))
        if method in ("POST", "PUT") and not attr:
            if not isinstance(value, list) or not all(
                isinstance(r, list) and all(isinstance(u, str) for u in r) for r in value
            ):
                return text(400, "Invalid url list.", None)
            return ok(
                self.ddfs.update(
                    name, value, replace=method == "PUT", skip_known=query.get("update") == "1"
                )
            )
        return NOT_FOUND


def _simple(
    answer: Callable[[DiscoMaster], Any],
) -> Callable[[DiscoMaster, dict[str, str], Any], Reply]:
    return lambda master, query, headers: ok(answer(master))


def _host_op(blacklist: str, *, add: bool) -> Callable[[DiscoMaster, Any], Reply]:
    """A host joins or leaves a blacklist; only hosts of the config table can join
    (disco_config:make_blacklist). Scheduling does not look at it here."""

    def op(master: DiscoMaster, value: Any) -> Reply:
        host, hosts = expect(value, "string"), master.blacklists[blacklist]
        if not add:
            hosts.discard(host)
        elif host in {row[0] for row in master.config_table}:
            hosts.add(host)
        return ok("")

    return op


_GETS: dict[str, Callable[[DiscoMaster, dict[str, str], Any], Reply]] = {
    "jobinfo": DiscoMaster.jobinfo,
    "joblist": DiscoMaster.joblist,
    "jobevents": DiscoMaster.jobevents,
    "rawevents": DiscoMaster.rawevents,
    "parameters": DiscoMaster.parameters,
    "get_stageresults": DiscoMaster.stageresults,
    "nodeinfo": _simple(lambda m: m.jobs.nodeinfo(blacklisted=HOST in m.blacklists["blacklist"])),
    "get_settings": _simple(lambda m: m.jobs.settings),
    "load_config_table": _simple(lambda m: m.config_table),
    "get_blacklist": _simple(lambda m: sorted(m.blacklists["blacklist"])),
    "get_gc_blacklist": _simple(lambda m: sorted(m.blacklists["gc_blacklist"])),
}
_POSTS: dict[str, Callable[[DiscoMaster, Any], Reply]] = {
    "get_results": DiscoMaster.get_results,
    "kill_job": DiscoMaster.kill_job,
    "clean_job": DiscoMaster.clean_job,
    "purge_job": DiscoMaster.purge_job,
    "save_settings": DiscoMaster.save_settings,
    "save_config_table": DiscoMaster.save_config_table,
    "blacklist": _host_op("blacklist", add=True),
    "whitelist": _host_op("blacklist", add=False),
    "gc_blacklist": _host_op("gc_blacklist", add=True),
    "gc_whitelist": _host_op("gc_blacklist", add=False),
}


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the DiscoMaster, writes its Reply, closes the connection.

    MochiWeb, the real master's web server, answers ``HTTP/1.1`` without a
    ``Connection`` header and closes the connection after each answer; a
    client that sends a second request on it gets a reset. Here the close
    waits (at most :data:`LINGER_S`) for the client's next bytes or its own
    close, so a client that reuses connections fails every time, not by chance.
    """

    protocol_version = "HTTP/1.1"

    answered = False

    def handle(self) -> None:
        self.handle_one_request()
        if not self.answered:  # dropped, or not a request: close at once
            return
        with contextlib.suppress(OSError):
            self.connection.settimeout(LINGER_S)
            self.connection.recv(1)  # a reused connection's next request, or EOF

    def version_string(self) -> str:
        return SERVER

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length is not None else None
        app: DiscoMaster = self.server.app  # type: ignore[attr-defined]
        reply = app.handle(self.command, self.path, self.headers, body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status, REASONS.get(reply.status, ""))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.answered = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve
