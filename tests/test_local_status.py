"""A local run's status as another shell reads it from the registry: every stage of its
pipeline, and no task running once the run is dead, however its process ended."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl.cli import main
from discodsl.runners import registry
from tests import jobs

ROOT = Path(__file__).resolve().parent.parent

# jobs.sleepy: four slow map tasks, then its reduce; the driver waits for it
SCRIPT = """
import signal

from discodsl import JobDead
from tests import jobs

signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal

run = jobs.sleepy.submit(["raw://a", "raw://b", "raw://c", "raw://d"], mode="local",
                         progress=False, workers=4)
try:
    print(run.jobname, flush=True)
    run.wait(timeout=120)
except JobDead:
    pass
except KeyboardInterrupt:
    run.kill()  # a Ctrl-C before wait() began (wait() kills the run itself)
    run.ended(60)
print("dead", flush=True)
"""

# As a Disco master's jobinfo has a killed job's: the tasks not done are waiting.
DEAD = [["slow_words", 0, 4, 0, 0, 0], ["total", 0, 0, 0, 0, 0]]


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[str]]:
    """A process running jobs.sleepy locally, registered in this test's own registry."""
    monkeypatch.setenv(registry.RUNS_ENV, str(tmp_path / "runs"))
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    yield process
    process.kill()
    process.wait(timeout=60)


