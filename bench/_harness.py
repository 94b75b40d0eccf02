"""What the benchmark scripts share: one timed run of a command, reading a word-count output.

Not here: the commands themselves, medians and tables (each script has its own).
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def job(*args: object) -> list[str]:
    """The command running bench/wc_job.py (the README's wordcount) with ``args``."""
    return [PY, str(HERE / "wc_job.py"), *map(str, args)]


def peer(script: str, *args: object) -> list[str]:
    """The command running bench/peers/``script`` with ``args``."""
    return [PY, str(HERE / "peers" / script), *map(str, args)]


def timed(command: list[str], limit: float) -> tuple[dict[str, float], str]:
    """The figures of one run of ``command`` by bench/_timed.py, and the command's stderr.

    The figures: ``code``, ``wall``, ``cpu``, ``rss_mb``, ``timed_out``; a run
    past ``limit`` seconds is killed, with its whole process tree.
    """
    compiled()
    done = subprocess.run(
        [PY, str(HERE / "_timed.py"), "--limit", str(limit), *command],
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines() or ["{}"]
    return json.loads(lines[-1]), done.stderr


@cache
def compiled() -> None:
    """Compile the package's bytecode, once, as installing it from a wheel does.

    An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE=1
    no run writes a pyc: every timed start would compile the package again
    (about 0.1 s of a 1 KB job's 0.3 s), a cost no installed user pays.
    """
    compileall.compile_dir(HERE.parent / "discodsl", quiet=1)


def failure(figures: dict[str, float], stderr: str, limit: float) -> str:
    """Why a timed run failed, or "" if it ran to the end with exit code 0."""
    if figures.get("timed_out"):
        return f"killed after {limit:g} s"
    if figures.get("code") != 0:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        return f"exit code {figures.get('code')}: {last[0][:100]}"
    return ""


def counts(path: Path) -> Counter[str]:
    """The word<TAB>count lines of ``path`` as a Counter."""
    result: Counter[str] = Counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word, n = line.rstrip("\n").rsplit("\t", 1)
            result[word] += int(n)
    return result


def load() -> str:
    """The 1, 5 and 15 minute load averages, for a table's header."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
