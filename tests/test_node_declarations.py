"""What a node has of discodsl's declarations (worker/declared.py): a module of the user's
that declares stages and jobs loads there, and a stage holding the client's ``map`` gets the
client's error, on every runner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from discodsl import PicklingError, TaskFailed, job, jobhome, map, reduce
from tests import declaring_helpers, jobs
from tests.jobs import total

HELPERS = Path(declaring_helpers.__file__)


@map
def normed(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield declaring_helpers.norm(word), 1


@job(partitions=2)
def normed_count() -> list[Any]:
    return [normed, total]


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_stage_may_call_a_helper_of_a_module_that_declares_stages_and_jobs(mode: str) -> None:
    """Inline it ran; on the local runner every task failed as the helper's module was
    imported (`from discodsl import map`), and on a cluster the pre-flight said to install
    the module on the nodes, where it failed alike."""
    got = normed_count.run(inputs=["raw://A a B", "raw://b  A"], mode=mode)
    assert sorted(got) == [("a", 3), ("b", 2)]


def test_a_module_that_declares_stages_imports_on_a_node_with_its_stages_as_functions(
    tmp_path: Path,
) -> None:
    """As a node has it: the jobhome's runtime, and the module beside it, in a Python
    without the client; its stages and its job are their functions there."""
    for name, data in jobhome.runtime_files(sys.version_info[:2]).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "declaring_helpers.py").write_bytes(HELPERS.read_bytes())
    script = (
        "import declaring_helpers as h, discodsl.readers\n"
        "assert h.norm(' A ') == 'a'\n"
        "assert list(h.parsed({'word': 'B'})) == [('b', 1)]\n"
        "assert list(h.total('b', [1, 2])) == [('b', 3)]\n"
        "assert h.total_2 is h.total and h.total.function is h.total\n"
        "assert h.checked('x') == 'x'\n"
        "assert h.MalformedRecord.__module__ == 'discodsl.worker.errors'\n"
        "assert [f.__name__ for f in h.team_count()] == ['parsed', 'total']\n"
        "assert h.team_count_wide is h.team_count and h.team_count.name == 'team_count'\n"
        "from discodsl.worker.errors import StageError\n"
        "try:\n"
        "    h.team_count.run(['raw://x'])\n"
        "except StageError as exc:\n"
        "    assert 'a stage cannot run a job' in str(exc), exc\n"
        "try:\n"
        "    h.team_count.stages\n"
        "except AttributeError as exc:\n"
        "    assert \"job 'team_count' has no 'stages' on a node\" in str(exc), exc\n"
        "assert 'discodsl.decorators' not in __import__('sys').modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-c", f"import sys; sys.path[:0] = ['.']\n{script}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@reduce
def lengths(word: str, sizes: Iterable[str]) -> Iterator[tuple[str, int]]:
    yield word, sum(map(int, sizes))  # type: ignore[call-overload]  # Python's map meant


@map
def sized(line: str) -> Iterator[tuple[str, str]]:
    for word in line.split():
        yield word, str(len(word))


@job
def shadowed() -> list[Any]:
    return [sized, lengths]


SHADOWED = (
    "discodsl's map() is the stage decorator, which takes a function, not 2 arguments: "
    "`from discodsl import map` replaced builtins.map here: call that one, or import ours "
    "as `from discodsl import map as map_stage`"
)


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"], indirect=True)
def test_a_stage_calling_pythons_map_where_ours_replaced_it_is_told_so_on_every_runner(
    mode: str,
) -> None:
    """Inline said so; elsewhere the task failed loading the job (no discodsl.decorators on a
    node), blaming the first stage and naming neither the reduce nor map."""
    with pytest.raises((TypeError, TaskFailed)) as info:
        list(shadowed.run(inputs=["raw://a bb a"], mode=mode))
    assert SHADOWED in str(info.value)
    if mode != "inline":
        assert "stage 'lengths' failed" in str(info.value)


@map
def normed_through_module(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield declaring_helpers.norm(word), 1  # the module itself is a global of the stage


@job(partitions=2)
def normed_through_module_count() -> list[Any]:
    return [normed_through_module, total]


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"], indirect=True)
def test_a_module_that_declares_a_job_may_ship_by_value_with_a_stage_using_it(
    mode: str,
) -> None:
    """Registered by value (the pre-flight's advice for a cluster), the module went whole,
    its job too, and every runner refused the stage as one running that job."""
    cloudpickle.register_pickle_by_value(declaring_helpers)
    try:
        got = normed_through_module_count.run(inputs=["raw://A a B"], mode=mode)
        assert sorted(got) == [("a", 2), ("b", 1)]
    finally:
        cloudpickle.unregister_pickle_by_value(declaring_helpers)


def test_a_node_job_used_past_what_a_node_has_is_said_so_where_the_job_loads() -> None:
    from discodsl.worker.declared import NodeJob
    from discodsl.worker.runtime import MISSING_HERE, _fix

    try:
        NodeJob(normed_count.function).stages  # noqa: B018 - the failing look-up itself
    except AttributeError as exc:
        fix = _fix(exc)
    assert "does more with a job at its top level than a node's job does" in fix
    assert MISSING_HERE not in fix  # the local runner's pre-flight is not asked then


CLIENT_NAMES_MODULE = """
from discodsl import TaskFailed


def norm(word):
    return word.lower()


def run_all(jobs):  # where the module runs jobs: it needs the client's errors there
    try:
        return [job.run() for job in jobs]
    except TaskFailed:
        return []
"""


def test_a_module_shipped_by_value_holding_the_clients_objects_is_refused_naming_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ran inline and failed every task elsewhere, "No module named 'discodsl.errors'",
    told of running jobs, which nothing there did."""
    (tmp_path / "clientnames.py").write_text(CLIENT_NAMES_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import clientnames  # type: ignore[import-not-found]

    @map
    def normed_by_it(line: str) -> Iterator[tuple[str, int]]:
        for word in line.split():
            yield clientnames.norm(word), 1

    @job
    def by_it() -> list[Any]:
        return [normed_by_it, total]

    cloudpickle.register_pickle_by_value(clientnames)
    try:
        with pytest.raises(PicklingError) as info:
            by_it.run(inputs=["raw://A a"], mode="local")
    finally:
        cloudpickle.unregister_pickle_by_value(clientnames)
        sys.modules.pop("clientnames", None)
    assert str(info.value).startswith(
        "job 'by_it' ships discodsl.errors.TaskFailed, of discodsl's client, which a node "
        "does not have"
    )
    assert "import it inside the functions that use it" in str(info.value)


WORD_COUNTER = """
from discodsl import Job, map, reduce

@map
def words(line):
    for word in line.split():
        yield word, 1

class WordCounter:
    def __init__(self, least, keep_method):
        self.least = least

        @reduce
        def frequent(word, counts):
            n = sum(counts)
            if n >= self.least:
                yield word, n

        counter = Job("counter", (words, frequent))
        self.job = counter  # a Job ships as a stand-in; its bound method cannot
        if keep_method:
            self.run = counter.run

try:
    WordCounter(2, KEEP).job.run(inputs=["raw://a b a"], mode="local")
except Exception as exc:
    print(exc)
"""


@pytest.mark.parametrize("keep_method", [True, False])
def test_a_stage_reaching_the_client_through_self_is_named_with_the_path(
    tmp_path: Path, keep_method: bool
) -> None:
    """A script's class that builds its job, its reduce closing over ``self``: the refusal
    named the client's class alone, not the stage, nor the closure variable that holds it,
    nor how (probe CJ F9). The class ships by value with the stage, and its code names Job."""
    script = tmp_path / "counting.py"
    script.write_text(WORD_COUNTER.replace("KEEP", str(keep_method)))
    said = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert said.startswith("job 'counter' ships discodsl.model.Job, of discodsl's client"), said
    where = "at self.run" if keep_method else "whose class WordCounter ships by value, code and all"
    assert (
        "stage 'frequent' holds it through its closure variable 'self' (WordCounter), "
        f"{where}: copy what the stage uses (self.least, say) into a local variable "
        "before defining the stage, so that it does not close over 'self' whole" in said
    ), said


class HoldsTheClient:
    def __init__(self) -> None:
        self.threshold = 3
        self.err = TaskFailed


def test_params_holding_the_clients_code_are_named_with_the_path() -> None:
    # "a stage, or a module shipped with it by value, holds it", where params did (probe
    # CR F8).
    with pytest.raises(PicklingError) as info:
        jobs.wordcount.run(
            inputs=["raw://a"], mode="local", params={"c": HoldsTheClient()}, progress=False
        )
    said = str(info.value)
    assert "params['c'].err (type) holds it; keep it out of params: pass plain data" in said
    assert "import it inside" not in said  # no module of stages' holds it (probe CS F19)
