"""A failing stage's traceback names the user's file and shows its line, wherever the code is from.

cloudpickle ships functions by value under the file name ``<dynamic-code>``;
these tests run jobs whose code travels by value (a module imported by path,
a notebook-like cell known only to ``linecache``, a ``__main__`` script) on
the local runner and the test master, and check the rewriter on crafted text.
"""

from __future__ import annotations

import importlib.util
import linecache
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from discodsl import TaskFailed
from discodsl.errors import RemoteTraceback
from discodsl.tracebacks import Code, restore
from tests.disco_master import DiscoMaster

ROOT = Path(__file__).resolve().parent.parent

JOBS = '''\
from discodsl import job, map


@map
def direct(line):
    yield line, int(line)  # direct fails


@map
def nested(line):
    def inner(text):
        return int(text)  # inner fails
    yield line, inner(line)


convert = lambda text: int(text)  # the lambda fails


@map
def via_lambda(line):
    yield line, convert(line)


@job
def direct_job():
    return [direct]


@job
def nested_job():
    return [nested]


@job
def lambda_job():
    return [via_lambda]
'''


def failure_of(module: ModuleType, name: str, mode: str = "local") -> tuple[TaskFailed, str]:
    """The TaskFailed of running job ``name`` on a record that is not a number, and its cause."""
    with pytest.raises(TaskFailed) as info:
        getattr(module, name).run(inputs=["raw://forty"], mode=mode, max_failures=0)
    error = info.value
    assert isinstance(error.__cause__, RemoteTraceback)
    assert error.__cause__.text == error.remote_traceback
    return error, error.remote_traceback


def frame(path: object, line: int, name: str, source: str) -> str:
    """A frame as Python's traceback module prints it, with its source line."""
    return f'  File "{path}", line {line}, in {name}\n    {source}\n'


@pytest.fixture
def jobs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    """JOBS as a module imported by path from a directory that is not on sys.path."""
    path = tmp_path / "user_jobs.py"
    path.write_text(JOBS)
    name = f"user_jobs_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module, path


@pytest.fixture
def cell() -> Iterator[tuple[ModuleType, str]]:
    """A notebook-like cell: code compiled under a name only ``linecache`` knows, no file."""
    filename = f"<ipython-input-7-{uuid.uuid4().hex[:12]}>"
    lines = JOBS.splitlines(keepends=True)
    linecache.cache[filename] = (len(JOBS), None, lines, filename)  # as IPython registers it
    module = ModuleType(f"cell_{uuid.uuid4().hex}")
    sys.modules[module.__name__] = module
    exec(compile(JOBS, filename, "exec"), module.__dict__)
    yield module, filename
    del sys.modules[module.__name__]
    linecache.cache.pop(filename, None)


# --------------------------------------------------------------------------
# Jobs run by the local runner
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "frames"),
    [
        ("direct_job", [(6, "direct", "yield line, int(line)  # direct fails")]),
        (
            "nested_job",
            [
                (13, "nested", "yield line, inner(line)"),
                (12, "inner", "return int(text)  # inner fails"),
            ],
        ),
        (
            "lambda_job",
            [
                (21, "via_lambda", "yield line, convert(line)"),
                (16, "<lambda>", "convert = lambda text: int(text)  # the lambda fails"),
            ],
        ),
    ],
)
def test_a_module_shipped_by_value_is_named_with_its_lines(
    jobs_file: tuple[ModuleType, Path], job: str, frames: list[tuple[int, str, str]]
) -> None:
    module, path = jobs_file
    _, text = failure_of(module, job)
    assert "<dynamic-code>" not in text
    for line, name, source in frames:
        assert frame(path, line, name, source) in text
    assert text.rstrip().endswith("ValueError: invalid literal for int() with base 10: 'forty'")


def test_a_cell_known_only_to_linecache_gets_its_source_line_on_the_client(
    cell: tuple[ModuleType, str],
) -> None:
    module, filename = cell
    _, text = failure_of(module, "nested_job")
    assert "<dynamic-code>" not in text
    assert frame(filename, 13, "nested", "yield line, inner(line)") in text
    assert frame(filename, 12, "inner", "return int(text)  # inner fails") in text


def test_a_main_script_prints_its_own_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    run = 'direct_job.run(inputs=["raw://forty"], mode="local", max_failures=0, progress=False)'
    script.write_text(f'{JOBS}\n\nif __name__ == "__main__":\n    {run}\n')
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert frame(script, 6, "direct", "yield line, int(line)  # direct fails") in done.stderr
    assert "<dynamic-code>" not in done.stderr
    assert "discodsl.errors.TaskFailed: job 'direct_job@" in done.stderr  # the run's name


