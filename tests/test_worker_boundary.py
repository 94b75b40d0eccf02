"""The worker runtime across the real boundary: a job home laid out as a node lays it out, the
jobhome's ``worker`` started as a node starts it, answered over real pipes by a test master.

The recorded transcripts are replayed: for each task recorded on a real Disco 0.5.4 master,
our worker, given the same TASK and INPUT replies, sends frames with the recorded names, in the
recorded order, with the recorded payload shapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from discodsl import builder, jobpack, shipping
from discodsl.runners.layout import hexhash
from discodsl.worker import runtime
from discodsl.worker.messages import Fatal, Worker
from discodsl.worker.records import read_records
from discodsl.worker.sides import MasterSide
from discodsl.worker.spec import encode_jobdata
from tests import replay_jobs
from tests.interpreters import old_pythons
from tests.worker_driver import (
    lay_out,
    node_environment,
    recorded,
    run_worker,
    scripted,
    shape,
    task_payload,
    write_index,
)

RECORDED_DATA = "/var/lib/disco/node01/data"
RECORDED_DDFS = "/var/lib/disco/node01/ddfs"


def _payload(raw: str) -> Any:
    return json.loads(raw.encode("latin-1").split(b" ", 2)[2])


def _index_names(transcript: dict[str, Any]) -> dict[tuple[str, int], str]:
    names = {}
    for worker in transcript["workers"]:
        for frame in worker["frames"]:
            for name in re.findall(r"\.disco/([a-z]+-\d+-\d+\.results)", frame["raw"]):
                stage, taskid, _ = name.split("-")
                names[(stage, int(taskid))] = name
    return names


def _replay(
    reference: Path, tmp_path: Path, scenario: str, job: Any, compare: Any = lambda worker: True
) -> list[Any]:
    rec = recorded(reference, scenario)
    inputs = [urls for _, _, urls in rec["inputs"]]
    data = builder.build_jobpack(job, job.options, inputs)
    layout = lay_out(data, tmp_path / "data", "vm", rec["jobname"])
    indexes = _index_names(rec)
    env = node_environment(data)
    ours = []
    for worker in rec["workers"]:
        frames = worker["frames"]
        replies = [f for f in frames if f["dir"] == "master->worker"]
        task_raw = next(f["raw"] for f in replies if f["raw"].startswith("TASK"))
        task_raw = task_raw.replace(RECORDED_DATA, layout.disco_data)
        task_raw = task_raw.replace(RECORDED_DDFS, str(tmp_path / "ddfs"))
        assert f"/{hexhash(rec['jobname'])}/" in task_raw
        task = _payload(task_raw)
        input_replies = [_payload(f["raw"]) for f in replies if f["raw"].startswith("INPUT")]
        transcript = run_worker(layout.home, env, scripted(task, input_replies))
        assert transcript.names()[-1] == "DONE", bytes(transcript.raw)[-3000:]
        assert transcript.exit_code == 0
        if compare(worker):
            theirs = [_payload(f["raw"]) for f in frames if f["dir"] == "worker->master"]
            their_names = [
                f["raw"].split(" ", 1)[0] for f in frames if f["dir"] == "worker->master"
            ]
            assert transcript.names() == their_names, (worker["stage"], worker["taskid"])
            assert [shape(f.payload) for f in transcript.sent] == [shape(p) for p in theirs]
            recorded_oks = [
                f["raw"].encode("latin-1") for f in replies if f["raw"].startswith("OK")
            ]
            our_oks = [r for r in transcript.replies if r.startswith(b"OK")]
            assert our_oks == recorded_oks
        key = (worker["stage"], worker["taskid"])
        if key in indexes:
            write_index(layout, indexes[key], [f for f in transcript.sent if f.name == "OUTPUT"])
        ours.append((worker, transcript))
    return [layout, ours]


def _records(home: str, transcript: Any) -> list[Any]:
    found = []
    for frame in transcript.sent:
        if frame.name == "OUTPUT":
            with open(Path(home) / frame.payload[1], "rb") as handle:
                found.extend(read_records(handle, frame.payload[1]))
    return found


def test_replay_protocol_map_reduce(reference: Path, tmp_path: Path) -> None:
    layout, ours = _replay(
        reference, tmp_path, "protocol-map-reduce", replay_jobs.protocol_map_reduce
    )
    lines = sorted(["alpha%0Abeta%0Agamma", "delta%0Aepsilon", "zeta%0Aeta%0Atheta%0Aiota"])
    reduces = [(w, t) for w, t in ours if w["stage"] == "reduce"]
    assert len(reduces) == 2
    for worker, transcript in reduces:
        label = _payload(
            next(
                f["raw"]
                for f in worker["frames"]
                if f["raw"].startswith("TASK ") and f["dir"] == "master->worker"
            )
        )["group"][0]
        records = _records(layout.home, transcript)
        assert sorted(value for _, value in records) == lines
        assert {key for key, _ in records} == {label}
        assert transcript.frame("OUTPUT").payload[0] == label


def test_replay_groupings_all_node_nodelabel(reference: Path, tmp_path: Path) -> None:
    # As before any group_all stage, our maps label everything 0 (one OUTPUT, not two).
    layout, ours = _replay(
        reference,
        tmp_path,
        "groupings-all-node-nodelabel",
        replay_jobs.groupings_all_node_nodelabel,
        compare=lambda worker: worker["stage"] != "map",
    )
    last = ours[-1][1]
    assert len(_records(layout.home, last)) == 6  # 3 lines x 2 labels, through every grouping


def test_replay_concurrent_stage_polls_until_done(reference: Path, tmp_path: Path) -> None:
    # Map outputs are labelled for the stage after them: before a group_all stage there is
    # one label, so our maps send one OUTPUT where the recorder sent two; compare the reduce.
    layout, ours = _replay(
        reference,
        tmp_path,
        "concurrent-stage",
        replay_jobs.concurrent_stage,
        compare=lambda worker: worker["stage"] == "reduce",
    )
    reduce = ours[-1][1]
    inputs = [f.payload for f in reduce.sent if f.name == "INPUT"]
    assert inputs == ["", ["exclude", [0]], ["exclude", [0, 1]], ["exclude", [0, 1, 2]]]
    assert len(_records(layout.home, reduce)) == 6


def _single_task(tmp_path: Path, data: bytes, inputs: list[Any], extra_env: Any = None) -> Any:
    layout = lay_out(data, tmp_path / "data", "vm", "t@1:2:3")
    task = task_payload(
        layout,
        taskid=0,
        stage=jobpack.decode(data).jobdict["pipeline"][0][0],
        grouping="split",
        group=(0, "x"),
    )
    reply = [
        "done",
        [[i, "ok", 0, [[r, u] for r, u in enumerate(urls)]] for i, urls in enumerate(inputs)],
    ]
    return layout, run_worker(
        layout.home, node_environment(data, extra_env), scripted(task, [reply])
    )


def test_msg_carries_what_user_code_prints(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://hello"]])
    _, transcript = _single_task(tmp_path, data, [["raw://hello"]])
    assert transcript.names()[:2] == ["WORKER", "TASK"]
    assert transcript.names()[-1] == "DONE"
    messages = " ".join(f.payload for f in transcript.sent if f.name == "MSG")
    assert "saw hello" in messages


def test_the_worker_sends_ahead_where_no_reply_is_waited_on(tmp_path: Path) -> None:
    """WORKER with TASK and INPUT, and a task's OUTPUTs with its DONE, each in one write
    (the protocol lets a worker send ahead; replies come in order): two round trips."""
    job = replay_jobs.protocol_map_reduce
    data = builder.build_jobpack(job, job.options, [["raw://hello"]])
    _, transcript = _single_task(tmp_path, data, [["raw://hello"]])
    names = transcript.names()
    assert names == ["WORKER", "TASK", "INPUT", "OUTPUT", "OUTPUT", "DONE"], names
    reads = dict(enumerate(transcript.reads))
    assert reads[0] == reads[1] == reads[2] < reads[3] == reads[4] == reads[5], reads
    assert [f.payload[0] for f in transcript.sent if f.name == "OUTPUT"] == [0, 1]


def test_a_task_sees_the_jobs_env_as_the_jobpack_holds_it(tmp_path: Path) -> None:
    # A Disco 0.5.4 master hands a worker the jobenvs' UTF-8 bytes read as Latin-1 (seen on
    # the real master: "café" arrived as "cafÃ©"); the jobpack holds them right.
    job = replay_jobs.env_job
    data = builder.build_jobpack(job, job.options, [["raw://GREETING"]])
    garbled = "café ünïcode".encode().decode("latin-1")
    home, transcript = _single_task(tmp_path, data, [["raw://GREETING"]], {"GREETING": garbled})
    assert transcript.names()[-1] == "DONE", bytes(transcript.raw)[-2000:]
    assert _records(home.home, transcript) == [("GREETING", "café ünïcode")]


def test_a_fork_server_reads_the_jobs_env_once_or_says_why_it_cannot(tmp_path: Path) -> None:
    # The zygote loads the job and its env once; each forked task takes them from there.
    job = replay_jobs.env_job
    jobfile = tmp_path / "jobfile"
    jobfile.write_bytes(builder.build_jobpack(job, job.options, [["raw://GREETING"]]))
    preloaded = runtime.preload(str(jobfile))
    jobfile.unlink()  # read once: no task reads the file again
    assert preloaded.jobenvs(str(jobfile)) == {"GREETING": "café ünïcode"}
    assert preloaded.load(str(jobfile)).name == job.name
    jobfile.write_bytes(b"\xd5\xc0\x00\x02")  # cut short inside the header
    broken = runtime.preload(str(jobfile))
    for _ in range(2):  # every task is told, as if it had read the file itself
        with pytest.raises(runtime.FatalJobError, match="cannot read the job's env from"):
            broken.jobenvs(str(jobfile))


def test_failing_replica_then_good_one(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    replicas = ["http://127.0.0.1:1/unreachable", "raw://from-the-second-replica"]
    data = builder.build_jobpack(job, job.options, [replicas])
    layout, transcript = _single_task(tmp_path, data, [replicas])
    assert transcript.names()[-1] == "DONE"
    assert "INPUT_ERR" not in transcript.names()
    assert _records(layout.home, transcript) == [("from-the-second-replica", 1)]


def test_all_replicas_failing_is_an_error_naming_each(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    replicas = ["http://127.0.0.1:1/a", "file:///nonexistent/b"]
    data = builder.build_jobpack(job, job.options, [replicas])
    _, transcript = _single_task(tmp_path, data, [replicas])
    assert transcript.names()[-1] == "ERROR"
    text = transcript.sent[-1].payload
    assert "http://127.0.0.1:1/a" in text and "file:///nonexistent/b" in text


def test_user_exception_is_fatal_naming_stage_input_and_record(tmp_path: Path) -> None:
    """A bug in stage code would fail again: FATAL, as Disco's own worker sends (no retries)."""
    job = replay_jobs.exploding_job
    data = builder.build_jobpack(job, job.options, [["raw://good"], ["raw://bad"]])
    _, transcript = _single_task(tmp_path, data, [["raw://good"], ["raw://bad"]])
    assert transcript.names() == ["WORKER", "TASK", "INPUT", "FATAL"]
    text = transcript.sent[-1].payload
    assert "stage 'explode'" in text and "'raw://bad'" in text and "record 0" in text
    assert "Traceback" in text and "KeyError" in text
    assert transcript.exit_code == 0


