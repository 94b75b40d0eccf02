"""Classes shipped by value (defined in a script's or notebook's ``__main__``, or in a module of
the user's own) travel inside records, in every mode: a worker gives those its job reaches their
name (discodsl.worker.shipped_classes)."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl.worker import shipped_classes

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    from typing import NamedTuple
    from discodsl import job, map, reduce

    @dataclasses.dataclass(frozen=True)
    class Stat:
        n: int

    class Key(NamedTuple):
        word: str

    class Weight:  # only in params: an instance of it is a value
        def __init__(self, factor):
            self.factor = factor
        def __eq__(self, other):
            return isinstance(other, Weight) and other.factor == self.factor
        def __repr__(self):
            return f"Weight({self.factor})"

    def stat(n):  # a helper names the class, not the stage
        return Stat(n)

    @map
    def val(line, params):
        for w in line.split():
            yield Key(w), stat(1)
        yield Key("params"), params["weight"]

    @reduce
    def tot(key, values):
        values = list(values)
        if key.word == "params":
            yield key, values[0]
        else:
            yield key, Stat(sum(s.n for s in values))

    @job(partitions=2, params={"weight": Weight(3)})
    def counts():
        return [val, tot]
    """
)


RUNS = """
import pickle
import sys
results = sorted(counts.run(inputs=["raw://a b a"], mode=sys.argv[1], progress=False))
assert results == [
    (Key("a"), Stat(2)), (Key("b"), Stat(1)), (Key("params"), Weight(3))
], results
print("ok", type(results[0][0]) is Key, type(results[0][1]) is Stat)
"""


@pytest.mark.parametrize("mode", ["local", "inline", "cluster"])
@pytest.mark.parametrize("where", ["__main__", "a module of the user's"])
def test_shipped_classes_travel_in_keys_values_and_params(
    tmp_path: Path, mode: str, where: str, request: pytest.FixtureRequest
) -> None:
    if mode == "cluster":
        request.getfixturevalue("cluster_env")  # DISCO_MASTER: the test master
    if where == "__main__":
        (tmp_path / "script.py").write_text(SCRIPT + RUNS)
    else:
        (tmp_path / "userjob.py").write_text(SCRIPT)
        (tmp_path / "script.py").write_text("from userjob import *\n" + RUNS)
    assert _script_says(tmp_path, mode) == ["ok", "True", "True"]


def _script_run(request: pytest.FixtureRequest, where: Path, script: str, *modes: str) -> list[str]:
    """The words ``script``, written to ``where/script.py``, printed run with ``modes`` as
    its arguments (on the test master, DISCO_MASTER set, where one is "cluster")."""
    if "cluster" in modes:
        request.getfixturevalue("cluster_env")
    (where / "script.py").write_text(script)
    return _script_says(where, *modes)


