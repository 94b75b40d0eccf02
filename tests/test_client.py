"""discodsl.client and discodsl.ddfs against exchanges recorded from a real Disco 0.5.4 master.

Each test loads recorded exchanges (``@replays("endpoints#13", ...)`` or a
row of ``CASES``) into a real HTTP server on 127.0.0.1 and calls the client;
the server answers as the master did, and the test fails if a loaded
exchange is never requested or a request matches none. The last test checks
that every exchange of endpoints.jsonl, settings.jsonl and ddfs/http.jsonl
is replayed by some test.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from requests.adapters import HTTPAdapter

import discodsl
from discodsl.client import Master
from discodsl.ddfs import DDFS, check_name, resolve_inputs
from discodsl.errors import (
    BadAnswer,
    ClientError,
    JobActive,
    JobDead,
    JobpackRefused,
    NoSuchJob,
    RequestFailed,
    SettingsError,
    TagNotFound,
    Unauthorized,
    Unreachable,
)
from discodsl.service import disco_url_to_http
from discodsl.settings import load_settings
from discodsl.worker.urls import proxy_url
from tests import jobs
from tests.loopback import LoopbackHTTPServer

from .http_replay import (
    ReplayServer,
    closed_port,
    closing_server,
    read_recording,
    stalled_server,
    synthetic,
)

MASTER = "http://vm:8989"
F = TypeVar("F", bound=Callable[..., Any])

# Names from the recordings.
MAP_REDUCE = "rec_protocol_map_reduce@703:c7127:40816"
FATAL = "rec_error_fatal@703:c713a:80709"
ACTIVE = "rec_active@703:c7292:ec40b"
UNKNOWN = "nosuchjob@1:2:3"
BLOB = "disco://vm/ddfs/vol0/blob/ec/recblob$703-c72c0-486bd"
RESULTS_TAG = "disco:results:rec_ddfs_save_results@703:c72c9:7d1e7"


def replays(*refs: str) -> Callable[[F], F]:
    """Declare the recorded exchanges a test replays (loaded by the ``replay`` fixture)."""

    def mark(fn: F) -> F:
        fn.replays = refs  # type: ignore[attr-defined]
        return fn

    return mark


@pytest.fixture
def replay(reference: Path, request: pytest.FixtureRequest) -> Iterator[ReplayServer]:
    server = ReplayServer(reference)
    server.load(*getattr(request.function, "replays", ()))
    with server:
        yield server
    server.check()


@pytest.fixture
def master(replay: ReplayServer) -> Iterator[Master]:
    with Master(MASTER, session=replay.session(), retries=0, timeout=5) as m:
        yield m


@pytest.fixture
def ddfs(replay: ReplayServer) -> Iterator[DDFS]:
    with DDFS(MASTER, session=replay.session(), retries=0, timeout=5) as d:
        yield d


# --------------------------------------------------------------------------
# One call, one answer: a table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    refs: tuple[str, ...]
    call: Callable[[Master], Any]
    expect: Any = None  # the value returned, or a predicate on it
    raises: str = ""  # a regex the ClientError message must match


CASES: dict[str, Case] = {
    "version": Case(("endpoints#0",), lambda m: m.version(), "0.5.4"),
    "nodeinfo": Case(
        ("endpoints#6",),
        lambda m: m.nodeinfo(),
        lambda v: v["vm"]["max_workers"] == 2 and v["vm"]["connected"] is True,
    ),
    "blacklist": Case(
        ("endpoints#7",), lambda m: m.request("GET", "/disco/ctrl/get_blacklist"), b"[]"
    ),
    "joblist": Case(
        ("endpoints#8",),
        lambda m: m.joblist(),
        lambda v: (
            v[0] == (1795815724, "ready", "rec_api@703:c726c:5e66b")
            and (1795815724, "dead", "rec api@x@703:c726c:5ab79") in v
        ),
    ),
    "jobinfo ready": Case(
        ("endpoints#9",),
        lambda m: m.jobinfo(MAP_REDUCE),
        lambda v: (
            v["active"] == "ready"
            and v["pipeline"] == [["map", 0, 0, 0, 3, 0], ["reduce", 0, 0, 0, 2, 0]]
            and len(v["results"]) == 2
        ),
    ),
    "jobinfo dead": Case(
        ("endpoints#10",),
        lambda m: m.jobinfo(FATAL),
        lambda v: v["active"] == "dead" and v["pipeline"] == [["map", 0, 1, 0, 0, 1]],
    ),
    "jobinfo unknown": Case(
        ("endpoints#11",),
        lambda m: m.jobinfo(UNKNOWN),
        raises=r"no job named 'nosuchjob@1:2:3' on the master at http://vm:8989 \(Not found\.\)",
    ),
    "jobinfo without name": Case(
        ("endpoints#12",),
        lambda m: m.request("GET", "/disco/ctrl/jobinfo"),
        raises=r"^GET http://vm:8989/disco/ctrl/jobinfo: not found \(404 Not found\.\)",
    ),
    "jobevents num": Case(
        ("endpoints#13",),
        lambda m: m.events(MAP_REDUCE, num=3),
        [
            ("2026/11/27 21:36:39", "master", "READY: Job done in 0:00:00.365"),
            ("2026/11/27 21:36:39", "master", "Stage reduce finished in 0:00:00.097"),
            ("2026/11/27 21:36:39", "master", "SYS: [reduce:4] Received results from vm"),
        ],
    ),
    "jobevents filter": Case(
        ("endpoints#14",),
        lambda m: m.events(MAP_REDUCE, filter="DONE"),
        lambda v: len(v) == 6 and all("done" in msg.lower() for _, _, msg in v),  # any case
    ),
    "jobevents unknown job": Case(("endpoints#15",), lambda m: m.events(UNKNOWN, num=10), []),
    "rawevents unknown job": Case(
        ("endpoints#16",), lambda m: m.rawevents(UNKNOWN), raises=r"no job named 'nosuchjob@1:2:3'"
    ),
    "stageresults unknown stage": Case(
        ("endpoints#18",),
        lambda m: m.stageresults(MAP_REDUCE, "nostage"),
        raises=r"no results for stage 'nostage' of job 'rec_protocol_map_reduce@703:c7127:40816'",
    ),
    "get_results unknown": Case(
        ("endpoints#19",), lambda m: m.results([UNKNOWN], 1000), {UNKNOWN: ("unknown job", [])}
    ),
    "get_results several": Case(
        ("endpoints#20",),
        lambda m: m.results([MAP_REDUCE, FATAL, UNKNOWN], 1000),
        {
            MAP_REDUCE: (
                "ready",
                [
                    [
                        "dir://vm/disco/vm/ba/rec_protocol_map_reduce@703:c7127:40816/.disco/"
                        "reduce-3-1795815399589641.results"
                    ],
                    [
                        "dir://vm/disco/vm/ba/rec_protocol_map_reduce@703:c7127:40816/.disco/"
                        "reduce-4-1795815399616358.results"
                    ],
                ],
            ),
            FATAL: ("dead", []),
            UNKNOWN: ("unknown job", []),
        },
    ),
    "get_results bad payload (400)": Case(
        ("endpoints#21",),
        lambda m: m.request("POST", "/disco/ctrl/get_results", data=b'"notalist"'),
        raises=r"^POST http://vm:8989/disco/ctrl/get_results: the request was refused \(400\): "
        r"list expected, '<<\"notalist\">>' received",
    ),
    "get_results invalid JSON (500)": Case(
        ("endpoints#22",),
        lambda m: m.request("POST", "/disco/ctrl/get_results", data=b"{not json"),
        raises=r"^POST http://vm:8989/disco/ctrl/get_results: the master failed "
        r"\(500 Internal server error\)",
    ),
    "static file not found": Case(
        ("endpoints#42",),
        lambda m: m.request("GET", "/disco/nosuchfile"),
        raises=r"GET http://vm:8989/disco/nosuchfile: not found \(404 Not found\.\)",
    ),
    "unknown ctrl GET": Case(
        ("endpoints#43",),
        lambda m: m.request("GET", "/disco/ctrl/nosuchop"),
        raises=r"GET http://vm:8989/disco/ctrl/nosuchop: not found",
    ),
    "unknown ctrl POST": Case(
        ("endpoints#44",),
        lambda m: m.request("POST", "/disco/ctrl/nosuchop", data=b'"x"'),
        raises=r"POST http://vm:8989/disco/ctrl/nosuchop: not found",
    ),
    "status page": Case(
        ("endpoints#45",),
        lambda m: m.request("GET", "/"),
        lambda v: v.startswith(b"<!DOCTYPE HTML"),
    ),
    "get_settings": Case(
        ("endpoints#46",),
        lambda m: m.settings(),
        {"max_failure_rate": 2, "accept_new_jobs": 1},
    ),
    "get_results save_results tag": Case(
        ("ddfs-save-results/http.jsonl#1",),
        lambda m: m.results(["rec_ddfs_save_results@703:c72c9:7d1e7"], 60000),
        {"rec_ddfs_save_results@703:c72c9:7d1e7": ("ready", [[f"tag://{RESULTS_TAG}"]])},
    ),
    "stageresults of a dead job": Case(
        ("error-fatal/http.jsonl#5",),
        lambda m: m.stageresults(FATAL, "map"),
        raises="the job may have died before it did",
    ),
    "jobinfo with a numeric owner": Case(
        ("http-api/accepted-odd-jobpacks.jsonl#22",),
        lambda m: m.jobinfo("rec_api@703:c726c:5e66b")["owner"],
        5,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_case(case: Case, replay: ReplayServer, master: Master) -> None:
    replay.load(*case.refs)
    if case.raises:
        with pytest.raises(ClientError, match=case.raises):
            case.call(master)
        return
    value = case.call(master)
    if callable(case.expect):
        assert case.expect(value), value
    else:
        assert value == case.expect


# --------------------------------------------------------------------------
# Sequences: the master's state changes between calls
# --------------------------------------------------------------------------


@replays(*(f"endpoints#{i}" for i in (1, 2, 3, 4, 5)))
def test_config_table(master: Master) -> None:
    assert master.config_table() == [("vm", 2)]
    saved = master.request("POST", "/disco/ctrl/save_config_table", data=b'[["vm", "2"]]')
    assert json.loads(saved) == "table saved!"  # the count as a string: accepted
    with pytest.raises(ClientError, match=r"string expected, '2' received"):
        master.request("POST", "/disco/ctrl/save_config_table", data=b'[["vm", 2]]')
    with pytest.raises(ClientError, match=r"400.*list expected, '<<\"garbage\">>' received"):
        master.request("POST", "/disco/ctrl/save_config_table", data=b'"garbage"')
    assert master.config_table() == [("vm", 2)]


@replays(*(f"endpoints#{i}" for i in (23, 24, 25, 26, 27, 28, 31, 32, 33, 34)))
def test_job_lifecycle_then_clean(master: Master) -> None:
    name = master.submit(b"\0" * 3370)
    assert name == ACTIVE
    assert master.results([name], 1000) == {name: ("active", [])}
    assert master.results([name], 0) == {name: ("active", [])}
    info = master.jobinfo(name)
    assert (info["active"], info["hosts"]) == ("active", ["vm"])
    assert master.joblist()[0] == (1795815762, "active", name)
    status, results = master.results([name], 30000)[name]
    assert status == "ready" and results[0][0].startswith("dir://vm/disco/vm/96/")
    master.request("POST", "/disco/ctrl/clean_job", data=json.dumps(name).encode())
    with pytest.raises(ClientError, match=r"no job named .* cleaned or purged"):
        master.jobinfo(name)
    assert master.results([name], 1000) == {name: ("unknown job", [])}
    assert name not in {n for _, _, n in master.joblist()}


def test_a_job_the_answer_leaves_out_is_an_unknown_job(
    replay: ReplayServer, master: Master
) -> None:
    """A real master always names the job asked about; an answer without it is read as
    "unknown job" by every caller (``discodsl events`` once failed on it with a KeyError)."""
    replay.load(synthetic("POST", "/disco/ctrl/get_results", 200, [], request_body=[0, [ACTIVE]]))
    assert master.status(ACTIVE) == ("unknown job", [])


def test_an_answer_about_other_jobs_only_is_a_bad_answer_not_an_unknown_job(
    replay: ReplayServer, master: Master
) -> None:
    """A proxy or cache answering about another job: the job asked for was not said to be
    unknown (a NoSuchJob would send the user looking for a purge that never was)."""
    other = [["other@704:1:2", ["active", []]]]
    replay.load(
        synthetic("POST", "/disco/ctrl/get_results", 200, other, request_body=[0, [ACTIVE]])
    )
    with pytest.raises(BadAnswer) as info:
        master.status(ACTIVE)
    assert f"expected an answer about the job asked for, {ACTIVE!r}" in str(info.value)
    assert "'other@704:1:2' only" in str(info.value)


@replays(*(f"endpoints#{i}" for i in (29, 30, 35, 36, 37, 38)))
def test_kill_and_purge(master: Master) -> None:
    master.kill(UNKNOWN)  # "" even for unknown jobs
    master.kill(FATAL)
    master.purge(FATAL)
    with pytest.raises(ClientError, match="no job named"):
        master.jobinfo(FATAL)
    assert master.results([FATAL], 1000) == {FATAL: ("unknown job", [])}
    master.purge(UNKNOWN)


@replays("endpoints#39", "endpoints#40", "endpoints#41")
def test_submit_refused_while_not_accepting(master: Master) -> None:
    save_settings(master, {"accept_new_jobs": "0"})
    with pytest.raises(ClientError, match=r"does not accept new jobs \(No new jobs should"):
        master.submit(b"\0" * 3370)
    save_settings(master, {"accept_new_jobs": "1"})


@replays(*(f"settings#{i}" for i in range(10)))
def test_settings(replay: ReplayServer, master: Master) -> None:
    assert master.settings() == {"max_failure_rate": 100, "accept_new_jobs": 1}
    save_settings(master, {"max_failure_rate": "2"})  # values as strings
    assert master.settings()["max_failure_rate"] == 2
    # What an integer value does to the real master: the connection is dropped.
    with pytest.raises(ClientError, match=r"connection closed without an answer"):
        master.request("POST", "/disco/ctrl/save_settings", data=b'{"max_failure_rate": 2}')
    assert master.settings()["max_failure_rate"] == 2
    for value in ("100", "1", "100"):
        save_settings(master, {"max_failure_rate": value})
        if value != "1":
            assert master.settings()["max_failure_rate"] == 100


def save_settings(master: Master, values: dict[str, str]) -> None:
    """What an admin's POST to save_settings does (no client method: no CLI command)."""
    saved = master.request("POST", "/disco/ctrl/save_settings", data=json.dumps(values).encode())
    assert json.loads(saved) == "Settings saved"


