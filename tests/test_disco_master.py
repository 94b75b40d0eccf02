"""The test master answers the recorded requests as the real Disco 0.5.4 master did.

Recorded exchanges whose answers do not depend on the recording's jobs are
sent, in order, to a fresh :class:`~tests.disco_master.DiscoMaster`; status,
reason, Content-Type, Server and body must match (stamps, dates, the host
``vm`` and the put port normalised), and a dropped connection must be dropped.
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.disco_master import DiscoMaster
from tests.http_replay import Exchange, exchange

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