def test_retry_from_stage_code_is_error(tmp_path: Path) -> None:
    """``raise Retry(...)``: ERROR, which the master answers by running the task again."""
    job = replay_jobs.busy_job
    data = builder.build_jobpack(job, job.options, [["raw://busy"]])
    _, transcript = _single_task(tmp_path, data, [["raw://busy"]])
    assert transcript.names() == ["WORKER", "TASK", "INPUT", "ERROR"]
    assert "service busy at busy" in transcript.sent[-1].payload


def _pack_with_jobdata(job: Any, jobdata: bytes) -> bytes:
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    pack = jobpack.decode(data)
    return jobpack.encode(dataclasses.replace(pack, jobdata=jobdata))


def test_other_python_is_fatal_naming_the_python_needed(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    spec = dataclasses.replace(job.spec(), python=(3, 99))
    data = _pack_with_jobdata(job, encode_jobdata(spec, shipping.pickle_job(spec)))
    _, transcript = _single_task(tmp_path, data, [["raw://x"]])
    assert transcript.names() == ["WORKER", "TASK", "INPUT", "FATAL"]
    assert "needs Python 3.99" in transcript.sent[-1].payload


@pytest.mark.parametrize("python", old_pythons())
def test_a_python_too_old_to_read_the_runtime_is_fatal_naming_the_python_needed(
    tmp_path: Path, python: str
) -> None:
    """Python 3.9 and older cannot read the runtime: the worker ended with no frame, and a
    Disco master retried the task up to 100 times, saying only "Worker died without output"."""
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    _, transcript = _single_task(tmp_path, data, [["raw://x"]], {"DISCODSL_PYTHON": python})
    assert transcript.names() == ["WORKER", "FATAL"]
    assert transcript.sent[0].payload["version"] == "1.1"
    needed = "{}.{}".format(*sys.version_info[:2])
    assert f"this job needs Python {needed}" in transcript.sent[-1].payload
    assert python in transcript.sent[-1].payload
    assert transcript.exit_code == 1


def test_the_refusal_of_an_old_python_is_two_frames_a_master_reads() -> None:
    """What an old Python sends, run here (where the old ones are missing, this still runs)."""
    code = "from discodsl.worker.old_python import refuse; refuse(['--python', '3.99'])"
    done = subprocess.run([sys.executable, "-c", code], input=b"", capture_output=True, timeout=30)
    side = MasterSide()
    side.receive_data(done.stdout)
    worker, fatal = side.next_event(), side.next_event()
    assert isinstance(worker, Worker) and isinstance(fatal, Fatal)
    assert "this job needs Python 3.99" in fatal.text and "install python3.99" in fatal.text
    assert done.returncode == 1


def test_a_node_with_no_python_is_fatal_naming_the_python_needed(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    missing = {"DISCODSL_PYTHON": str(tmp_path / "no-such-python")}
    _, transcript = _single_task(tmp_path, data, [["raw://x"]], missing)
    assert transcript.names() == ["WORKER", "FATAL"]
    assert transcript.sent[0].payload["version"] == "1.1"
    needed = "{}.{}".format(*sys.version_info[:2])
    assert f"install Python {needed} on the nodes" in transcript.sent[1].payload
    assert transcript.exit_code == 1


def test_undecodable_jobdata_is_fatal(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    garbage = encode_jobdata(job.spec(), b"\x80\x05not a pickle")
    _, transcript = _single_task(tmp_path, _pack_with_jobdata(job, garbage), [["raw://x"]])
    assert transcript.names() == ["WORKER", "TASK", "INPUT", "FATAL"]
    assert "cannot load the job" in transcript.sent[-1].payload


def test_a_cut_jobdata_is_fatal_saying_to_build_it_again(tmp_path: Path) -> None:
    job = replay_jobs.chatty_job
    cut = encode_jobdata(job.spec(), shipping.pickle_job(job.spec())[:-1])
    _, transcript = _single_task(tmp_path, _pack_with_jobdata(job, cut), [["raw://x"]])
    assert transcript.names() == ["WORKER", "TASK", "INPUT", "FATAL"]
    text = transcript.sent[-1].payload
    assert "cut short or damaged: build and submit the jobpack again" in text
    assert "missing" not in text


def test_nothing_reaches_the_stream_before_worker(tmp_path: Path) -> None:
    """Start-up noise (as a SyntaxWarning on 3.11 would be) goes to MSG, never before WORKER."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys, warnings\n"
        "os.write(1, b'noise on fd 1\\n')\n"
        "sys.stderr.write('noise on fd 2\\n')\n"
        "warnings.warn('a start-up warning')\n"
    )
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    _, transcript = _single_task(tmp_path, data, [["raw://x"]], {"PYTHONPATH": str(site)})
    assert bytes(transcript.raw).startswith(b"WORKER ")
    messages = " ".join(f.payload for f in transcript.sent if f.name == "MSG")
    assert "noise on fd 1" in messages and "noise on fd 2" in messages
    assert transcript.names()[-1] == "DONE"


def _frame(name: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    return b"%s %d %s\n" % (name.encode(), len(body), body)


@pytest.mark.parametrize("sent", ["nothing", "OK", "OK and half a TASK", "OK and TASK"])
def test_a_worker_whose_master_goes_away_ends_at_once_and_not_as_a_success(
    tmp_path: Path, sent: str
) -> None:
    """EOF on stdin before the task's last frame: the worker ends at once (no spinning),
    with exit status 1; it was 0, which a Disco node reports as "exit code: 0"."""
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    layout = lay_out(data, tmp_path / "data", "vm", "t@1:2:3")
    task = task_payload(layout, taskid=0, stage="chatty", grouping="split", group=(0, "x"))
    replies = {
        "nothing": b"",
        "OK": _frame("OK", "ok"),
        "OK and half a TASK": _frame("OK", "ok") + _frame("TASK", task)[:60],
        "OK and TASK": _frame("OK", "ok") + _frame("TASK", task),
    }[sent]
    process = subprocess.Popen(
        [os.path.join(layout.home, "worker")],
        cwd=layout.home,
        env=node_environment(data),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith(b"WORKER ")
        process.stdin.write(replies)  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]
        assert process.wait(timeout=10) == 1
    finally:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]


def test_output_reaches_the_master_in_batches_under_its_rate_limit(tmp_path: Path) -> None:
    """3,000 prints and 30 status lines: all forwarded, never more than 4 MSG in a second."""
    job = replay_jobs.very_chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    _, transcript = _single_task(tmp_path, data, [["raw://x"]])
    assert transcript.names()[-1] == "DONE"
    times = [t for f, t in zip(transcript.sent, transcript.times, strict=True) if f.name == "MSG"]
    text = "".join(f.payload for f in transcript.sent if f.name == "MSG")
    assert "line 2999 of x" in text and "status: 2900 done" in text
    assert all(sum(1 for u in times if t <= u < t + 1.0) <= 4 for t in times), times


@pytest.mark.parametrize(
    ("garbled", "after"),
    [
        (b"OK 4 {{{{\n", "WORKER"),  # bad JSON
        (b'BOGUS 2 ""\n', "WORKER"),  # a message no master sends
        (b'OK abc "ok"\n', "WORKER"),  # no length
        (b'TASK 2 ""\n', "WORKER"),  # the wrong reply
        (b'TASK 13 {"taskid": 0}\n', "TASK"),  # a TASK missing its keys
    ],
)
def test_a_garbled_first_reply_is_fatal_and_says_what_was_wrong(
    tmp_path: Path, garbled: bytes, after: str
) -> None:
    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    layout = lay_out(data, tmp_path / "data", "vm", "t@1:2:3")

    def reply(message: Any, side: Any) -> bytes | None:
        if after == message.NAME:
            return garbled
        return b'OK 4 "ok"\n'

    transcript = run_worker(layout.home, node_environment(data), reply, timeout=30)
    assert transcript.names()[-1] == "FATAL", bytes(transcript.raw)
    text = transcript.sent[-1].payload
    assert f"the master's reply to {after} was not understood" in text


def test_a_jobfile_cut_before_its_jobdata_says_it_is_truncated(tmp_path: Path) -> None:
    # It said the jobdata "does not start with the discodsl header: not built by discodsl"
    # (probe CV F8c).
    from discodsl.worker.jobfile import read_jobdata

    job = replay_jobs.chatty_job
    data = builder.build_jobpack(job, job.options, [["raw://x"]])
    path = tmp_path / "jobfile"
    path.write_bytes(data[: len(data) - len(jobpack.decode(data).jobdata) - 10])
    with pytest.raises(ValueError, match=r"jobdata offset \d+ lies beyond its end .*truncated"):
        read_jobdata(str(path))