@replays(*(f"protocol-map-reduce/http.jsonl#{i}" for i in range(11)), "endpoints#17")
def test_map_reduce_job(reference: Path, master: Master, ddfs: DDFS) -> None:
    jobpack = (reference / "jobpack-map-reduce.bin").read_bytes()
    name = master.submit(jobpack)
    polls: list[str] = []
    results = master.wait(name, poll_ms=60000, on_poll=lambda status, _: polls.append(status))
    assert polls == ["ready"] and len(results) == 2
    assert master.jobinfo(name)["owner"] == "rec@vm"
    assert master.events(name)[0][2] == "READY: Job done in 0:00:00.365"
    raw, offset = master.rawevents(name)
    assert raw[0][2] == "New job initialized!" and raw[-1][2].startswith("READY")
    assert offset == 1526
    assert len(master.stageresults(name, "map")) == 3
    assert master.stageresults(name, "reduce") == results
    index = b"".join(ddfs.cat(results[0][0])).decode()
    label, url, size = index.split()
    assert label == "0" and size == "53"
    assert b"".join(ddfs.cat(url)).startswith(b"stage=reduce group=[0")
    index = b"".join(ddfs.cat(results[1][0])).decode()
    assert b"".join(ddfs.cat(index.split()[1])).startswith(b"stage=reduce group=[1")
    assert master.parameters(name) == jobpack


