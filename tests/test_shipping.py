"""Shipping user code: what cannot be pickled or loaded on a node is named, with the fix."""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from discodsl import PicklingError, job, map, reduce, shipping
from discodsl.shipping import pickle_job, preflight
from tests import jobs
from tests.interpreters import python_output


@reduce
def total(key: str, values: Any) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


def test_closure_over_an_unpicklable_object_is_named() -> None:
    lock = threading.Lock()

    @map
    def guarded(line: str) -> Iterator[tuple[str, int]]:
        with lock:
            yield line, 1

    @job
    def locked() -> list[Any]:
        return [guarded, total]

    with pytest.raises(PicklingError) as info:
        locked.run(["raw://x"], mode="local")
    message = str(info.value)
    assert "stage 'guarded'" in message and "closure variable 'lock'" in message
    assert "init hook" in message  # the fix


@pytest.mark.parametrize("wrapper", [functools.lru_cache(maxsize=None), functools.singledispatch])
def test_a_stage_whose_wrapper_cannot_be_pickled_is_told_to_decorate_a_plain_def(
    wrapper: Any,
) -> None:
    # The fix said to create "it" inside the function: the function itself, here.
    def split(line: str) -> list[tuple[str, int]]:
        return [(word, 1) for word in line.split()]

    @job
    def wrapped() -> list[Any]:
        return [map(wrapper(split), name="split")]

    with pytest.raises(PicklingError, match="Decorate a plain `def`: what wraps the function"):
        wrapped.run(["raw://x"], mode="local")


def refused_at_preflight(spec: Any) -> str:
    """The words of the PicklingError the pre-flight refuses the job ``spec`` with."""
    with pytest.raises(PicklingError) as info:
        preflight(spec, pickle_job(spec))
    return str(info.value)


