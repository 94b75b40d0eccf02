"""The test master answers the recorded requests as the real Disco 0.5.4 master did,
and words a job's events as it did.

Recorded exchanges whose answers do not depend on the recording's jobs are
sent, in order, to a fresh :class:`~tests.disco_master.DiscoMaster`; status,
reason, Content-Type, Server and body must match (stamps, dates, the host
``vm`` and the put port normalised), and a dropped connection must be dropped.
Failing jobs are run by the recordings' own worker, so their events, retry
pauses and failure limits are checked against error-error, error-fatal and
the other recordings of retried tasks.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from discodsl import Job, JobDead, builder, job, jobpack, map
from discodsl.client import Master
from discodsl.jobhome import build_jobhome
from tests import disco_state, jobs
from tests.disco_master import DiscoMaster
from tests.http_replay import Exchange, exchange, read_recording

ENDPOINTS = [0, 1, 2, 3, 4, 5, 7, 11, 12, 15, 16, 19, 21, 22, 29, 38, 39, 40, 41, 42, 43, 44]
SETTINGS = range(10)
DDFS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17]

_NORMALISE = [
    (re.compile(rb"\$[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"), b"$STAMP"),
    (re.compile(rb"/ddfs/vol0/(blob|tag)/[0-9a-f]{2}/"), rb"/ddfs/vol0/\1/HH/"),
    (re.compile(rb"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"), b"DATE"),
    (re.compile(rb"http://(vm|localhost):\d+/"), b"http://HOST:PORT/"),
    (re.compile(rb"disco://(vm|localhost)/"), b"disco://HOST/"),
    (re.compile(rb'"(vm|localhost)"'), b'"HOST"'),
]


def normalised(body: bytes) -> bytes:
    for pattern, replacement in _NORMALISE:
        body = pattern.sub(replacement, body)
    return body


def check(master: DiscoMaster, ex: Exchange) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    body = ex.body if ex.body is not None else (b"x" * ex.body_len if ex.body_len else None)
    target = quote(ex.path, safe="/:@$") + ("?" + urlencode(ex.query) if ex.query else "")
    conn.request(ex.method, target, body=body)
    try:
        response = conn.getresponse()
    except http.client.RemoteDisconnected:
        assert ex.status is None, f"{ex.ref} ({ex.note}): connection dropped"
        return
    got = response.read()
    recorded = {k.lower(): v for k, v in ex.headers}
    assert ex.status is not None, f"{ex.ref} ({ex.note}): the master dropped the connection"
    assert (response.status, response.reason) == (ex.status, ex.reason), ex.ref
    assert response.getheader("Content-Type") == recorded.get("content-type"), ex.ref
    assert response.getheader("Server") == recorded["server"], ex.ref
    assert normalised(got) == normalised(ex.answer), f"{ex.ref} ({ex.note})"


@pytest.mark.parametrize(
    ("recording", "indexes"),
    [("endpoints", ENDPOINTS), ("settings", SETTINGS), ("ddfs", DDFS)],
)
def test_recorded_answers(
    reference: Path, tmp_path: Path, recording: str, indexes: list[int]
) -> None:
    with DiscoMaster(tmp_path) as master:
        for index in indexes:
            check(master, exchange(reference, f"{recording}#{index}"))


def recorded_rawevents(reference: Path, scenario: str, which: int = 0) -> list[list[str]]:
    """[time, host, message] of the scenario's first rawevents answer (``which=-1``: its last)."""
    answers = [
        record["response"]["body"]["text"].splitlines()
        for record in read_recording(reference, f"{scenario}/http.jsonl")
        if record["request"]["path"].startswith("/disco/ctrl/rawevents")
    ]
    assert answers, f"no rawevents in {scenario}"
    return [json.loads(line) for line in answers[which]]


def recorded_events(reference: Path, scenario: str, which: int = 0) -> list[tuple[str, str]]:
    return [(host, message) for _, host, message in recorded_rawevents(reference, scenario, which)]