@replays(*(f"error-fatal/http.jsonl#{i}" for i in (0, 1, 3)))
def test_wait_for_a_dead_job(master: Master) -> None:
    name = master.submit(b"\0" * 3279)
    with pytest.raises(
        JobDead, match=r"FATAL: \[map:0\] recording worker: deliberate FATAL"
    ) as err:
        master.wait(name, poll_ms=60000)
    assert err.value.jobname == FATAL
    assert f"all of them with `discodsl --master {MASTER} events {FATAL}`" in str(err.value)
    assert err.value.events[0].endswith("New job initialized!")  # oldest first
    assert err.value.events[-1].endswith("WARN: Job killed")


@replays("protocol-map-reduce/http.jsonl#4", "protocol-map-reduce/http.jsonl#4")
def test_rawevents_tail_from_an_offset(replay: ReplayServer, master: Master) -> None:
    events, end = master.rawevents(MAP_REDUCE)
    lines = replay.exchanges[0].answer.splitlines(keepends=True)
    offset = sum(len(line) for line in lines[:4])
    tail, tail_end = master.rawevents(MAP_REDUCE, offset)
    assert (tail, tail_end) == (events[4:], end)
    assert replay.received[1].headers["Range"] == f"bytes={offset}-"


class _Answer:
    """The parts of a requests answer that rawevents reads."""

    def __init__(self, status: int, content: bytes) -> None:
        self.status_code, self.content = status, content


_LINES = [b'["2024/01/01 00:00:0%d","vm","event %d"]\n' % (n, n) for n in range(3)]


@pytest.mark.parametrize(
    ("status", "offset", "content", "events", "end"),
    [
        # the master writes the file as the job runs: a line may be cut short
        (200, 0, _LINES[0] + _LINES[1][:9], ["event 0"], len(_LINES[0])),
        (206, len(_LINES[0]), _LINES[1] + _LINES[2][:5], ["event 1"], len(b"".join(_LINES[:2]))),
        # an answer that ignored the Range (a proxy's): the bytes before the offset skipped
        (200, len(_LINES[0]), b"".join(_LINES), ["event 1", "event 2"], len(b"".join(_LINES))),
        (416, len(b"".join(_LINES)), b"", [], len(b"".join(_LINES))),
    ],
    ids=["cut line", "cut line from an offset", "Range ignored", "nothing new"],
)
def test_rawevents_gives_whole_lines_and_the_offset_after_them(
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    offset: int,
    content: bytes,
    events: list[str],
    end: int,
) -> None:
    """A line cut short raised BadAnswer, and an offset past it lost the line's rest; an
    answer that ignored the Range gave every event again at each tail."""
    with Master(MASTER, retries=0, timeout=5) as master:
        monkeypatch.setattr(master, "_get", lambda *args, **kwargs: _Answer(status, content))
        got, next_offset = master.rawevents("j@1:2:3", offset)
    assert [event[2] for event in got] == events and next_offset == end


