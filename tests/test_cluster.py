"""The cluster runner against the test Disco master (tests/disco_master.py) over real HTTP.

The job table itself runs on the cluster in test_jobs.py; here: what only a
cluster has (tags, DDFS, saved results, the master's events), and how a
cluster job fails, is killed, is interrupted or cannot be submitted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import discodsl.builder
from discodsl import (
    ClientError,
    JobActive,
    JobDead,
    JobError,
    Results,
    SettingsError,
    TaskFailed,
    job,
    map,
)
from discodsl.cli import main
from discodsl.client import Master
from discodsl.ddfs import DDFS
from discodsl.errors import BadAnswer, NoSuchJob, RemoteTraceback, TagNotFound
from discodsl.runners import base, cluster, handle
from discodsl.runners.progress import Progress
from tests import cluster_jobs, disco_state, jobs
from tests.conftest_cluster import point_at
from tests.disco_master import DiscoMaster
from tests.http_replay import closed_port
from tests.loopback import LoopbackHTTPServer
from tests.waiting import eventually

WORDS = {"a": 2, "b": 1, "c": 3}


@pytest.fixture
def cluster_env(disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test master, even when DISCODSL_TEST_REAL_MASTER names a real one: these tests
    close the master to new jobs, count its jobs and name its one node."""
    return point_at(monkeypatch, disco_master.url, disco_master.port)


@pytest.fixture
def master(cluster_env: str) -> Iterator[Master]:
    with Master(cluster_env, retries=0) as client:
        yield client


def test_tag_inputs_are_resolved_to_blobs(
    ddfs: DDFS, master: Master, text_files: list[Path]
) -> None:
    blobs = ddfs.push("test:words", text_files)
    results = jobs.wordcount.run(inputs=["tag://test:words"], mode="cluster")
    assert dict(results) == WORDS
    inputs = master.jobinfo(results.jobname)["inputs"]
    assert sorted(inputs) == sorted(url for replicas in blobs for url in replicas)


