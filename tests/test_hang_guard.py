"""The suite's guard against hung tests (tests/hang_guard.py): a run never stalls."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each stands for a wait pytest-timeout's signal cannot end (SIGALRM ignored).
STUCK = {
    "call": """
        def test_stuck():
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(60)
    """,
    # The timeout strikes in the call; the teardown then hangs, with no timeout left.
    "teardown": """
        @pytest.fixture
        def hangs_at_teardown():
            yield
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(60)

        def test_stuck(hangs_at_teardown):
            time.sleep(30)
    """,
}


@pytest.mark.parametrize("where", sorted(STUCK))
def test_a_stuck_test_ends_the_run_with_every_threads_stack(tmp_path: Path, where: str) -> None:
    body = "import signal, time\nimport pytest\n" + textwrap.dedent(STUCK[where])
    (tmp_path / "test_stuck.py").write_text(body)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.hang_guard", "-o", "timeout=1"]
    command += ["-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path)]
    command.append(str(tmp_path))
    environment = {**os.environ, "DISCODSL_TEST_HANG_GRACE": "2", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=50)
    assert time.monotonic() - started < 40
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout (0:00:03)!" in done.stderr, done.stderr
    assert "test_stuck.py" in done.stderr and "time.sleep" not in done.stdout
