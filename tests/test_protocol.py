"""Tests of the worker protocol (frames, messages, replies, sides): frames, legal order, both
ends, Local vs Remote errors, and the 0.5.4 recordings."""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import discodsl
from discodsl.worker import frames, messages, replies, runtime, sides
from discodsl.worker.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from discodsl.worker.frames import MAX_PAYLOAD, Frame, FrameDecoder, encode_frame
from discodsl.worker.messages import (
    REQUESTS,
    Done,
    Error,
    Fatal,
    Input,
    InputErr,
    Msg,
    Output,
    Request,
    Task,
    Worker,
    request_from_frame,
)
from discodsl.worker.replies import Fail, InputEntry, InputReply, Ok, Reply, Retry, TaskInfo
from discodsl.worker.sides import REPLIES_OWED, TRANSITIONS, MasterSide, State, WorkerSide
from tests.protocol_helpers import ConnectionPair

HINT = "NAME SP LEN SP JSON"


def raw_frame(name: str, body: str) -> bytes:
    """A frame of ``body`` as given (valid JSON or not), with LEN counted for us."""
    data = body.encode()
    return b"%s %d %s\n" % (name.encode(), len(data), data)


TASK_PAYLOAD: dict[str, Any] = {
    "taskid": 1,
    "master": "http://vm:8989",
    "disco_port": 8989,
    "put_port": 8990,
    "ddfs_data": "/var/lib/disco/node01/ddfs",
    "disco_data": "/var/lib/disco/node01/data",
    "stage": "map",
    "grouping": "split",
    "group": [0, "delta%0Aepsilon"],
    "jobfile": "/var/lib/disco/node01/data/vm/ba/job@703:c7127:40816/jobfile",
    "jobname": "job@703:c7127:40816",
    "host": "vm",
}


# --- Frames: one table of cases, each fed whole and byte by byte -------------------------

# (bytes on the wire, frames decoded, then: None = all consumed, "pending" = a partial
# frame is left (eof() raises), or (Erlang reason or message part, fatal) for an error)
FRAME_CASES: list[Any] = [
    pytest.param(b'OK 4 "ok"\n', [Frame("OK", "ok")], None, id="ok-reply"),
    pytest.param(
        b'WORKER 32 {"version": "1.1", "pid": 16181}\n',
        [Frame("WORKER", {"version": "1.1", "pid": 16181})],
        None,
        id="worker-default-separators",
    ),
    pytest.param(b"INPUT_ERR 8 [0, [0]]\n", [Frame("INPUT_ERR", [0, [0]])], None, id="underscore"),
    pytest.param(b'ABCDEFGHIJ 2 ""\n', [Frame("ABCDEFGHIJ", "")], None, id="name-10-bytes"),
    pytest.param(b'MSG 004 "hi"\n', [Frame("MSG", "hi")], None, id="len-leading-zeros"),
    pytest.param(b'MSG 4 "\xc3\xa9"\n', [Frame("MSG", "\u00e9")], None, id="utf8-byte-length"),
    pytest.param(
        b'OK 4 "ok"\nTASK 2 ""\nOUTPUT 14 [0, "out", 12]\n',
        [Frame("OK", "ok"), Frame("TASK", ""), Frame("OUTPUT", [0, "out", 12])],
        None,
        id="several-frames-one-feed",
    ),
    pytest.param(b"", [], None, id="empty-input"),
    pytest.param(b"MSG 3", [], "pending", id="partial-header"),
    pytest.param(b'MSG 9 {"a": 1,\n', [], "pending", id="len-overstated"),
    pytest.param(b'OK 4 "ok"\nMSG 5 "h', [Frame("OK", "ok")], "pending", id="frame-then-partial"),
    pytest.param(b"MSG 104857600 ", [], "pending", id="len-max-waits"),
    pytest.param(b'MSG 3 "hi"\n', [], ("invalid_body", False), id="len-understated"),
    pytest.param(b'MSG 4 "hi"X', [], ("invalid_body", False), id="missing-newline"),
    pytest.param(b"MSG 104857601 ", [], ("message_too_big", False), id="len-too-large"),
    pytest.param(b"MSG 99999999999", [], ("invalid_length", False), id="len-too-many-digits"),
    pytest.param(b'ABCDEFGHIJK 2 ""\n', [], ("invalid_type", False), id="name-too-long"),
    pytest.param(b'msg 2 ""\n', [], ("invalid_type", False), id="lowercase-name"),
    pytest.param(b' 2 ""\n', [], ("invalid_type", False), id="empty-name"),
    pytest.param(b'MSG -2 ""\n', [], ("invalid_length", False), id="negative-len"),
    pytest.param(b'MSG x ""\n', [], ("invalid_length", False), id="non-digit-len"),
    pytest.param(b'MSG  ""\n', [], ("invalid_length", False), id="empty-len"),
    pytest.param(
        b"hello world, this is not a frame\n", [], ("invalid_type", False), id="plain-text-line"
    ),
    pytest.param(b'MSG 8 {"a": 1,\n', [], ("not valid JSON", True), id="non-json"),
    pytest.param(b"MSG 3 NaN\n", [], ("not valid JSON", True), id="nan-is-not-json"),
    pytest.param(b'MSG 4 "\xff\xfe"\n', [], ("not valid JSON", True), id="not-utf8"),
    pytest.param(b"MSG 0 \n", [], ("not valid JSON", True), id="empty-payload"),
    pytest.param(
        b'OK 4 "ok"\nBAD 1 x\n', [Frame("OK", "ok")], ("not valid JSON", True), id="good-then-bad"
    ),
]


def drain(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame]:
    """Feed ``chunks`` one at a time, collecting every frame as soon as it is complete."""
    frames: list[Frame] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    return frames


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("data", "frames", "outcome"), FRAME_CASES)
def test_frame_decoding(data: bytes, frames: list[Frame], outcome: Any, bytewise: bool) -> None:
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    decoder = FrameDecoder()
    got: list[Frame] = []
    if isinstance(outcome, tuple):
        with pytest.raises(ProtocolError) as info:
            got = drain(decoder, chunks)
        what, fatal = outcome
        assert what in str(info.value)
        assert info.value.fatal is fatal
        assert info.value.data and info.value.data in data
        assert repr(info.value.data) in str(info.value)
        if not fatal:
            assert HINT in str(info.value)
        return
    got = drain(decoder, chunks)
    assert got == frames
    if outcome == "pending":
        with pytest.raises(ProtocolError, match="partial frame") as info:
            decoder.eof()
        assert info.value.fatal is False
    else:
        decoder.eof()


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"bad frame\n")
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    decoder.feed(b'OK 4 "ok"\n')
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def test_deeply_nested_json_is_a_protocol_error() -> None:
    decoder = FrameDecoder()
    decoder.feed(raw_frame("MSG", "[" * 100_000 + "]" * 100_000))
    with pytest.raises(ProtocolError, match="not valid JSON"):
        decoder.next_frame()


