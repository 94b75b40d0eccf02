"""What stage code prints, forwarded by a real worker: whole up to the per-task cap, then a note
saying exactly how many bytes were dropped; never faster than the master's MSG limit; before
the counters and DONE; in MSGs the master keeps whole (a Disco master keeps only the first 8 KB
of an event; the local runner's, any). Checked over real pipes, for both masters' limits, and
end to end through the local runner and a cluster."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import StageError, TaskFailed, builder, count, job, map
from discodsl.worker.capture import (
    LOCAL_MESSAGE,
    MAX_FORWARDED,
    MESSAGE_ENV,
    MESSAGES_PER_TASK,
)
from discodsl.worker.frames import MAX_PAYLOAD
from discodsl.worker.messages import EVENT_TEXT_LIMIT
from discodsl.worker.records import read_records
from tests.worker_driver import (
    Transcript,
    lay_out,
    node_environment,
    run_worker,
    scripted,
    task_payload,
)

LINES = 1000  # of 100 bytes each, newline included: 100 KB


ROOT = Path(__file__).resolve().parent.parent


def _line(i: int) -> str:
    return f"line {i:04d} " + "y" * 89


@map
def prints_100_kb(record: str) -> Iterator[tuple[str, int]]:
    for i in range(LINES):
        print(_line(i))
    count("printed")
    yield record, 1


@map
def prints_50_kb(record: str) -> Iterator[tuple[str, int]]:
    for i in range(LINES // 2):
        print(_line(i))
    count("printed")
    yield record, 1


@map
def prints_a_3_mb_line(record: str) -> Iterator[tuple[str, int]]:
    print("x" * 3_000_000)
    yield record, 1


@map
def prints_3_mb_of_euros(record: str) -> Iterator[tuple[str, int]]:
    print("\u20ac" * 1_000_000)  # 3 bytes each in UTF-8: no batch size falls between two
    yield record, 1


@map
def prints_2_mb_of_lines(record: str) -> Iterator[tuple[str, int]]:
    for i in range(20_000):
        print(_line(i))
    yield record, 1


def _job(stage: Any) -> Any:
    @job(max_failures=0)
    def one_stage() -> list[Any]:
        return [stage]

    return one_stage


# The two masters' limits: the largest MSG text, and what a task forwards in all.
LIMITS = {
    "disco": (EVENT_TEXT_LIMIT, MESSAGES_PER_TASK * EVENT_TEXT_LIMIT),
    "local": (LOCAL_MESSAGE, MAX_FORWARDED),
}


@pytest.fixture(params=sorted(LIMITS))
def master(request: pytest.FixtureRequest) -> str:
    """Whose limits the worker keeps: a Disco master's (its default), or the local runner's
    (which says so in the worker's environment)."""
    return str(request.param)


def _worker(tmp_path: Path, stage: Any, master: str = "disco") -> Transcript:
    chosen = _job(stage)
    data = builder.build_jobpack(chosen, chosen.options, [["raw://r"]])
    layout = lay_out(data, tmp_path / "data", "vm", "t@1:2:3")
    task = task_payload(layout, taskid=0, stage=stage.name, grouping="split", group=(0, "r"))
    reply = ["done", [[0, "ok", 0, [[0, "raw://r"]]]]]
    extra = {MESSAGE_ENV: str(LOCAL_MESSAGE)} if master == "local" else {}
    return run_worker(layout.home, node_environment(data, extra), scripted(task, [reply]))


def _output_messages(transcript: Transcript) -> list[str]:
    return [
        f.payload
        for f in transcript.sent
        if f.name == "MSG" and not f.payload.startswith("discodsl-counters: ")
    ]


def _assert_rate(transcript: Transcript) -> None:
    times = [t for f, t in zip(transcript.sent, transcript.times, strict=True) if f.name == "MSG"]
    assert all(sum(1 for u in times if t <= u < t + 1.0) <= 4 for t in times), times


def _assert_sizes(transcript: Transcript, master: str) -> None:
    """Every MSG (output and counters) within what the master keeps whole."""
    largest = LIMITS[master][0]
    assert all(len(f.payload.encode()) <= largest for f in transcript.sent if f.name == "MSG")
    assert largest < MAX_PAYLOAD


def test_prints_under_the_cap_arrive_whole_in_order_before_counters_and_done(
    tmp_path: Path, master: str
) -> None:
    stage = prints_100_kb if master == "local" else prints_50_kb
    lines = LINES if master == "local" else LINES // 2
    transcript = _worker(tmp_path, stage, master)
    assert transcript.names()[-1] == "DONE"
    messages = _output_messages(transcript)
    assert "".join(messages) == "".join(_line(i) + "\n" for i in range(lines))
    assert all(m.endswith("\n") for m in messages)  # cut between lines, never inside one
    names = [f.payload[:19] if f.name == "MSG" else f.name for f in transcript.sent]
    assert names[-3:] == ["discodsl-counters: ", "OUTPUT", "DONE"]
    _assert_rate(transcript)
    _assert_sizes(transcript, master)


def test_a_3_mb_line_is_cut_at_the_cap_with_the_exact_count_dropped(
    tmp_path: Path, master: str
) -> None:
    cap = LIMITS[master][1]
    transcript = _worker(tmp_path, prints_a_3_mb_line, master)
    assert transcript.names()[-1] == "DONE"
    text = "".join(_output_messages(transcript))
    dropped = 3_000_001 - cap
    assert text.startswith("x" * cap + "\n")
    assert re.search(rf"\[{dropped} more bytes dropped\b", text), text[-300:]
    assert text.count("x") == cap
    _assert_rate(transcript)
    _assert_sizes(transcript, master)


def test_batches_and_the_cap_never_split_a_character(tmp_path: Path, master: str) -> None:
    cap = LIMITS[master][1]
    transcript = _worker(tmp_path, prints_3_mb_of_euros, master)
    messages = _output_messages(transcript)
    text = "".join(messages)
    kept = cap // 3
    assert text.startswith("\u20ac" * kept + "\n[")
    assert f"[{3_000_001 - 3 * kept} more bytes dropped" in text
    assert "\ufffd" not in "".join(messages)  # no MSG ends or starts inside a character
    _assert_sizes(transcript, master)


def test_2_mb_of_lines_deliver_the_first_bytes_up_to_the_cap_and_count_the_rest(
    tmp_path: Path, master: str
) -> None:
    cap = LIMITS[master][1]
    transcript = _worker(tmp_path, prints_2_mb_of_lines, master)
    text = "".join(_output_messages(transcript))
    everything = "".join(_line(i) + "\n" for i in range(20_000))
    assert text.startswith(everything[:cap])
    note = text[cap:]
    assert re.search(rf"\[{len(everything) - cap} more bytes dropped\b", note), note
    _assert_rate(transcript)
    _assert_sizes(transcript, master)


def test_the_local_runner_shows_every_printed_line(capsys: pytest.CaptureFixture[str]) -> None:
    results = _job(prints_100_kb).run(inputs=["raw://r"], mode="local", progress=False)
    assert results.counters == {"printed": 1}
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert shown == [f"[prints_100_kb] {_line(i)}" for i in range(LINES)]


@map
def prints_accents(line: str) -> Iterator[tuple[str, int]]:
    print("stage says héllo ✓")
    yield line, 1


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_stage_prints_text_whatever_the_programs_io_encoding(
    encoding: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers inherit PYTHONIOENCODING, but print into a pipe read as UTF-8: under ascii a
    stage's print failed the task (inline runs it), under latin-1 it came out as U+FFFD."""
    monkeypatch.setenv("PYTHONIOENCODING", encoding)
    results = _job(prints_accents).run(inputs=["raw://r"], mode="local", progress=False)
    assert list(results) == [("r", 1)]
    assert "[prints_accents] stage says héllo ✓" in capsys.readouterr().err.splitlines()


class _LoggingShim:
    """What a program puts in place of sys.stdout to send prints to its log: no flush."""

    def write(self, text: str) -> int:
        return len(text)


@map
def silences_stdout(line: str) -> Iterator[tuple[str, int]]:
    print("before it is silenced")
    sys.stdout = None if line == "none" else _LoggingShim()  # type: ignore[assignment]
    yield line, 1


def test_a_stage_that_replaces_stdout_for_good_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The worker died after the stage succeeded (the interpreter's last flush failed), was
    # blamed on sys.exit(1) and retried (probe CT F3).
    results = _job(silences_stdout).run(["raw://none", "raw://shim"], mode="local")
    assert sorted(results) == [("none", 1), ("shim", 1)]
    assert "[silences_stdout] before it is silenced" in capsys.readouterr().err


@map
def rewraps_stdout(line: str) -> Iterator[tuple[str, int]]:
    """A script's idiom: its own UTF-8, line-buffered stdout over ``sys.stdout.buffer``."""
    import io

    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    print("rewrapped é", line)
    yield line, 1


@map
def prints_to_both(line: str) -> Iterator[tuple[str, int]]:
    import os

    print("1 stdout")
    print("2 stderr", file=sys.stderr)
    os.write(1, b"3 fd 1\n")
    sys.stdout.write("4 stdout\n")
    print(f"5 {type(sys.stdout.buffer).__name__} {sys.stdout.name}", file=sys.stderr)
    yield line, 1


@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "interpreter"])
def test_what_a_stage_prints_goes_out_unbuffered_in_its_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fork_server: bool
) -> None:
    # Made anew for DI F9, stdout and stderr were buffered: lines came out of order, and a
    # crash lost them (probe DJ F2, a regression).
    if not fork_server:
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    _job(prints_to_both).run(["raw://a"], mode="local", progress=False).close()
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert said == [
        "[prints_to_both] 1 stdout",
        "[prints_to_both] 2 stderr",
        "[prints_to_both] 3 fd 1",
        "[prints_to_both] 4 stdout",
        "[prints_to_both] 5 FileIO <stdout>",
    ]