def normalised_events(events: list[tuple[str, str]], stages: dict[str, str]) -> list[str]:
    """Host and message with names, times and worker texts made comparable."""
    out = []
    for host, message in events:
        text = re.sub(r"\d+:\d\d:\d\d\.\d+", "DURATION", message)
        text = re.sub(r'Created job ".*"', 'Created job "JOB"', text)
        text = re.sub(r"(WARNING: \[\S+\]) .*", r"\1 TEXT", text, flags=re.DOTALL)
        for ours, theirs in stages.items():
            text = re.sub(rf"\b{ours}\b", theirs, text)
        text = text.replace("vm", "HOST").replace("localhost", "HOST")
        out.append(f"{host.replace('vm', 'HOST').replace('localhost', 'HOST')} {text}")
    return out


def run_job(master: DiscoMaster, job: Job, inputs: list[str]) -> list[tuple[str, str]]:
    with Master(master.url, retries=0) as client:
        name = client.submit(builder.build_jobpack(job, job.options, [[u] for u in inputs]))
        with contextlib.suppress(JobDead):
            client.wait(name, poll_ms=500, timeout_s=60)
        return [(host, message) for _, host, message in client.rawevents(name)[0]]


def test_a_map_reduce_jobs_events_are_worded_as_recorded(reference: Path, tmp_path: Path) -> None:
    recorded = normalised_events(recorded_events(reference, "protocol-map-reduce"), {})
    job = jobs.wordcount.with_options(partitions=2)
    with DiscoMaster(tmp_path) as master:
        ours = run_job(master, job, ["raw://alpha beta", "raw://delta epsilon", "raw://zeta eta"])
    ours_normal = normalised_events(ours, {"words": "map", "total": "reduce"})
    assert sorted(ours_normal) == sorted(recorded)
    assert ours_normal[:3] == recorded[:3] and ours_normal[-2:] == recorded[-2:]
    assert ours_normal.index("master Stage map finished in DURATION") < ours_normal.index(
        "master Stage reduce scheduled with 2 tasks"
    )


@map
def announce(line: str) -> Iterator[tuple[str, int]]:
    print(line)  # a MSG event naming the task: which input it read
    yield line, 1


@job(partitions=None)
def announced() -> list[Any]:
    return [announce]


@pytest.mark.parametrize(
    "scenario", ["protocol-map-reduce", "concurrent-stage", "groupings-all-node-nodelabel"]
)
def test_first_stage_tasks_take_the_inputs_as_recorded(
    reference: Path, tmp_path: Path, scenario: str
) -> None:
    """The real master's first stage gave task 0 the last input
    (job_coordinator:preprocess_inputs lists them back to front): each recorded first-stage
    task's INPUT reply names its input. The test master's tasks take the same ones."""
    transcript = json.loads((reference / scenario / "transcript.json").read_text())
    inputs = [replicas[0] for _, _, replicas in transcript["inputs"]]
    first_stage = transcript["pipeline"][0][0]
    recorded = {
        worker["taskid"]: next(url for url in inputs if url in frame["raw"])
        for worker in transcript["workers"]
        if worker["stage"] == first_stage
        for frame in worker["frames"]
        if frame["dir"] == "master->worker" and frame["raw"].startswith("INPUT ")
    }
    with DiscoMaster(tmp_path) as master:
        events = run_job(master, announced, inputs)
    said = {}
    for _, message in events:
        if match := re.fullmatch(r"MSG: \[announce:(\d+)\] (.*)\n", message, re.DOTALL):
            said[int(match[1])] = "raw://" + match[2]  # raw:// data is read verbatim
    assert len(recorded) == len(inputs) > 1
    assert said == recorded


def saved_pack(saved: bool) -> bytes:
    """A one-input wordcount's jobpack, with ``save_results`` as given."""
    job = jobs.wordcount.with_options(save_results=saved)
    return builder.build_jobpack(job, job.options, [["raw://a"]])