def test_decoder_refuses_huge_len_before_the_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"MSG %d " % (MAX_PAYLOAD + 1))
    with pytest.raises(ProtocolError, match="message_too_big"):
        decoder.next_frame()


def test_error_quotes_a_bounded_prefix() -> None:
    decoder = FrameDecoder()
    decoder.feed(b'MSG 20000 "' + b"x" * 19998 + b'"?')
    with pytest.raises(ProtocolError) as info:
        decoder.next_frame()
    assert len(info.value.data) <= 200
    assert len(str(info.value)) < 1000


def test_decoder_is_linear_in_many_small_frames() -> None:
    frame = encode_frame("MSG", "x" * 20)
    data = frame * 20_000
    decoder = FrameDecoder()
    start = time.perf_counter()
    decoder.feed(data)  # one feed: dropping each frame from the buffer would be quadratic
    count = 0
    while decoder.next_frame() is not None:
        count += 1
    assert count == 20_000
    assert time.perf_counter() - start < 10
    decoder.eof()


def test_decoder_waits_for_a_big_body_without_rescanning() -> None:
    body = json.dumps("y" * 3_000_000).encode()
    data = b"MSG %d %s\n" % (len(body), body)
    decoder = FrameDecoder()
    frames = drain(decoder, [data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert frames == [Frame("MSG", "y" * 3_000_000)]


# --- Encoding ---------------------------------------------------------------------------


def test_encode_master_frames_are_compact() -> None:
    assert encode_frame("OK", "ok", compact=True) == b'OK 4 "ok"\n'
    assert encode_frame("INPUT", ["done", []], compact=True) == b'INPUT 11 ["done",[]]\n'


def test_encode_worker_frames_use_default_separators() -> None:
    payload = {"version": "1.1", "pid": 16181}
    assert encode_frame("WORKER", payload) == b'WORKER 32 {"version": "1.1", "pid": 16181}\n'


def test_encode_len_is_the_byte_length() -> None:
    data = encode_frame("MSG", "\u00e9\u4e2d")
    _, length, rest = data.split(b" ", 2)
    assert int(length) == len(rest) - 1
    assert drain(FrameDecoder(), [data]) == [Frame("MSG", "\u00e9\u4e2d")]


@pytest.mark.parametrize("name", ["", "msg", "TOOLONGNAME", "MS G", "MSG\n", "\u00c9"])
def test_encode_refuses_bad_names(name: str) -> None:
    with pytest.raises(ProtocolError, match="NAME"):
        encode_frame(name, "")


@pytest.mark.parametrize("payload", [float("nan"), {1: 2, "x": object()}, b"bytes"])
def test_encode_refuses_non_json(payload: Any) -> None:
    with pytest.raises(ProtocolError, match="JSON"):
        encode_frame("MSG", payload)


def test_encode_refuses_oversized_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "MAX_PAYLOAD", 10)
    assert encode_frame("MSG", "12345678") == b'MSG 10 "12345678"\n'
    with pytest.raises(ProtocolError, match="10 bytes"):
        encode_frame("MSG", "123456789")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES, st.booleans(), st.integers(min_value=1, max_value=9))
def test_encode_decode_round_trip(payload: Any, compact: bool, chunk: int) -> None:
    data = encode_frame("MSG", payload, compact=compact) * 2
    frames = drain(FrameDecoder(), [data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert frames == [Frame("MSG", payload)] * 2


# --- Payload types ----------------------------------------------------------------------


def test_task_info_round_trip_keeps_key_order() -> None:
    info = TaskInfo.from_payload(TASK_PAYLOAD)
    assert info.group == (0, "delta%0Aepsilon")
    assert info.to_payload() == TASK_PAYLOAD
    assert list(info.to_payload()) == list(TASK_PAYLOAD)
    assert [f.name for f in dataclasses.fields(TaskInfo)] == list(TASK_PAYLOAD)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"taskid": "1"}, "taskid"),
        ({"taskid": True}, "taskid"),
        ({"disco_port": 8989.0}, "disco_port"),
        ({"host": None}, "host"),
        ({"group": [0]}, "group"),
        ({"group": ["0", "vm"]}, "group"),
        ({"group": [0, 1]}, "group"),
        ({"mode": "map"}, "mode"),
    ],
)
def test_task_info_names_the_wrong_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match=f"'{field}'"):
        TaskInfo.from_payload({**TASK_PAYLOAD, **change})


def test_task_info_names_a_missing_field() -> None:
    payload = dict(TASK_PAYLOAD)
    del payload["jobfile"]
    with pytest.raises(ProtocolError, match="'jobfile'"):
        TaskInfo.from_payload(payload)


@pytest.mark.parametrize("payload", [None, [], "task", 3])
def test_task_info_wants_an_object(payload: Any) -> None:
    with pytest.raises(ProtocolError, match="TASK"):
        TaskInfo.from_payload(payload)


def test_task_info_validates_on_construction() -> None:
    fields = {**TASK_PAYLOAD, "group": (0, "")}
    TaskInfo(**fields)
    with pytest.raises(ProtocolError, match="'put_port'"):
        TaskInfo(**{**fields, "put_port": "8990"})


def test_input_reply_round_trip() -> None:
    payload = [
        "more",
        [
            [0, "ok", "all", [[0, "dir://vm/disco/x.results"]]],
            [3, "ok", 1, [[0, "raw://a"], [1, "http://h/b"]]],
            [4, "ok", 0, []],
        ],
    ]
    reply = InputReply.from_payload(payload)
    assert reply.flag == "more"
    assert reply.entries == (
        InputEntry(0, "ok", "all", ((0, "dir://vm/disco/x.results"),)),
        InputEntry(3, "ok", 1, ((0, "raw://a"), (1, "http://h/b"))),
        InputEntry(4, "ok", 0, ()),
    )
    assert reply.to_payload() == payload
    assert InputReply.from_payload(["done", []]) == InputReply("done")


