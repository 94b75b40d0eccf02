"""The worker's output capture on its own: output sent while a task runs, kept until there is
somewhere to send it, and never a writer blocked or a close held up by one.

Each case runs in a fresh interpreter, since a Capture takes over its
process's fds 1 and 2; what it sent comes back as JSON in a file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROLOGUE = """
import json, os, subprocess, sys, time
from discodsl.worker.capture import Capture

sent = []
def send(text):
    sent.append(text)

def report(**facts):
    with open(sys.argv[1], "w") as handle:
        json.dump({"sent": sent, **facts}, handle)
"""


def _run(tmp_path: Path, body: str) -> dict[str, Any]:
    script = tmp_path / "case.py"
    script.write_text(PROLOGUE + textwrap.dedent(body))
    facts = tmp_path / "facts.json"
    subprocess.run(
        [sys.executable, str(script), str(facts)], cwd=ROOT, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(facts.read_text())
    return result


def test_output_is_sent_while_the_task_runs(tmp_path: Path) -> None:
    facts = _run(
        tmp_path,
        """
        capture = Capture(interval=0.05)
        capture.forward(send)
        print("first", flush=True)
        waited = time.monotonic()
        while not sent and time.monotonic() - waited < 10:
            time.sleep(0.01)
        before_second = list(sent)
        print("second", flush=True)
        capture.close()
        report(before_second=before_second)
        """,
    )
    assert facts["before_second"] == ["first\n"]
    assert "".join(facts["sent"]) == "first\nsecond\n"


def test_output_before_there_is_somewhere_to_send_it_is_kept(tmp_path: Path) -> None:
    facts = _run(
        tmp_path,
        """
        capture = Capture(early="from the start\\n", interval=0.01)
        print("early", flush=True)
        time.sleep(0.1)  # ticks pass with nowhere to send
        capture.forward(send)
        capture.close()
        report()
        """,
    )
    assert "".join(facts["sent"]) == "from the start\nearly\n"


def test_a_child_writing_after_close_is_never_blocked(tmp_path: Path) -> None:
    facts = _run(
        tmp_path,
        """
        capture = Capture()
        capture.forward(send)
        child = subprocess.Popen([sys.executable, "-c",
            "import time, sys; time.sleep(0.3); sys.stdout.write('x' * 1_000_000)"])
        print("mine", flush=True)
        capture.close()
        print("after close: nowhere", flush=True)
        child.wait(timeout=30)  # 1 MB into a pipe nobody read would block it for good
        report(code=child.returncode)
        """,
    )
    assert facts["code"] == 0
    assert "".join(facts["sent"]) == "mine\n"


def test_close_does_not_wait_for_a_child_that_writes_for_ever(tmp_path: Path) -> None:
    facts = _run(
        tmp_path,
        """
        from discodsl.worker.capture import CLOSE_WAIT
        capture = Capture()
        capture.forward(send)
        child = subprocess.Popen([sys.executable, "-c",
            "import sys\\nwhile True: sys.stdout.write('y' * 1000 + '\\\\n')"])
        time.sleep(0.2)
        started = time.monotonic()
        capture.close()
        took = time.monotonic() - started
        child.kill()
        child.wait()
        report(took=took, limit=CLOSE_WAIT + 2)
        """,
    )
    assert facts["took"] < facts["limit"]
    text = "".join(facts["sent"])
    assert text.startswith("y" * 1000 + "\n")
    assert "more bytes dropped" in text  # over the cap: the rest counted, not sent


@pytest.mark.parametrize(("paced", "waits"), [(None, 1), ("1", 1), ("0", 0)])
def test_msgs_are_paced_unless_the_master_limits_no_rate(
    monkeypatch: pytest.MonkeyPatch, paced: str | None, waits: int
) -> None:
    # The local runner's master limits no rate: a fifth MSG (the note on dropped output,
    # the counters) held each chatty task back 1.2 s there, as for a Disco master.
    from discodsl.runners.local import _worker_environ
    from discodsl.worker import capture

    if paced is None:
        monkeypatch.delenv(capture.PACE_ENV, raising=False)
    else:
        monkeypatch.setenv(capture.PACE_ENV, paced)
    slept: list[float] = []
    monkeypatch.setattr(capture.time, "sleep", slept.append)
    pacer = capture.Pacer(count=4, window=60.0)
    for _ in range(5):
        pacer.wait()
    assert len(slept) == waits
    assert _worker_environ()[capture.PACE_ENV] == "0"