@pytest.mark.parametrize("saved", [False, True])
def test_the_event_file_holds_what_the_masters_buffer_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved: bool
) -> None:
    """job_event.erl buffers a job's events, writing them to the file rawevents serves
    every 2 s and when the job ends, which a save_results job's end does not announce:
    such a job is ready with its last events (here: all of them) still unwritten. The
    jobevents answer is the buffer's own, complete at once."""
    monkeypatch.setattr(disco_state, "EVENT_BUFFER_S", 3600.0)
    pack = saved_pack(saved)
    with DiscoMaster(tmp_path) as master, Master(master.url, retries=0) as client:
        name = client.submit(pack)
        client.wait(name, poll_ms=100, timeout_s=30)
        written = [message for _, _, message in client.rawevents(name)[0]]
        latest = [message for _, _, message in client.events(name, num=1)]
    assert latest[0].startswith("READY: Job done in ")
    if saved:
        assert written == []
    else:
        assert written[0] == "New job initialized!" and written[-1] == latest[0]


def test_events_waiting_past_the_buffers_size_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disco_state, "EVENT_BUFFER_S", 3600.0)
    with DiscoMaster(tmp_path) as master:
        name = master.jobs.submit(saved_pack(True))
        job = master.jobs.jobs[name]
        deadline = time.monotonic() + 30
        while job.status == "active" and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = len(job.events)
        assert job.rawevents() == b""
        for n in range(disco_state.EVENT_BUFFER_SIZE - waiting):
            master.jobs.event(job, "master", f"event {n}")
        assert job.rawevents().count(b"\n") == len(job.events) - disco_state.EVENT_BUFFER_SIZE
        master.jobs.event(job, "master", "one more")
        assert job.rawevents().count(b"\n") == len(job.events)