def test_local_files_go_as_file_urls_with_a_notice(
    master: Master, text_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results = jobs.wordcount.run(inputs=text_files, mode="cluster")
    assert dict(results) == WORDS
    notice = capsys.readouterr().err.splitlines()
    assert [line for line in notice if "file://" in line and "push_inputs=True" in line]
    inputs = master.jobinfo(results.jobname)["inputs"]
    assert inputs == [p.as_uri() for p in text_files]


def test_push_inputs_uploads_local_files(
    master: Master, ddfs: DDFS, text_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results = jobs.wordcount.run(inputs=text_files, mode="cluster", push_inputs=True)
    assert dict(results) == WORDS
    err = capsys.readouterr().err
    assert "file://" not in err
    inputs = master.jobinfo(results.jobname)["inputs"]
    assert all(url.startswith("disco://localhost/ddfs/vol0/blob/") for url in inputs)
    [tag] = ddfs.list_tags("discodsl:inputs:wordcount@")
    assert sorted(u for r in ddfs.blobs(tag) for u in r) == sorted(inputs)
    assert f"pushed {len(text_files)} local input file(s) to DDFS tag {tag}, which " in err
    assert f"`discodsl --master {master.url} ddfs rm {tag}`" in err  # works wherever it runs


def test_push_inputs_passes_over_a_replica_that_is_not_here(
    ddfs: DDFS, text_files: list[Path], tmp_path: Path
) -> None:
    """A replica list may name a path that is not here (the worker fails over past it):
    pushing it failed the run with "cannot push ...: no such file"."""
    inputs = [[str(tmp_path / "not-here.txt"), str(text_files[0])], str(text_files[1])]
    results = jobs.wordcount.run(inputs=inputs, mode="cluster", push_inputs=True)
    assert dict(results) == WORDS
    [tag] = ddfs.list_tags("discodsl:inputs:wordcount@")
    assert len(ddfs.blobs(tag)) == 2  # a blob per input, of the replica that is here


def test_push_inputs_says_a_replica_list_of_files_none_of_which_is_here_is_missing(
    cluster_env: DiscoMaster, tmp_path: Path
) -> None:
    """Passing over replicas that are not here left such a list unpushed: the job ran, and
    failed, saying to pass push_inputs=True."""
    gone = [(tmp_path / name).as_uri() for name in ("a.txt", "b.txt")]
    with pytest.raises(ClientError, match=r"cannot push '.*a\.txt': no such file"):
        jobs.wordcount.run(inputs=[gone], mode="cluster", push_inputs=True)


def test_unreadable_file_input_says_to_push(cluster_env: DiscoMaster) -> None:
    with pytest.raises(TaskFailed) as info:
        jobs.wordcount.run(inputs=["file:///nonexistent/discodsl/in.txt"], mode="cluster")
    message = str(info.value)
    assert "file:///nonexistent/discodsl/in.txt" in message
    assert "push_inputs=True" in message and "--push-inputs" in message
    assert info.value.exc_type == "DataError"


def test_save_results_reads_the_results_tag(master: Master, ddfs: DDFS) -> None:
    results = jobs.wordcount.run(
        inputs=["raw://a b c", "raw://c a c"], mode="cluster", save_results=True
    )
    assert dict(results) == WORDS
    assert master.results([results.jobname])[results.jobname][1] == [
        [f"tag://disco:results:{results.jobname}"]
    ]
    saved = ddfs.blobs(f"disco:results:{results.jobname}")
    assert sorted(results.urls) == sorted(saved)
    assert all(r[0].startswith("disco://localhost/ddfs/vol0/blob/") for r in saved)


def test_a_save_results_job_whose_blob_names_a_master_cannot_keep_is_refused_before_it_runs(
    master: Master,
) -> None:
    # A real master names each saved result file's blob after the job, the stage and the
    # task, and failed the task after its DONE when that was too long: "Worker died without
    # output", a retry's pause, then the job killed (probe DP F5). Without save_results the
    # same names run.
    from discodsl import JobError

    fits = jobs.wordcount.with_options(prefix="p" * 140, save_results=True)
    assert dict(fits.run(inputs=["raw://a b c", "raw://c a c"], mode="cluster")) == WORDS
    long = jobs.wordcount.with_options(prefix="p" * 180)
    with pytest.raises(JobError) as info:
        long.run(inputs=["raw://a"], mode="cluster", save_results=True)
    said = str(info.value)
    assert "save_results=True" in said and "180-character prefix" in said, said
    assert "stage 'total'" in said and "give a shorter prefix= or name=" in said, said
    assert all(not name.startswith("p" * 180) for _, _, name in master.joblist())  # not sent
    assert dict(long.run(inputs=["raw://a b c", "raw://c a c"], mode="cluster")) == WORDS


def test_a_purged_save_results_jobs_records_are_read_from_its_tag(
    master: Master, ddfs: DDFS, capsys: pytest.CaptureFixture[str]
) -> None:
    # Once the job was purged, no command printed its saved records (`ddfs cat` printed
    # the record files' bytes), nor did Python read them without running a job (DZ F4).
    results = jobs.wordcount.run(inputs=["raw://a b c a"], mode="cluster", save_results=True)
    tag = f"disco:results:{results.jobname}"
    master.purge(results.jobname)
    try:
        assert main(["results", results.jobname]) == 1
        assert f"ddfs xcat {tag}` prints them" in capsys.readouterr().err
        with Results.of_tag(tag) as saved:
            assert sorted(saved) == [("a", 2), ("b", 1), ("c", 1)]
            assert saved.jobname == tag and saved.urls == ddfs.blobs(tag)
        assert main(["ddfs", "xcat", tag]) == 0
        assert sorted(capsys.readouterr().out.splitlines()) == ["a\t2", "b\t1", "c\t1"]
        assert main(["ddfs", "xcat", f"tag://{tag}", "--json"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert sorted(json.loads(line) for line in out) == [["a", 2], ["b", 1], ["c", 1]]
        assert main(["ddfs", "blobs", tag]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert [line.split() for line in listed] == ddfs.blobs(tag)
        assert main(["--json", "ddfs", "blobs", tag]) == 0
        assert json.loads(capsys.readouterr().out) == ddfs.blobs(tag)
        (first,) = ddfs.blobs(tag)[0]
        assert main(["ddfs", "xcat", first]) == 0  # a blob's URL too
        assert len(capsys.readouterr().out.splitlines()) >= 1
    finally:
        ddfs.delete(tag)
    assert main(["ddfs", "xcat", tag]) == 1
    assert f"no DDFS tag named {tag!r}" in capsys.readouterr().err
    with pytest.raises(TagNotFound):
        Results.of_tag(tag)


def test_a_purged_save_results_jobs_results_are_told_to_be_in_its_tag(
    master: Master, ddfs: DDFS, capsys: pytest.CaptureFixture[str]
) -> None:
    # The master knows the job no more, but its results stay in DDFS (probe DA F4).
    results = jobs.wordcount.run(inputs=["raw://a b c"], mode="cluster", save_results=True)
    tag = f"disco:results:{results.jobname}"
    master.purge(results.jobname)
    try:
        with pytest.raises(
            NoSuchJob, match=rf"its saved results are in DDFS: inputs=\['tag://{tag}'\]"
        ):
            Results.of_job(results.jobname, timeout=30)
        # and `discodsl results JOB`, the command a user reaching for them types (DE F2)
        assert main(["results", results.jobname]) == 1
        assert f"inputs=['tag://{tag}']" in capsys.readouterr().err
        for command in ("status", "wait"):  # they said only "no job named" (probe DR F6)
            assert main([command, results.jobname]) == 1
            assert f"inputs=['tag://{tag}']" in capsys.readouterr().err, command
    finally:
        ddfs.delete(tag)
    with pytest.raises(NoSuchJob) as info:
        Results.of_job(results.jobname, timeout=30)
    assert "saved results" not in str(info.value)


@pytest.mark.usefixtures("cluster_env")
def test_results_of_a_job_named_by_no_text_say_what_to_pass() -> None:
    # AttributeError: 'int' object has no attribute 'startswith' (probe EG F4).
    run = jobs.wordcount.submit(["raw://a"], mode="inline", progress=False)
    for given, said in [
        (5, "an int"),
        (None, "None"),
        (b"job@1:2:3", "a bytes"),
        ("", "''"),
        (run, "a Run: a run's results are run.wait() (pass them as another job's inputs"),
        (run.wait(), "a Results: a run's results are run.wait()"),
    ]:
        with pytest.raises(JobError) as err:
            Results.of_job(given, timeout=30)  # type: ignore[arg-type]
        assert str(err.value).startswith(
            "Results.of_job() takes a job's name (@: the newest job; @?TEXT: the newest whose "
            f"name holds TEXT), not {said}"
        ), str(err.value)
    with pytest.raises(JobError, match=r"^Results.of_tag\(\) takes a DDFS tag's name, not an int"):
        Results.of_tag(5)  # type: ignore[arg-type]


def test_results_of_a_finished_job_asked_again_print_not_its_output_again(
    master: Master, capfd: pytest.CaptureFixture[str]
) -> None:
    # Each Results.of_job (and `discodsl wait`) printed all that the job's stages had
    # printed, again (probe DA F6); its counters still come from its events.
    results = cluster_jobs.chatty_count.run(inputs=["raw://a b", "raw://c"], mode="cluster")
    assert "saw a b" in capfd.readouterr().err
    again = Results.of_job(results.jobname, timeout=30)
    assert again.counters == results.counters and again.counters["lines"] == 2
    assert main(["wait", results.jobname]) == 0
    assert "saw" not in capfd.readouterr().err


def test_a_run_waited_for_again_after_its_timeout_prints_its_output_once(
    master: Master, capfd: pytest.CaptureFixture[str]
) -> None:
    # The second watch read the job's events from the first, and showed again what its
    # stages had printed (probe DD F5).
    run = cluster_jobs.napping.submit(["raw://x"], mode="cluster", timeout=3)
    with pytest.raises(JobActive):
        run.wait()
    assert "said x" in capfd.readouterr().err  # the first watch showed it
    assert dict(run.wait(timeout=60)) == {"x": 1}
    assert "said x" not in capfd.readouterr().err


def test_counters_the_master_never_writes_are_said_to_be_missing(
    cluster_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Had the master not written the READY line after the client's patience, the run
    still gives its results, and says its counters may miss counts."""
    monkeypatch.setattr(disco_state, "EVENT_BUFFER_S", 3600.0)
    monkeypatch.setattr(cluster, "EVENTS_PATIENCE_S", 0.3)
    results = cluster_jobs.chatty_count.run(inputs=["raw://a"], mode="cluster", save_results=True)
    assert dict(results) == {"a": 1}
    err = capsys.readouterr().err
    assert f"job {results.jobname} is ready, but its end did not show in the master's" in err
    assert "its counters may miss counts" in err


def test_dead_job_raises_the_task_error_with_the_worker_traceback(master: Master) -> None:
    with pytest.raises(TaskFailed) as info:
        cluster_jobs.exploding.run(inputs=["raw://x"], mode="cluster")
    error = info.value
    assert (error.stage, error.taskid, error.exc_type) == ("explode", 0, "KeyError")
    assert "no entry for 'x'" in str(error)
    assert "WARN: Job killed" in str(error)  # the master's last events
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in explode" in error.__cause__.text
    assert "KeyError: \"no entry for 'x'\"" in error.__cause__.text
    [(_, status, name)] = master.joblist()
    assert status == "dead" and name in str(error)


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


def test_killed_job_raises_job_dead_and_its_worker_is_stopped(
    master: Master, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    thread, outcome = run_in_thread(
        lambda: cluster_jobs.sleeper.run(
            inputs=["raw://x"], mode="cluster", params={"pidfile": str(pidfile)}
        )
    )
    eventually(lambda: pidfile.exists() and pidfile.read_text() != "")
    [(_, status, name)] = master.joblist()
    assert status == "active" and master.jobinfo(name)["hosts"] == ["localhost"]
    master.kill(name)
    thread.join(timeout=20)
    assert isinstance(outcome.get("error"), JobDead), outcome
    assert outcome["error"].jobname == name
    # kill_job's own event, which the master writes to the log up to 2 s after the kill
    assert str(outcome["error"]).endswith("WARN: Job killed")
    # a command that works as printed, whether the master came from the environment or not
    assert f"(all its events: `discodsl --master {master.url} events {name}`)" in str(
        outcome["error"]
    )
    pid = int(pidfile.read_text())
    eventually(lambda: not _alive(pid))
    assert master.jobinfo(name)["active"] == "dead"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timeout_leaves_the_job_running(master: Master, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="still active after") as info:
        cluster_jobs.sleeper.run(
            inputs=["raw://x"],
            mode="cluster",
            timeout=0.5,
            params={"pidfile": str(tmp_path / "pid")},
        )
    [(_, status, name)] = master.joblist()
    assert status == "active" and repr(name) in str(info.value)


def test_unreachable_master_is_a_client_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCODSL_RETRIES", "0")
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(ClientError, match="could not reach the Disco master") as info:
            jobs.wordcount.run(inputs=["raw://a"], mode="cluster", master=url)
        assert url in str(info.value)


def test_refused_jobpack_is_a_client_error(
    cluster_env: str, disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discodsl.builder, "build_jobpack", lambda *args, **kwargs: b"\xd5\xc0")
    with pytest.raises(ClientError, match="the master refused the job: Job failed to start: "):
        jobs.wordcount.run(inputs=["raw://a"], mode="cluster")
    assert disco_master.jobs.jobs == {}


def test_closed_master_refuses_new_jobs(cluster_env: str, master: Master) -> None:
    master.request("POST", "/disco/ctrl/save_settings", data=b'{"accept_new_jobs": "0"}')
    with pytest.raises(ClientError, match="does not accept new jobs"):
        jobs.wordcount.run(inputs=["raw://a"], mode="cluster")


class Recorder(Progress):
    """A Progress that is always on, draws nothing and remembers what it was told."""

    seen: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, job: str, enabled: bool | None = None):
        super().__init__(job, enabled=False)
        self.enabled = True

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        self.seen.append((kind, dict(facts)))
        super().__call__(kind, facts)


def test_progress_is_fed_from_jobinfo_and_events(
    cluster_env: DiscoMaster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Recorder.seen = []
    monkeypatch.setattr(cluster, "Progress", Recorder)
    inputs = ["raw://a b", "raw://b c", "raw://c d"]
    results = cluster_jobs.chatty_count.run(inputs=inputs, mode="cluster")
    assert dict(results) == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert results.counters == {"lines": 3}
    stages = [facts for kind, facts in Recorder.seen if kind == "stage"]
    assert stages[0] == {"stage": "chatty", "tasks": 3}
    assert stages[1]["stage"] == "add" and stages[1]["tasks"] in (1, 2) and len(stages) == 2
    done = [facts["stage"] for kind, facts in Recorder.seen if kind == "task_done"]
    assert done == ["chatty"] * 3 + ["add"] * stages[1]["tasks"]
    said = sorted(
        f["text"].strip() for kind, f in Recorder.seen if kind == "msg" and "saw" in f["text"]
    )
    assert said == ["saw a b", "saw b c", "saw c d"]
    assert "[chatty] saw b c" in capsys.readouterr().err


class FakeMaster:
    """jobinfo and rawevents from lists, for the watcher alone."""

    timeout = 30.0  # DISCODSL_HTTP_TIMEOUT

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.pipeline: list[list[Any]] = []

    def rawevents(
        self, name: str, offset: int, within: float | None = None
    ) -> tuple[list[tuple[str, str, str]], int]:
        return self.events[offset:], len(self.events)

    def jobinfo(self, name: str, within: float | None = None) -> dict[str, Any]:
        return {"pipeline": self.pipeline}


class PurgingMaster(FakeMaster):
    """A master whose job is purged after the first read of its events."""

    def rawevents(
        self, name: str, offset: int, within: float | None = None
    ) -> tuple[list[tuple[str, str, str]], int]:
        if offset:
            raise NoSuchJob(f"no job named {name!r}", jobname=name)
        return super().rawevents(name, offset, within)


@pytest.mark.parametrize("dead", [False, True])
def test_reading_on_to_the_logs_end_stops_at_a_purge(
    dead: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job purged while the client reads on for its last events: the client stops, with
    what it read (a dead job's error is still JobDead, not NoSuchJob)."""
    monkeypatch.setattr(cluster, "EVENTS_PATIENCE_S", 30.0)
    fake = PurgingMaster()
    fake.events = [("t", "master", "New job initialized!")]
    progress = Progress("job", enabled=False)
    watcher = cluster._Watcher(fake, "job", progress)  # type: ignore[arg-type]
    watcher.catch_up()
    started = time.monotonic()
    watcher.settle(dead=dead)
    progress.close()
    assert time.monotonic() - started < 5 and not watcher.ended
    assert len(watcher.events) == 1
    assert ("counters may miss counts" in capsys.readouterr().err) is not dead


def watch(fake: FakeMaster, polls: list[tuple[list[str], list[list[Any]]]]) -> list[Any]:
    Recorder.seen = []
    recorder = Recorder("job")
    watcher = cluster._Watcher(fake, "job", recorder)  # type: ignore[arg-type]
    for messages, pipeline in polls:
        fake.events += [("t", "master", m) for m in messages]
        fake.pipeline = pipeline
        watcher("active", 0.0)
    recorder.close()
    return [(k, f.get("stage"), f.get("tasks")) for k, f in Recorder.seen]


def test_watcher_uses_jobinfo_when_events_name_no_stage() -> None:
    seen = watch(
        FakeMaster(),
        [
            ([], [["map", 0, 2, 1, 0, 0], ["reduce", 0, 0, 0, 0, 0]]),
            ([], [["map", 0, 0, 0, 3, 1], ["reduce", 0, 1, 0, 0, 0]]),
            ([], [["map", 0, 0, 0, 3, 1], ["reduce", 0, 0, 0, 1, 0]]),
        ],
    )
    assert seen == [("stage", "map", 3)] + [("task_done", "map", None)] * 3 + [
        ("stage", "reduce", 1),
        ("task_done", "reduce", None),
    ]


def test_watcher_counts_pending_tasks_once() -> None:
    # A Disco 0.5.4 master's jobinfo: waiting = tasks - (running + done), and pending (tasks
    # waiting for a free slot) are among the waiting (disco_web:render_jobinfo).
    seen = watch(FakeMaster(), [([], [["map", 2, 2, 1, 0, 0]])])
    assert seen == [("stage", "map", 3)]


def test_watcher_counts_each_task_once_when_jobinfo_runs_ahead_of_events() -> None:
    started = ["Stage map scheduled with 2 tasks"]
    done = ["DONE: [map:0] Task finished in 0:00:00.1", "DONE: [map:1] Task finished in 0:00:00.1"]
    reduce = ["Stage reduce scheduled with 1 tasks", "DONE: [reduce:2] Task finished in 0:00:00.1"]
    seen = watch(
        FakeMaster(),
        [
            (started, [["map", 0, 0, 0, 2, 0], ["reduce", 0, 0, 1, 0, 0]]),
            (done + reduce, [["map", 0, 0, 0, 2, 0], ["reduce", 0, 0, 0, 1, 0]]),
        ],
    )
    assert seen == [("stage", "map", 2)] + [("task_done", "map", None)] * 2 + [
        ("stage", "reduce", 1),
        ("task_done", "reduce", None),
    ]


def test_bars_come_in_pipeline_order_and_end_full_when_events_lag_jobinfo() -> None:
    """A master writes a job's events up to 2 s late: a first poll's jobinfo already had the
    map done and the reduce running. The reduce's bar started first, the map's events then
    closed it, and the reduce's tasks were dropped: it ended at 14 of 16 (probe CL F6)."""
    fake = FakeMaster()
    Recorder.seen = []
    recorder = Recorder("job")
    watcher = cluster._Watcher(fake, "job", recorder)  # type: ignore[arg-type]
    fake.pipeline = [["map", 0, 0, 0, 2, 0], ["reduce", 0, 14, 2, 0, 0]]
    watcher("active", 0.0)  # no events written yet
    fake.events += [
        ("t", "master", m)
        for m in [
            "Stage map scheduled with 2 tasks",
            *(f"DONE: [map:{n}] Task finished in 0:00:00.1" for n in range(2)),
            "Stage reduce scheduled with 16 tasks",
            *(f"DONE: [reduce:{n}] Task finished in 0:00:00.1" for n in range(2, 16)),
        ]
    ]
    fake.pipeline = [["map", 0, 0, 0, 2, 0], ["reduce", 0, 2, 0, 14, 0]]
    watcher("active", 1.0)
    fake.pipeline = [["map", 0, 0, 0, 2, 0], ["reduce", 0, 0, 0, 16, 0]]
    watcher("ready", 2.0)
    recorder.close()
    seen = [(k, f.get("stage"), f.get("tasks")) for k, f in Recorder.seen]
    assert (
        seen
        == [("stage", "map", 2)]
        + [("task_done", "map", None)] * 2
        + [("stage", "reduce", 16)]
        + [("task_done", "reduce", None)] * 16
    )


def test_a_stage_not_yet_scheduled_gets_its_bar_once_its_tasks_are_known() -> None:
    """jobinfo lists every stage from the start, those not scheduled with no tasks: a bar
    of 0 tasks for the reduce would have been full at once, and never moved."""
    seen = watch(
        FakeMaster(),
        [
            ([], [["map", 0, 0, 0, 1, 0], ["reduce", 0, 0, 0, 0, 0]]),
            ([], [["map", 0, 0, 0, 1, 0], ["reduce", 0, 0, 0, 2, 0]]),
        ],
    )
    assert (
        seen
        == [("stage", "map", 1), ("task_done", "map", None), ("stage", "reduce", 2)]
        + [("task_done", "reduce", None)] * 2
    )


def test_watcher_skips_jobinfo_rows_that_hold_no_counts() -> None:
    """A row holding something else than task counts (a proxy's, a newer master's) raised a
    bare ValueError, and a job that succeeded was reported failed; it only moves a bar."""
    seen = watch(FakeMaster(), [([], [["map", 0, 0, 1, "n/a", 0], ["reduce", 0, 1, 0, 0, 0]])])
    assert seen == [("stage", "reduce", 1)]


class FailingEventsMaster(FakeMaster):
    """A master whose event log answers an error page ``failures`` times, then as ever."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def rawevents(
        self, name: str, offset: int, within: float | None = None
    ) -> tuple[list[tuple[str, str, str]], int]:
        if self.failures:
            self.failures -= 1
            raise BadAnswer("GET /disco/ctrl/rawevents: the master failed (500 <html>)")
        return super().rawevents(name, offset, within)


def test_a_failing_read_of_the_events_does_not_end_the_watch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The events only feed the counters and the progress bar: one that cannot be read is
    read at the next poll (and said once), not the end of a job that runs on."""
    fake = FailingEventsMaster(failures=2)
    fake.events = [("t", "master", "Stage map scheduled with 1 tasks")]
    watcher = cluster._Watcher(fake, "job", Progress("job", enabled=False))  # type: ignore[arg-type]
    watcher("active", 0.0)
    watcher("active", 1.0)
    assert watcher.events == []
    watcher("active", 2.0)
    assert watcher.events == fake.events
    err = capsys.readouterr().err
    assert err.count("could not read the events or progress of job 'job'") == 1, err
    assert "500 <html>" in err and "its progress and counters may lag" in err


@pytest.mark.usefixtures("cluster_env")
def test_a_ready_job_the_master_calls_dead_for_a_moment_gives_its_results(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 0.5.4 master answers "dead" between its job coordinator's end and the arrival of its
    # ready event: a job whose log ends READY was reported dead (probe CT S1, seen once).
    wait, said = Master.wait, []

    def dead_once(self: Master, jobname: str, **kwargs: Any) -> Any:
        urls = wait(self, jobname, **kwargs)
        if not said:
            said.append(jobname)
            raise JobDead(f"job {jobname!r} died", jobname=jobname)
        return urls

    monkeypatch.setattr(Master, "wait", dead_once)
    assert dict(jobs.wordcount.run(["raw://a b a"], mode="cluster")) == {"a": 2, "b": 1}
    assert said


def test_results_of_a_ready_job_the_master_calls_dead_for_a_moment_are_read(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `discodsl results` took "dead" at its word, where run() asked again (probe CX F4).
    from discodsl.runners.cluster import Cluster, results_of

    name = jobs.wordcount.run(["raw://a b a"], mode="cluster").jobname
    results, said = Master.results_of, []

    def dead_once(self: Master, jobname: str) -> Any:
        if not said:
            said.append(jobname)
            raise JobDead(f"job {jobname!r} is dead", jobname=jobname)
        return results(self, jobname)

    monkeypatch.setattr(Master, "results_of", dead_once)
    with Cluster.connect(master.url) as cluster:
        assert dict(results_of(cluster, name)) == {"a": 2, "b": 1}
    assert said


def test_a_killed_job_is_dead_though_asked_again(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second look is only for a log that ends READY.
    run = jobs.sleepy.submit(["raw://a"], mode="cluster", params={"seconds": 30})
    eventually(lambda: run.status == "active" and master.joblist())
    run.kill()
    with pytest.raises(JobDead):
        run.wait(timeout=60)


def test_an_error_while_a_run_is_watched_names_the_job_which_runs_on(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One error page from get_results as the client watched the job ended the run with the
    error alone: no job name, status "dead" for a job that then ended ready. The job was
    submitted and runs on: the error names it, how to follow and stop it, and wait() again
    follows it to its end."""
    status, failed = Master.status, []

    def flaky(self: Master, jobname: str, timeout_ms: int = 0) -> Any:
        if not failed and self.joblist():
            failed.append(jobname)
            raise BadAnswer("POST /disco/ctrl/get_results: the master failed (500 <html>)")
        return status(self, jobname, timeout_ms)

    monkeypatch.setattr(Master, "status", flaky)
    # Long enough that the watch asks for its status while it runs, on a loaded machine too
    # (at 0.5 s it failed once, in a suite run beside two probes: never asked, it raised none).
    run = jobs.sleepy.submit(["raw://a b a"], mode="cluster", params={"seconds": 2.0})
    with pytest.raises(JobActive) as info:
        run.wait(timeout=60)
    url = master.url
    assert str(info.value) == (
        f"lost track of job {run.jobname!r} on {url} while waiting for it (POST "
        "/disco/ctrl/get_results: the master failed (500 <html>)): it was submitted and may "
        "run on there: wait() for its run again (after run(), "
        f"Results.of_job({run.jobname!r}, master={url!r}) waits for it and reads its "
        f"results), or `discodsl --master {url} wait {run.jobname}`; stop it with "
        f"`discodsl --master {url} kill {run.jobname}`"
    )
    assert isinstance(info.value.__cause__, BadAnswer) and info.value.jobname == run.jobname
    assert run.status == "active"
    assert dict(run.wait(timeout=60)) == {"a": 2, "b": 1}
    assert run.status == "ready"


def test_ctrl_c_tells_how_to_kill_the_job(
    master: Master,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Master, "wait", interrupted)
    params = {"pidfile": str(tmp_path / "pid")}
    with pytest.raises(KeyboardInterrupt):
        cluster_jobs.sleeper.run(inputs=["raw://x"], mode="cluster", params=params)
    [(_, status, name)] = master.joblist()
    assert status == "active"
    [line] = capsys.readouterr().err.splitlines()
    assert name in line and f"`discodsl --master {master.url} kill {name}`" in line

    with pytest.raises(KeyboardInterrupt):
        cluster_jobs.sleeper.run(
            inputs=["raw://x"], mode="cluster", params=params, kill_on_interrupt=True
        )
    [(_, status, killed), _] = master.joblist()
    assert status == "dead" and killed != name
    assert f"killed job {killed}" in capsys.readouterr().err


def test_bad_content_in_a_file_the_node_read_does_not_say_to_push(
    cluster_env: DiscoMaster, tmp_path: Path
) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"good line\nbad \xff\xfe line\n")
    with pytest.raises(TaskFailed) as info:
        jobs.wordcount.run(inputs=[str(latin)], mode="cluster")
    message = str(info.value)
    assert "UTF-8" in message and "latin.txt" in message
    assert "push_inputs" not in message


class _DiscoProxy(BaseHTTPRequestHandler):
    """``DISCO_PROXY`` as Disco's answers: ``/proxy/HOST/METHOD/PATH`` from node HOST (all
    are the test master here), any other path from the master; it notes each path asked."""

    server: Any

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.server.asked.append(self.path)
        path = self.path
        if path.startswith("/proxy/"):
            path = "/" + path.split("/", 4)[4]  # /proxy/HOST/METHOD/PATH -> /PATH
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.server.target + path, data=body, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_results_are_read_through_disco_proxy(
    disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DISCO_PROXY set, the master is asked through the proxy and so are the result
    files and indexes (their node's port here is closed: only the proxy reaches it)."""
    server = LoopbackHTTPServer(_DiscoProxy)
    server.asked, server.target = [], disco_master.url  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with closed_port() as port:
            monkeypatch.setenv("DISCO_MASTER", f"http://localhost:{disco_master.port}")
            monkeypatch.setenv("DISCO_PORT", str(port))
            monkeypatch.setenv("DISCO_PROXY", f"http://127.0.0.1:{server.port}")
            results = jobs.wordcount.run(inputs=["raw://a b c", "raw://c a c"], mode="cluster")
            assert dict(results) == WORDS
    finally:
        server.shutdown()
        server.server_close()
    asked = server.asked  # type: ignore[attr-defined]
    assert "/disco/job/new" in asked
    assert any(path.startswith("/proxy/localhost/GET/disco/") for path in asked), asked


@pytest.mark.parametrize("given", ["results", "run"])
def test_a_job_chained_on_a_cluster_runs_results_gets_their_files_as_the_master_lists_them(
    master: Master, given: str
) -> None:
    # The chained job was given the files as this client reads them, http://NODE:<the
    # client's DISCO_PORT>/..., which nodes serving another port (a master reached through
    # a tunnel or a proxy) could not read; a tag of the same results gave disco:// URLs.
    # Disco's client expands a dir:// input into the disco:// URLs it lists (util.inputlist,
    # disco-spec section 5); a real 0.5.4 master ran the job so given, its inputs disco://.
    first = jobs.wordcount.submit(inputs=["raw://a b c", "raw://c a c"], mode="cluster")
    chained = first if given == "run" else first.wait()
    second = jobs.merge_counts.run(inputs=[chained], mode="cluster")
    assert dict(second) == WORDS
    inputs = master.jobinfo(second.jobname)["inputs"]
    assert inputs and all(url.startswith("disco://localhost/disco/") for url in inputs), inputs


def test_a_cluster_jobs_results_are_reached_by_its_name_from_another_program(
    master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A driver that restarted had the command line alone (`discodsl results NAME`); its
    # name given as an input "matches no file", with no word of what to pass.
    from discodsl import Results

    name = jobs.wordcount.submit(inputs=["raw://a b c", "raw://c a c"], mode="cluster").jobname
    results = Results.of_job(name, timeout=120)
    assert dict(results) == WORDS and results.jobname == name and results.mode == "cluster"
    assert Results.of_job("@").jobname == name == Results.of_job("@?wordcount").jobname
    # The script's classes go with the next job, which its records may name: one that does
    # not pickle (a lock among its attributes), which they cannot, failed it (probe CM F11).
    script = type(sys)("__main__")
    exec("import threading\nclass Unrelated:\n    lock = threading.Lock()\n", vars(script))
    monkeypatch.setitem(sys.modules, "__main__", script)
    results = Results.of_job(name, timeout=120)
    assert dict(jobs.merge_counts.run(inputs=[results], mode="cluster")) == WORDS
    with pytest.raises(NoSuchJob):
        Results.of_job("wordcount@1:2:3")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JobError, match=r"reads as the name of a job: a local run's results go"):
        jobs.merge_counts.run(inputs=[name], mode="cluster")
    # A master that cannot be reached is said so, not a job "submitted" and lost track of.
    from discodsl.errors import Unreachable

    with closed_port() as port, pytest.raises(Unreachable):
        Results.of_job(name, master=f"http://127.0.0.1:{port}")
    # A local run's name: "no Disco master is configured", or no such job on the master,
    # with no word of what it is (probe DG FR14).
    local = jobs.wordcount.run(inputs=["raw://a"], mode="local").jobname
    said = "is a local run of this machine, whose results went to the process that ran it"
    with pytest.raises(NoSuchJob, match=said):
        Results.of_job(local)
    monkeypatch.delenv("DISCO_MASTER")
    with pytest.raises(SettingsError, match="no Disco master is configured") as caught:
        Results.of_job(name)
    assert "local run" not in str(caught.value)
    with pytest.raises(SettingsError, match=said):
        Results.of_job(local)


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_the_files_an_index_lists_are_read_here_through_disco_proxy(
    disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # The index was read through the proxy, and the files it lists straight from their
    # node, which only the proxy reaches here.
    server = LoopbackHTTPServer(_DiscoProxy)
    server.asked, server.target = [], disco_master.url  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        first = jobs.wordcount.run(
            inputs=["raw://a b c", "raw://c a c"], mode="cluster", master=disco_master.url
        )
        indexes = [replicas[0] for replicas in first.urls]
        with closed_port() as port:
            monkeypatch.setenv("DISCO_MASTER", f"http://localhost:{disco_master.port}")
            monkeypatch.setenv("DISCO_PORT", str(port))
            monkeypatch.setenv("DISCO_PROXY", f"http://127.0.0.1:{server.port}")
            again = jobs.merge_counts.run(inputs=indexes, mode=mode, max_failures=0)
            assert dict(again) == WORDS
            # Results read here through the proxy, given themselves, as the README chains.
            proxied = jobs.wordcount.run(inputs=["raw://a b c", "raw://c a c"], mode="cluster")
            again = jobs.merge_counts.run(inputs=proxied, mode=mode, max_failures=0)
            assert dict(again) == WORDS
    finally:
        server.shutdown()
        server.server_close()
    asked = server.asked  # type: ignore[attr-defined]
    assert any("/out/total-" in path for path in asked), asked


@pytest.mark.parametrize("mode", ["local", "inline", "cluster"])
def test_an_index_that_lists_indexes_is_read_through_to_their_files(
    disco_master: DiscoMaster, cluster_env: str, mode: str
) -> None:
    # Here its dir:// entries went to the worker as data, read at port 8989, not DISCO_PORT.
    from discodsl.worker import urls

    first = jobs.wordcount.run(inputs=["raw://a b c", "raw://c a c"], mode="cluster")
    inner = [replicas[0] for replicas in first.urls]
    host_path = urls.split_host(urls.split(inner[0])[1])[1]
    outer = Path(urls.node_path(host_path, {"disco": str(disco_master.jobs.disco_data)}))
    outer = outer.with_name("of-indexes.results")
    outer.write_text("".join(f"0 {url} 100\n" for url in inner))
    url = inner[0].rsplit("/", 1)[0] + "/of-indexes.results"
    assert dict(jobs.merge_counts.run(inputs=[url], mode=mode, max_failures=0)) == WORDS
    if mode == "cluster":
        return
    # Indexes nested as deep as are read through, the deepest listing files, raised a bare
    # StopIteration (probe CM F6).
    for level in range(1, base._INDEX_DEPTH - 1):  # of-indexes and the results: 2 more
        outer.with_name(f"nested-{level}.results").write_text(f"0 {url} 100\n")
        url = inner[0].rsplit("/", 1)[0] + f"/nested-{level}.results"
    assert dict(jobs.merge_counts.run(inputs=[url], mode=mode, max_failures=0)) == WORDS
    # One that lists itself: read as data by the worker, at port 8989, not DISCO_PORT.
    looping = outer.with_name("loop.results")
    loop = inner[0].rsplit("/", 1)[0] + "/loop.results"
    looping.write_text(f"0 {loop} 100\n")
    with pytest.raises(JobError, match="indexes that list each other in a loop"):
        jobs.merge_counts.run(inputs=[loop], mode=mode, max_failures=0)


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_disco_url_outside_a_nodes_directories_is_refused_here_as_on_a_cluster(
    cluster_env: str, mode: str
) -> None:
    # Fetched from HOST:8989 whatever the settings said, retried, and "404 ... check that
    # the file exists", where a cluster's node refuses it at once.
    from discodsl.errors import BadURL

    for url in ("disco://localhost/etc/hostname", "DISCO://localhost/etc/hostname"):
        with pytest.raises((BadURL, TaskFailed), match="must start with disco/ or ddfs/"):
            jobs.wordcount.run(inputs=[url], mode=mode)


def test_result_files_are_read_with_the_clients_settings() -> None:
    """The timeout, port and proxy a cluster's files are read with are the settings' (a
    settings file's too), not the worker's environment-only defaults."""
    from discodsl.runners.base import client_node
    from discodsl.settings import load_settings

    settings = load_settings(
        DISCO_MASTER="http://vm:8989",
        DISCO_PORT=8990,
        DISCO_PROXY="http://gateway:8999",
        DISCODSL_HTTP_TIMEOUT=7.5,
    )
    node = client_node(settings)
    assert (node.host, node.disco_port, node.timeout, node.proxy) == (
        "",
        8990,
        7.5,
        "http://gateway:8999",
    )


@pytest.mark.usefixtures("cluster_env", "ctrl_c")
@pytest.mark.parametrize("stopped_by", ["timeout=", "Ctrl-C"])
def test_a_run_whose_watch_stopped_is_followed_again_to_its_end(
    stopped_by: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its job runs on at the master: wait() again gives its results, and status follows
    (both stayed "active", with the first JobActive, for good). A program ending then
    does not name it again: what stopped the watch said how the job goes on."""
    params = {"seconds": 1.5}
    if stopped_by == "timeout=":
        run = jobs.sleepy.submit(["raw://a b a"], mode="cluster", params=params, timeout=0.3)
        with pytest.raises(JobActive):
            run.wait()
    else:
        run = jobs.sleepy.submit(["raw://a b a"], mode="cluster", params=params)
        main_thread = threading.main_thread().ident
        assert main_thread is not None
        timer = threading.Timer(0.3, signal.pthread_kill, args=(main_thread, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run.wait()
        timer.join()
    capsys.readouterr()
    handle._end_unfinished()  # as at the program's end
    assert "the program ended before" not in capsys.readouterr().err
    assert run.status == "active"
    assert dict(run.wait(timeout=60)) == {"a": 2, "b": 1}
    assert run.status == "ready" and dict(run.results()) == {"a": 2, "b": 1}


@pytest.mark.usefixtures("cluster_env")
def test_a_run_whose_watch_stopped_can_be_killed(master: Master) -> None:
    """kill() took a stopped watch for a run that had ended, and did nothing: the job ran to
    its end, and wait() gave its results."""
    run = jobs.sleepy.submit(["raw://a"], mode="cluster", params={"seconds": 30}, timeout=0.3)
    with pytest.raises(JobActive):
        run.wait()
    run.kill()
    assert run.status == "dead"
    with pytest.raises(JobDead, match="was killed"):
        run.wait(timeout=10)
    eventually(lambda: master.jobinfo(run.jobname)["active"] == "dead")


def test_ctrl_c_while_submitting_says_the_job_may_run(
    master: Master, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The master may have made the job when Ctrl-C stopped the wait for its name: nothing
    was said, and nothing can kill it from here."""

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Master, "submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jobs.wordcount.run(inputs=["raw://a b"], mode="cluster")
    said = capsys.readouterr().err
    assert "Ctrl-C while submitting job 'wordcount': the master at" in said
    assert "list its jobs with `discodsl --master http" in said


@pytest.mark.parametrize(
    ("stopped", "said"),
    [
        ("cluster_inputs", "Ctrl-C while pushing the inputs of job 'wordcount' to DDFS: no job"),
        ("build_jobpack", "Ctrl-C while building the jobpack of job 'wordcount': no job was"),
    ],
)
def test_ctrl_c_before_the_jobpack_is_sent_says_no_job_was_submitted(
    master: Master,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stopped: str,
    said: str,
) -> None:
    # Ctrl-C in a push_inputs=True upload said the master "may have started" the job, which
    # could not exist yet (probe DU F3).
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    where = cluster if stopped == "cluster_inputs" else discodsl.builder
    monkeypatch.setattr(where, stopped, interrupted)
    with pytest.raises(KeyboardInterrupt):
        jobs.wordcount.run(inputs=["raw://a b"], mode="cluster", push_inputs=True)
    told = capsys.readouterr().err
    assert said in told and "may have started" not in told, told


def test_a_printed_line_is_cut_at_its_newlines_alone() -> None:
    # splitlines() also cut a stage's printed line at U+2028 and a form feed: one line of
    # the stage's showed as two.
    from discodsl.runners.progress import _printed

    said = _printed({"stage": "s", "text": "a\u2028b\n\x0cc\r\nd\n10%\r20%\n"})
    # A carriage return ends a line too, as a progress bar's redraws do on a terminal.
    assert said.split("\n") == ["[s] a\u2028b", "[s] \x0cc", "[s] d", "[s] 10%", "[s] 20%"]


@pytest.mark.parametrize(("disabled", "shown"), [("1", False), ("", True), ("0", True)])
def test_tqdm_disable_turns_notebook_bars_off(
    monkeypatch: pytest.MonkeyPatch, disabled: str, shown: bool
) -> None:
    # tqdm's notebook bar heeds no TQDM_DISABLE: the tutorials' build, which sets it, put
    # frozen "0%" bars into the notebooks where ipywidgets was installed (probe CP F3).
    monkeypatch.setitem(sys.modules, "ipykernel", type(sys)("ipykernel"))
    monkeypatch.setenv("TQDM_DISABLE", disabled)
    assert Progress("job").enabled is shown


def test_a_cluster_runs_timeout_holds_when_the_master_stops_answering_its_events(
    disco_master: DiscoMaster, cluster_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reads of the job's events and progress, which only feed counters and bars, went
    # through every retry: timeout=3 returned after 28 s with a master slow by 25 s, 199 s
    # with one hung (probe CQ F3).
    handle = disco_master.handle

    def slow_events(method: str, target: str, headers: Any, body: bytes | None) -> Any:
        if "rawevents" in target or "jobinfo" in target:
            time.sleep(8)
        return handle(method, target, headers, body)

    monkeypatch.setattr(disco_master, "handle", slow_events)
    started = time.monotonic()
    with pytest.raises(JobActive):
        jobs.sleepy.run(["raw://a"], params={"seconds": 30.0}, timeout=1.0, progress=True)
    assert time.monotonic() - started < 5


def test_a_cluster_runs_timeout_is_said_as_given_and_counts_from_its_submission(
    master: Master,
) -> None:
    # It was said as what was left of it once the job was submitted ("timeout=0.0946543s"
    # for timeout=0.3) (probe CX F2).
    started = time.monotonic()
    with pytest.raises(JobActive) as info:
        jobs.sleepy.run(["raw://a"], mode="cluster", params={"seconds": 30}, timeout=1.5)
    assert time.monotonic() - started < 4
    assert "(timeout=1.5s)" in str(info.value), str(info.value)
    master.kill(info.value.jobname)


def test_a_wait_after_a_submitted_runs_timeout_passed_says_so_at_once(master: Master) -> None:
    # It followed the job to its end, where run() with that timeout= raised JobActive at it
    # (probe CX F5); the wait after that one follows the job again.
    for pause in (1.5, 0.5):  # the watch ended; or it ends while this wait() waits (CY F8)
        run = jobs.sleepy.submit(["raw://a"], mode="cluster", params={"seconds": 4}, timeout=0.5)
        time.sleep(pause)
        started = time.monotonic()
        with pytest.raises(JobActive, match=r"\(timeout=0.5s\)"):
            run.wait()
        assert time.monotonic() - started < 2
        assert dict(run.wait(timeout=60)) == {"a": 1}


class _SlowEvents(DiscoMaster):
    """A master whose event log and jobinfo answer after the client's read timeout."""

    def handle(self, method: str, target: str, headers: Any, body: bytes | None) -> Any:
        if "/rawevents" in target or "/jobinfo" in target:
            time.sleep(1.5)
        return super().handle(method, target, headers, body)


@pytest.mark.parametrize("timeout", [None, 4.0])
def test_a_slow_event_log_holds_a_run_no_longer_than_its_patience(
    timeout: float | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Each read of the log got the client's whole retry schedule (about 33 s), and the run's
    # timeout= was not passed to them: a job ready in a second came back after 45 s with
    # timeout=10, 68 s without, and jobinfo's reads for the bars the same (probe DO F1). The
    # events only feed counters and progress.
    monkeypatch.setenv("DISCODSL_HTTP_TIMEOUT", "1")
    monkeypatch.setattr(cluster, "EVENTS_PATIENCE_S", 3.0)
    monkeypatch.setattr(cluster, "PROGRESS_READ_S", 0.5)
    with _SlowEvents(tmp_path) as master:
        point_at(monkeypatch, master.url, master.port)
        started = time.monotonic()
        results = jobs.wordcount.run(["raw://a b a"], timeout=timeout, progress=True)
        took = time.monotonic() - started
        assert sorted(results) == [("a", 2), ("b", 1)]
    # was 45 and 68 s; then timeout= plus 2 to 3 s, reads' bounds adding up (probe DQ F10)
    assert took < (timeout + 2 if timeout else cluster.EVENTS_PATIENCE_S + 4), took
    # Not one read of the log was answered: its counters are missing, not short (DQ F6).
    said = capsys.readouterr().err
    assert "the master did not answer the reads of its event log" in said, said
    assert "its counters are missing (its results are whole)" in said


@pytest.mark.parametrize("mode", ["cluster", "local"])
def test_stage_names_with_brackets_and_colons_keep_their_counts_and_errors(
    cluster_env: str, mode: str
) -> None:
    # Events of a stage named "a]b" or "x:1" were not read: a cluster run's counters came
    # back empty, a failing task was told "dead without a task error", and a local run's
    # status counted its tasks wrong (probe DP F8, F9).
    run = cluster_jobs.odd_names.submit(["raw://a b", "raw://b c"], mode=mode, progress=False)
    results = run.wait(timeout=120)
    assert dict(results) == {"a": 1, "b": 2, "c": 1}
    assert results.counters["lines"] == 2
    assert run.status == "ready"
    if mode == "local":
        from discodsl.runners import registry

        pipeline = registry.find(run.jobname).pipeline()
        assert [row[0] for row in pipeline] == ["a]b", "x:1"] and pipeline[0][4] == 2, pipeline
        assert all(row[2] == row[3] == 0 and row[4] for row in pipeline), pipeline  # all done
    with pytest.raises(TaskFailed, match=r"stage 'a\]b' failed .*ValueError: cannot read 'x'"):
        cluster_jobs.odd_name_failing.run(["raw://x"], mode=mode, progress=False)


def test_a_slow_but_answering_event_log_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An event log answering after 12 s, within the client's read timeout, was cut at 10 s
    # a read: the counters came back empty (probe DQ F13, a regression of the fix above).
    monkeypatch.setenv("DISCODSL_HTTP_TIMEOUT", "3")
    monkeypatch.setattr(cluster, "EVENTS_PATIENCE_S", 1.0)  # each read slower than it
    with _SlowEvents(tmp_path) as master:
        point_at(monkeypatch, master.url, master.port)
        results = cluster_jobs.chatty_count.run(["raw://a b", "raw://b c"], progress=False)
        assert dict(results) == {"a": 1, "b": 2, "c": 1}
        assert results.counters["lines"] == 2


@pytest.mark.parametrize(("partitions", "warned"), [(4, True), (2, True), (1, False)])
def test_a_concurrent_stage_with_as_many_tasks_as_slots_is_warned_of(
    cluster_env: str, capsys: pytest.CaptureFixture[str], partitions: int, warned: bool
) -> None:
    # Its tasks took every slot, waiting for the map's, which never got one: the job waited
    # for good on a real master, where the README's warning was the only word (DP S2).
    job = cluster_jobs.concurrent_count.with_options(partitions=partitions)
    assert dict(job.run(["raw://a b", "raw://b"], progress=False)) == {"a": 1, "b": 2}
    said = capsys.readouterr().err
    expected = f"stage 'add' is concurrent=True with {partitions} tasks, and the cluster has 2"
    assert (expected in said) is warned, said


def test_reading_to_the_logs_end_reads_at_once_even_with_no_time_left() -> None:
    # It paused before its first read, and read nothing when less than the pause was left:
    # a job ready just before its timeout= came back with no counters (probe DS F3, F5).
    calls: list[float] = []
    cluster.read_to_end(lambda within: calls.append(within) or True, within=0.0, least=1.0)
    assert calls == [1.0]


def test_a_job_ready_at_its_timeout_has_its_counters_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeMaster()
    fake.events = [("t", "master", "READY: Job done in 0:00:01.000")]
    progress = Progress("job", enabled=False)
    watcher = cluster._Watcher(fake, "job", progress)  # type: ignore[arg-type]
    watcher.deadline = time.monotonic()  # its timeout= used up as the poll found it ready
    watcher.settle()
    progress.close()
    assert watcher.ended and watcher.events == fake.events
    assert "counters" not in capsys.readouterr().err


def test_a_task_failing_past_max_failures_has_its_job_killed_and_each_failure_told(
    disco_master: DiscoMaster, cluster_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # A real master retries up to its max_failure_rate, 100 by default, pausing 14 s, 15 s
    # ... between: run() waited an hour and three quarters for a task that failed alike
    # every time, printing nothing of why (probe DU F1).
    from tests import death_jobs

    disco_master.jobs.save_setting("max_failure_rate", 100)
    run = death_jobs.exiting.with_options(max_failures=2).submit(["raw://a"], progress=False)
    with pytest.raises(TaskFailed) as caught:
        run.wait(timeout=120)
    said = str(caught.value)
    assert said.startswith(f"job {run.jobname!r} failed in task exits_3:0 after 3 attempts ("), said
    assert "exit code 3" in said and "discodsl killed the job on the master" in said, said
    told = [line for line in capfd.readouterr().err.splitlines() if "task failed" in line]
    assert [line.split(": ", 1)[0] for line in told] == [
        "[exits_3:0] task failed, 1 failure(s) so far, to be retried in 14 s",
        "[exits_3:0] task failed, 2 failure(s) so far, to be retried in 15 s",
        "[exits_3:0] task failed, 3 failures, past max_failures=2 (the job fails)",
    ], told
    assert all(": its worker process died running stage 'exits_3'" in line for line in told)
    assert disco_master.jobs.jobs[run.jobname].status == "dead"


@map
def _passing_error_then_death(line: str, params: Any) -> Iterator[tuple[str, int]]:
    if line == "flaky" and not os.path.exists(params):
        open(params, "w").close()
        raise OSError("a passing error, retried")
    if line == "dies":
        os._exit(9)
    yield line, 1


@job
def _one_flaky_one_dying() -> list[Any]:
    return [_passing_error_then_death]


def test_a_dead_job_names_the_task_that_killed_it_not_an_error_retried_before(
    cluster_env: str, tmp_path: Path
) -> None:
    # The OSError of task 0, retried with success, was given as the job's error, with its
    # input, though task 1's worker died every time and the master named it (probe DU F4).
    marker = str(tmp_path / "tried")
    with pytest.raises(TaskFailed) as caught:
        _one_flaky_one_dying.run(["raw://flaky", "raw://dies"], params=marker, progress=False)
    said = str(caught.value)
    own = said.split("; the master's last events")[0]
    assert ": its worker process died running stage '_passing_error_then_death' reading " in own
    assert "'raw://dies': exit code 9" in own and "passing error" not in own, said


def test_a_cluster_run_when_no_thread_can_start_sends_nothing_and_says_why(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At a limit of threads, the answer to the submission could not be read (a timer
    # thread): a bare RuntimeError, and the job ran on the master unseen (probe DW F9).
    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    sent: list[bytes] = []
    monkeypatch.setattr(Master, "submit", lambda self, data, **kw: sent.append(data))
    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(JobError) as caught:
        jobs.wordcount.run(["raw://a"], mode="cluster", progress=False)
    said = str(caught.value)
    assert said.startswith("job 'wordcount' cannot be sent to the cluster now: it needs"), said
    assert "(ulimit -u, ulimit -v)" in said and sent == []


@map
def _down_or_slow(line: str) -> Iterator[tuple[str, int]]:
    if line == "bad":
        raise OSError("service down")
    time.sleep(3)
    yield line, 1


@job(partitions=1, max_failures=2)
def _retried_then_killed() -> list[Any]:
    return [_down_or_slow]


def test_a_wait_for_a_job_that_already_died_tells_no_retries(
    disco_master: DiscoMaster, cluster_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # Read once the job was dead, each of the master's retries was told "to be retried in
    # 14 s", past max_failures too (probe DX F3): its error says why.
    disco_master.jobs.save_setting("max_failure_rate", 100)
    run = _retried_then_killed.submit(["raw://ok", "raw://bad"], progress=False)
    time.sleep(1.5)  # the master retries 'bad' meanwhile (its pauses 1000 times faster)
    run.kill()
    with pytest.raises(JobDead):
        run.wait(timeout=60)
    assert "task failed" not in capfd.readouterr().err


class _RecordedLog:
    """A master serving one recorded event log (a real 0.5.4 master's), killing nothing."""

    url = "http://vm:8989"
    timeout = 10.0

    def __init__(self, events: list[Any]) -> None:
        self.recorded, self.killed = events, 0

    def rawevents(self, name: str, offset: int, within: Any = None) -> tuple[list[Any], int]:
        return [tuple(event) for event in self.recorded[offset:]], len(self.recorded)

    def kill(self, name: str) -> None:
        self.killed += 1


@pytest.mark.parametrize(
    ("scenario", "said"),
    [
        ("error-error", "recording worker: deliberate ERROR"),
        ("exit-without-done", "exit code 0"),
    ],
)
def test_a_real_masters_retries_are_told_and_the_job_killed_past_max_failures(
    reference: Path, scenario: str, said: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # The events a real 0.5.4 master logged for a task retried (its pauses, its wording),
    # not the test master's: the first failure told with its reason and pause, the second
    # past max_failures=1, the job killed.
    from tests.http_replay import read_recording

    exchanges = read_recording(reference, f"{scenario}/http.jsonl")
    text = [e for e in exchanges if "rawevents" in e["request"]["path"]][-1]["response"]["body"]
    events = [json.loads(line) for line in text["text"].splitlines() if line.strip()]
    master = _RecordedLog(events)
    shown = Progress("rec", enabled=False)
    watcher = cluster._Watcher(master, "rec", shown)  # type: ignore[arg-type]
    watcher.max_failures = 1
    with pytest.raises(TaskFailed) as caught:
        watcher.catch_up()
    shown.close()  # its lines are written by a thread of its own
    assert str(caught.value).startswith("job 'rec' failed in task map:0 after 2 attempts (")
    assert said in str(caught.value) and master.killed == 1, caught.value
    told = [line for line in capfd.readouterr().err.splitlines() if "task failed" in line]
    assert told[0].startswith("[map:0] task failed, 1 failure(s) so far, to be retried in 14 s: ")
    assert told[1].startswith("[map:0] task failed, 2 failures, past max_failures=1 (the job")
    assert all(said in line for line in told), told