def test_an_event_line_that_is_no_json_triple_is_kept_as_text_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One odd line of a job's event file (bytes that are not UTF-8: a worker's last words
    cut mid-character; a line that is not a JSON triple) made every reader of the events
    fail, a watched job that succeeded included: it reads as its text, the others as ever."""
    content = (
        _LINES[0]
        + b'["2024/01/01 00:00:09","vm","Last words: caf\xe9"]\n'
        + b"not json at all\n"
        + _LINES[1]
    )
    with Master(MASTER, retries=0, timeout=5) as master:
        monkeypatch.setattr(master, "_get", lambda *args, **kwargs: _Answer(200, content))
        got, next_offset = master.rawevents("j@1:2:3")
    assert got == [
        ("2024/01/01 00:00:00", "vm", "event 0"),
        ("2024/01/01 00:00:09", "vm", "Last words: caf\ufffd"),
        ("", "", "not json at all"),
        ("2024/01/01 00:00:01", "vm", "event 1"),
    ]
    assert next_offset == len(content)


@pytest.mark.parametrize("num", [0, 1001])
def test_events_asks_only_for_what_the_master_gives(num: int) -> None:
    with (
        Master(MASTER, retries=0, timeout=5) as master,
        pytest.raises(
            discodsl.errors.ClientError,
            match=f"num={num} is out of range: the master returns 1-1000",
        ),
    ):
        master.events("j@1:2:3", num=num)


# --------------------------------------------------------------------------
# wait(): polling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, float("inf")])  # inf: as long as it takes
@replays("endpoints#24")
def test_wait_polls_until_ready(
    replay: ReplayServer, master: Master, timeout: float | None
) -> None:
    # The master's answer once the job is ready (as endpoints#28), to the next 1000 ms poll:
    ready = [[ACTIVE, ["ready", [["dir://vm/x.results"]]]]]
    replay.load(
        synthetic("POST", "/disco/ctrl/get_results", 200, ready, request_body=[1000, [ACTIVE]])
    )
    seen: list[str] = []
    on_poll = lambda s, _: seen.append(s)  # noqa: E731
    assert master.wait(ACTIVE, poll_ms=1000, timeout_s=timeout, on_poll=on_poll) == [
        ["dir://vm/x.results"]
    ]
    assert seen == ["active", "ready"]


@replays("endpoints#25")
def test_wait_gives_up_after_timeout(master: Master) -> None:
    with pytest.raises(ClientError, match=r"still active after .*wait again, or stop it"):
        master.wait(ACTIVE, poll_ms=1000, timeout_s=0)  # one poll, with timeout 0


@pytest.mark.parametrize("timeout", [float("nan"), -5])
def test_wait_refuses_a_timeout_that_is_not_seconds_before_asking(
    master: Master, timeout: float
) -> None:
    with pytest.raises(SettingsError, match=r"timeout=.*: pass the seconds to wait as a number"):
        master.wait(ACTIVE, timeout_s=timeout)


@replays("endpoints#19")
def test_wait_for_unknown_job(master: Master) -> None:
    with pytest.raises(ClientError, match=r"knows no job named 'nosuchjob@1:2:3'"):
        master.wait(UNKNOWN, poll_ms=1000)


# --------------------------------------------------------------------------
# DDFS
# --------------------------------------------------------------------------


@replays(*(f"ddfs#{i}" for i in [*range(11), 10, *range(11, 16), 15, 15, 16, 17, 18]))
def test_ddfs_session(tmp_path: Path, ddfs: DDFS) -> None:
    assert ddfs.list_tags() == []
    with pytest.raises(ClientError, match=r"no DDFS tag named 'rec:data' \(Tag not found\.\)"):
        ddfs.get_tag("rec:data")
    blob = tmp_path / "recblob"
    blob.write_bytes(b"line one\nline two\n")
    assert ddfs.push("rec:data", [blob]) == [[BLOB]]  # new_blob, PUT to :8990 (201), POST tag
    tag = ddfs.get_tag("rec:data")
    assert (tag["urls"], tag["version"], tag["user-data"]) == ([[BLOB]], 1, {})
    assert ddfs.list_tags() == ["rec:data"]
    assert ddfs.list_tags("rec") == ["rec:data"]
    assert b"".join(ddfs.cat(BLOB)) == b"line one\nline two\n"
    assert ddfs.tag("tag://rec:data", ["raw://second%0Ablob"])[0].startswith("disco://vm/ddfs/")
    assert ddfs.get_tag("rec:data")["urls"] == [["raw://second%0Ablob"], [BLOB]]
    assert ddfs.blobs("rec:data") == [["raw://second%0Ablob"], [BLOB]]
    ddfs.set_attr("rec:data", "myattr", '"value"')
    assert ddfs.get_attr("rec:data", "myattr") == '"value"'
    with pytest.raises(ClientError, match=r"no attribute 'urls'.*Tag attribute not found"):
        ddfs.get_attr("rec:data", "urls")
    assert RESULTS_TAG in ddfs.list_tags()
    assert len(ddfs.get_tag(RESULTS_TAG)["urls"]) == 2
    assert len(ddfs.blobs(f"tag://{RESULTS_TAG}")) == 2
    inputs = resolve_inputs(["raw://x", [BLOB, "http://h/b"], f"tag://{RESULTS_TAG}"], ddfs)
    assert inputs[:2] == [["raw://x"], [BLOB, "http://h/b"]] and len(inputs) == 4
    ddfs.delete("rec:data")
    with pytest.raises(ClientError, match="Tag not found"):
        ddfs.get_tag("rec:data")
    assert ddfs.list_tags() == [RESULTS_TAG]


def test_blobs_follow_tags_and_stop_at_cycles(replay: ReplayServer, ddfs: DDFS) -> None:
    def tag(name: str, urls: list[list[str]]) -> Any:
        return synthetic("GET", f"/ddfs/tag/{name}", 200, {"version": 1, "urls": urls})

    replay.load(
        tag("a", [["disco://vm/1"], ["tag://b"], ["disco://vm/2", "disco://vm/2b"]]),
        tag("b", [["tag://a"], ["disco://vm/3"], ["tag://c"]]),
        tag("c", [["tag://b"]]),
    )
    assert ddfs.blobs("a") == [
        ["disco://vm/1"],
        ["disco://vm/2", "disco://vm/2b"],
        ["disco://vm/3"],
    ]


def test_blobs_names_a_missing_inner_tag(replay: ReplayServer, ddfs: DDFS) -> None:
    replay.load(
        synthetic("GET", "/ddfs/tag/a", 200, {"urls": [["tag://gone"]]}),
        synthetic("GET", "/ddfs/tag/gone", 404, "Tag not found."),
    )
    with pytest.raises(ClientError, match=r"tag 'a' lists tag 'gone', which failed: no DDFS tag"):
        ddfs.blobs("a")


def test_tokens_are_sent_as_basic_auth(replay: ReplayServer) -> None:
    replay.load(
        synthetic("GET", "/ddfs/tag/t", 200, {"urls": []}),
        synthetic("DELETE", "/ddfs/tag/t", 200, "deleted"),
    )
    with DDFS(MASTER, read_token="r3ad", write_token="wr1te", session=replay.session()) as d:
        d.get_tag("t")
        d.delete("t")
    sent = [r.headers["Authorization"] for r in replay.received]
    assert sent == [
        "Basic " + base64.b64encode(b"token:r3ad").decode(),
        "Basic " + base64.b64encode(b"token:wr1te").decode(),
    ]


@pytest.mark.parametrize("url", ["tag://s3cret@/t", "tag://user:s3cret@/t", "tag://s3cret@h/t"])
def test_a_tag_urls_token_is_its_read_token_as_disco_takes_it(
    url: str, replay: ReplayServer
) -> None:
    # Disco's own client reads tag://TOKEN@/NAME's token (disco.util.urltoken); it was
    # dropped, and DDFS refused the job "set DDFS_READ_TOKEN" (probe EF F1). A tag it lists
    # is read with the settings' token, as Disco's walk does.
    replay.load(
        synthetic("GET", "/ddfs/tag/t", 200, {"urls": [["tag://u"], ["disco://h/b"]]}),
        synthetic("GET", "/ddfs/tag/u", 200, {"urls": [["disco://h/c"]]}),
    )
    with DDFS(MASTER, read_token="r3ad", session=replay.session()) as d:
        assert d.blobs(url) == [["disco://h/b"], ["disco://h/c"]]
    sent = [r.headers["Authorization"] for r in replay.received]
    assert sent == [
        "Basic " + base64.b64encode(b"token:s3cret").decode(),
        "Basic " + base64.b64encode(b"token:r3ad").decode(),
    ]


def test_a_tag_urls_token_refused_is_not_told(replay: ReplayServer) -> None:
    replay.load(synthetic("GET", "/ddfs/tag/t", 401, "Incorrect or missing token."))
    with DDFS(MASTER, session=replay.session()) as d, pytest.raises(Unauthorized) as refused:
        d.blobs("tag://s3cret@/t")
    assert "s3cret" not in str(refused.value)
    assert str(refused.value).endswith(
        "may come in its URL too, tag://TOKEN@/t, as Disco's client takes it; the tags a tag "
        "lists are read with DDFS_READ_TOKEN)"
    )


def test_a_tag_name_holding_an_at_sign_is_no_token(replay: ReplayServer) -> None:
    replay.load(synthetic("GET", "/ddfs/tag/data@2024", 200, {"urls": []}))
    with DDFS(MASTER, session=replay.session()) as d:
        assert d.blobs("tag://data@2024") == []
    assert "Authorization" not in replay.received[0].headers


@pytest.mark.parametrize("name", ["rec data", "a/b", "", "x.y", "tag://with space"])
def test_bad_tag_names_are_refused_before_sending(
    name: str, replay: ReplayServer, ddfs: DDFS
) -> None:
    with pytest.raises(ClientError, match=r"is not a valid DDFS tag name: use only letters"):
        ddfs.get_tag(name)
    assert replay.received == []


@pytest.mark.parametrize("url", ["tag://data:texts/", "tag://host/data:texts//"])
def test_a_tag_url_with_a_trailing_slash_is_told_to_drop_it(
    url: str, replay: ReplayServer, ddfs: DDFS
) -> None:
    # It was refused as the tag '' and told e.g. 'data': neither the user's.
    told = r"ends with '/': write 'tag://(host/)?data:texts' \(a tag's name"
    with pytest.raises(ClientError, match=told):
        ddfs.get_tag(url)
    assert replay.received == []


def test_pushing_a_directory_or_nothing_is_refused_before_sending(
    replay: ReplayServer, ddfs: DDFS, tmp_path: Path
) -> None:
    with pytest.raises(ClientError, match=r"it is a directory: push the files in it \(e\.g\."):
        ddfs.push("data", [tmp_path])
    with pytest.raises(ClientError, match="no such file"):
        ddfs.push("data", [tmp_path / "missing.txt"])
    with pytest.raises(ClientError, match=r"'/dev/null' is not a regular file .*: push a file"):
        ddfs.push("data", ["/dev/null"])  # it exists: "no such file" misled
    assert replay.received == []


def test_a_tag_name_too_long_for_a_nodes_file_names_is_refused_before_sending(
    replay: ReplayServer, ddfs: DDFS, tmp_path: Path
) -> None:
    """A real 0.5.4 master took a 230-character tag name and failed on 231 (500,
    replication_failed): a node keeps a tag in a file named after it, its time and a
    temporary prefix, under the file system's 255 bytes."""
    with pytest.raises(ClientError, match=r"is 231 characters long: a DDFS tag name may have"):
        ddfs.get_tag("t" * 231)
    with pytest.raises(ClientError, match=r"at most 230"):
        ddfs.push("t" * 300, [tmp_path / "missing"])
    assert replay.received == []
    assert check_name("t" * 230) == "t" * 230