def read_line(process: subprocess.Popen[str], seconds: float = 60.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    assert ready, "the script printed nothing"
    return process.stdout.readline().strip()


def scheduled(name: str) -> str:
    """Wait until the run's first stage is scheduled; the run's name."""
    deadline = time.monotonic() + 60
    while not any("scheduled with" in m for _, _, m in registry.find(name).read_events()[0]):
        assert time.monotonic() < deadline, "the run's first stage was never scheduled"
        time.sleep(0.05)
    return name


def status(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["status", "--local", "--json", name]) == 0
    info: dict[str, object] = json.loads(capsys.readouterr().out)
    return info


def test_an_active_run_lists_every_stage_and_counts_its_tasks_running(
    driver: subprocess.Popen[str],
) -> None:
    run = registry.find(scheduled(read_line(driver)))
    all_running = [["slow_words", 0, 0, 4, 0, 0], ["total", 0, 0, 0, 0, 0]]
    deadline = time.monotonic() + 60  # the four tasks are assigned one by one
    while run.pipeline() != all_running:
        assert time.monotonic() < deadline, run.pipeline()
        time.sleep(0.05)


def test_a_run_killed_from_another_shell_has_no_task_running(
    driver: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = scheduled(read_line(driver))
    assert main(["kill", "--local", name]) == 0
    assert read_line(driver) == "dead"
    assert registry.find(name).pipeline() == DEAD
    info = status(name, capsys)
    assert info["active"] == "dead"
    assert info["pipeline"] == DEAD
    assert main(["status", "--local", name]) == 0
    out = capsys.readouterr().out
    assert "slow_words       0/4 done, 0 running, 0 failed" in out
    assert "total            0/0 done, 0 running, 0 failed" in out


def test_killing_a_run_whose_process_is_suspended_says_so_at_once(
    driver: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Its process stopped (Ctrl-Z), the run cannot end itself: ``kill`` waited 30 s, then
    advised ``kill PID``, which a stopped process does not act on either."""
    name = scheduled(read_line(driver))
    driver.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert main(["kill", "--local", name]) == 1
        assert time.monotonic() - started < registry.KILL_POLL * 20  # not the 30 s wait
        err = capsys.readouterr().err
        assert f"process {driver.pid}" in err and "is stopped" in err
        assert f"kill -CONT {driver.pid}" in err and f"kill -KILL {driver.pid}" in err
    finally:
        driver.send_signal(signal.SIGCONT)
    assert read_line(driver) == "dead"  # going on, it kills the run it was asked to


def test_a_run_whose_driver_was_interrupted_has_no_task_running(
    driver: subprocess.Popen[str],
) -> None:
    name = scheduled(read_line(driver))
    driver.send_signal(signal.SIGINT)
    assert read_line(driver) == "dead"
    assert driver.wait(timeout=60) == 0
    run = registry.find(name)
    assert run.status == "dead"
    assert run.pipeline() == DEAD


def test_a_run_whose_driver_was_killed_says_so_to_another_shell(
    driver: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL: the run ends with its process, unannounced. Its entry stays, recorded dead
    with the reason, so that wait, events and status say what happened (the entry was
    dropped: wait pointed at events, which knew no such run, and events --follow ended
    with no word)."""
    name = scheduled(read_line(driver))
    driver.kill()
    driver.wait(timeout=60)
    why = f"the process that ran it (pid {driver.pid}) ended before it did"
    assert main(["wait", "--local", name]) == 1
    assert f"local run {name} ended dead: {why}" in capsys.readouterr().err
    assert main(["events", "--local", "--follow", name]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[-2].endswith(f"master ERROR: {why}") and shown[-1].endswith("WARN: Job killed")
    assert status(name, capsys)["pipeline"] == DEAD
    registry.clean(registry.runs_dir())
    assert registry.find(name).status == "dead"  # kept a day, as other finished runs are
    # Its node directory stayed until another run made one; purge said it was gone.
    left = list(Path(tempfile.gettempdir()).glob(f"discodsl-node-{driver.pid}-*"))
    assert main(["purge", "--local", name]) == 0
    assert "nothing left to purge" in capsys.readouterr().out
    assert left and not any(p.exists() for p in left)


def test_wait_results_and_purge_of_a_local_run_from_another_shell(
    driver: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = scheduled(read_line(driver))
    assert main(["wait", "--local", "--timeout", "0.3", name]) == 124
    assert f"job {name!r} is still active after" in capsys.readouterr().err
    assert main(["purge", "--local", name]) == 1
    assert f"stop it with `discodsl kill {name}`" in capsys.readouterr().err
    assert main(["results", "--local", name]) == 1
    err = capsys.readouterr().err
    assert "its files are removed when it ends" in err
    assert "run it with -o FILE" in err and "run the same command again, with --cache" in err
    assert main(["kill", "--local", name]) == 0
    assert main(["wait", "--local", name]) == 1
    err = capsys.readouterr().err
    assert f"local run {name} ended dead" in err and f"`discodsl events {name}`" in err
    assert main(["results", "--local", name]) == 1  # said to have none, not to be elsewhere
    err = capsys.readouterr().err
    assert f"local run {name} ended dead" in err and "there are no records to print" in err
    assert main(["purge", "--local", name]) == 0
    assert "nothing left to purge (a failed run's files went when it" in capsys.readouterr().out


def test_waiting_for_a_finished_local_run_says_it_is_ready(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests import jobs

    run = jobs.wordcount.submit(["raw://a b a"], mode="local", progress=False)
    assert dict(run.wait(timeout=60)) == {"a": 2, "b": 1}
    capsys.readouterr()
    assert main(["wait", run.jobname]) == 0  # no master: the local runs
    assert capsys.readouterr().out == f"{run.jobname}: ready\n"
    assert main(["wait", run.jobname, "--json"]) == 0
    waited = {
        "name": run.jobname,
        "status": "ready",
        "result_files": None,
        "results_deleted": False,
    }
    assert json.loads(capsys.readouterr().out) == waited
    assert main(["kill", run.jobname, "--json"]) == 0
    killed = {"name": run.jobname, "killed": False, "status": "ready"}
    assert json.loads(capsys.readouterr().out) == killed
    assert main(["purge", run.jobname, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": run.jobname, "purged": False}


# -- from the events alone ------------------------------------------------------------

STARTED = [
    ("t", "master", "New job initialized!"),
    ("t", "master", "Stage slow_words scheduled with 4 tasks"),
    ("t", "master", "slow_words:0 assigned to discodsl-local"),
    ("t", "master", "slow_words:1 assigned to discodsl-local"),
    ("t", "discodsl-local", "DONE: [slow_words:1] Task finished"),
    ("t", "master", "slow_words:2 assigned to discodsl-local"),
    ("t", "master", "WARNING: [slow_words:2] Worker crashed! (exit code: -9)"),
]


def test_a_run_whose_process_died_without_a_word_has_no_task_running(tmp_path: Path) -> None:
    facts = {"name": "sleepy@1", "status": "active", "pid": dead_pid(), "host": registry.HOST}
    run = registry.LocalRun(tmp_path, {**facts, "stages": ["slow_words", "total"]})
    (tmp_path / "events").write_text("".join(json.dumps(e) + "\n" for e in STARTED))
    assert run.status == "dead"
    assert run.pipeline() == [["slow_words", 0, 3, 0, 1, 1], ["total", 0, 0, 0, 0, 0]]


def test_the_pipeline_from_events_counts_a_killed_runs_tasks_as_waiting() -> None:
    killed = [*STARTED, ("t", "master", "WARN: Job killed")]
    # As a master counts: a task runs from "assigned" until it is done or fails.
    assert registry.pipeline(STARTED) == [["slow_words", 0, 2, 1, 1, 1]]
    assert registry.pipeline(STARTED[:4]) == [["slow_words", 0, 2, 2, 0, 0]]
    assert registry.pipeline(killed) == [["slow_words", 0, 3, 0, 1, 1]]
    assert registry.pipeline(STARTED, ["slow_words", "total"], ended=True) == [
        ["slow_words", 0, 3, 0, 1, 1],
        ["total", 0, 0, 0, 0, 0],
    ]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


def test_the_local_runners_event_words_are_the_ones_clients_read() -> None:
    """handle words a local run's events as a master does; the registry (``discodsl status``
    of a local run) and the cluster runner read them with jobstatus' patterns."""
    from discodsl.jobstatus import STAGE_SCHEDULED, TASK_ASSIGNED, TASK_DONE, TASK_ERROR, TASK_MSG
    from discodsl.runners.handle import _worded

    said = {
        "stage": _worded("stage", {"stage": "map", "tasks": 3}, "node"),
        "assigned": _worded("task_assigned", {"stage": "map", "taskid": 2}, "node"),
        "msg": _worded("msg", {"stage": "map", "taskid": 2, "text": "hi\nthere"}, "node"),
        "done": _worded("task_done", {"stage": "map", "taskid": 2}, "node"),
    }
    assert STAGE_SCHEDULED.fullmatch(said["stage"][0][1]).groups() == ("map", "3")  # type: ignore[union-attr]
    assert TASK_ASSIGNED.fullmatch(said["assigned"][0][1]).groups() == ("map", "2", "node")  # type: ignore[union-attr]
    assert TASK_MSG.fullmatch(said["msg"][0][1]).groups() == ("map", "2", "hi\nthere")  # type: ignore[union-attr]
    assert TASK_DONE.fullmatch(said["done"][0][1]).groups() == ("map", "2")  # type: ignore[union-attr]
    assert TASK_ERROR.fullmatch("FATAL: [map:2] Traceback: x").groups() == (  # type: ignore[union-attr]
        "FATAL",
        "map",
        "2",
        "Traceback: x",
    )


def test_a_runs_events_keep_its_output_whole_up_to_a_bound_then_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every MSG was kept whole, in the driver and the registry's file: 120 tasks printing
    # 950 KB each held 108 MB of each.
    from discodsl.runners import handle
    from discodsl.worker.messages import EVENT_TEXT_LIMIT

    monkeypatch.setattr(handle, "KEPT_OUTPUT", 30_000)
    log = handle.EventLog("node")
    sunk: list[tuple[str, str, str]] = []
    log.attach(sunk.append)
    for taskid in range(5):
        log("msg", {"stage": "map", "taskid": taskid, "text": f"{taskid}" * 10_000})
    texts = [message for _, _, message in log.events()]
    assert [len(text) for text in texts[:3]] == [len("MSG: [map:0] ") + 10_000] * 3
    for text in texts[3:]:
        assert " ... (3000 characters not kept: a run's events keep " in text
        assert len(text.split(" ... ")[0]) == len("MSG: [map:3] ") + EVENT_TEXT_LIMIT
    assert [message for _, _, message in sunk] == texts


def test_a_task_index_is_named_where_a_stage_finds_it(tmp_path: Path) -> None:
    """The node master names each task's index; a finished run's stage(name) finds those of
    that stage, in task order, and no other stage's (one of them a prefix of the other)."""
    from discodsl.runners.layout import JobLayout

    layout = JobLayout(str(tmp_path), "node", "job@1:2:3")
    (Path(layout.home) / ".disco").mkdir(parents=True)
    written = {}
    for stage, taskid in [("map", 10), ("map", 2), ("map-two", 1), ("reduce", 0)]:
        name = layout.new_index(stage, taskid)
        (Path(layout.home) / name).write_text("")
        written[stage, taskid] = name
    (Path(layout.home) / ".disco" / "map-x-1.results").write_text("")  # not a task's
    assert layout.indexes("map") == [written["map", 2], written["map", 10]]
    assert layout.indexes("map-two") == [written["map-two", 1]]
    assert layout.indexes("absent") == []


@pytest.mark.parametrize("how", ["failed", "timed out"])
def test_a_failed_local_run_names_the_run_that_status_takes(
    how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It named the job ('failing'), which no command takes, where a master names the run
    ('failing@704:...'); and TaskFailed.jobname was empty."""
    from discodsl import TaskFailed
    from tests import jobs

    if how == "failed":
        run = jobs.failing.submit(["raw://a boom"], mode="local", progress=False)
    else:
        params = {"seconds": 30.0}
        run = jobs.sleepy.submit(["raw://a"], mode="local", timeout=0.5, params=params)
    with pytest.raises(TaskFailed) as info:
        run.wait(timeout=60)
    assert info.value.jobname == run.jobname and run.jobname.startswith(f"{run.job}@")
    assert str(info.value).startswith(f"job {run.jobname!r} ")
    assert main(["status", "--local", run.jobname]) == 0
    assert capsys.readouterr().out.startswith(f"{run.jobname}: dead")


def test_a_run_whose_pid_another_process_took_is_dead(tmp_path: Path) -> None:
    # Its owner was SIGKILLed and its pid reused (a container's small pid_max): the entry
    # showed active until that other process ended, `wait` blocked, and `kill` advised
    # killing the other process.
    from discodsl.worker import owners

    started = owners.started(os.getpid())
    assert started is not None
    facts = {"name": "reused@1", "status": "active", "pid": os.getpid(), "host": registry.HOST}
    alive = registry.LocalRun(tmp_path, {**facts, "pid_started": started, "stages": []})
    assert alive.status == "active"
    other = registry.LocalRun(tmp_path, {**facts, "pid_started": started - 1, "stages": []})
    assert other.status == "dead"
    older = registry.LocalRun(tmp_path, {**facts, "stages": []})  # written before: no start
    assert older.status == "active"


def test_a_run_named_in_the_microsecond_another_process_named_one_gets_a_name_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Names increase within a process only: the second process's run went unregistered, and
    # `discodsl jobs`, `kill` and `results` of that name reached the first process's run.
    import types

    from discodsl.runners import layout
    from tests import jobs

    later = time.time() + 3600  # past every name this process has given
    clock = types.SimpleNamespace(time=lambda: later, time_ns=time.time_ns)
    monkeypatch.setattr(layout, "time", clock)
    micros = int(later * 1_000_000)
    seconds, micro = divmod(micros, 1_000_000)
    taken = f"wordcount@{seconds // 1_000_000:x}:{seconds % 1_000_000:x}:{micro:x}"
    theirs = registry.runs_dir() / taken
    theirs.mkdir(parents=True)
    facts = {"name": taken, "status": "ready", "pid": 1, "started": time.time()}
    (theirs / "run.json").write_text(json.dumps(facts))
    run = jobs.wordcount.submit(["raw://a b a"], mode="local", progress=False)
    assert dict(run.wait(timeout=120)) == {"a": 2, "b": 1}
    assert run.jobname != taken and run.jobname.startswith("wordcount@")
    assert registry.find(run.jobname).status == "ready"
    assert json.loads((theirs / "run.json").read_text()) == facts  # theirs untouched


def test_a_damaged_entry_is_named_where_local_runs_are_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `discodsl jobs` left such a run out without a word, where `status` named it (probe CV
    # F8d).
    jobs.wordcount.run(["raw://a"], mode="local", progress=False)
    damaged = registry.runs_dir() / "j@1:2:3"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    try:
        assert main(["jobs", "--local"]) == 0
        err = capsys.readouterr().err
        assert f"the entry {damaged} is damaged (its run.json is not a run's JSON)" in err
        assert f"remove {damaged}" in err
    finally:
        (damaged / "run.json").unlink()
        damaged.rmdir()


def test_a_local_runs_counters_are_kept_apart_from_the_facts_every_listing_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # run.json held the counters: a run of a million counter names made every later run's
    # cleanup and every listing parse 17 MB, for a day (probe CU F4).
    results = jobs.top_words.run(["raw://a 1 b 2 3"], mode="local", progress=False)
    assert results.counters == {"skipped": 3}
    entry = registry.runs_dir() / results.jobname
    assert "counters" not in json.loads((entry / "run.json").read_text())
    assert main(["status", results.jobname, "--local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counters"] == {"skipped": 3}


def test_a_run_whose_events_could_not_all_be_written_says_its_counts_may_be_short(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its event log cut short (ulimit -f, a full disk), `status` showed a finished run's
    # tasks as not done without a word (probe DB F10).
    written = 0
    add = registry._Entry.add

    class Full:  # the events file past `ulimit -f`
        def __init__(self, events: Any) -> None:
            self.events, self.closed = events, False

        def write(self, text: str) -> None:
            raise OSError(27, "File too large")

        def close(self) -> None:
            self.events.close()
            self.closed = True

    def cut(entry: Any, event: Any) -> None:
        nonlocal written
        written += 1
        if written == 3:
            entry._events = Full(entry._events)
        add(entry, event)

    monkeypatch.setattr(registry._Entry, "add", cut)
    results = jobs.wordcount.run(["raw://a b", "raw://c"], mode="local", progress=False)
    assert main(["status", results.jobname, "--local"]) == 0
    said = capsys.readouterr().out
    assert "its event log stops short (it could not be written): the counts above" in said
    assert main(["status", results.jobname, "--local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events_cut"] is True