# --------------------------------------------------------------------------
# The cluster runner, against the test master
# --------------------------------------------------------------------------


def test_a_cluster_job_names_the_file_and_the_line(
    cluster_env: DiscoMaster, cell: tuple[ModuleType, str]
) -> None:
    module, filename = cell
    error, text = failure_of(module, "lambda_job", mode="cluster")
    assert "<dynamic-code>" not in text
    assert frame(filename, 21, "via_lambda", "yield line, convert(line)") in text
    lambda_line = "convert = lambda text: int(text)  # the lambda fails"
    assert frame(filename, 16, "<lambda>", lambda_line) in text
    assert error.stage == "via_lambda"


# --------------------------------------------------------------------------
# The rewriter on crafted text
# --------------------------------------------------------------------------

WORKER = frame("/node/home/discodsl/worker/execute.py", 423, "add_many", "for first in iterator:")


def crafted(*frames: str, error: str = "ValueError: bad\n") -> str:
    return "Traceback (most recent call last):\n" + WORKER + "".join(frames) + error


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text("def parse(line):\n    line = line.strip()\n    return int(line)\n\n\n")
    return path


def test_a_dynamic_frame_is_renamed_and_given_its_line(source: Path) -> None:
    codes = [Code(str(source), "parse", 1, 3), Code(str(source), "other", 6, 7)]
    text = crafted('  File "<dynamic-code>", line 3, in parse\n')
    assert restore(text, codes) == crafted(frame(source, 3, "parse", "return int(line)"))


def test_an_ambiguous_dynamic_frame_is_left_as_it_is(source: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.py"
    twin.write_text(source.read_text())
    codes = [Code(str(source), "parse", 1, 3), Code(str(twin), "parse", 1, 3)]
    text = crafted('  File "<dynamic-code>", line 3, in parse\n')
    assert restore(text, codes) == text


def test_a_line_outside_every_range_is_left_as_it_is(source: Path) -> None:
    codes = [Code(str(source), "parse", 1, 3)]
    for text in (
        crafted('  File "<dynamic-code>", line 9, in parse\n'),
        crafted(f'  File "{source}", line 9, in parse\n'),
        crafted('  File "<dynamic-code>", line 3, in other\n'),
    ):
        assert restore(text, codes) == text


def test_a_missing_source_still_names_the_file(tmp_path: Path) -> None:
    gone = tmp_path / "gone.py"
    codes = [Code(str(gone), "parse", 1, 3)]
    text = crafted('  File "<dynamic-code>", line 3, in parse\n')
    assert restore(text, codes) == crafted(f'  File "{gone}", line 3, in parse\n')


def test_a_shipped_frame_the_worker_could_read_keeps_its_lines_and_carets(source: Path) -> None:
    printed = f'  File "{source}", line 3, in parse\n    return int(line)\n           ^^^^^^^^^\n'
    text = crafted(printed)
    assert restore(text, [Code(str(source), "parse", 1, 3)]) == text


def test_a_shipped_frame_without_its_line_gets_it(source: Path) -> None:
    text = crafted(f'  File "{source}", line 3, in parse\n')
    expected = crafted(frame(source, 3, "parse", "return int(line)"))
    assert restore(text, [Code(str(source), "parse", 1, 3)]) == expected


def test_frames_of_unshipped_files_and_unknown_jobs_are_left_alone(source: Path) -> None:
    text = crafted(
        f'  File "{source}", line 3, in parse\n', '  File "<dynamic-code>", line 3, in parse\n'
    )
    assert restore(text, []) == text
    assert restore(text, [Code("/elsewhere.py", "other", 1, 3)]) == text


def test_exception_group_margins_are_kept(source: Path) -> None:
    text = (
        "  | ExceptionGroup: two (2 sub-exceptions)\n"
        "  +-+---------------- 1 ----------------\n"
        "    | Traceback (most recent call last):\n"
        '    |   File "<dynamic-code>", line 3, in parse\n'
        "    | ValueError: bad\n"
    )
    expected = text.replace(
        '    |   File "<dynamic-code>", line 3, in parse\n',
        f'    |   File "{source}", line 3, in parse\n    |     return int(line)\n',
    )
    assert restore(text, [Code(str(source), "parse", 1, 3)]) == expected