@pytest.mark.parametrize(
    "payload",
    [
        "done",
        ["maybe", []],
        ["done"],
        ["done", [], 1],
        ["done", [[0, "ok", 0]]],
        ["done", [["0", "ok", 0, []]]],
        ["done", [[0, 1, 0, []]]],
        ["done", [[0, "ok", "some", []]]],
        ["done", [[0, "ok", True, []]]],
        ["done", [[0, "ok", 0, [[0]]]]],
        ["done", [[0, "ok", 0, [["0", "raw://a"]]]]],
        ["done", [[0, "ok", 0, [[0, 7]]]]],
    ],
)
def test_parse_input_reply_refuses_wrong_shapes(payload: Any) -> None:
    with pytest.raises(LocalProtocolError, match="INPUT"):
        InputReply.from_payload(payload)


def test_input_entry_validates_on_construction() -> None:
    with pytest.raises(LocalProtocolError, match="label"):
        InputEntry(0, "ok", "everything", ())
    with pytest.raises(LocalProtocolError, match="flag"):
        InputReply("maybe")


def test_protocol_error_pickles_with_its_attributes() -> None:
    err = pickle.loads(pickle.dumps(ProtocolError("x", fatal=False, data=b"y")))
    assert (str(err), err.fatal, err.data) == ("x", False, b"y")


# --- The legal order --------------------------------------------------------------------


def test_tables_cover_every_message() -> None:
    assert set(TRANSITIONS) == set(State)
    requests = set().union(*TRANSITIONS.values())
    assert requests == set(REPLIES_OWED) == set(REQUESTS.values())
    assert "PING" not in REQUESTS
    assert TRANSITIONS[State.CLOSED] == {}


def test_full_map_task_dialogue() -> None:
    pair = ConnectionPair()
    w, m = pair.worker, pair.master
    assert pair.send(Worker(16181)) == Worker(16181)
    assert m.pid == 16181
    assert pair.reply(Ok()) == Ok()
    assert pair.send(Task()) == Task()
    info = TaskInfo.from_payload(TASK_PAYLOAD)
    assert pair.reply(info) == info
    pair.send(Input())
    entries = (InputEntry(0, "ok", 0, ((0, "raw://delta%0Aepsilon"),)),)
    assert pair.reply(InputReply("done", entries)) == InputReply("done", entries)
    assert pair.send(Output(0, "out-map-1-0-16181", 6)) == Output(0, "out-map-1-0-16181", 6)
    pair.reply(Ok())
    assert pair.send(Msg("progress")) == Msg("progress")
    pair.reply(Ok())
    assert w.state is m.state is State.READY
    pair.send(Done())
    assert (w.state, m.state) == (State.CLOSED, State.CLOSED)
    assert w.owed == m.owed == ()
    w.eof()
    m.eof()
    task_body = json.dumps(TASK_PAYLOAD, separators=(",", ":")).encode()
    assert pair.wire[:4] == [
        ("worker->master", b'WORKER 32 {"version": "1.1", "pid": 16181}\n'),
        ("master->worker", b'OK 4 "ok"\n'),
        ("worker->master", b'TASK 2 ""\n'),
        ("master->worker", b"TASK %d %s\n" % (len(task_body), task_body)),
    ]


# (a worker message, its bytes as a worker sends them)
WORKER_BYTES: list[Any] = [
    (Worker(16181), b'WORKER 32 {"version": "1.1", "pid": 16181}\n'),
    (Task(), b'TASK 2 ""\n'),
    (Input(), b'INPUT 2 ""\n'),
    (Input(exclude=(0, 1)), b'INPUT 19 ["exclude", [0, 1]]\n'),
    (Input(include=(0,)), b'INPUT 16 ["include", [0]]\n'),
    (InputErr(0, (5,)), b"INPUT_ERR 8 [0, [5]]\n"),
    (Output(0, "out-map-1-0-16181", 6), b'OUTPUT 27 [0, "out-map-1-0-16181", 6]\n'),
    (Msg("hi"), b'MSG 4 "hi"\n'),
    (Done(), b'DONE 2 ""\n'),
]


def test_worker_messages_make_the_recorded_bytes() -> None:
    w = WorkerSide()
    for message, data in WORKER_BYTES:
        assert w.send(message) == data
        assert request_from_frame(drain(FrameDecoder(), [data])[0]) == message


def test_master_replies_make_the_recorded_bytes() -> None:
    pair = ConnectionPair()
    for message in (Worker(1), Task(), Input(), InputErr(0, (5,)), InputErr(7, (0,))):
        pair.send(message)
    m = pair.master
    assert [o.request.NAME for o in m.owed] == ["WORKER", "TASK", "INPUT", "INPUT_ERR", "INPUT_ERR"]
    assert m.send(Ok()) == b'OK 4 "ok"\n'
    task_body = json.dumps(TASK_PAYLOAD, separators=(",", ":")).encode()
    assert m.send(TaskInfo.from_payload(TASK_PAYLOAD)) == b"TASK %d %s\n" % (
        len(task_body),
        task_body,
    )
    entries = (InputEntry(0, "ok", 0, ((0, "raw://a%0Ab"), (1, "raw://c%0Ad"))),)
    assert (
        m.send(InputReply("done", entries))
        == b'INPUT 59 ["done",[[0,"ok",0,[[0,"raw://a%0Ab"],[1,"raw://c%0Ad"]]]]]\n'
    )
    assert m.send(Retry(((0, "raw://a%0Ab"), (1, "raw://c%0Ad")))) == (
        b'RETRY 37 [[0,"raw://a%0Ab"],[1,"raw://c%0Ad"]]\n'
    )
    assert m.send(Fail()) == b'FAIL 2 ""\n'
    assert m.owed == ()


def test_worker_error_and_fatal_close_the_dialogue() -> None:
    ends: list[Request] = [Error("went wrong"), Fatal("went wrong")]
    for end in ends:
        w = WorkerSide()
        w.send(Worker(1))
        assert w.send(end) == encode_frame(end.NAME, "went wrong")
        assert w.state is State.CLOSED
        with pytest.raises(LocalProtocolError, match="after"):
            w.send(Msg("too late"))