@pytest.mark.parametrize(
    ("text", "refused"), [("Job done", "' '"), ("map:0]", "']'"), ("a.b-c", "'-.'")]
)
def test_event_filters_the_master_would_change_are_refused_before_sending(
    text: str, refused: str, replay: ReplayServer, master: Master
) -> None:
    """event_server:grep_log drops all but letters, digits and ":;<=>?@[\\]^_!" (the real
    master gave nothing for "Job done": it looked for "Jobdone"), and grep reads [\\]^."""
    with pytest.raises(ClientError, match=rf"drops or reads as a pattern {re.escape(refused)}"):
        master.events("job@1:2:3", filter=text)
    assert replay.received == []


def test_wrong_shapes_name_the_endpoint(replay: ReplayServer, master: Master) -> None:
    replay.load(
        synthetic("GET", "/disco/ctrl/joblist", 200, {"not": "a list"}),
        synthetic("POST", "/disco/job/new", 200, ["ok"]),
        synthetic("POST", "/disco/ctrl/kill_job", 200, "killed?", request_body="j"),
    )
    with pytest.raises(ClientError, match=r"GET /disco/ctrl/joblist answered .*expected \[\["):
        master.joblist()
    with pytest.raises(ClientError, match=r"POST /disco/job/new answered"):
        master.submit(b"jobpack")
    with pytest.raises(ClientError, match=r"kill_job answered 'killed\?', expected ''"):
        master.kill("j")