@map
def prints_around_a_child(line: str) -> Iterator[tuple[str, int]]:
    import subprocess

    print("step 1 ...", end=" ")
    subprocess.run(["echo", "child says hi"], check=True)
    print("ok")
    sys.stdout.write("A")
    sys.stdout.buffer.write(b"B\n")
    print("C")
    yield line, 1


@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "interpreter"])
def test_an_unfinished_line_keeps_its_place_among_what_a_child_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fork_server: bool
) -> None:
    # Line-buffered, the text layer held "step 1 ..." past the child's line, and "A" past
    # the "B" written below it (probe DX F1): a print is written as it is printed.
    if not fork_server:
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    _job(prints_around_a_child).run(["raw://a"], mode="local", progress=False).close()
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert said == [
        "[prints_around_a_child] step 1 ... child says hi",
        "[prints_around_a_child] ok",
        "[prints_around_a_child] AB",
        "[prints_around_a_child] C",
    ]


@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "interpreter"])
def test_a_stage_may_wrap_stdouts_buffer_anew(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fork_server: bool
) -> None:
    # OSError: Illegal seek, retried: stdout's FileIO remembered that the launcher's fd 1
    # was seekable, and the new wrapper asked the capture's pipe for its position (DI F9).
    if not fork_server:
        monkeypatch.setenv("DISCODSL_NO_FORKSERVER", "1")
    results = _job(rewraps_stdout).run(["raw://a"], mode="local", progress=False)
    assert list(results) == [("a", 1)]
    assert "[rewraps_stdout] rewrapped é a" in capsys.readouterr().err.splitlines()