def _script_says(where: Path, *argv: str) -> list[str]:
    """The words ``where/script.py argv...`` printed; it must end well."""
    done = subprocess.run(
        [sys.executable, "script.py", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=where,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


NESTED = textwrap.dedent(
    """
    import dataclasses, sys
    from discodsl import StageError, TaskFailed, job, map

    class Outer:
        @dataclasses.dataclass(frozen=True)
        class Inner:
            word: str

    @map
    def inner(line):
        for word in line.split():
            yield word, Outer.Inner(word)

    def local_job():
        @dataclasses.dataclass(frozen=True)
        class Local:
            word: str

        @map
        def local(line):
            yield line, Local(line)

        return job(lambda: [local])

    mode = sys.argv[1]
    got = sorted(job(lambda: [inner]).run(inputs=["raw://a b"], mode=mode, progress=False))
    assert got == [("a", Outer.Inner("a")), ("b", Outer.Inner("b"))], got
    try:
        list(local_job().run(inputs=["raw://a"], mode=mode, progress=False))
    except (StageError, TaskFailed) as exc:
        # Python 3.13's pickle says "Can't get local object ...", earlier ones "Can't pickle"
        assert "local object 'local_job.<locals>.Local'" in str(exc), exc
        print("ok")
    """
)


@pytest.mark.parametrize("mode", ["local", "inline", "cluster"])
def test_nested_classes_are_named_alike_in_every_mode(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # A class shipped by value came to a worker under its bare name: one nested in another
    # class was written there as __main__.Inner, which the client could not read back; one
    # local to a function passed there, where inline failed it.
    assert _script_run(request, tmp_path, NESTED, mode) == ["ok"]


CHAIN = """
import pickle
import sys
from discodsl import job, reduce

@reduce
def regroup(key, values):  # names no class of the first job's
    yield key, sorted(values, key=repr)

@job
def second():
    return [regroup]

first_mode, second_mode = sys.argv[1:]
first = counts.run(inputs=["raw://a b a"], mode=first_mode, progress=False)
got = sorted(second.run(inputs=first, mode=second_mode, progress=False))
assert got == [
    (Key("a"), [Stat(2)]), (Key("b"), [Stat(1)]), (Key("params"), [Weight(3)])
], got
print("ok")
"""


@pytest.mark.parametrize(
    ("first", "second"), [("local", "local"), ("cluster", "cluster"), ("inline", "local")]
)
def test_records_of_shipped_classes_feed_a_job_whose_code_names_none_of_them(
    tmp_path: Path, first: str, second: str, request: pytest.FixtureRequest
) -> None:
    assert _script_run(request, tmp_path, SCRIPT + CHAIN, first, second) == ["ok"]


SLOTS = textwrap.dedent(
    """
    import dataclasses, sys
    from discodsl import job, map

    class Plain:
        __slots__ = ("n",)
        def __init__(self, n):
            self.n = n
        def __eq__(self, other):
            return type(other) is Plain and other.n == self.n
        def __repr__(self):
            return f"Plain({self.n})"

    @dataclasses.dataclass(slots=True)
    class Slotted:
        n: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Frozen:
        n: int

    @map
    def made(line):
        yield Frozen(len(line)), (Plain(len(line)), Slotted(len(line)))

    @job
    def slotted():
        return [made]

    got = list(slotted.run(inputs=["raw://ab"], mode=sys.argv[1], progress=False))
    assert got == [(Frozen(2), (Plain(2), Slotted(2)))], got
    assert not hasattr(got[0][1][1], "__dict__")  # the script's own classes
    print("ok")
    """
)


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"])
def test_classes_with_slots_travel_in_records(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # cloudpickle made a class shipped by value without its __slots__: a worker's instance
    # kept a __dict__, pickled as one, and the script's class (no __dict__) could not take
    # it: "'Plain' object has no attribute '__dict__'".
    assert _script_run(request, tmp_path, SLOTS, mode) == ["ok"]


SLOTS_CHAINED = textwrap.dedent(
    """
    import dataclasses, sys
    from discodsl import job, map, reduce

    @dataclasses.dataclass(frozen=True, slots=True)
    class Stat:
        n: int

    @map
    def stats(line):
        yield line, Stat(len(line))

    @job
    def first():
        return [stats]

    @reduce
    def regroup(key, values):  # names no class of the first job's
        yield key, list(values)

    @job
    def second():
        return [regroup]

    one = first.run(inputs=["raw://ab"], mode=sys.argv[1], progress=False)
    got = list(second.run(inputs=[one], mode=sys.argv[1], progress=False))
    print("ok" if got == [("ab", [Stat(2)])] else got)
    """
)


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_frozen_slots_dataclass_travels_to_a_job_chained_on_the_results(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # The results carried the class a frozen slots dataclass was made from as well as the
    # class itself, and the next job's workers named the first: "state is not a dictionary".
    assert _script_run(request, tmp_path, SLOTS_CHAINED, mode) == ["ok"]


REDEFINED_CHAINED = textwrap.dedent(
    """
    import dataclasses, sys
    from discodsl import job, map, stage

    @dataclasses.dataclass
    class Cfg:
        level: int

    cfg = Cfg(3)  # made before the cell that defines Cfg is run again

    @dataclasses.dataclass
    class Cfg:
        level: int

    @stage(grouping="split")
    def emit(records, params):
        for record in records:
            yield record, params

    @job(partitions=None)
    def first():
        return [emit]

    @map
    def use(record):
        key, value = record
        yield key, value.level

    @job(partitions=None)
    def second():
        return [use]

    one = first.run(["raw://a"], mode=sys.argv[1], params=cfg, progress=False)
    print("ok" if list(second.run(one, mode=sys.argv[1], progress=False)) == [("a", 3)] else 0)
    """
)


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_an_instance_of_a_class_defined_again_since_travels_to_a_chained_job(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # A notebook's cell defining the class run again after the instance was made: the
    # chained job carried only the class the module holds by that name, and its workers
    # could not read the records ("Can't get attribute 'Cfg'").
    assert _script_run(request, tmp_path, REDEFINED_CHAINED, mode) == ["ok"]


OF_JOB_CHAINED = textwrap.dedent(
    """
    import dataclasses, sys
    from discodsl import Results, job, map

    @dataclasses.dataclass
    class Stat:
        n: int

    @map
    def counted(line):
        yield line, Stat(len(line))

    @job(partitions=None)
    def first():
        return [counted]

    @map
    def sized(record):
        key, stat = record
        yield key, stat.n

    @job(partitions=None)
    def second():
        return [sized]

    if sys.argv[2] == "submit":
        print(first.submit(["raw://abc"], mode="cluster", progress=False).wait().jobname)
    else:  # another run of the script, later: the first job's results by its name
        earlier = Results.of_job(sys.argv[3], timeout=60)
        print("ok" if list(second.run(earlier, mode="cluster")) == [("abc", 3)] else 0)
    """
)


def test_results_reached_by_the_jobs_name_carry_the_scripts_classes_to_the_next_job(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A run's results carry the classes of its job; those of Results.of_job carried none,
    # and the next job's workers could not read the records ("Can't get attribute 'Stat'").
    [name] = _script_run(request, tmp_path, OF_JOB_CHAINED, "cluster", "submit")
    assert _script_says(tmp_path, "cluster", "chain", name) == ["ok"]


REDEFINED_THEN_MADE = textwrap.dedent(
    """
    import sys
    from typing import NamedTuple
    from discodsl import job, map

    class Pt(NamedTuple):
        x: int

    @map
    def make(line):
        yield int(line), Pt(int(line))

    @job(partitions=None)
    def first():
        return [make]

    @map
    def again(pair):
        key, point = pair
        yield key, Pt(point.x * 10)

    @job(partitions=None)
    def second():
        return [again]

    one = first.run(["raw://1", "raw://2"], mode=sys.argv[1], progress=False)
    before = sorted(second.run(one, mode=sys.argv[1], progress=False))

    class Pt(NamedTuple):  # its cell run again
        x: int

    made = sorted(second.run(one, mode=sys.argv[1], progress=False))
    print("ok" if made == [(1, Pt(10)), (2, Pt(20))] else made)
    """
)


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_chained_stage_makes_a_class_defined_again_since_its_input_was_made(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # The results carried the class as it was, the stage named it as it is: the workers
    # gave the name to the first, and the stage's records "cannot be pickled: it's not the
    # same object as __main__.Pt" (probe CM F5).
    assert _script_run(request, tmp_path, REDEFINED_THEN_MADE, mode) == ["ok"]


CHAIN_BY_URLS = """
import sys
from discodsl import TaskFailed, job, reduce

@reduce
def regroup(key, values):  # names no class of the first job's
    yield key, list(values)

@job
def second():
    return [regroup]

first = counts.run(inputs=["raw://a b a"], mode=sys.argv[1], progress=False)
try:
    second.run(inputs=first.record_urls(), mode=sys.argv[1], progress=False)
except TaskFailed as failed:
    said = str(failed)
    print("attempts" not in said, "pass the run's results" in said, failed.exc_type)
"""


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_records_needing_a_class_no_stage_names_fail_the_job_once_saying_what_carries_it(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    # The URLs of a run's records carry no classes: a worker reading them could not find the
    # script's, and the task was retried as a flaky read (4 times locally, 100 on a master,
    # where its pauses take 93 minutes), though every attempt fails alike.
    said = _script_run(request, tmp_path, SCRIPT + CHAIN_BY_URLS, mode)
    assert said == ["True", "True", "MalformedRecord"]


# -- adopt(), on its own -------------------------------------------------------------------


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for the worker's ``__main__``, holding one name of its own."""
    module = types.ModuleType("__main__")
    module.taken = "the runtime's"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", module)
    return module


def _main_class(name: str, qualname: str | None = None) -> type:
    cls = type(name, (), {"__module__": "__main__"})
    cls.__qualname__ = qualname or name
    return cls


def _function_naming(cls: type) -> Any:
    """A function of ``__main__`` whose code names ``cls`` as a global (through a nested
    function, as a generator expression would)."""
    namespace: dict[str, Any] = {"__name__": "__main__", cls.__name__: cls}
    exec(f"def f():\n    return lambda: {cls.__name__}\n", namespace)
    return namespace["f"]


def _closure_over(cls: type) -> Any:
    def inner() -> type:
        return cls

    inner.__module__ = "__main__"
    return inner


REACHED: list[tuple[str, Any]] = [
    ("a global its code names", _function_naming),
    ("a closure cell", _closure_over),
    ("a partial's argument", lambda cls: functools.partial(print, cls)),
    ("an instance in a container", lambda cls: {"key": [cls()]}),
    ("a staticmethod", lambda cls: staticmethod(_closure_over(cls))),
    ("an attribute of an instance of a shipped class", lambda cls: _holder(cls())),
]


def _holder(inner: Any) -> Any:
    """An instance of another class of ``__main__``, holding ``inner`` as an attribute."""
    holder = _main_class("Holder")()
    holder.held = inner
    return holder


@pytest.mark.parametrize(("how", "root"), REACHED, ids=[how for how, _ in REACHED])
def test_a_class_reached_through_each_kind_of_reference_is_adopted(
    main: types.ModuleType, how: str, root: Any
) -> None:
    cls = _main_class("Found")
    shipped_classes.adopt(root(cls))
    assert main.Found is cls  # type: ignore[attr-defined]


def test_a_class_reached_from_another_main_class_is_adopted(main: types.ModuleType) -> None:
    inner = _main_class("Inner")
    outer = type("Outer", (), {"__module__": "__main__", "make": _closure_over(inner)})
    shipped_classes.adopt(outer)
    assert main.Outer is outer and main.Inner is inner  # type: ignore[attr-defined]


def test_names_taken_nested_and_local_classes_are_left_alone(main: types.ModuleType) -> None:
    taken = _main_class("taken")
    nested = _main_class("Nested", "Outer.Nested")
    local = _main_class("Local", "f.<locals>.Local")
    shipped_classes.adopt([taken, nested, local])
    assert main.taken == "the runtime's"  # type: ignore[attr-defined]
    assert not hasattr(main, "Nested") and not hasattr(main, "Local")


@pytest.fixture
def unloaded() -> Iterator[str]:
    """The name of a module not loaded here; whatever adopt() makes of it goes after."""
    name = "a_module_of_the_users"
    assert name not in sys.modules
    yield name
    sys.modules.pop(name, None)


def test_a_class_of_a_module_not_loaded_here_gets_a_module_made_for_it(unloaded: str) -> None:
    cls = type("Rec", (), {"__module__": unloaded})
    other = type("Other", (), {"__module__": unloaded})
    shipped_classes.adopt([cls])
    shipped_classes.adopt([other])
    module = sys.modules[unloaded]
    assert module.Rec is cls and module.Other is other  # type: ignore[attr-defined]
    assert getattr(module, shipped_classes.MARK)


def test_loaded_modules_are_left_alone(main: types.ModuleType) -> None:
    loaded = type("Imposter", (), {"__module__": "json"})
    shipped_classes.adopt([loaded])
    assert not hasattr(sys.modules["json"], "Imposter")


@pytest.mark.parametrize("top", ["a_package_of_the_users", "tests"])
def test_a_class_of_a_package_module_gets_a_module_made_for_it_and_pickles_as_itself(
    top: str,
) -> None:
    """A package's module was left alone: a pickle imported the package's real module where
    it could (a local run's workers), found the class there, and refused the shipped one as
    "not the same object"; where it could not (a node), it failed to import the package."""
    name = f"{top}.shipped_here"
    cls = type("Rec", (), {"__module__": name})
    try:
        shipped_classes.adopt([cls])
        assert sys.modules[name].Rec is cls  # type: ignore[attr-defined]
        assert pickle.loads(pickle.dumps(cls())).__class__ is cls
        made_top = getattr(sys.modules[top], shipped_classes.MARK, False)
        assert made_top == (top != "tests")  # an importable package is left to import
    finally:
        sys.modules.pop(name, None)
        if top != "tests":
            sys.modules.pop(top, None)


def test_a_function_of_a_loaded_module_is_not_looked_into(
    unloaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pickled by reference, it runs in its module: what it names is named from there.
    cls = type("Hidden", (), {"__module__": unloaded})
    loaded = types.ModuleType("a_loaded_module")
    loaded.Hidden = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "a_loaded_module", loaded)
    function = types.FunctionType(_function_naming(cls).__code__, vars(loaded))
    function.__module__ = "a_loaded_module"
    shipped_classes.adopt(function)
    assert unloaded not in sys.modules
    shipped_classes.adopt(_function_naming(cls))  # shipped by value: its globals are its own
    assert sys.modules[unloaded].Hidden is cls  # type: ignore[attr-defined]


def test_modules_a_function_names_are_not_looked_into(main: types.ModuleType) -> None:
    # A stage naming json, re, fractions and datetime led the walk through those modules'
    # namespaces, past its limit, before it reached the class its records hold.
    import datetime
    import fractions
    import json
    import re

    cls = _main_class("Visit")
    namespace: dict[str, Any] = {"__name__": "__main__", "Visit": cls}
    namespace.update(json=json, re=re, fractions=fractions, datetime=datetime)
    code = "def f():\n    return Visit, json, re, fractions, datetime\n"
    exec(code, namespace)
    assert cls in list(shipped_classes.shipped(namespace["f"]))
    assert not any(isinstance(found, types.ModuleType) for found in [*vars(main).values()])


def test_a_huge_container_is_looked_into_only_so_far(main: types.ModuleType) -> None:
    cls = _main_class("Deep")
    many = range(1000, 1000 + shipped_classes.LIMIT)
    shipped_classes.adopt([cls(), *many])  # a list is looked into from its end
    assert not hasattr(main, "Deep")
    shipped_classes.adopt([*many, cls()])
    assert main.Deep is cls  # type: ignore[attr-defined]


PACKAGE_MODULE = """
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Rec:
    word: str


def norm(word):
    return word.strip().lower()
"""


def _records_counted(recs: Any, by_value: types.ModuleType, mode: str) -> list[Any]:
    """What a job of the map ``recs`` and a summing reduce gives on ``mode``, the module
    ``by_value`` registered to ship by value meanwhile."""
    import cloudpickle

    from discodsl import job, reduce

    @reduce
    def total(key: Any, ones: Any) -> Any:
        yield key, sum(ones)

    @job
    def counted() -> list[Any]:
        return [recs, total]

    cloudpickle.register_pickle_by_value(by_value)
    try:
        return sorted(counted.run(["raw://A a b"], mode=mode))
    finally:
        cloudpickle.unregister_pickle_by_value(by_value)


@pytest.fixture
def forgotten() -> Iterator[list[str]]:
    """Names of modules a test imports from its tmp_path, dropped after it."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def test_a_class_of_a_package_shipped_by_value_leaves_its_module_importable_on_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgotten: list[str]
) -> None:
    """A module made to hold the shipped class took the real module's place in a local
    worker, which can import it: a stage's `from pkg.recs import norm` failed ("unknown
    location"); before that, the record of the class failed to pickle as not the same object."""
    package = tmp_path / "shippedpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "recs.py").write_text(PACKAGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    forgotten += ["shippedpkg", "shippedpkg.recs"]
    import shippedpkg  # type: ignore[import-not-found]
    from shippedpkg.recs import Rec  # type: ignore[import-not-found]

    from discodsl import map

    @map
    def recs(line: str) -> Any:
        from shippedpkg.recs import norm

        for word in line.split():
            yield Rec(norm(word)), 1

    for mode in ("inline", "local"):
        got = _records_counted(recs, shippedpkg, mode)
        assert got == [(Rec("a"), 2), (Rec("b"), 1)], mode
        assert all(type(key) is Rec for key, _ in got)


def test_a_shipped_class_whose_module_another_module_loaded_first_takes_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgotten: list[str]
) -> None:
    """A helper the stage uses by name imported the class's module in the worker before the
    class was placed: the module was left alone, and the records did not pickle ("not the
    same object")."""
    (tmp_path / "loadedrecs.py").write_text(PACKAGE_MODULE)
    (tmp_path / "loadinghelper.py").write_text(
        "import loadedrecs\n\n\ndef norm(word):\n    return loadedrecs.norm(word)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    forgotten += ["loadedrecs", "loadinghelper"]
    import loadedrecs  # type: ignore[import-not-found]
    import loadinghelper  # type: ignore[import-not-found]

    from discodsl import map

    rec = loadedrecs.Rec

    @map
    def recs(line: str) -> Any:
        for word in line.split():
            yield rec(loadinghelper.norm(word)), 1

    assert _records_counted(recs, loadedrecs, "local") == [(rec("a"), 2), (rec("b"), 1)]


SLOTTED_MODULE = """
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Rec:
    word: str
"""


def test_classes_of_a_package_shipped_by_value_travel_named_through_the_module_or_slotted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgotten: list[str]
) -> None:
    """A stage naming ``recs.Rec`` through its module: the module, shipped by value, was
    not looked into, and the records did not pickle on a worker. And a frozen slots
    dataclass ships its class twice (its __setattr__ holds the one before slots): the last
    found took the module's name, the stale one, and the records did not pickle."""
    package = tmp_path / "viapkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "recs.py").write_text(PACKAGE_MODULE)
    (package / "slotted.py").write_text(SLOTTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    forgotten += ["viapkg", "viapkg.recs", "viapkg.slotted"]
    import viapkg  # type: ignore[import-not-found]
    from viapkg import recs as module  # type: ignore[import-not-found]
    from viapkg.slotted import Rec as Slotted  # type: ignore[import-not-found]

    from discodsl import map

    @map
    def through_the_module(line: str) -> Any:
        for word in line.split():
            yield module.Rec(word.lower()), 1

    @map
    def slotted(line: str) -> Any:
        for word in line.split():
            yield Slotted(word.lower()), 1

    got = _records_counted(through_the_module, viapkg, "local")
    assert got == [(module.Rec("a"), 2), (module.Rec("b"), 1)]
    got = _records_counted(slotted, viapkg, "local")
    assert got == [(Slotted("a"), 2), (Slotted("b"), 1)]


def test_a_class_reached_through_a_namespace_in_params_is_adopted(main: types.ModuleType) -> None:
    # params=SimpleNamespace(limit=Threshold(3)): as a dict it worked, as a namespace the
    # worker's records of it did not pickle ("attribute lookup Threshold on __main__").
    import argparse
    import collections

    for holder in (types.SimpleNamespace, argparse.Namespace):
        cls = _main_class(f"In{holder.__name__}")
        shipped_classes.adopt(holder(limit=cls()))
        assert getattr(main, cls.__name__) is cls
    cls = _main_class("InDeque")
    shipped_classes.adopt(collections.deque([cls()]))
    assert main.InDeque is cls  # type: ignore[attr-defined]


def test_a_class_reached_through_slots_or_a_standard_mapping_in_params_is_adopted(
    main: types.ModuleType,
) -> None:
    # params={"x": Config(Inner(1))} with Config a frozen slots dataclass, or a ChainMap,
    # a UserDict: what a slots instance holds, and such mappings, were not looked into, and
    # the worker's records of Inner did not pickle.
    import collections

    slotted = type("Slotted", (), {"__module__": "__main__", "__slots__": ("held",)})
    # A private slot, as Python stores it: `__held` of class `_Private` is `_Private__held`.
    private = type("_Private", (), {"__module__": "__main__", "__slots__": ("__held",)})
    for make in (
        lambda inner: _filled(slotted(), inner),
        lambda inner: _filled_privately(private(), inner),
        lambda inner: collections.ChainMap({}, {"x": inner}),
        lambda inner: collections.UserDict({"x": inner}),
        lambda inner: collections.UserList([inner]),
    ):
        cls = _main_class(f"Held{id(make)}")
        shipped_classes.adopt(make(cls()))
        assert getattr(main, cls.__name__) is cls


def _filled(instance: Any, inner: Any) -> Any:
    instance.held = inner
    return instance


def _filled_privately(instance: Any, inner: Any) -> Any:
    instance._Private__held = inner
    return instance