def test_submit_too_large(replay: ReplayServer, master: Master) -> None:
    # Not recorded (it takes a 1 GiB jobpack); the status and text are disco-spec section 5's.
    replay.load(synthetic("POST", "/disco/job/new", 413, "Job packet too large"))
    with pytest.raises(ClientError, match=r"jobpack \(7 bytes\) is too large .*limit 1 GiB"):
        master.submit(b"jobpack")


def test_submit_error_quotes_the_reason_with_a_hint(replay: ReplayServer, master: Master) -> None:
    replay.load("http-api/job-new-malformed.jsonl#3")  # version 3
    with pytest.raises(ClientError, match=r"unsupported version '3'.*version 2 only"):
        master.submit(b"\0" * 3343)


# --------------------------------------------------------------------------
# Network failures: refused, stalled, dropped
# --------------------------------------------------------------------------


def test_retries_back_off_and_say_how_often_they_tried() -> None:
    retries: list[tuple[int, float]] = []
    with closing_server(answer_requests=False) as url:
        master = Master(
            url, retries=2, backoff=0.01, on_retry=lambda n, d, _: retries.append((n, d))
        )
        with pytest.raises(ClientError) as err:
            master.version()
    assert str(err.value) == (
        f"the Disco master at {url} did not complete GET {url}/disco/version "
        "(connection closed without an answer; tried 3 times): "
        "is the master's URL right (master=, --master, DISCO_MASTER, or the settings file)? "
        "is it running? "
        f"`curl {url}/disco/version` should print its version"
    )
    assert retries == [(1, 0.01), (2, 0.02)]
    assert err.value.__cause__ is not None  # the requests exception, kept


@pytest.mark.parametrize("where", ["refused", "no such host"])
def test_an_unreachable_master_fails_at_once(where: str) -> None:
    """No retries, no backoff: a wrong host or a master that is not running stays so."""
    retries: list[int] = []
    with closed_port() as port:
        url = (
            f"http://127.0.0.1:{port}" if where == "refused" else "http://nonexistent.invalid:8989"
        )
        master = Master(url, on_retry=lambda n, d, _: retries.append(n))  # default: 5 retries
        with pytest.raises(ClientError) as err:
            master.version()
    reason = "connection refused" if where == "refused" else "host name not found"
    assert str(err.value) == (
        f"could not reach the Disco master at {url} ({reason}): "
        "is the master's URL right (master=, --master, DISCO_MASTER, or the settings file)? "
        "is it running? "
        f"`curl {url}/disco/version` should print its version"
    )
    assert retries == []


def test_unreachable_proxy_is_named() -> None:
    with closed_port() as port:
        proxy = f"http://127.0.0.1:{port}"
        master = Master("http://vm:8989", proxy=proxy, retries=0)
        with pytest.raises(ClientError) as err:
            master.version()
    assert str(err.value) == (
        f"could not reach the Disco master at {proxy} (connection refused): "
        f"is DISCO_PROXY right? try `curl {proxy}/disco/version`"
    )