def jobevents(master: DiscoMaster, name: str, **query: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    try:
        conn.request("GET", "/disco/ctrl/jobevents?" + urlencode({"name": name, **query}))
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def test_a_jobevents_filter_greps_the_event_file_as_the_real_master_does(tmp_path: Path) -> None:
    """event_server:grep_log, as a real 0.5.4 master answered: the query's spaces and
    most punctuation dropped ("Job done" found nothing), grep -i over whole lines (host
    names too), the first ``num`` matches, newest first; no match: an empty body."""
    job = jobs.wordcount.with_options(partitions=2)
    with DiscoMaster(tmp_path) as master:
        events = run_job(master, job, ["raw://a b", "raw://c d", "raw://e"])
        name = next(iter(master.jobs.jobs))
        first_two = jobevents(master, name, filter="ASSIGNED", num="2")
        assert jobevents(master, name, filter="Job done") == b""
        assert jobevents(master, name, filter="jobdone") == b""
        by_host = json.loads(jobevents(master, name, filter="localhost", num="1000"))
        unfiltered = jobevents(master, name, filter="")
    assigned = [message for _, message in events if "assigned" in message]
    assert [m for _, _, m in json.loads(first_two)] == assigned[:2][::-1]
    assert b"\n" not in first_two  # the file's lines, joined by commas
    named = [(host, message) for host, message in events if "localhost" in host + message]
    assert [(host, message) for _, host, message in by_host] == named[::-1]  # host names too
    assert unfiltered.startswith(b"[") and unfiltered.count(b"\n,") == 9  # num=10, unfiltered


@pytest.mark.parametrize(
    ("count", "kept"),
    [(1, 1), (200, 200), (201, 100), (220, 119), (301, 200), (302, 100), (403, 100)],
)
def test_jobevents_answers_from_the_newest_events_kept_in_memory(
    tmp_path: Path, count: int, kept: int
) -> None:
    """job_event.erl keeps up to 200 events for jobevents, cut to the newest 100 past that
    (a real 0.5.4 master answered num=1000 with 119 of a job's 220 events)."""
    with DiscoMaster(tmp_path) as master:
        name = master.jobs.submit(saved_pack(False))
        master.jobs.results([name], 30_000)  # until it is ready
        job = master.jobs.jobs[name]
        job.events.clear()
        job.events.extend((f"{n}", "master", f"event {n}") for n in range(count))
        answer = json.loads(jobevents(master, name, num="1000"))
    assert [message for _, _, message in answer] == [f"event {n}" for n in range(count)][
        : -kept - 1 : -1
    ]


# -- failures and retries, as error-error, error-fatal and the other recordings show ------


def recording_worker_job(reference: Path, mode: str, tmp_path: Path) -> bytes:
    """error-error's one-task job run by the recordings' own worker in ``REC_MODE`` ``mode``.

    The worker is ``worker.py`` from ``jobpack-map-reduce.bin`` (the recorder's,
    no discodsl code), run by this interpreter: it sends the very frames the
    real master saw (``recording worker: deliberate ERROR`` ...).
    """
    base = jobpack.decode((reference / "jobpack-map-reduce.bin").read_bytes())
    script = zipfile.ZipFile(io.BytesIO(base.jobhome)).read("worker.py")
    script = script.replace(b"#!/usr/bin/python3", f"#!{sys.executable}".encode(), 1)
    recorded = json.loads((reference / "error-error" / "transcript.json").read_text())
    jobdict = {
        **base.jobdict,
        "pipeline": recorded["pipeline"],
        "inputs": recorded["inputs"],
        "prefix": "rec_error_error",
        "worker": "worker",
    }
    jobenvs = {"REC_MODE": mode, "REC_DIR": str(tmp_path / "recorder")}
    jobhome = build_jobhome({"worker": script})
    return jobpack.encode(jobpack.JobPack(jobdict, jobenvs, jobhome))


def run_pack(master: DiscoMaster, data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Submit a jobpack, wait until the job is not active; its name and (host, message) events."""
    with Master(master.url, retries=0) as client:
        name = client.submit(data)
        with contextlib.suppress(JobDead):
            client.wait(name, poll_ms=100, timeout_s=60)
        return name, [(host, message) for _, host, message in client.rawevents(name)[0]]


def post(master: DiscoMaster, op: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    try:
        conn.request("POST", f"/disco/ctrl/{op}", body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def recorded_jobinfo(reference: Path, scenario: str) -> dict[str, Any]:
    for record in read_recording(reference, f"{scenario}/http.jsonl"):
        if record["request"]["path"].startswith("/disco/ctrl/jobinfo"):
            return dict(record["response"]["body"]["json"])
    raise AssertionError(f"no jobinfo in {scenario}")


_RETRY = re.compile(r'Task map:0 failed on "vm", (\d+)\w* failures so far')
_RETRIED_SCENARIOS = [
    "error-error",
    "exit-without-done",
    "non-frame-output",
    "frame-length-overstated",
    "input-err-retry",
    "output-absolute-path",
]


@pytest.mark.parametrize("scenario", _RETRIED_SCENARIOS)
def test_retry_events_and_pauses_are_the_recorded_ones(reference: Path, scenario: str) -> None:
    lines = recorded_rawevents(reference, scenario, which=-1)
    retries = [(i, int(m.group(1))) for i, (_, _, e) in enumerate(lines) if (m := _RETRY.match(e))]
    assert retries, scenario
    for index, failures in retries:
        pause = disco_state.retry_pause(failures)
        assert disco_state.retry_event("map", 0, "vm", failures, pause) == lines[index][2]
        if index + 1 < len(lines) and lines[index + 1][2] == "map:0 assigned to vm":
            waited = _seconds(lines[index + 1][0]) - _seconds(lines[index][0])
            assert int(pause) <= waited <= pause + 2, (scenario, failures, waited)


def _seconds(stamp: str) -> int:
    return int(time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S")))


def test_the_retry_schedule_is_the_real_masters() -> None:
    """job_coordinator:retry_task/4: min(n x 1 s, 60 s) + random:uniform(30 s) in ms, the
    random part drawn by a fresh, unseeded Erlang process: always 13308 ms."""
    assert disco_state.RANDOM_PAUSE == 13.308
    pauses = [disco_state.retry_pause(n) for n in (1, 2, 3, 59, 60, 61, 100)]
    assert pauses == pytest.approx([14.308, 15.308, 16.308, 72.308, 73.308, 73.308, 73.308])
    assert disco_state.retry_event("s", 3, "h", 11, 24.308) == (
        'Task s:3 failed on "h", 11th failures so far. Sleeping 24 seconds before retrying.'
    )


def test_an_erroring_task_is_retried_on_the_recorded_schedule_until_the_limit(
    reference: Path, tmp_path: Path
) -> None:
    clock = disco_state.Clock(scale=disco_state.FAST)
    with DiscoMaster(tmp_path, clock=clock) as master:
        assert post(master, "save_settings", b'{"max_failure_rate": "2"}') == (
            200,
            b'"Settings saved"',
        )  # as the recording's operator set it
        name, ours = run_pack(master, recording_worker_job(reference, "error", tmp_path))
        info = master.jobs.jobs[name].jobinfo()
    recorded = recorded_events(reference, "error-error")
    assert normalised_events(ours, {}) == normalised_events(recorded, {})
    assert [message for _, message in ours if "Sleeping" in message] == [
        'Task map:0 failed on "localhost", 1th failures so far. Sleeping 14 seconds before '
        "retrying.",
        'Task map:0 failed on "localhost", 2th failures so far. Sleeping 15 seconds before '
        "retrying.",
    ]
    assert clock.pauses == pytest.approx([14.308, 15.308])
    expected = recorded_jobinfo(reference, "error-error")
    assert (info["active"], info["pipeline"]) == (expected["active"], expected["pipeline"])


class _SettingClock(disco_state.Clock):
    """A fast clock that does ``action`` when the first pause starts."""

    def __init__(self, action: Callable[[], object]):
        super().__init__(scale=disco_state.FAST)
        self.action = action

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        if not self.pauses:
            self.action()
        super().sleep(seconds, stop)


@pytest.mark.parametrize("when", ["before the job", "during its first pause"])
def test_max_failure_rate_saved_over_http_kills_the_job_after_that_many_retries(
    reference: Path, tmp_path: Path, when: str
) -> None:
    """As the real master, the limit is read at each failure (application:get_env)."""
    master: DiscoMaster
    clock = _SettingClock(lambda: post(master, "save_settings", b'{"max_failure_rate": "1"}'))
    with DiscoMaster(tmp_path, clock=clock) as master:
        assert master.jobs.settings["max_failure_rate"] == 100  # the real default
        if when == "before the job":
            post(master, "save_settings", b'{"max_failure_rate": "1"}')
        name, ours = run_pack(master, recording_worker_job(reference, "error", tmp_path))
        status = master.jobs.jobs[name].status
    assert status == "dead" and clock.pauses == pytest.approx([14.308])
    assert [message for _, message in ours[-4:]] == [
        "map:0 assigned to localhost",
        "WARNING: [map:0] recording worker: deliberate ERROR",
        "ERROR: [map:0] Task map:0 failed 2 times. At most 1 failures are allowed.",
        "WARN: Job killed",
    ]
    recorded = recorded_events(reference, "frame-length-overstated")  # limit 1 there too
    assert ours[-2:] == recorded[-2:]


def test_fatal_kills_the_job_at_once_without_a_pause(reference: Path, tmp_path: Path) -> None:
    clock = disco_state.Clock(scale=disco_state.FAST)
    with DiscoMaster(tmp_path, clock=clock) as master:
        name, ours = run_pack(master, recording_worker_job(reference, "fatal", tmp_path))
        info = master.jobs.jobs[name].jobinfo()
    recorded = recorded_events(reference, "error-fatal")
    assert normalised_events(ours, {}) == normalised_events(recorded, {})
    assert ours[-2:] == recorded[-2:]  # the FATAL text, then "WARN: Job killed"
    assert clock.pauses == []
    expected = recorded_jobinfo(reference, "error-fatal")
    assert (info["active"], info["pipeline"]) == (expected["active"], expected["pipeline"])


def test_kill_job_during_a_retry_pause_ends_the_job_at_once(
    reference: Path, tmp_path: Path
) -> None:
    clock = disco_state.Clock(scale=1000.0)  # a pause of four hours: only a kill ends it
    with DiscoMaster(tmp_path, clock=clock) as master, Master(master.url, retries=0) as client:
        name = client.submit(recording_worker_job(reference, "error", tmp_path))
        job = master.jobs.jobs[name]
        deadline = time.monotonic() + 30
        while not clock.pauses:
            assert time.monotonic() < deadline, "the task never paused"
            time.sleep(0.02)
        client.kill(name)
        [thread] = master.jobs.threads
        thread.join(timeout=10)
        assert not thread.is_alive(), "the job still waits out its pause"
        assert client.results([name], timeout_ms=0)[name] == ("dead", [])
        # jobevents: the log has them up to 2 s later (a kill does not call end_job)
        events = [message for _, _, message in client.events(name, num=2)][::-1]
    assert clock.pauses == pytest.approx([14.308]) and job.status == "dead"
    assert events == [
        'Task map:0 failed on "localhost", 1th failures so far. Sleeping 14 seconds before '
        "retrying.",
        "WARN: Job killed",  # kill_job's own event, as input-err-retry recorded it
    ]
    after_kill = recorded_events(reference, "input-err-retry", which=-1)
    assert after_kill[-1] == ("master", "WARN: Job killed")


def test_the_suites_master_pauses_a_thousandth_of_real_time(
    reference: Path, tmp_path: Path, disco_master: DiscoMaster
) -> None:
    """The fixture's master (limit 1) runs the real schedule, 1000 times faster."""
    name, _ = run_pack(disco_master, recording_worker_job(reference, "error", tmp_path))
    clock = disco_master.jobs.clock
    assert disco_master.jobs.jobs[name].status == "dead"
    assert clock.pauses == pytest.approx([14.308])
    assert clock.scale == disco_state.FAST and clock.waited < 0.02
    assert DiscoMaster(tmp_path / "default").jobs.clock.scale == disco_state.FAST


def test_save_settings_drops_the_connection_only_where_the_real_master_crashes(
    tmp_path: Path,
) -> None:
    """disco_web:update_setting/3 runs list_to_integer(binary_to_list(V)) on known settings
    only; an unknown one is logged and skipped, whatever its value."""
    with DiscoMaster(tmp_path) as master:
        assert post(master, "save_settings", b'{"colour": 7, "max_failure_rate": "+5"}') == (
            200,
            b'"Settings saved"',
        )
        assert master.jobs.settings["max_failure_rate"] == 5
        with pytest.raises(http.client.RemoteDisconnected):
            post(master, "save_settings", b'{"max_failure_rate": "five"}')
        assert master.jobs.settings["max_failure_rate"] == 5


def test_blacklists_hold_the_config_tables_hosts(tmp_path: Path) -> None:
    """disco_web blacklist, whitelist, gc_blacklist, gc_whitelist: "" whatever the host;
    disco_config:make_blacklist keeps only hosts of the config table."""
    with DiscoMaster(tmp_path) as master, Master(master.url, retries=0) as client:
        for op in ("blacklist", "gc_blacklist"):
            assert post(master, op, b'"localhost"') == (200, b'""')
            assert post(master, op, b'"nosuchhost"') == (200, b'""')
        assert json.loads(client.request("GET", "/disco/ctrl/get_blacklist")) == ["localhost"]
        assert json.loads(client.request("GET", "/disco/ctrl/get_gc_blacklist")) == ["localhost"]
        assert client.nodeinfo()["localhost"]["blacklisted"] is True
        assert post(master, "whitelist", b'"localhost"') == (200, b'""')
        assert json.loads(client.request("GET", "/disco/ctrl/get_blacklist")) == []
        assert client.nodeinfo()["localhost"]["blacklisted"] is False
        assert post(master, "blacklist", b"7") == (400, b"\"string expected, '7' received\"")


def test_events_keep_what_a_real_master_keeps_of_them() -> None:
    """disco:format cuts an event past 8182 bytes and adds "...": measured on a real 0.5.4
    master, "MSG: [probe:5] " with 8167 bytes of text came whole, with 8168 cut."""
    head = "MSG: [probe:5] "
    whole = head + "a" * 8166 + "\n"
    assert disco_state.formatted(whole) == whole
    cut = head + "a" * 8167 + "\n"
    assert disco_state.formatted(cut) == head + "a" * 8167 + "..."
    assert len(disco_state.formatted(head + "b" * 20_000)) == 8185