def test_a_module_the_node_cannot_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "onlyhere.py").write_text("class Thing:\n    factor = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import onlyhere  # type: ignore[import-not-found]

    thing = onlyhere.Thing()

    @map
    def uses_thing(line: str) -> Iterator[tuple[str, int]]:
        yield line, thing.factor

    @job
    def needs_module() -> list[Any]:
        return [uses_thing, total]

    spec = needs_module.spec()
    message = refused_at_preflight(spec)
    assert "onlyhere" in message and "stage 'uses_thing'" in message
    assert "closure variable 'thing'" in message
    assert "cloudpickle.register_pickle_by_value(onlyhere)" in message
    cloudpickle.register_pickle_by_value(onlyhere)  # the fix the message gives
    try:
        preflight(spec, pickle_job(spec))
    finally:
        cloudpickle.unregister_pickle_by_value(onlyhere)
        sys.modules.pop("onlyhere", None)


def test_a_params_value_from_a_module_the_node_cannot_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was "make sure every module its stages use is installed", naming neither params
    nor the module, though the stage's own global gets both named."""
    (tmp_path / "paramshere.py").write_text("def norm(word):\n    return word.lower()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import paramshere  # type: ignore[import-not-found]

    @map
    def normed(line: str, params: Any) -> Iterator[tuple[str, int]]:
        yield params["steps"][1](line), 1

    @job(params={"steps": [str.strip, paramshere.norm]})
    def needs_module() -> list[Any]:
        return [normed, total]

    spec = needs_module.spec()
    try:
        message = refused_at_preflight(spec)
    finally:
        sys.modules.pop("paramshere", None)
    assert message.startswith(
        "job 'needs_module' cannot be shipped to the workers: params['steps'][1] is a "
        "function from module 'paramshere', which does not load on a node "
        "(ModuleNotFoundError: No module named 'paramshere'): install 'paramshere' on the "
        "nodes, or ship it with the job: `import cloudpickle, paramshere` and "
        "`cloudpickle.register_pickle_by_value(paramshere)` before running it, or pass "
        "plain data in params="
    )


def test_a_module_the_jobs_own_pythonpath_reaches_passes_the_preflight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A team's modules on a shared directory, named by env={"PYTHONPATH": ...} as Disco
    # gives a job's env to its workers: the pre-flight loaded the job without it, and
    # refused a job the nodes run.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "teamhelpers.py").write_text("def norm(word):\n    return word.lower()\n")
    monkeypatch.syspath_prepend(str(shared))
    import teamhelpers  # type: ignore[import-not-found]

    @map
    def normed(line: str) -> Iterator[tuple[str, int]]:
        yield teamhelpers.norm(line), 1

    @job
    def shared_helpers() -> list[Any]:
        return [normed, total]

    try:
        without = shared_helpers.spec()
        with pytest.raises(PicklingError, match="install 'teamhelpers' on the nodes"):
            preflight(without, pickle_job(without))
        spec = shared_helpers.spec(
            shared_helpers.options.model_copy(update={"env": {"PYTHONPATH": str(shared)}})
        )
        preflight(spec, pickle_job(spec))
    finally:
        sys.modules.pop("teamhelpers", None)


GENERATED = """
from discodsl import job, map, reduce

@map
def words(line):
    for word in line.split():
        yield word, 1

@reduce
def total(word, counts):
    yield word, sum(counts)

@job
def generated():
    return [words, total]
"""


def test_a_job_whose_code_was_made_by_exec_ships(tmp_path: Path) -> None:
    # Code run by exec(code, {}) (a template tool's, a front-end's cells) has no module:
    # "'NoneType' object has no attribute 'startswith'", on the local runner and a master.
    namespace: dict[str, Any] = {}
    exec(GENERATED, namespace)
    results = namespace["generated"].run(["raw://a b a"], mode="local", progress=False)
    assert sorted(results) == [("a", 2), ("b", 1)]


CACHED_HELPER = (
    "import functools\n\n@functools.lru_cache(maxsize=None)\ndef weight(word):\n    return 1\n"
)
CACHE_FIX = "make it a plain function (drop the decorator), or build the cache inside the stage"


@pytest.mark.parametrize("stage", ["by_name", "through_module"])
def test_a_cached_helper_of_a_module_of_yours_is_told_what_ships_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    # The advice was to install the module or ship it by value: shipped by value, the
    # lru_cache wrapper still pickles by reference, and the same error came back.
    (tmp_path / "cachedhere.py").write_text(CACHED_HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cachedhere", raising=False)
    import cachedhere  # type: ignore[import-not-found]

    weight = cachedhere.weight

    @map
    def by_name(line: str) -> Iterator[tuple[str, int]]:
        yield line, weight(line)

    @map
    def through_module(line: str) -> Iterator[tuple[str, int]]:
        yield line, cachedhere.weight(line)

    @job
    def cached() -> list[Any]:
        return [by_name if stage == "by_name" else through_module]

    spec = cached.spec()
    cloudpickle.register_pickle_by_value(cachedhere)  # the advice that did not help
    try:
        with pytest.raises(PicklingError) as info:
            preflight(spec, pickle_job(spec))
    finally:
        cloudpickle.unregister_pickle_by_value(cachedhere)
    message = str(info.value)
    assert f"stage {stage!r}" in message and "_lru_cache_wrapper" in message
    assert CACHE_FIX in message and "init hook" in message
    assert "install 'cachedhere' on the nodes" in message  # it loads where it is installed
    assert "register_pickle_by_value(cachedhere)`" not in message


CACHED_IN_MAIN = """
import functools
from discodsl import PicklingError, job, map
from discodsl.shipping import pickle_job, preflight

@functools.lru_cache(maxsize=None)
def weight(word):
    return 1

@map
def weighed(line):
    yield line, weight(line)

@job
def cached():
    return [weighed]

spec = cached.spec()
try:
    preflight(spec, pickle_job(spec))
except PicklingError as exc:
    print(exc)
"""


def test_a_cached_helper_of_a_script_is_told_what_ships_it(tmp_path: Path) -> None:
    # The advice was "install '__main__' on the nodes", or ship it by value, which did not help.
    message = python_output(CACHED_IN_MAIN, tmp_path)
    assert "stage 'weighed' (function) refers to global 'weight'" in message
    assert CACHE_FIX in message and "init hook" in message
    assert "install" not in message and "register_pickle_by_value(__main__)" not in message


def test_a_module_of_yours_named_like_a_standard_library_one_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A worker imports the standard library's colorsys (a node has no other), which has no
    # weight(): every task failed on an AttributeError, inline alone gave the results.
    (tmp_path / "colorsys.py").write_text("def weight(word):\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    standard = sys.modules.pop("colorsys", None)
    try:
        import colorsys

        @map
        def weighed(line: str) -> Iterator[tuple[str, int]]:
            yield line, colorsys.weight(line)  # type: ignore[attr-defined]

        @job
        def shadowed() -> list[Any]:
            return [weighed]

        fix = "Rename your module (e.g. to my_colorsys.py)"
        with pytest.raises(PicklingError, match=re.escape(fix)) as info:
            shadowed.run(["raw://x"], mode="local")
        assert f"your module 'colorsys' ({tmp_path / 'colorsys.py'})" in str(info.value)
        assert list(shadowed.run(["raw://x"], mode="inline")) == [("x", 42)]
        assert fix in capfd.readouterr().err  # inline runs it as it is, and says why
    finally:
        sys.modules.pop("colorsys", None)
        if standard is not None:
            sys.modules["colorsys"] = standard


def test_loadable_job_passes_preflight_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from discodsl import shipping

    children: list[bytes] = []
    real = shipping._load_in_child
    monkeypatch.setattr(
        shipping, "_load_in_child", lambda data, path: children.append(data) or real(data, path)
    )

    @map
    def fine(line: str) -> Iterator[tuple[str, int]]:
        yield line, 1

    @job
    def ok() -> list[Any]:
        return [fine, total]

    spec = ok.spec()
    pickled = pickle_job(spec)
    preflight(spec, pickled)
    preflight(spec, pickled)
    assert children == [pickled]  # loaded once, in a fresh interpreter; then cached


def test_breakpoint_works_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline mode runs stages in this process, so breakpoint() reaches the debugger hook."""
    calls: list[str] = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: calls.append("hit"))

    @map
    def stops(line: str) -> Iterator[tuple[str, int]]:
        breakpoint()
        yield line, 1

    @job
    def debugged() -> list[Any]:
        return [stops, total]

    assert dict(debugged.run(["raw://x"], mode="inline")) == {"x": 1}
    assert calls == ["hit"]


def test_a_job_that_cannot_ship_still_runs_inline_and_says_so(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import threading

    lock = threading.Lock()

    @map
    def locked(line: str) -> Iterator[tuple[str, int]]:
        with lock:
            yield line, 1

    @job(params={"n": 1})
    def debugged() -> list[Any]:
        return [locked, total]

    assert dict(debugged.run(["raw://x", "raw://x"], mode="inline")) == {"x": 2}
    err = capfd.readouterr().err
    assert "job 'debugged' runs inline on its stages as they are" in err
    assert "closure variable 'lock'" in err


def test_breakpoint_in_a_worker_fails_instead_of_hanging(tmp_path: Path) -> None:
    """A worker's stdin is the protocol: a debugger there would hang the job, so it is refused."""
    from discodsl import TaskFailed

    @map
    def stops(line: str) -> Iterator[tuple[str, int]]:
        breakpoint()
        yield line, 1

    @job(max_failures=0)
    def debugged() -> list[Any]:
        return [stops, total]

    with pytest.raises(TaskFailed, match="mode='inline'"):
        debugged.run(["raw://x"], mode="local")


def test_local_workers_that_cannot_load_a_stage_get_the_preflight_diagnosis(
    tmp_path: Path,
) -> None:
    """The local runner's workers are the pre-flight: a load failure there names the object."""
    (tmp_path / "goneaway.py").write_text("class Thing:\n    factor = 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import goneaway  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    shutil.rmtree(tmp_path)  # imported here, and gone: nowhere for a worker to import it
    thing = goneaway.Thing()

    @map
    def uses_thing(line: str) -> Iterator[tuple[str, int]]:
        yield line, thing.factor

    @job
    def needs_module() -> list[Any]:
        return [uses_thing, total]

    try:
        with pytest.raises(PicklingError) as info:
            needs_module.run(["raw://x"], mode="local")
    finally:
        sys.modules.pop("goneaway", None)
    message = str(info.value)
    assert "goneaway" in message and "closure variable 'thing'" in message


@pytest.mark.parametrize("mode", ["local", "cluster", "inline"])
def test_params_that_cannot_be_pickled_are_named_with_the_fix(
    mode: str, request: pytest.FixtureRequest
) -> None:
    if mode == "cluster":
        request.getfixturevalue("cluster_env")

    @map
    def uses_params(line: str, params: Any) -> Iterator[tuple[str, int]]:
        yield line, params["n"]

    @job
    def bo() -> list[Any]:
        return [uses_params, total]

    with pytest.raises(PicklingError) as info:
        bo.run(inputs=["raw://x"], mode=mode, params={"n": 1, "l": threading.Lock()})
    message = str(info.value)
    assert "params['l'] (lock) cannot be pickled" in message, message
    assert "stage" not in message.split(":")[0]  # the params are to blame, not a stage
    assert "init hook" in message  # the fix


def test_the_innermost_unpicklable_part_of_params_is_named() -> None:
    @job(params={"db": {"hosts": ["a", threading.Lock()]}})
    def nested() -> list[Any]:
        return [total]

    with pytest.raises(PicklingError, match=r"params\['db'\]\['hosts'\]\[1\] \(lock\)"):
        pickle_job(nested.spec())


HELPED = """
import helpers
from discodsl import job, map

@map
def weighed(line):
    for word in line.split():
        yield word, helpers.weight(word)

@job
def weights():
    return [weighed]

print(sorted(weights.run(["raw://a bb"], mode="local", progress=False)))
"""


@pytest.mark.parametrize("how", ["python -c", "stdin"])
def test_a_helper_module_in_the_working_directory_is_found_by_local_workers(
    tmp_path: Path, how: str
) -> None:
    """``python -c``, the REPL and notebooks import from the working directory (``""`` in
    sys.path), which a local worker, whose own is its job home, did not: "No module named
    'helpers'", where inline and a script run beside it worked."""
    (tmp_path / "helpers.py").write_text("def weight(word):\n    return len(word) * 10\n")
    printed = python_output(HELPED, tmp_path, piped=how == "stdin")
    assert printed == "[('a', 10), ('bb', 20)]\n"


@pytest.mark.parametrize(
    "setup",
    ["import sys\nsys.path.append('src')\n", "import os, sys\nsys.path.insert(0, 'src')\n"],
    ids=["appended", "inserted"],
)
@pytest.mark.parametrize("chdir", [False, True], ids=["here", "after-a-chdir"])
def test_a_helper_module_found_through_a_relative_path_entry_is_found_by_local_workers(
    tmp_path: Path, setup: str, chdir: bool
) -> None:
    """A notebook's ``sys.path.append('src')`` (relative to the working directory), and a
    helper imported before an ``os.chdir``: the workers import the helper the caller did
    (they failed with "does not load on a node")."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "helpers.py").write_text("def weight(word):\n    return len(word) * 10\n")
    code = setup + HELPED.replace("from discodsl", "import os\nfrom discodsl")
    if chdir:
        code = code.replace("\n@job", "\nos.chdir(os.path.expanduser('~'))\n@job")
    assert python_output(code, tmp_path) == "[('a', 10), ('bb', 20)]\n"


NEW_TYPE = """
from typing import Iterator, NewType
from discodsl import job, map

Word = NewType("Word", str)

@map
def words(line: str) -> Iterator[tuple[Word, int]]:
    for word in line.split():
        yield Word(word.upper()), 1

@job
def typed():
    return [words]

print(sorted(typed.run(["raw://a b"], mode="local", progress=False)))
"""


def test_a_new_type_of_a_script_ships_with_its_stages(tmp_path: Path) -> None:
    """A NewType (and on 3.12+ a ``type`` alias) pickles by name, which names nothing in a
    worker's ``__main__``: a stage annotated with one, or calling it, failed to load there
    ("refers to the function itself"), with a fix that did not help."""
    assert python_output(NEW_TYPE, tmp_path) == "[('A', 1), ('B', 1)]\n"


@pytest.mark.usefixtures("removed_cwd")
def test_a_removed_working_directory_does_not_keep_local_workers_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With "" on sys.path (python -c, a notebook), making the import path absolute asked
    # for the working directory, and the run failed with a bare FileNotFoundError.
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    assert sorted(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)) == [
        ("a", 2),
        ("b", 1),
    ]


def test_import_path_entries_with_the_separator_in_their_name_and_zips_reach_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both worked inline; local workers lost them: "install 'stamped' on the nodes".
    import zipfile

    stamped = tmp_path / f"run{os.pathsep}2026-12-06T10{os.pathsep}00"
    stamped.mkdir()
    (stamped / "stamped_helper.py").write_text("WORD = 'stamped'\n")
    with zipfile.ZipFile(tmp_path / "libs.zip", "w") as libs:
        libs.writestr("zipped_helper.py", "WORD = 'zipped'\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(stamped), str(tmp_path / "libs.zip")])

    @map
    def helped(line: str) -> Iterator[tuple[str, int]]:
        import stamped_helper  # type: ignore[import-not-found]
        import zipped_helper  # type: ignore[import-not-found]

        yield stamped_helper.WORD, 1
        yield zipped_helper.WORD, 1

    @job(partitions=None)
    def helped_job() -> list[Any]:
        return [helped]

    assert sorted(helped_job.run(["raw://x"], mode="local")) == [("stamped", 1), ("zipped", 1)]


def test_an_import_path_longer_than_an_environment_string_may_be_reaches_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pex's or Bazel's sys.path: over Linux's 128 KiB for one environment string, every
    # local worker failed to start ("Argument list too long").
    from discodsl.runners import local

    entries = []
    for i in range(1_600):
        entry = tmp_path / f"{i:04d}-{'d' * 90}"
        entry.mkdir()
        entries.append(str(entry))
    (tmp_path / f"0999-{'d' * 90}" / "far_helper.py").write_text("WORD = 'far'\n")
    monkeypatch.setattr(sys, "path", [*sys.path, *entries])
    assert len(os.pathsep.join(entries)) > 128 * 1024

    @map
    def far(line: str) -> Iterator[tuple[str, int]]:
        import far_helper  # found through the 1,000th entry, by the workers too

        yield far_helper.WORD, 1

    @job(partitions=None)
    def far_job() -> list[Any]:
        return [far]

    assert list(far_job.run(["raw://a"], mode="local", progress=False)) == [("far", 1)]
    assert local._path_value(entries).startswith("@")  # in a file, not the environment


def test_modules_shipped_by_value_that_import_each_other_are_said_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The advice was to create "it" inside the function, of a module.
    (tmp_path / "cyclic_a.py").write_text("import cyclic_b\n\ndef shout(x):\n    return x + '!'\n")
    (tmp_path / "cyclic_b.py").write_text(
        "import cyclic_a\n\ndef upper(x):\n    return x.upper()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import cyclic_a  # type: ignore[import-not-found]
    import cyclic_b  # type: ignore[import-not-found]

    @map
    def shouted(line: str) -> Iterator[tuple[str, int]]:
        yield cyclic_a.shout(line), 1

    @job
    def cyclic() -> list[Any]:
        return [shouted, total]

    for module in (cyclic_a, cyclic_b):
        cloudpickle.register_pickle_by_value(module)
    try:
        with pytest.raises(PicklingError) as info:
            pickle_job(cyclic.spec())
    finally:
        for module in (cyclic_a, cyclic_b):
            cloudpickle.unregister_pickle_by_value(module)
            sys.modules.pop(module.__name__, None)
    message = str(info.value)
    assert "'cyclic_a' (module) cannot be pickled" in message, message
    assert "imports it back" in message and "register one of them only" in message


def test_a_module_the_program_registered_by_value_stays_registered_after_a_run() -> None:
    # cloudpickle.register_pickle_by_value does not say that a module is already there:
    # a run's pickling took the program's own registration for its own and undid it, and a
    # job chained on results holding the module's classes then failed its pre-flight.
    module = types.ModuleType("discodsl_test_registered")
    sys.modules[module.__name__] = module
    cloudpickle.register_pickle_by_value(module)
    try:
        with shipping.by_value({module.__name__}):
            pass
        assert module.__name__ in cloudpickle.list_registry_pickle_by_value()
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        del sys.modules[module.__name__]


class _Lazy:
    @functools.cached_property
    def table(self) -> dict[str, str]:
        return {"a": "A"}


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's cached_property holds no lock")
@pytest.mark.parametrize("holder", ["instance", "class"])
def test_a_class_with_a_cached_property_is_told_why_it_cannot_ship(holder: str) -> None:
    # "create it inside the function or in an init hook", which moved the error from the
    # instance to the class, and never named cached_property (its lock does not pickle).
    lazy = _Lazy() if holder == "instance" else _Lazy

    @map
    def looked_up(line: str) -> Iterator[tuple[str, int]]:
        yield str(lazy), 1

    @job
    def lazy_job() -> list[Any]:
        return [looked_up, total]

    spec = lazy_job.spec()
    said = refused_at_preflight(spec)
    assert "holds a functools.cached_property (table), whose lock cannot be pickled" in said
    assert "Create it inside the function" not in said


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's cached_property holds no lock")
def test_params_of_a_class_with_a_cached_property_are_told_why_they_cannot_ship() -> None:
    # "create locks ... inside the stage", where the user made none (probe CM F13).
    from discodsl.options import validate_options
    from discodsl.shipping import unpicklable
    from tests import jobs

    lazy = functools.cached_property(lambda self: {"a": "A"})
    script_class = type("Lookup", (), {"table": lazy, "__module__": "__main__"})  # by value
    spec = jobs.wordcount.spec(validate_options(params={"table": script_class()}))
    said = str(unpicklable(spec, TypeError("cannot pickle '_thread.RLock' object")))
    assert "params['table'] (Lookup) cannot be pickled" in said
    assert "holds a functools.cached_property (table), whose lock cannot be pickled" in said
    assert "create locks" not in said


@pytest.mark.parametrize("holder", ["params", "global"])
def test_results_in_params_or_a_stages_global_are_not_told_to_change_discodsls_class(
    holder: str,
) -> None:
    # Results refuse to pickle on their own: the advice ended on a cached_property of
    # discodsl's own Results class, to rewrite (probe CS F17, a regression).
    from discodsl.options import validate_options
    from tests import jobs

    results = jobs.wordcount.run(["raw://a"], mode="inline")

    @map
    def looked_up(line: str) -> Iterator[tuple[str, int]]:
        yield str(results), 1

    @job
    def held_job() -> list[Any]:
        return [looked_up, total]

    if holder == "params":
        spec = jobs.wordcount.spec(validate_options(params={"r": results}))
    else:
        spec = held_job.spec()
    said = refused_at_preflight(spec)
    assert "stand for files" in said
    assert "cached_property" not in said


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (24, "(ulimit -n, ulimit -u): close the files it keeps open"),
        # Every OSError was told of the limits at first (probe DW F3).
        (2, "this program's Python (sys.executable) cannot be run any more"),
        (13, "this program's Python (sys.executable) cannot be run any more"),
    ],
)
def test_a_preflight_whose_interpreter_cannot_start_says_why_not_that_the_job_is_bad(
    monkeypatch: pytest.MonkeyPatch, number: int, said: str
) -> None:
    # A bare OSError traceback from subprocess.run, near `ulimit -n` (probe DT F7).
    import subprocess

    from discodsl import JobError, shipping

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(JobError) as caught:
        shipping._load_in_child(b"", "")
    message = str(caught.value)
    assert f"could not start the interpreter that checks the job loads ([Errno {number}]" in message
    assert said in message, message


def test_a_run_that_cannot_start_its_progress_thread_says_which_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RuntimeError: can't start new thread, from inside discodsl (probe DT F7).
    import threading

    from discodsl import JobError
    from discodsl.runners.progress import Progress

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(JobError, match=r"could not start the thread that shows .* ulimit -u"):
        Progress("wc", enabled=False)("msg", {"stage": "s", "taskid": 0, "text": "hello"})
