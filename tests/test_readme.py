"""The README's examples run as they are written."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    found = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert found is not None, f"no python block after {heading!r}"
    return found.group(1)


def test_the_writing_stages_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    for name, lines in (("a", ["x,1", "", "y,2", "x,3"]), ("b", ["z,1", "x,9", ""])):
        with gzip.open(tmp_path / "logs" / f"{name}.gz", "wt") as handle:
            handle.write("\n".join(lines) + "\n")
    (tmp_path / "example.py").write_text(_block_after("## Writing stages"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCO_MASTER")}
    (tmp_path / "settings").write_text("")  # no master: the local runner, the default
    env["DISCO_SETTINGS_FILE"] = str(tmp_path / "settings")
    done = subprocess.run(
        [sys.executable, "example.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    counters, _, results = done.stdout.strip().partition("} ")
    assert counters + "}" == "{'blank': 2, 'tasks': 2}"
    assert results == "{'x': 1, 'y': 1, 'z': 1}"  # each key's distinct values: all 1s


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(
        r"^pip install -e '\.\[test\]' && (python -m pytest[^#\n]*?)\s*#", readme, re.M
    )
    assert found is not None, "the README's test command is not at its top"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "python -m pip install -q -e '.[test]'" in ci
    assert ci[-1] == found.group(1)