def test_pipelined_requests_are_answered_in_order() -> None:
    pair = ConnectionPair()
    w, m = pair.worker, pair.master
    sent: list[Request] = [Worker(7), Task(), Output(0, "a", 1), Output(1, "b", 2), Done()]
    for message in sent:
        m.receive_data(w.send(message))
    received = []
    while (event := m.next_event()) is not None:
        received.append(event)
    assert received == sent
    assert [o.replies for o in m.owed] == [{Ok}, {TaskInfo}, {Ok}, {Ok}]
    assert [o.request for o in w.owed] == sent[:4]
    with pytest.raises(LocalProtocolError, match="TASK"):
        m.send(TaskInfo.from_payload(TASK_PAYLOAD))
    info = TaskInfo.from_payload(TASK_PAYLOAD)
    w.receive_data(m.send(Ok()) + m.send(info) + m.send(Ok()) + m.send(Ok()))
    got: list[Reply] = []
    while (reply := w.next_event()) is not None:
        got.append(reply)
    assert got == [Ok(), info, Ok(), Ok()]
    assert w.owed == m.owed == ()


def test_a_worker_sending_ahead_never_stalls_a_master_that_blocks_answering() -> None:
    """8,000 OUTPUTs through a worker's Channel, as requests and ahead of a DONE, against
    a master that answers each frame as it reads it, with a blocking write into a pipe (as
    the local runner's master and a pipe's reader do): sent SEND_AHEAD to a write, neither
    end waits on the other for ever. All at once, the master blocks on answers the worker
    is not yet reading."""
    to_master, from_worker = os.pipe()
    to_worker, from_master = os.pipe()
    channel = runtime.Channel(to_worker, from_worker)
    received: list[str] = []

    def master() -> None:
        side = MasterSide()
        with contextlib.suppress(OSError):
            while chunk := os.read(to_master, 1 << 16):
                side.receive_data(chunk)
                while (message := side.next_event()) is not None:
                    received.append(message.NAME)
                    if message.NAME == "DONE":
                        return
                    answer = TaskInfo.from_payload(TASK_PAYLOAD) if message.NAME == "TASK" else Ok()
                    os.write(from_master, side.send(answer))

    thread = threading.Thread(target=master, daemon=True)
    thread.start()
    outputs = [Output(n % 7, f"out/{n:0200d}", n) for n in range(8_000)]  # 1.8 MB
    worker = concurrent.futures.ThreadPoolExecutor(1)
    try:
        asked = worker.submit(channel.exchange, [(Worker(1), Ok), (Task(), TaskInfo)])
        assert [reply.NAME for reply in asked.result(timeout=10)] == ["OK", "TASK"]
        answered = worker.submit(channel.requests, outputs, Ok).result(timeout=20)
        assert answered == [Ok()] * len(outputs)
        worker.submit(channel.final, Done(), outputs).result(timeout=20)
        thread.join(10)
        assert received == ["WORKER", "TASK", *["OUTPUT"] * 16_000, "DONE"]
    finally:
        for fd in (from_worker, to_worker, from_master, to_master):
            os.close(fd)  # a stalled end, if any, fails on its closed fd and ends
        worker.shutdown(wait=False)
    thread.join(10)


@pytest.mark.parametrize("refused", [False, True])
def test_outputs_sent_ahead_of_done_wait_for_replies_only_before_the_last_batch(
    refused: bool,
) -> None:
    """A task's last SEND_AHEAD OUTPUTs go in DONE's write, their replies unread (the
    master judges them, and kills the worker after DONE); those before wait for theirs,
    and one that is not OK makes the final message an ERROR naming the reply."""
    to_master, from_worker = os.pipe()
    to_worker, from_master = os.pipe()
    channel = runtime.Channel(to_worker, from_worker)
    outputs = [Output(0, f"out/{n}", n) for n in range(runtime.SEND_AHEAD + 3)]
    second = b'FAIL 2 ""\n' if refused else b'OK 4 "ok"\n'
    os.write(from_master, b'OK 4 "ok"\n' + second + b'OK 4 "ok"\n')  # the first three's
    channel.side.send(Worker(1))  # the side as after WORKER, answered
    channel.side.receive_data(b'OK 4 "ok"\n')
    assert channel.side.next_event() == Ok()
    channel.final(Done(), outputs)
    os.close(from_worker)
    master = MasterSide()
    master.receive_data(WorkerSide().send(Worker(1)) + os.read(to_master, 1 << 20))
    received: list[Request] = []
    while (message := master.next_event()) is not None:
        received.append(message)
        if message.NAME in ("WORKER", "OUTPUT"):
            master.send(Ok())
    names = [message.NAME for message in received[1:]]
    if refused:
        assert names == ["OUTPUT"] * 3 + ["ERROR"], names
        assert "FAIL" in cast(Error, received[-1]).text
    else:
        assert names == ["OUTPUT"] * len(outputs) + ["DONE"]
    assert channel.ended
    for fd in (to_worker, from_master, to_master):
        os.close(fd)


def test_a_master_hanging_up_as_done_is_written_gets_a_success_exit() -> None:
    """A master that reads DONE and closes our input at once (the local runner, a test
    driver) while the main thread is between writing DONE and marking the task ended: the
    watch thread's verdict waits for the final write, and is 0, not MASTER_GONE (CI saw a
    worker exit 1 after its DONE)."""
    to_master, from_worker = os.pipe()
    to_worker, from_master = os.pipe()
    channel = runtime.Channel(to_worker, from_worker)
    channel.side.send(Worker(1))
    channel.side.receive_data(b'OK 4 "ok"\n')
    assert channel.side.next_event() == Ok()
    written, release = threading.Event(), threading.Event()
    write = channel._write

    def write_then_pause(data: bytes) -> None:
        write(data)
        written.set()
        release.wait(10)

    channel._write = write_then_pause  # type: ignore[method-assign]
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        ending = pool.submit(channel.final, Done())
        assert written.wait(10)
        verdict = pool.submit(channel.exit_status_at_hangup)
        time.sleep(0.2)
        release.set()
        assert ending.result(10) is None
        assert verdict.result(10) == 0
        unended = runtime.Channel(to_worker, from_worker)
        assert unended.exit_status_at_hangup() == runtime.MASTER_GONE
    finally:
        release.set()
        pool.shutdown(wait=True)
        for fd in (from_worker, to_worker, from_master, to_master):
            os.close(fd)