def test_the_local_runner_says_how_much_was_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    _job(prints_a_3_mb_line).run(inputs=["raw://r"], mode="local", progress=False)
    err = capsys.readouterr().err
    assert err.count("x") == MAX_FORWARDED
    assert f"[{3_000_001 - MAX_FORWARDED} more bytes dropped" in err


@map
def prints_and_counts(record: str) -> Iterator[tuple[str, int]]:
    for i in range(LINES // 2):
        print(_line(i))
    for i in range(1000):
        count(f"counter number {i:04d}")
    yield record, 1


def test_a_cluster_gets_every_printed_line_and_counter_whole(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Disco master keeps only the first 8 KB of an event: 50 KB of prints and a thousand
    counters (30 KB of JSON) come in MSGs it keeps whole, so none is cut short or lost."""
    results = _job(prints_and_counts).run(inputs=["raw://r"], mode="cluster", progress=False)
    assert results.counters == {f"counter number {i:04d}": 1 for i in range(1000)}
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert shown == [f"[prints_and_counts] {_line(i)}" for i in range(LINES // 2)]


@map
def writes_where_it_runs(record: str) -> Iterator[tuple[str, str]]:
    import os

    yield record, os.getcwd()


@pytest.mark.parametrize("how", ["absolute path from elsewhere", "./worker from its home"])
def test_the_launcher_runs_the_task_in_its_job_home_however_it_is_started(
    tmp_path: Path, how: str
) -> None:
    chosen = _job(writes_where_it_runs)
    data = builder.build_jobpack(chosen, chosen.options, [["raw://r"]])
    layout = lay_out(data, tmp_path / "data", "vm", "t@1:2:3")
    task = task_payload(
        layout, taskid=0, stage="writes_where_it_runs", grouping="split", group=(0, "r")
    )
    reply = ["done", [[0, "ok", 0, [[0, "raw://r"]]]]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    started = (
        {"command": str(Path(layout.home) / "worker"), "cwd": str(elsewhere)}
        if how.startswith("absolute")
        else {"command": "./worker", "cwd": layout.home}
    )
    transcript = run_worker(layout.home, node_environment(data), scripted(task, [reply]), **started)
    assert transcript.names()[-1] == "DONE", bytes(transcript.raw)[-2000:]
    output = transcript.frame("OUTPUT").payload[1]
    with open(Path(layout.home) / output, "rb") as handle:
        records = list(read_records(handle, output))
    assert records == [("r", str(Path(layout.home).resolve()))]


def test_a_program_without_stderr_runs_jobs_that_print_and_keeps_stdout_its_own(
    tmp_path: Path,
) -> None:
    # Started with descriptor 2 closed (a service, `2>&-`): sys.stderr is None, and the
    # forwarding of what a stage printed failed the run; discodsl's notices went to stdout.
    script = tmp_path / "no_stderr.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            os.close(2)
            sys.stderr = None
            from discodsl import job, map, reduce

            @map
            def loud(line):
                print("looking at", line)
                for word in line.split():
                    yield word, 1

            @reduce
            def total(word, counts):
                yield word, sum(counts)

            @job(partitions=2)
            def counted():
                return [loud, total]

            for mode in ("local", "inline"):
                print(mode, sorted(counted.run(["raw://a b a"], mode=mode, progress=True)))
            counted.submit(["raw://a"], params={}, mode="local")  # ends with the program
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        "local [('a', 2), ('b', 1)]",
        "looking at a b a",  # inline, the stage runs in the program, and prints to its stdout
        "inline [('a', 2), ('b', 1)]",
    ]


ODD_STDERR = """
import io, os, sys
from discodsl import job, map

@map
def loud(line):
    print("before", line)
    print("caf\\u00e9", line)
    print("after", line)
    yield line, 1

@job
def printed():
    return [loud]

class Logged:  # an app's stream to its logger: write() alone
    def __init__(self):
        self.lines = []
    def write(self, text):
        self.lines.append(text)
        return len(text)

class Refusing(Logged):  # a non-blocking pipe, full at the first write
    def write(self, text):
        if not self.lines:
            self.lines.append("")
            raise BlockingIOError(11, "Resource temporarily unavailable", 0)
        return super().write(text)

kind = sys.argv[1]
if kind == "closed":
    sys.stderr.close()
    stream = None
elif kind == "no flush":
    stream = sys.stderr = Logged()
elif kind == "refusing":
    stream = sys.stderr = Refusing()
else:  # an ASCII stream that refuses what it cannot encode
    raw = io.BytesIO()
    stream = sys.stderr = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
for mode in ("local", "inline", "local"):
    print(mode, sorted(printed.run(["raw://a"], mode=mode)), flush=True)
if kind in ("no flush", "refusing"):
    print(repr("".join(stream.lines)))
elif kind == "ascii":
    stream.flush()
    print(repr(raw.getvalue().decode()))
sys.stderr = sys.__stderr__ if kind != "closed" else open(os.devnull, "w")  # Python's, at exit
"""


@pytest.mark.parametrize("kind", ["closed", "no flush", "ascii", "refusing"])
def test_an_odd_stderr_of_the_programs_takes_what_it_can(tmp_path: Path, kind: str) -> None:
    # A closed sys.stderr failed every local run at its start, "I/O operation on closed
    # file"; a stream with no flush() (a logging adapter's) killed the thread that shows
    # what stages print, the rest of it lost; an ASCII one lost the lines printed with
    # one it could not encode; a non-blocking one lost what it refused, uncounted (probe
    # EA F3 to F5).
    script = tmp_path / "odd_stderr.py"
    script.write_text(ODD_STDERR)
    done = subprocess.run(
        [sys.executable, str(script), kind],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    said = done.stdout.splitlines()
    runs = [line for line in said if line.startswith(("local ", "inline "))]
    assert runs == ["local [('a', 1)]", "inline [('a', 1)]", "local [('a', 1)]"], said
    if kind == "closed":
        return
    assert "Traceback" not in done.stderr, done.stderr
    shown = ast.literal_eval(said[-1])  # the repr the script printed
    escaped = "caf\\xe9" if kind == "ascii" else "caf\u00e9"  # inline's went to stdout
    assert f"[loud] before a\n[loud] {escaped} a\n[loud] after a\n" in shown, shown
    if kind == "refusing":  # what it refused, counted, in the run that printed it
        [(first, dropped)] = re.findall(
            r"(.*)\[discodsl\] (\d+) line\(s\) that stages printed were not shown", shown, re.S
        )
        assert first.count("[loud]") + int(dropped) == 3, shown
        assert shown.count("[loud] after a") == 1 + first.count("[loud] after a"), shown
        return
    assert shown.count("[loud] after a") == 2, shown


NONBLOCKING = """
import os, sys
from discodsl import job, map

@map
def chatty(line):
    for i in range(2000):
        print(f"LINE {line} {i} " + "x" * 100, file=sys.stderr)
    yield line, 1

@job
def chat():
    return [chatty]

os.set_blocking(2, False)
print(sorted(chat.run(["raw://a", "raw://b"], mode="local", progress=sys.argv[1] == "bars")))
"""


@pytest.mark.parametrize("buffered", ["buffered", "unbuffered"])
@pytest.mark.parametrize("progress", ["bars", "no bars"])
def test_a_non_blocking_stderr_read_late_gets_every_line_whole(
    tmp_path: Path, buffered: str, progress: str
) -> None:
    # Lines it refused were lost, or cut mid-line, and counted wrong or not at all (probe
    # EH F1): 1,659 of 4,000 shown and 4,000 told dropped; unbuffered (python -u), 1,084
    # shown and none told.
    script = tmp_path / "nonblocking.py"
    script.write_text(NONBLOCKING)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONUNBUFFERED", None)
    if buffered == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    child = subprocess.Popen(
        [sys.executable, str(script), progress],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    time.sleep(1)  # a reader that comes late: the pipe is full meanwhile
    out, err = child.communicate(timeout=120)
    assert out.decode() == "[('a', 1), ('b', 1)]\n", err.decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if "LINE" in line]
    expected = {f"[chatty] LINE {w} {i} " + "x" * 100 for w in "ab" for i in range(2000)}
    assert set(lines) == expected and len(lines) == 4000, lines[:3]
    assert "not shown" not in err.decode()


STALLED_STDERR = """
import os, sys, time
from discodsl import job, map

@map
def one_line(line):
    print("a line of", line)
    yield line, 1

@job
def each():
    return [one_line]

os.set_blocking(2, False)
try:
    while True:
        os.write(2, b"x" * 65536)  # full, and nobody reads it
except BlockingIOError:
    pass
begun = time.monotonic()
results = each.run([f"raw://{i}" for i in range(30)], mode="local", progress=False)
print(len(list(results)), round(time.monotonic() - begun, 1))
"""


def test_a_non_blocking_stderr_nobody_reads_holds_a_run_up_once_not_per_line(
    tmp_path: Path,
) -> None:
    # Each of the 30 tasks' lines waited 2 s for it: the run took 62 s, 2.3 s on a blocking
    # stderr in the same state (probe EI F1).
    script = tmp_path / "stalled.py"
    script.write_text(STALLED_STDERR)
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        records, took = child.stdout.readline().split()  # before anyone reads its stderr
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert records == b"30" and float(took) < 20, took


THREADED = """
import os, sys, threading
from discodsl import job, map

@map
def chatty(line):
    for i in range(600):
        print(f"LINE {line} {i} " + "y" * 300)
    yield line, 1

@job
def chat():
    return [chatty]

if sys.argv[1] == "non-blocking":
    os.set_blocking(2, False)
runs = [threading.Thread(target=chat.run, args=([f"raw://r{n}"],), kwargs={"mode": "local"})
        for n in range(2)]
for run in runs:
    run.start()
for run in runs:
    run.join()
print("done")
"""


@pytest.mark.parametrize("blocking", ["blocking", "non-blocking"])
def test_runs_in_threads_at_once_show_their_lines_whole_on_a_pipe_read_late(
    tmp_path: Path, blocking: str
) -> None:
    # Each run's thread wrote to stderr on its own: lines cut and mixed (probe EI F4).
    script = tmp_path / "threaded.py"
    script.write_text(THREADED)
    child = subprocess.Popen(
        [sys.executable, str(script), blocking],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    time.sleep(1)
    out, err = child.communicate(timeout=120)
    assert out == b"done\n", err.decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if "LINE" in line]
    expected = {f"[chatty] LINE r{n} {i} " + "y" * 300 for n in range(2) for i in range(600)}
    odd = [line for line in lines if line not in expected]
    assert set(lines) == expected and len(lines) == 1200, odd[:2]


def test_a_stderr_nobody_reads_does_not_hold_up_a_local_run(tmp_path: Path) -> None:
    """The runner's loop shows what stages print; it must not wait on a stderr that takes
    nothing (a pipe whose reader stopped reading): that loop also reads the workers' pipes
    and keeps the run's timeout, and the run hung as long as the reader did."""
    script = tmp_path / "stuck_stderr.py"
    report = tmp_path / "report"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from discodsl import job, map, reduce

            @map
            def loud(line):
                for number in range(3000):
                    print("x" * 100, number)  # 300 KB a task: more than a pipe holds
                yield line, 1

            @reduce
            def total(key, counts):
                yield key, sum(counts)

            @job(partitions=2)
            def counted():
                return [loud, total]

            begun = time.monotonic()
            results = dict(counted.run(["raw://a", "raw://b", "raw://a"], timeout=60))
            took = time.monotonic() - begun
            with open({str(report)!r}, "w") as out:
                out.write(f"{{sorted(results.items())}} {{took:.1f}}")
            """
        )
    )
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(600):  # its stderr is never read
            if report.exists() and report.read_text():
                break
            if child.poll() is not None:
                break
            time.sleep(0.1)
        results, took = report.read_text().rsplit(" ", 1)
    finally:
        child.kill()
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
    assert results == "[('a', 2), ('b', 1)]"
    assert float(took) < 20


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_notebook_cells_stage_is_named_by_its_cell(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a kernel, a stage's place was "(1189052405.py, line 1)", the file ipykernel
    # compiled its cell into, and its worker's frames named that file (probe CP F4).
    import types

    cell_file = "/tmp/ipykernel_4242/1189052405.py"
    shell = types.SimpleNamespace(compile=types.SimpleNamespace(_filename_map={cell_file: 7}))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    namespace: dict[str, Any] = {}
    cell = "def scalar(line):\n    yield line\ndef boom(line):\n    raise ValueError(line)\n"
    exec(compile(cell, cell_file, "exec"), namespace)
    scalar, boom = map(namespace["scalar"]), map(namespace["boom"])
    with pytest.raises((StageError, TaskFailed)) as caught:
        job(partitions=None)(lambda: [scalar]).run(["raw://a b"], mode=mode, max_failures=0)
    said = str(caught.value)
    assert "stage 'scalar' (cell In[7], line 1) produced 'a b'" in said, said
    if mode == "local":
        with pytest.raises(TaskFailed) as failed:
            job(partitions=None)(lambda: [boom]).run(["raw://x"], mode=mode, max_failures=0)
        assert 'File "cell In[7]", line 4, in boom' in str(failed.value.remote_traceback)


def test_an_inline_stage_that_replaces_stdout_leaves_the_programs_as_it_was() -> None:
    # The program's prints vanished after the run (probe CW F8).
    kept = sys.stdout, sys.stderr
    try:
        results = _job(silences_stdout).run(["raw://none", "raw://shim"], mode="inline")
        assert sorted(results) == [("none", 1), ("shim", 1)]
        assert (sys.stdout, sys.stderr) == kept
    finally:
        sys.stdout, sys.stderr = kept