class _ConnectTimesOutOnce(HTTPAdapter):
    """The first request's connection attempt times out; later ones are refused."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent += 1
        if self.sent == 1:
            raise requests.ConnectTimeout("connect timed out", request=request)
        return super().send(request, *args, **kwargs)


def test_submit_is_sent_again_only_when_it_never_left() -> None:
    attempts: list[int] = []
    adapter = _ConnectTimesOutOnce()
    with closed_port() as port, requests.Session() as session:
        session.mount("http://", adapter)
        master = Master(
            f"http://127.0.0.1:{port}",
            session=session,
            retries=3,
            backoff=0.01,
            on_retry=lambda n, d, _: attempts.append(n),
        )
        with pytest.raises(ClientError, match=r"\(connection refused; tried 2 times\)"):
            master.submit(b"jobpack")
    assert attempts == [1] and adapter.sent == 2  # the timeout is retried, the refusal is not


def test_stalled_master_times_out() -> None:
    with stalled_server() as url:
        master = Master(url, timeout=0.2, retries=1, backoff=0.01)
        start = time.monotonic()
        with pytest.raises(
            ClientError,
            match=rf"the Disco master at {url} did not answer "
            r"GET .*/disco/version \(no answer within 0.2s; tried 2 times\)",
        ):
            master.version()
    assert time.monotonic() - start < 5


def test_a_wait_with_a_timeout_ends_near_it_when_the_master_stalls() -> None:
    """run(timeout=2) against a master whose get_results never answers took 52 s (each of
    the retries waited out the whole request timeout, and each pause came on top): the
    wait's timeout bounds its requests and their retries too, and it says the job may run
    on, as a wait that timed out does."""
    with stalled_server() as url:
        master = Master(url, timeout=5, retries=5, backoff=0.5)
        start = time.monotonic()
        with pytest.raises(JobActive) as info:
            master.wait("j@1:2:3", poll_ms=500, timeout_s=1.0)
        took = time.monotonic() - start
    assert took < 3, took
    assert str(info.value).startswith(f"stopped waiting for job 'j@1:2:3' after {took:.0f}"[:45]), (
        str(info.value)
    )
    assert f"(timeout=1s): the master at {url} did not answer in that time;" in str(info.value)
    assert "DISCODSL_HTTP_TIMEOUT" not in str(info.value)  # the wait's timeout bounded it
    assert f"`discodsl --master {url} kill j@1:2:3`" in str(info.value)
    assert isinstance(info.value.__cause__, ClientError)


def test_a_run_with_a_timeout_ends_near_it_when_the_master_stalls_its_submission() -> None:
    # The submission was bounded by DISCODSL_HTTP_TIMEOUT alone: run(timeout=2) against a
    # master that never answered its POST took 30 s (probe CV F9).
    from tests import jobs

    with stalled_server() as url:
        start = time.monotonic()
        with pytest.raises(ClientError, match=r"within the run's timeout= \(2s\)") as info:
            jobs.wordcount.run(["raw://a"], mode="cluster", master=url, timeout=2)
        took = time.monotonic() - start
    assert took < 5, (took, str(info.value))
    said = str(info.value)  # it was not DISCODSL_HTTP_TIMEOUT's doing (probe CW F7, CX F3)
    assert "may have been submitted" in said and "DISCODSL_HTTP_TIMEOUT" not in said


def test_a_jobpack_asked_for_that_is_no_jobpack_is_a_bad_answer(replay: ReplayServer) -> None:
    # `discodsl jobdict` against a login page said the bytes were no jobpack, to build one
    # with `discodsl jobpack build` (probe CV F3).
    replay.load(synthetic("GET", "/disco/ctrl/parameters?name=j%401%3A2%3A3", 200, {"a": 1}))
    master = Master(MASTER, session=replay.session())
    with pytest.raises(BadAnswer, match=r"parameters answered .*expected a jobpack: is this a"):
        master.parameters("j@1:2:3")


def test_submit_is_not_retried_after_the_connection_drops(replay: ReplayServer) -> None:
    dropped = synthetic("POST", "/disco/job/new", None)
    replay.load(dropped, synthetic("POST", "/disco/job/new", 200, ["ok", "twice@1:2:3"]))
    master = Master(MASTER, session=replay.session(), retries=5, backoff=0.01)
    with pytest.raises(
        ClientError,
        match=r"connection closed without an answer.*may have "
        r"reached the Disco master, so it was not sent again.*`discodsl --master \S+ jobs`",
    ):
        master.submit(b"jobpack")
    assert [r.target for r in replay.received] == ["/disco/job/new"]  # sent once
    replay.exchanges.pop()  # the second answer is never asked for: that is the point


def test_idempotent_calls_are_retried_after_a_drop(
    replay: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    replay.load(synthetic("GET", "/disco/version", None), "endpoints#0")
    seen: list[ClientError] = []
    master = Master(
        MASTER,
        session=replay.session(),
        retries=1,
        backoff=0.01,
        on_retry=lambda n, d, e: seen.append(e),
    )
    assert master.version() == "0.5.4"
    assert len(seen) == 1 and "connection closed without an answer" in str(seen[0])
    # said as discodsl's, as its other notices are (probe EG S3)
    [said] = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
    assert said.startswith("discodsl: ") and said.endswith("; retrying in 0.01s (retry 1 of 1)")


def test_a_server_that_closes_without_answering_is_retried_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[ClientError] = []
    with closing_server(answer_requests=False) as url:
        master = Master(url, retries=1, backoff=0.01, on_retry=lambda n, d, e: seen.append(e))
        with pytest.raises(ClientError, match="connection closed without an answer; tried 2"):
            master.version()
    assert len(seen) == 1 and "connection closed without an answer" in str(seen[0])


# --------------------------------------------------------------------------
# Connections: the master (MochiWeb) closes each one after its answer
# --------------------------------------------------------------------------


def test_many_requests_to_a_server_that_closes_after_each_answer(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """No connection is reused, so none is found closed: no error, no retry."""
    retried: list[ClientError] = []
    with (
        closing_server(b'"0.5.4"') as url,
        Master(url, backoff=0.01, on_retry=lambda n, d, e: retried.append(e)) as master,
    ):
        assert [master.version() for _ in range(30)] == ["0.5.4"] * 30
    with (
        closing_server(b'["a:b"]') as url,
        DDFS(url, backoff=0.01, on_retry=lambda n, d, e: retried.append(e)) as ddfs,
    ):
        assert [ddfs.list_tags() for _ in range(30)] == [["a:b"]] * 30
    assert retried == []
    assert capsys.readouterr().err == "" and caplog.records == []


def test_a_cluster_job_reports_no_dropped_connection(
    cluster_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The test master closes every connection after its answer, as the real one does."""
    monkeypatch.setenv("DISCODSL_RETRIES", "5")  # a reused connection would show as a retry
    results = jobs.wordcount.run(inputs=["raw://a b c", "raw://c a c"], progress=True)
    assert dict(results) == {"a": 2, "b": 1, "c": 3}
    err = capsys.readouterr().err + caplog.text
    assert "connection closed" not in err and "retrying" not in err


# --------------------------------------------------------------------------
# Typed errors: what happened is the class, the facts are attributes
# --------------------------------------------------------------------------


def test_an_unreachable_master_is_unreachable_with_its_url() -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(Unreachable) as err:
            Master(url, retries=0).version()
    assert (err.value.url, err.value.who) == (url, "the Disco master")
    assert isinstance(err.value, RequestFailed)


def test_a_dropped_connection_is_request_failed_not_unreachable(replay: ReplayServer) -> None:
    replay.load(synthetic("GET", "/disco/version", None))
    with pytest.raises(RequestFailed) as err:
        Master(MASTER, session=replay.session(), retries=0).version()
    assert not isinstance(err.value, Unreachable) and err.value.url == MASTER


@replays("endpoints#11", "endpoints#19", "endpoints#25")
def test_job_errors_carry_the_job_name(master: Master) -> None:
    with pytest.raises(NoSuchJob) as missing:
        master.jobinfo(UNKNOWN)
    assert missing.value.jobname == UNKNOWN
    with pytest.raises(NoSuchJob) as unknown:
        master.wait(UNKNOWN, poll_ms=1000)
    assert unknown.value.jobname == UNKNOWN
    with pytest.raises(JobActive) as active:
        master.wait(ACTIVE, poll_ms=1000, timeout_s=0)
    assert active.value.jobname == ACTIVE


def test_an_answer_of_the_wrong_shape_says_how_to_tell_a_disco_master() -> None:
    from discodsl.answers import shape_error

    message = str(shape_error("POST /disco/job/new", '["ok", jobname]', b"<html>hello</html>"))
    assert message == (
        "POST /disco/job/new answered '<html>hello</html>', expected [\"ok\", jobname]: is this "
        'a Disco 0.5.4 master? its /disco/version answers with its version, "0.5.4"'
    )