def test_text_with_a_lone_surrogate_goes_as_its_escape_and_a_pair_as_itself() -> None:
    """A stage's error naming a file decoded with surrogateescape: a Disco master refused the
    FATAL frame carrying it, and the error it carried was lost."""
    frame = encode_frame("FATAL", "cannot open caf\udcff.txt \U0001f600")
    decoder = FrameDecoder()
    decoder.feed(frame)
    decoded = decoder.next_frame()
    assert decoded is not None
    assert decoded.payload == "cannot open caf\\udcff.txt \U0001f600"


def test_master_can_hold_an_input_reply() -> None:
    pair = ConnectionPair()
    pair.send(Worker(1))
    pair.reply(Ok())
    pair.send(Input(exclude=(0, 1)))
    (owed,) = pair.master.owed
    assert owed.request == Input(exclude=(0, 1))
    assert owed.replies == {InputReply}
    assert pair.worker.next_event() is None
    pair.reply(InputReply("done"))
    assert pair.master.owed == ()


# (worker messages sent before, the message then refused, part of the error text)
WORKER_ORDER_ERRORS: list[Any] = [
    pytest.param([], Task(), "WORKER", id="task-before-worker"),
    pytest.param([], Done(), "WORKER", id="done-before-worker"),
    pytest.param([Worker(1)], Worker(1), "once", id="worker-twice"),
    pytest.param([Worker(1), Done()], Msg("x"), "after", id="msg-after-done"),
    pytest.param([Worker(1), Error("e")], Done(), "after", id="done-after-error"),
]


@pytest.mark.parametrize(("before", "message", "text"), WORKER_ORDER_ERRORS)
def test_worker_refuses_illegal_sends(before: list[Request], message: Request, text: str) -> None:
    w = WorkerSide()
    for earlier in before:
        w.send(earlier)
    state, owed = w.state, w.owed
    with pytest.raises(LocalProtocolError, match=text):
        w.send(message)
    assert (w.state, w.owed) == (state, owed), "a refused send must change nothing"


