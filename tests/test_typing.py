"""A user's program type-checks as the package is used: ``mypy --strict`` takes the README's
code and names what is wrong in code that misuses the API.

mypy runs in a child over small programs written here, with this checkout on its path
(``--follow-imports=silent``: discodsl's own modules are checked by the project's
``mypy --strict discodsl``, not here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

from discodsl.options import JobKeywords, JobOptions

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
    import functools
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from discodsl import Job, Results, Run, Stage, job, map, readers, reduce, stage


    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        for w in line.split():
            yield w, 1


    @reduce(combine=True)
    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        yield word, sum(counts)


    @stage(grouping="group_all")
    def top(records: Iterable[tuple[str, int]]) -> Iterator[tuple[str, int]]:
        yield from sorted(records)[:10]


    @map(reader=readers.json_lines())
    def fields(record: dict[str, str]) -> Iterator[tuple[str, int]]:
        yield record["name"], 1


    @job(partitions=4, params={"min": 2}, env={"LANG": "C"}, timeout=60.0)
    def wordcount() -> list[Stage]:
        return [words, total, top]


    @job
    def names() -> list[Stage]:
        return [fields, total]


    def longer(line: str, min_len: int) -> Iterator[tuple[str, int]]:
        yield from ((w, 1) for w in line.split() if len(w) >= min_len)


    # A function and options in one call (tutorial 3; the names a JobError suggests).
    long_words = map(functools.partial(longer, min_len=6), name="long_words")
    unsorted = reduce(lambda word, counts: [(word, sum(counts))], name="unsorted", sort=False)
    everything = stage(lambda records: records, name="everything", grouping="group_all")
    longest = job(lambda: [long_words, unsorted, everything], partitions=3)
    wider: Job = longest.with_options(partitions=8, params={"min": 3})


    def chained(paths: list[Path]) -> int:
        first: Results = wordcount.run(inputs=paths, mode="inline", partitions=2)
        again: Run = wordcount.submit(first, cache=True, cache_by="content")
        replicas = [["file:///a/1.txt", "file:///b/1.txt"]]
        more = wordcount.run(replicas, mode="local", max_failures=0)
        each = wordcount.run(str(p) for p in paths)
        return len(list(again.wait())) + len(list(more)) + len(list(each))
"""

# Each line that mypy must flag ends with "# error".
BAD = """
    from collections.abc import Iterator

    from discodsl import Stage, job, map


    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        yield line, 1


    @job(partitions=4)
    def wc() -> list[Stage]:
        return [words]


    @job(partitions="4")  # error
    def wrong() -> list[Stage]:
        return [words]


    wc.run(inputs=123)  # error
    wc.run(inputs=None)  # error
    wc.run(["a.txt"], partitons=4)  # error
    wc.run(["a.txt"], timeout="60")  # error
    wc.submit(["a.txt"], mode="remote")  # error
    wc.with_options(partitons=4)  # error
    wc.with_options(partitions="4")  # error
    map(lambda line: [(line, 1)], grouping="group_everything")  # error
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict over ``source`` (dedented), with this checkout importable."""
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(source))
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"]
    command += ["--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(program)]
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    return subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False
    )


def test_the_readmes_kind_of_program_type_checks(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, GOOD)
    assert checked.stdout == ""
    assert checked.returncode == 0, checked.stderr


def test_mypy_names_each_misuse_of_the_api(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, BAD)
    lines = textwrap.dedent(BAD).splitlines()
    wanted = {n for n, line in enumerate(lines, start=1) if line.endswith("# error")}
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    flagged = {int(line.split(":")[1]) for line in errors}
    assert flagged == wanted, checked.stdout


def test_the_typed_keywords_are_the_job_options() -> None:
    assert typing.get_type_hints(JobKeywords) == typing.get_type_hints(JobOptions)
