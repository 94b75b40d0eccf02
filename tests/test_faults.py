"""Faults injected into real runs: nothing lost, nothing duplicated, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests import fault_jobs


def test_worker_killed_mid_task_is_retried_and_nothing_is_duplicated(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "in.txt"
    lines = [f"line{i}" for i in range(200)]
    data.write_text("\n".join([*lines[:100], "kill", *lines[100:]]) + "\n")
    results = fault_jobs.survives_a_kill.run(
        inputs=[data], mode="local", params={"markers": str(markers)}
    )
    assert len(os.listdir(markers)) == 1  # the worker really was killed once
    got = sorted(results)
    assert got == sorted([(line, 1) for line in lines] + [("kill", 1)])


def _worker_processes_under(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            found.append(int(entry.name))
    return found


def test_ctrl_c_stops_workers_and_removes_temporary_files(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from tests import fault_jobs
        print("started", flush=True)
        try:
            fault_jobs.sleepy.run(inputs=[{str(data)!r}], mode="local", progress=False)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """)
    env = {**os.environ, "TMPDIR": str(temp)}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while not _worker_processes_under(temp) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _worker_processes_under(temp), "no worker started"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert "interrupted" in out, err
    assert process.returncode != 0
    deadline = time.monotonic() + 10
    while _worker_processes_under(temp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_processes_under(temp) == []
    assert list(temp.iterdir()) == []