# (what builds a worker message the master would refuse, part of the error text, fatal)
WORKER_BUILD_ERRORS: list[Any] = [
    pytest.param(lambda: request_from_frame(Frame("PING", "")), "kills the job", True, id="ping"),
    pytest.param(
        lambda: request_from_frame(Frame("BOGUS", "")),
        "Unknown message type 'BOGUS'",
        True,
        id="unknown",
    ),
    pytest.param(lambda: Output(0, "/abs/out", 3), "absolute", False, id="output-absolute-path"),
    pytest.param(
        lambda: Output("0", "out", 3),  # type: ignore[arg-type]
        "Invalid message body (type 'OUTPUT')",
        True,
        id="output-bad-shape",
    ),
    pytest.param(
        lambda: Worker(1, version="1.0"), 'Invalid worker version: <<"1.0">>', True, id="version"
    ),
    pytest.param(lambda: Msg(5), "(type 'MSG')", True, id="msg-int"),  # type: ignore[arg-type]
    pytest.param(lambda: Input(exclude=(1,), include=(2,)), "not both", True, id="input-both"),
    pytest.param(lambda: InputErr(0, ("a",)), "(type 'INPUT_ERR')", True, id="input-err-ids"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("build", "text", "fatal"), WORKER_BUILD_ERRORS)
def test_worker_messages_are_checked_when_built(build: Any, text: str, fatal: bool) -> None:
    with pytest.raises(LocalProtocolError) as info:
        build()
    assert text in str(info.value)
    assert info.value.fatal is fatal


def test_refused_send_leaves_error_legal(monkeypatch: pytest.MonkeyPatch) -> None:
    w = WorkerSide()
    w.send(Worker(1))
    monkeypatch.setattr(frames, "MAX_PAYLOAD", 10)
    with pytest.raises(LocalProtocolError, match="10 bytes"):
        w.send(Msg("x" * 20))
    assert w.send(Error("too big")) == encode_frame("ERROR", "too big")


# (worker messages sent, the master's bytes, part of the error text)
UNEXPECTED_REPLIES: list[Any] = [
    pytest.param([], b'OK 4 "ok"\n', "no reply is owed", id="unasked"),
    pytest.param([Worker(1)], b'TASK 2 ""\n', "owed", id="wrong-name"),
    pytest.param([Worker(1), Input()], b'OK 4 "ok"\nRETRY 2 []\n', "owed", id="retry-for-input"),
    pytest.param([Worker(1)], b'OK 6 "pong"\n', "ok", id="ok-not-ok"),
    pytest.param([Worker(1), Task()], b'OK 4 "ok"\nOK 4 "ok"\n', "owed", id="ok-for-task"),
    pytest.param([Worker(1), Task()], b'OK 4 "ok"\nTASK 2 {}\n', "'taskid'", id="bad-task"),
    pytest.param([Worker(1), Input()], b'OK 4 "ok"\nINPUT 2 []\n', "INPUT", id="bad-input"),
    pytest.param([Worker(1), InputErr(0, ())], b'OK 4 "ok"\nRETRY 2 []\n', "RETRY", id="retry"),
    pytest.param([Worker(1), Done()], b'OK 4 "ok"\nOK 4 "ok"\n', "no reply", id="after-done"),
    pytest.param([Worker(1)], b'ok 4 "ok"\n', "invalid_type", id="not-a-frame"),
]


@pytest.mark.parametrize(("sent", "reply", "message"), UNEXPECTED_REPLIES)
def test_worker_refuses_unexpected_replies(sent: list[Request], reply: bytes, message: str) -> None:
    w = WorkerSide()
    for request in sent:
        w.send(request)
    w.receive_data(reply)
    with pytest.raises(RemoteProtocolError, match=message) as info:
        while w.next_event() is not None:
            pass
    assert info.value.data and info.value.data in reply
    with pytest.raises(RemoteProtocolError):
        w.next_event()


def test_worker_eof_with_replies_owed() -> None:
    w = WorkerSide()
    w.send(Worker(1))
    with pytest.raises(RemoteProtocolError, match="owed"):
        w.eof()


WORKER_FRAME = b'WORKER 32 {"version": "1.1", "pid": 16181}\n'

# (bytes after a good WORKER frame (None: instead of it), Erlang message part, fatal)
MASTER_REJECTS: list[Any] = [
    pytest.param(raw_frame("BOGUS", '""'), "Unknown message type 'BOGUS'", True, id="unknown"),
    pytest.param(raw_frame("PING", '""'), "Unknown message type 'PING'", True, id="ping"),
    pytest.param(
        raw_frame("MSG", '{"a": 1,'), "Payload is not valid JSON: type 'MSG'", True, id="json"
    ),
    # A lone surrogate escape (text decoded with surrogateescape): seen on the real master.
    pytest.param(
        raw_frame("FATAL", '"caf\\udcff"'),
        "Payload is not valid JSON: type 'FATAL'",
        True,
        id="lone-surrogate",
    ),
    pytest.param(
        raw_frame("OUTPUT", '["zero", "x", 1]'),
        "Invalid message body (type 'OUTPUT')",
        True,
        id="output-label",
    ),
    pytest.param(raw_frame("OUTPUT", '[0, "x"]'), "(type 'OUTPUT')", True, id="output-short"),
    pytest.param(raw_frame("OUTPUT", '[true, "x", 1]'), "(type 'OUTPUT')", True, id="output-bool"),
    pytest.param(raw_frame("OUTPUT", '[0, "x", 1.5]'), "(type 'OUTPUT')", True, id="output-float"),
    pytest.param(
        raw_frame("OUTPUT", '[0, "/srv/x", 1]'), "invalid_output", False, id="output-absolute"
    ),
    pytest.param(raw_frame("INPUT", '["all", []]'), "(type 'INPUT')", True, id="input-flag"),
    pytest.param(
        raw_frame("INPUT", '["exclude", [1, "a"]]'), "(type 'INPUT')", True, id="input-ids"
    ),
    pytest.param(raw_frame("INPUT", '"x"'), "(type 'INPUT')", True, id="input-string"),
    pytest.param(raw_frame("INPUT_ERR", "[0, 0]"), "(type 'INPUT_ERR')", True, id="input-err"),
    pytest.param(raw_frame("MSG", "5"), "(type 'MSG')", True, id="msg-int"),
    pytest.param(raw_frame("DONE", "[]"), "(type 'DONE')", True, id="done-list"),
    pytest.param(raw_frame("TASK", "1"), "(type 'TASK')", True, id="task-int"),
    pytest.param(WORKER_FRAME, "WORKER", True, id="worker-twice"),
    pytest.param(b"hello world, this is not a frame\n", "invalid_type", False, id="text-line"),
    pytest.param(b"MSG 104857601 ", "message_too_big", False, id="too-big"),
    pytest.param(b'MSG 2 ""X', "invalid_body", False, id="no-newline"),
]

MASTER_REJECTS_FIRST: list[Any] = [
    pytest.param(
        raw_frame("WORKER", '{"version": "1.0", "pid": 17086}'),
        'Invalid worker version: <<"1.0">>',
        True,
        id="version",
    ),
    pytest.param(raw_frame("WORKER", '{"version": "1.1"}'), "(type 'WORKER')", True, id="no-pid"),
    pytest.param(
        raw_frame("WORKER", '{"version": "1.1", "pid": "7"}'),
        "(type 'WORKER')",
        True,
        id="pid-string",
    ),
    pytest.param(raw_frame("WORKER", '["1.1", 7]'), "(type 'WORKER')", True, id="worker-list"),
    pytest.param(raw_frame("TASK", '""'), "WORKER", True, id="task-first"),
    pytest.param(raw_frame("DONE", '""'), "WORKER", True, id="done-first"),
]


def master_after_worker() -> MasterSide:
    """A MasterSide that has accepted a good WORKER frame."""
    master = MasterSide()
    master.receive_data(WORKER_FRAME)
    assert master.next_event() == Worker(16181)
    return master


def assert_master_rejects(master: MasterSide, data: bytes, message: str, fatal: bool) -> None:
    """Feed ``data``: the next message must raise, with the master's wording and fatality."""
    master.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        master.next_event()
    assert message in str(info.value)
    assert info.value.fatal is fatal
    with pytest.raises(RemoteProtocolError):
        master.next_event()


@pytest.mark.parametrize(("data", "message", "fatal"), MASTER_REJECTS)
def test_master_rejects_like_0_5_4(data: bytes, message: str, fatal: bool) -> None:
    assert_master_rejects(master_after_worker(), data, message, fatal)


@pytest.mark.parametrize(("data", "message", "fatal"), MASTER_REJECTS_FIRST)
def test_master_rejects_first_message(data: bytes, message: str, fatal: bool) -> None:
    assert_master_rejects(MasterSide(), data, message, fatal)


def test_master_rejects_messages_after_done() -> None:
    master = master_after_worker()
    master.receive_data(b'DONE 2 ""\nMSG 2 ""\n')
    assert master.next_event() == Done()
    with pytest.raises(RemoteProtocolError, match="after"):
        master.next_event()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Ok(), "no reply is owed"),
        (TaskInfo.from_payload(TASK_PAYLOAD), "owed"),
        (Fail(), "owed"),
    ],
)
def test_master_refuses_unowed_replies(reply: Reply, message: str) -> None:
    master = MasterSide()
    with pytest.raises(LocalProtocolError, match=message):
        master.send(reply)
    master = master_after_worker()
    master.send(Ok())
    with pytest.raises(LocalProtocolError, match="no reply is owed"):
        master.send(reply)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: TaskInfo.from_payload({"taskid": 1}), "TASK"),
        (lambda: InputReply.from_payload(["done"]), "INPUT"),
        (lambda: Retry([[0]]), "RETRY"),  # type: ignore[arg-type]
        (lambda: Retry(()), "RETRY"),
        (lambda: Fail.from_payload("no"), "FAIL"),
        (lambda: Ok.from_payload("pong"), "OK"),
    ],
)
def test_master_replies_are_checked_when_built(build: Any, name: str) -> None:
    with pytest.raises(LocalProtocolError, match=name):
        build()


