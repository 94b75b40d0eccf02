"""The test master answers the recorded requests as the real Disco 0.5.4 master did,
and words a job's events as it did.

Recorded exchanges whose answers do not depend on the recording's jobs are
sent, in order, to a fresh :class:`~tests.disco_master.DiscoMaster`; status,
reason, Content-Type, Server and body must match (stamps, dates, the host
``vm`` and the put port normalised), and a dropped connection must be dropped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from discodsl import Job, JobDead, builder
from discodsl.client import Master
from tests import cluster_jobs, jobs
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


def recorded_events(reference: Path, scenario: str) -> list[tuple[str, str]]:
    for record in read_recording(reference, f"{scenario}/http.jsonl"):
        if record["request"]["path"].startswith("/disco/ctrl/rawevents"):
            lines = record["response"]["body"]["text"].splitlines()
            return [(host, message) for _, host, message in map(json.loads, lines)]
    raise AssertionError(f"no rawevents in {scenario}")


def normalised_events(events: list[tuple[str, str]], stages: dict[str, str]) -> list[str]:
    """Host and message with names, times and worker texts made comparable."""
    out = []
    for host, message in events:
        text = re.sub(r"\d+:\d\d:\d\d\.\d+", "DURATION", message)
        text = re.sub(r'Created job ".*"', 'Created job "JOB"', text)
        text = re.sub(r"(WARNING: \[\S+\]) .*", r"\1 TEXT", text, flags=re.DOTALL)
        text = re.sub(r"Sleeping \d+ seconds", "Sleeping N seconds", text)
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


def test_a_failing_jobs_events_are_worded_as_recorded(reference: Path, tmp_path: Path) -> None:
    recorded = normalised_events(recorded_events(reference, "error-error"), {})
    with DiscoMaster(tmp_path) as master:
        master.jobs.settings["max_failure_rate"] = 2  # as in the recording
        ours = run_job(master, cluster_jobs.exploding, ["raw://one"])
    assert normalised_events(ours, {"explode": "map"}) == recorded
