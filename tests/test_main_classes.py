"""Classes defined in a script's or notebook's ``__main__`` travel inside records, in every mode:
a worker puts those its job reaches on its own ``__main__`` (discodsl.worker.mainclasses)."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from discodsl.worker import mainclasses

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import dataclasses, os, sys
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

    results = sorted(counts.run(inputs=["raw://a b a"], mode=sys.argv[1], progress=False))
    assert results == [
        (Key("a"), Stat(2)), (Key("b"), Stat(1)), (Key("params"), Weight(3))
    ], results
    print("ok", type(results[0][0]) is Key, type(results[0][1]) is Stat)
    """
)


@pytest.mark.parametrize("mode", ["local", "inline", "cluster"])
def test_classes_of_a_scripts_main_travel_in_keys_values_and_params(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    if mode == "cluster":
        request.getfixturevalue("cluster_env")  # DISCO_MASTER: the test master
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "True", "True"]


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
]


@pytest.mark.parametrize(("how", "root"), REACHED, ids=[how for how, _ in REACHED])
def test_a_class_reached_through_each_kind_of_reference_is_adopted(
    main: types.ModuleType, how: str, root: Any
) -> None:
    cls = _main_class("Found")
    mainclasses.adopt(root(cls))
    assert main.Found is cls  # type: ignore[attr-defined]


def test_a_class_reached_from_another_main_class_is_adopted(main: types.ModuleType) -> None:
    inner = _main_class("Inner")
    outer = type("Outer", (), {"__module__": "__main__", "make": _closure_over(inner)})
    mainclasses.adopt(outer)
    assert main.Outer is outer and main.Inner is inner  # type: ignore[attr-defined]


def test_names_taken_nested_classes_and_other_modules_are_left_alone(
    main: types.ModuleType,
) -> None:
    taken = _main_class("taken")
    nested = _main_class("Nested", "Outer.Nested")
    local = _main_class("Local", "f.<locals>.Local")
    elsewhere = type("Elsewhere", (), {"__module__": "somewhere"})
    mainclasses.adopt([taken, nested, local, elsewhere])
    assert main.taken == "the runtime's"  # type: ignore[attr-defined]
    assert not hasattr(main, "Nested") and not hasattr(main, "Local")
    assert not hasattr(main, "Elsewhere")


def test_a_function_from_a_module_is_not_looked_into(main: types.ModuleType) -> None:
    # The worker imports such a function's module; its classes are named from there.
    cls = _main_class("Hidden")
    function = _closure_over(cls)
    function.__module__ = "a_module"
    mainclasses.adopt(function)
    assert not hasattr(main, "Hidden")


def test_a_huge_container_is_looked_into_only_so_far(main: types.ModuleType) -> None:
    cls = _main_class("Deep")
    mainclasses.adopt([cls(), *range(1000, 1000 + mainclasses.LIMIT)])  # looked into from the end
    assert not hasattr(main, "Deep")
    mainclasses.adopt([*range(1000, 1000 + mainclasses.LIMIT), cls()])
    assert main.Deep is cls  # type: ignore[attr-defined]