def test_master_eof() -> None:
    master = master_after_worker()
    master.receive_data(b'MSG 9 {"a": 1,\n')
    assert master.next_event() is None
    with pytest.raises(RemoteProtocolError, match="partial frame") as info:
        master.eof()
    assert info.value.fatal is False
    master = master_after_worker()
    with pytest.raises(RemoteProtocolError, match="without DONE") as info:
        master.eof()
    assert info.value.fatal is False
    master.receive_data(b'DONE 2 ""\n')
    master.next_event()
    master.eof()


# --- Local vs Remote: who broke the protocol --------------------------------------------


def test_both_kinds_are_the_public_protocol_error() -> None:
    assert issubclass(LocalProtocolError, discodsl.ProtocolError)
    assert issubclass(RemoteProtocolError, discodsl.ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


def test_an_illegal_send_is_local_and_changes_nothing() -> None:
    master = master_after_worker()
    with pytest.raises(LocalProtocolError, match="owed OK"):
        master.send(Fail())
    assert master.send(Ok()) == b'OK 4 "ok"\n', "a local error does not fail the side"


def test_the_same_check_is_remote_when_the_peer_broke_it() -> None:
    """Out of order: WorkerSide.send raises Local; MasterSide reading those bytes, Remote."""
    worker = WorkerSide()
    with pytest.raises(LocalProtocolError, match="before WORKER") as local:
        worker.send(Task())
    master = MasterSide()
    master.receive_data(b'TASK 2 ""\n')
    with pytest.raises(RemoteProtocolError, match="before WORKER") as remote:
        master.next_event()
    assert str(local.value).split(" is not legal")[1] == str(remote.value).split(" is not legal")[1]
    assert isinstance(remote.value.__cause__, LocalProtocolError)
    assert remote.value.data == b'TASK 2 ""\n'


def test_a_bad_payload_from_the_peer_is_remote_with_the_masters_fatality() -> None:
    master = master_after_worker()
    master.receive_data(raw_frame("OUTPUT", '[0, "/srv/x", 1]'))
    with pytest.raises(RemoteProtocolError, match="absolute") as info:
        master.next_event()
    assert info.value.fatal is False
    assert isinstance(info.value.__cause__, LocalProtocolError)


def test_a_bad_reply_from_the_master_is_remote() -> None:
    worker = WorkerSide()
    worker.send(Worker(1))
    worker.send(Task())
    worker.receive_data(b'OK 4 "ok"\nTASK 13 {"taskid": 1}\n')
    assert worker.next_event() == Ok()
    with pytest.raises(RemoteProtocolError, match="'master' is missing"):
        worker.next_event()
    assert worker.state is State.READY


def test_frame_errors_are_remote_and_encode_errors_local() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"not a frame\n")
    with pytest.raises(RemoteProtocolError, match="invalid_type"):
        decoder.next_frame()
    with pytest.raises(LocalProtocolError, match="NAME"):
        encode_frame("bad name", "")


# --- Replay of every recording from the real 0.5.4 master ------------------------------

# scenario -> how each of its workers' last worker frame fares in our MasterSide:
# "accepted"; ("rejected", fatal); or "pending" (an overstated LEN: eof() raises).
SCENARIOS: dict[str, Any] = {
    "concurrent-stage": "accepted",
    "ddfs-input-blob-url": "accepted",
    "ddfs-input-tag-url": "accepted",
    "ddfs-save-results": "accepted",
    "error-error": "accepted",
    "error-fatal": "accepted",
    "exit-without-done": "accepted",
    "groupings-all-node-nodelabel": "accepted",
    "input-err-fail": "accepted",
    "input-err-retry": "accepted",
    "input-err-unknown-ids": "accepted",
    "protocol-map-reduce": "accepted",
    "error-badversion": ("rejected", True),
    "error-unknown-message": ("rejected", True),
    "error-invalid-json": ("rejected", True),
    "error-bad-payload-shape": ("rejected", True),
    "msg-and-ping": ("rejected", True),
    "non-frame-output": ("rejected", False),
    "output-absolute-path": ("rejected", False),
    "frame-length-overstated": "pending",
}


def test_every_recording_is_replayed(reference: Path) -> None:
    recorded = {p.parent.name for p in reference.glob("*/transcript.json")}
    assert recorded == set(SCENARIOS)


def decode_one(raw: bytes) -> Frame | None:
    """The one frame ``raw`` holds, or None if it is not one whole valid frame."""
    decoder = FrameDecoder()
    decoder.feed(raw)
    try:
        frame = decoder.next_frame()
        decoder.eof()
    except ProtocolError:
        return None
    return frame


class Replay:
    """One recorded worker process replayed through both of our ends."""

    def __init__(self) -> None:
        self.worker = WorkerSide()
        self.master = MasterSide()
        self.worker_refused: list[bytes] = []

    def worker_frame(self, raw: bytes) -> Request | None:
        """Send it through WorkerSide where legal (same bytes), then feed it to MasterSide."""
        frame = decode_one(raw)
        if frame is not None:
            try:
                assert self.worker.send(request_from_frame(frame)) == raw
            except LocalProtocolError:
                self.worker_refused.append(raw)
        self.master.receive_data(raw)
        return self.master.next_event()

    def play(self, frames: list[tuple[str, bytes]]) -> None:
        """Replay recorded frames that must all be accepted."""
        for direction, raw in frames:
            if direction == "worker->master":
                assert self.worker_frame(raw) is not None, raw
            else:
                self.master_frame(raw)

    def master_frame(self, raw: bytes) -> None:
        """Feed it to WorkerSide; our MasterSide must encode the very same bytes."""
        self.worker.receive_data(raw)
        reply = self.worker.next_event()
        assert reply is not None, raw
        assert self.worker.next_event() is None
        assert self.master.send(reply) == raw
        frame = decode_one(raw)
        assert frame is not None
        assert reply.to_frame() == frame
        assert json.dumps(reply.to_payload()) == json.dumps(frame.payload), "key order"