def test_status_errors_carry_endpoint_and_status(replay: ReplayServer, master: Master) -> None:
    replay.load("endpoints#22", "http-api/job-new-malformed.jsonl#3")
    with pytest.raises(BadAnswer) as failed:
        master.request("POST", "/disco/ctrl/get_results", data=b"{not json")
    assert failed.value.status == 500
    assert failed.value.endpoint == "POST http://vm:8989/disco/ctrl/get_results"
    with pytest.raises(JobpackRefused) as refused:
        master.submit(b"\0" * 3343)
    assert "unsupported version '3'" in refused.value.reason


def test_tag_errors_carry_the_tag(replay: ReplayServer, ddfs: DDFS) -> None:
    replay.load(
        synthetic("GET", "/ddfs/tag/gone", 404, "Tag not found."),
        synthetic("GET", "/ddfs/tag/a", 200, {"urls": [["tag://gone"]]}),
        synthetic("GET", "/ddfs/tag/gone", 404, "Tag not found."),
        synthetic("GET", "/ddfs/tag/secret", 401, "unauthorized"),
    )
    with pytest.raises(TagNotFound) as gone:
        ddfs.get_tag("gone")
    assert gone.value.tag == "gone"
    with pytest.raises(TagNotFound, match="tag 'a' lists tag 'gone'") as inner:
        ddfs.blobs("a")
    assert inner.value.tag == "gone"
    with pytest.raises(Unauthorized) as secret:
        ddfs.get_tag("secret")
    assert secret.value.status == 401


def test_no_module_imports_private_names_of_another() -> None:
    """One transport, public names only: ddfs.py and client.py use http.py's public API."""
    root = Path(discodsl.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("discodsl"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


# --------------------------------------------------------------------------
# URLs and settings
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "http"),
    [
        ("disco://vm/ddfs/vol0/blob/ec/b$1", "http://vm:8989/ddfs/vol0/blob/ec/b$1"),
        (
            "dir://vm/disco/vm/ba/j/.disco/map-0.results",
            "http://vm:8989/disco/vm/ba/j/.disco/map-0.results",
        ),
        ("disco://vm:9000/x", "http://vm:9000/x"),
        ("http://h:1/x", "http://h:1/x"),
    ],
)
def test_disco_url_to_http(url: str, http: str) -> None:
    assert disco_url_to_http(url, 8989) == http


@pytest.mark.parametrize("url", ["tag://t", "raw://x", "/local/path", "disco:///nohost"])
def test_disco_url_to_http_refuses(url: str) -> None:
    with pytest.raises(ClientError):
        disco_url_to_http(url, 8989)


def test_proxy_rewrites_cluster_urls_only() -> None:
    proxy = "http://gateway:8999"
    assert proxy_url("http://vm:8989", proxy, to_master=True) == "http://gateway:8999"
    assert proxy_url("http://vm:8989/disco/vm/ba/j/x", proxy) == (
        "http://gateway:8999/proxy/vm/GET/disco/vm/ba/j/x"
    )
    assert proxy_url("http://vm:8990/ddfs/b$1", proxy, method="PUT") == (
        "http://gateway:8999/proxy/vm/PUT/ddfs/b$1"
    )
    assert proxy_url("http://data.example.com/x", proxy) == "http://data.example.com/x"
    assert proxy_url("https://storage/data.txt", proxy) == "https://storage/data.txt"  # http only
    assert proxy_url("http://vm:8989/x", "") == "http://vm:8989/x"


def test_master_from_settings_uses_the_proxy(replay: ReplayServer) -> None:
    settings = load_settings(DISCO_MASTER="vm:8989", DISCO_PROXY=replay.url, DISCODSL_RETRIES=0)
    replay.load("endpoints#0")
    with Master.from_settings(settings) as master:
        assert master.url == "http://vm:8989"
        assert master.version() == "0.5.4"  # asked the proxy for /disco/version


# --------------------------------------------------------------------------
# Every recorded exchange is replayed by some test
# --------------------------------------------------------------------------

COVERED_FILES = ("endpoints", "settings", "ddfs")

#: Exchanges of COVERED_FILES no test replays, with the reason. None at present.
NOT_REPLAYED: dict[str, str] = {}


def test_every_recorded_exchange_is_replayed(reference: Path) -> None:
    declared = {ref for case in CASES.values() for ref in case.refs}
    for item in globals().values():
        declared.update(getattr(item, "replays", ()))
    recorded = {
        f"{name}#{i}" for name in COVERED_FILES for i in range(len(read_recording(reference, name)))
    }
    missing = sorted(recorded - declared - set(NOT_REPLAYED), key=_ref_order)
    assert not missing, f"recorded exchanges no test replays: {missing}"
    assert not set(NOT_REPLAYED) & declared, "NOT_REPLAYED lists exchanges that are replayed"
    assert set(NOT_REPLAYED) <= recorded, "NOT_REPLAYED lists exchanges that do not exist"


def _ref_order(ref: str) -> tuple[str, int]:
    name, _, index = ref.rpartition("#")
    return name, int(index)


@pytest.fixture
def not_a_master(tmp_path: Path) -> Iterator[str]:
    """A plain static file server on 127.0.0.1 (404 to GET, 501 to POST), as at a wrong port."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = LoopbackHTTPServer(handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_server_that_is_no_disco_master_is_named_so(not_a_master: str) -> None:
    with Master(not_a_master, retries=0, timeout=5) as master:
        with pytest.raises(BadAnswer, match=r"(?s)joblist: not found \(404 .*server is not one"):
            master.joblist()
        with pytest.raises(BadAnswer, match=r"(?s)job/new: unexpected answer 501 .*is not one"):
            master.submit(b"jobpack")
        # A name to look up: a Disco master answers "Not found." for a missing one, this
        # server an HTML page, for any; the server is named, not the job.
        with pytest.raises(BadAnswer, match=r"(?s)jobinfo: not found \(404 .*server is not one"):
            master.jobinfo("nosuchjob@1:2:3")
    with DDFS(not_a_master, retries=0, timeout=5) as ddfs:
        with pytest.raises(BadAnswer, match=r"(?s)/ddfs/tags.*server is not one"):
            ddfs.list_tags()
        with pytest.raises(BadAnswer, match=r"(?s)/ddfs/tag/data:x.*server is not one"):
            ddfs.get_tag("data:x")
