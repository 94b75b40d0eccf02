"""Fresh Python interpreters the tests start: this one running some code, and older ones
found on this machine."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path


def python_output(
    code: str, cwd: Path, *flags: str, env: dict[str, str] | None = None, piped: bool = False
) -> str:
    """What a fresh interpreter like this one, started with ``flags`` in ``cwd``, prints
    running ``code`` (given with ``-c``, or ``piped`` to its stdin); it must succeed."""
    done = subprocess.run(
        [sys.executable, *flags, *(["-"] if piped else ["-c", code])],
        cwd=cwd,
        env=env,
        input=code if piped else "",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@functools.cache
def old_pythons() -> list[str]:
    """The interpreters older than 3.10 on this machine (pyenv's, or on the PATH)."""
    found = {str(p) for p in Path("/root/.pyenv/versions").glob("*/bin/python")}
    found |= {shutil.which(f"python{v}") or "" for v in ("2.7", "3.6", "3.7", "3.8", "3.9")}
    old = []
    for python in sorted(found - {""}):
        version = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        if version and tuple(map(int, version.split("."))) < (3, 10):
            old.append(python)
    return old