def load_workers(reference: Path, scenario: str) -> list[list[tuple[str, bytes]]]:
    """Each recorded worker's frames as (direction, exact bytes)."""
    transcript = json.loads((reference / scenario / "transcript.json").read_text())
    return [
        [(f["dir"], f["raw"].encode("latin-1")) for f in worker["frames"]]
        for worker in transcript["workers"]
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_replay_recording(reference: Path, scenario: str) -> None:
    expected = SCENARIOS[scenario]
    workers = load_workers(reference, scenario)
    assert workers
    for wire in workers:
        replay = Replay()
        last = max(i for i, (direction, _) in enumerate(wire) if direction == "worker->master")
        replay.play(wire[:last])
        assert replay.worker_refused == []
        check_last_frame(replay, wire[last][1], expected)
        replay.play(wire[last + 1 :])  # exit-without-done: the worker exits after an OK
        check_end(replay, expected)


def check_end(replay: Replay, expected: Any) -> None:
    """An accepted dialogue ends with DONE, ERROR or FATAL, or eof() calls it a task failure."""
    if expected != "accepted":
        return
    if replay.master.state is State.CLOSED:
        assert replay.worker.state is State.CLOSED
        replay.master.eof()
    else:
        with pytest.raises(RemoteProtocolError, match="without DONE") as info:
            replay.master.eof()
        assert info.value.fatal is False


def check_last_frame(replay: Replay, raw: bytes, expected: Any) -> None:
    """The last worker frame: accepted, rejected (with the master's fatality), or pending."""
    if expected == "pending":
        assert replay.worker_frame(raw) is None
        with pytest.raises(RemoteProtocolError, match="partial frame") as info:
            replay.master.eof()
        assert info.value.fatal is False
        decoder = FrameDecoder()
        decoder.feed(raw)
        assert decoder.next_frame() is None
        with pytest.raises(ProtocolError):
            decoder.eof()
    elif expected == "accepted":
        assert replay.worker_frame(raw) is not None
        assert replay.worker_refused == []
    else:
        with pytest.raises(RemoteProtocolError) as info:
            replay.worker_frame(raw)
        assert info.value.fatal is expected[1]
        if decode_one(raw) is not None:
            assert replay.worker_refused == [raw], "WorkerSide must refuse it too"


# --- Hypothesis: arbitrary bytes end in a frame, None or ProtocolError ------------------

VALID_FRAMES = [
    WORKER_FRAME,
    b'TASK 2 ""\n',
    b'INPUT 16 ["exclude", [0]]\n',
    b"INPUT_ERR 8 [0, [5]]\n",
    b'OUTPUT 27 [0, "out-map-1-0-16181", 6]\n',
    b'MSG 33 "hello from the recording worker"\n',
    b'DONE 2 ""\n',
    b'OK 4 "ok"\n',
    b'INPUT 56 ["done",[[0,"ok",0,[[0,"raw://alpha%0Abeta%0Agamma"]]]]]\n',
]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A few valid frames, then a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(
        b"".join(draw(st.lists(st.sampled_from(VALID_FRAMES), min_size=1, max_size=3)))
    )
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        byte = draw(st.integers(min_value=0, max_value=255))
        if op == "insert":
            data.insert(at, byte)
        elif at < len(data) and op == "flip":
            data[at] = byte
        elif at < len(data) and op == "delete":
            del data[at]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


ANY_BYTES = st.binary(max_size=300) | mutated_frames()


def chunked(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@settings(max_examples=300, deadline=None)
@given(ANY_BYTES, st.integers(min_value=1, max_value=40))
def test_decoder_never_fails_otherwise(data: bytes, size: int) -> None:
    decoder = FrameDecoder()
    try:
        decoded = drain(decoder, chunked(data, size))
        decoder.eof()
    except RemoteProtocolError:
        return
    assert all(isinstance(frame, Frame) for frame in decoded)


@settings(max_examples=300, deadline=None)
@given(ANY_BYTES, st.booleans(), st.integers(min_value=1, max_value=40))
def test_master_side_never_fails_otherwise(data: bytes, greet: bool, size: int) -> None:
    master = master_after_worker() if greet else MasterSide()
    try:
        for chunk in chunked(data, size):
            master.receive_data(chunk)
            while master.next_event() is not None:
                pass
        master.eof()
    except RemoteProtocolError:
        return


@settings(max_examples=300, deadline=None)
@given(ANY_BYTES)
def test_worker_side_never_fails_otherwise(data: bytes) -> None:
    worker = WorkerSide()
    for message in (Worker(1), Task(), Input()):
        worker.send(message)
    try:
        worker.receive_data(data)
        while worker.next_event() is not None:
            pass
    except RemoteProtocolError:
        return


# --- What the module may import ---------------------------------------------------------

PROTOCOL_MODULES = [Path(module.__file__ or "") for module in (frames, messages, replies, sides)]


@pytest.mark.parametrize("path", PROTOCOL_MODULES, ids=lambda path: path.name)
def test_protocol_imports_only_stdlib_and_worker(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level in (0, 1), "relative imports must stay inside discodsl.worker"
            imported.append(f"discodsl.worker.{node.module}" if node.level else str(node.module))
    assert imported
    for name in imported:
        allowed = name.split(".")[0] in sys.stdlib_module_names or name.startswith(
            "discodsl.worker."
        )
        assert allowed, f"{path.name} imports {name}"


def test_protocol_imports_in_a_bare_shipped_layout(tmp_path: Path) -> None:
    """As on a node: an empty discodsl/__init__.py beside the worker package, isolated Python."""
    worker_dir = tmp_path / "discodsl" / "worker"
    worker_dir.mkdir(parents=True)
    (tmp_path / "discodsl" / "__init__.py").write_text("")
    for path in PROTOCOL_MODULES:
        shutil.copy(path, worker_dir / path.name)
    for name in ("__init__.py", "errors.py"):
        shutil.copy(PROTOCOL_MODULES[0].parent / name, worker_dir / name)
    code = (
        "import sys; sys.path.insert(0, '.'); before = set(sys.modules); "
        "import discodsl.worker.sides; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for module in result.stdout.split():
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top == "discodsl", module


def test_a_long_stream_fed_in_odd_chunks_keeps_only_what_is_unread() -> None:
    """The decoder keeps the bytes of frames not yet read, not the whole stream: fed in
    chunks that never end on a frame's end, it held every byte received."""
    frame = encode_frame("MSG", "x" * 500)
    stream = frame * 2000  # about 1 MB
    decoder, most, read = FrameDecoder(), 0, 0
    for start in range(0, len(stream), 4093):  # a prime: reads seldom end a frame
        decoder.feed(stream[start : start + 4093])
        while decoder.next_frame() is not None:
            read += 1
        most = max(most, len(decoder._buf))
    assert read == 2000 and most < 200_000, most
