"""The cache key (discodsl.caching.keys) sees what changes a stage's records: code behind a
decorator, globals read through another module, a class's attributes, defaults, the
options that order a reduce's keys, how the local runner cuts inputs into tasks; and it
is the same in another process for a stage using a class of the script's."""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import pickle
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import JobOptions, job, map, stage
from discodsl.caching import keys
from discodsl.model import Job
from discodsl.runners import local
from tests.conftest import ROOT
from tests.scripts import run_script


def keys_of(made: Job, where: str = "inline", **options: Any) -> list[str]:
    chosen = JobOptions(**options)
    stages = made.spec(chosen).stages
    return keys.stage_keys(made.name, chosen, stages, [["raw://a b"]], where)


def seeded(args: list[str], seed: str, cwd: Path | None = None) -> Any:
    """Python run with ``args`` and PYTHONHASHSEED=``seed`` (str hashes, and so the order a
    set of strs iterates in, differ with it), checked to end well."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )


def weighted(weight: Any) -> Job:
    """A map-only job weighting each word by ``weight(word)``, a helper of the user's."""

    @map
    def words(line: str) -> Iterator[tuple[str, int]]:
        for word in line.split():
            yield word, weight(word)

    @job
    def weighted_words() -> list[Any]:
        return [words]

    return weighted_words


@pytest.fixture
def module_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write a module of the user's (a fresh name each time) and import it."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str, name: str = "") -> Any:
        name = name or f"helper_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return make


LRU = """
import functools

@functools.lru_cache(maxsize=None)
def weight(word):
    return {n}
"""
WRAPS = """
import functools

def logged(function):
    @functools.wraps(function)
    def wrapper(*args):
        return function(*args)
    return wrapper

@logged
def weight(word):
    return {n}
"""


@pytest.mark.parametrize("where", ["inline", "local"])
def test_a_helper_behind_lru_cache_stamps_its_module(module_named: Any, where: str) -> None:
    """An lru_cache wrapper pickles by its name, as a function does: its module's file was
    not stamped, so an edited helper was served the old results (inline and local)."""
    name = f"helper_{uuid.uuid4().hex}"
    before = keys_of(weighted(module_named(LRU.format(n=1), name).weight), where)
    after = keys_of(weighted(module_named(LRU.format(n=77), name).weight), where)
    assert before != after


@pytest.mark.parametrize("source", [LRU, WRAPS], ids=["lru_cache", "functools.wraps"])
def test_inline_the_code_behind_a_decorator_is_keyed(
    module_named: Any, tmp_path: Path, source: str
) -> None:
    """Inline, a file edited but not reloaded keys the code loaded: two versions of the
    same size and time differ only there, behind the decorator."""
    name = f"helper_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    first = module_named(source.format(n=1), name)
    stamp = path.stat().st_mtime_ns
    one = keys_of(weighted(first.weight))
    second = module_named(source.format(n=7), name)
    os.utime(path, ns=(stamp, stamp))
    assert keys_of(weighted(second.weight)) != one


@pytest.mark.parametrize(
    ("source", "change"),
    [
        ("class Config:\n    factor = 1\ndef weight(w):\n    return Config.factor\n", "class"),
        ("TABLE = {'a': 1}\ndef weight(w, table=TABLE):\n    return table.get(w, 0)\n", "default"),
        (
            "from collections import defaultdict\nWEIGHTS = defaultdict(lambda: 1)\n"
            "def weight(w):\n    return WEIGHTS[w]\n",
            "lambda inside",
        ),
    ],
    ids=["a class attribute", "a default", "a defaultdict of a lambda"],
)
def test_inline_state_of_a_helper_module_changed_in_place_is_a_change(
    module_named: Any, source: str, change: str
) -> None:
    module = module_named(source)
    made = weighted(module.weight)
    before = keys_of(made)
    if change == "class":
        module.Config.factor = 10
    elif change == "default":
        module.TABLE["a"] = 100
    else:
        module.WEIGHTS["a"] = 50
    assert keys_of(made) != before
    assert keys_of(made) == keys_of(made)  # and the same while nothing changes


def test_inline_a_global_another_module_reads_by_attribute_is_keyed(module_named: Any) -> None:
    """``consts.K`` read in a helper: ``K`` is named in neither the stage nor consts' own code."""
    consts = module_named("K = 1\n")
    helper = module_named(
        f"import {consts.__name__} as consts\ndef weight(w):\n    return consts.K\n"
    )
    made = weighted(lambda word: helper.weight(word))  # reached through the module
    before = keys_of(made)
    consts.K = 100
    assert keys_of(made) != before


def test_the_memory_budget_is_keyed() -> None:
    """Past the budget a sort=False reduce gives its keys in another order, which a later
    stage may read: the budget is part of what a stage writes."""
    made = weighted(len)
    assert keys_of(made, memory_budget=1 << 20) != keys_of(made, memory_budget=1 << 30)
    assert keys_of(made, progress=False) == keys_of(made, progress=True)


@map
def each_line(line: str) -> Iterator[tuple[str, int]]:
    yield line, 1


@stage(grouping="split")
def lines_per_task(records: Any) -> Iterator[tuple[str, int]]:
    yield "lines", sum(1 for _ in records)


@job(partitions=None)
def per_task() -> list[Any]:
    return [each_line, lines_per_task]  # a task per map task's file: per range of the file


def test_a_local_runs_tasks_as_cut_from_a_big_file_are_keyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local runner cuts a big file into a range per worker: a stage run once per task
    writes what its tasks read, so another ``workers`` must not be served the first's."""
    monkeypatch.setattr(local.sources, "MIN_SPLIT", 1000)
    text = tmp_path / "big.txt"
    text.write_text("".join(f"line {n}\n" for n in range(2000)))
    four = sorted(per_task.run([text], mode="local", cache=True, workers=4))
    assert len(four) > 1 and sum(n for _, n in four) == 2000
    assert list(per_task.run([text], mode="local", cache=True, workers=1)) == [("lines", 2000)]
    assert sorted(per_task.run([text], mode="local", cache=True, workers=4)) == four


def test_a_stage_using_a_class_of_the_script_hits_in_another_process(tmp_path: Path) -> None:
    """cloudpickle ships such a class with an id drawn at random in each process: every run
    of ``python script.py`` with ``cache=True`` ran afresh and kept one more entry."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from typing import NamedTuple
            from discodsl import job, map

            class Hit(NamedTuple):
                word: str
                n: int

            @map
            def words(line):
                for w in line.split():
                    yield w, Hit(w, 1).n

            @job
            def wc():
                return [words]

            print(sorted(wc.run(["raw://a b a"], mode="inline", cache=True)))
            """
        )
    )
    runs = [
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
        )
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout == "[('a', 1), ('a', 1), ('b', 1)]\n"
    assert "cached results" not in runs[0].stderr
    assert "cached results" in runs[1].stderr


def test_inline_a_global_whose_attributes_cannot_be_asked_for_is_keyed_by_the_rest(
    module_named: Any,
) -> None:
    """A proxy object (one that works only inside some context) raises whatever is asked of
    it: the key is still made."""
    module = module_named(
        """
        class Proxy:
            def __getattribute__(self, name):
                raise RuntimeError("working outside of the context")

        CURRENT = Proxy()

        def weight(word):
            return 1
        """
    )
    made = weighted(module.weight)
    assert keys_of(made) == keys_of(made)


def test_inline_a_helper_a_factory_made_is_keyed_by_what_it_closes_over(
    module_named: Any,
) -> None:
    module = module_named(
        """
        def make(scale):
            def weight(word):
                return scale
            return weight

        weight = make(1)
        """
    )
    made = weighted(lambda word: module.weight(word))
    before = keys_of(made)
    module.weight = module.make(3)  # the same code, closing over another value
    assert keys_of(made) != before


def test_inline_a_set_in_a_helper_module_keys_alike_in_every_process(tmp_path: Path) -> None:
    """A set's items come in another order in another process (str hashes are salted): a
    class attribute or a dict holding one made every process miss."""
    (tmp_path / "stops.py").write_text(
        "class Words:\n    STOP = {'the', 'a', 'of', 'and', 'to'}\n"
        "TABLE = {'skip': frozenset({'x', 'y', 'z'})}\n"
        "def keep(word):\n    return word not in Words.STOP and word not in TABLE['skip']\n"
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import stops
            from discodsl import job, map

            @map
            def words(line):
                for w in line.split():
                    if stops.keep(w):
                        yield w, 1

            @job
            def kept():
                return [words]

            print(sorted(kept.run(["raw://the cat of x"], mode="inline", cache=True)))
            """
        )
    )

    first, second = (seeded([str(script)], seed, tmp_path) for seed in ("1", "2"))
    assert first.stdout == second.stdout == "[('cat', 1)]\n"
    assert "cached results" in second.stderr


@pytest.mark.parametrize("where", ["inline", "local"])
def test_a_stage_of_the_script_holding_a_set_keys_alike_in_every_process(
    tmp_path: Path, where: str
) -> None:
    # Its pickle held the set in the order of the salted hashes: served only in the process
    # that ran it (the sets-sorted pickle of params is the stages' too).
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            from discodsl import job, map
            from tests.test_cache_keys import keys_of

            STOP = {{"the", "a", "of", "and", "to", "in"}}

            @map
            def words(line):
                for w in line.split():
                    if w not in STOP and w not in frozenset({{"x", "y", "z"}}):
                        yield w, 1

            @job
            def kept():
                return [words]

            print(keys_of(kept, {where!r}))
            """
        )
    )

    assert len({seeded([str(script)], seed, tmp_path).stdout for seed in "123"}) == 1


def test_inline_an_lru_cache_helper_of_the_script_redefined_gives_a_fresh_run(
    tmp_path: Path,
) -> None:
    """A notebook cell defines the helper again with another body: the wrapper pickles by
    its name in ``__main__``, which said nothing of the new body."""
    script = tmp_path / "cells.py"
    script.write_text(
        textwrap.dedent(
            """
            import functools
            from discodsl import job, map

            @functools.lru_cache(maxsize=None)
            def weight(word):
                return 1

            @map
            def words(line):
                for w in line.split():
                    yield w, weight(w)

            @job
            def wc():
                return [words]

            print(sorted(wc.run(["raw://a b"], mode="inline", cache=True)))

            @functools.lru_cache(maxsize=None)
            def weight(word):
                return 7

            print(sorted(wc.run(["raw://a b"], mode="inline", cache=True)))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines() == ["[('a', 1), ('b', 1)]", "[('a', 7), ('b', 7)]"]
    # It ran on the program's own helper, its cache shared by the tasks and the program,
    # without a word, where the local runner refuses the job (probe DI F4).
    said = "runs inline on its stages as they are, sharing their module state between tasks"
    assert said in done.stderr and "refers to global 'weight' from module '__main__'" in (
        done.stderr
    )


def test_inline_a_newtype_of_the_script_ships_without_a_notice(tmp_path: Path) -> None:
    # Taken for a helper pickled by its name: "cannot ship to workers", and the inline run
    # shared its module state between tasks (probe DJ F8, a regression).
    done = run_script(
        tmp_path / "typed.py",
        "from typing import NewType\n"
        "from discodsl import job, map\n"
        "UserId = NewType('UserId', str)\n"
        "@map\ndef ids(line):\n    yield UserId(line), 1\n"
        "@job\ndef j():\n    return [ids]\n"
        "print(sorted(j.run(['raw://ab'], mode='inline')))\n",
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[('ab', 1)]\n", "")


SCRIPT_STAGES = """
from discodsl import job, map


def weight(word):
    return {weight}


@map
def words(line):
    for word in line.split():
        yield word, weight(word)


@job
def weighted():
    return [words]
"""


@pytest.mark.parametrize("where", ["inline", "local"])
def test_lines_added_above_a_stage_leave_its_key_as_it_was(where: str) -> None:
    # A fix with more lines in a helper above the stages (or a comment) moved every stage
    # below it, and their code's line numbers were keyed: nothing was resumed.
    def made(source: str) -> Job:
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(source, "/work/pipeline.py", "exec"), namespace)
        return namespace["weighted"]  # type: ignore[no-any-return]

    first = keys_of(made(SCRIPT_STAGES.format(weight=1)), where)
    moved = "# a comment\n\n\n" + SCRIPT_STAGES.replace("def weight", "# why\ndef weight")
    assert keys_of(made(moved.format(weight=1)), where) == first
    assert keys_of(made(SCRIPT_STAGES.format(weight=2)), where) != first


def test_params_holding_sets_key_alike_in_every_process() -> None:
    """Stop words in params, as a set: a set of strings pickles in the order of their salted
    hashes, so a run's key differed in every process and was never served after a restart
    (probe CP F7); so did a set as a dict's key, in a NamedTuple or a dataclass (CR F1), in
    params that hold themselves, or in a set (CS F3)."""
    script = (
        "import hashlib\n"
        "from discodsl.caching import keys\n"
        "from discodsl.options import validate_options\n"
        "import dataclasses, typing\n"
        "class Cfg(typing.NamedTuple):\n    stop: frozenset\n"
        "@dataclasses.dataclass\nclass DCfg:\n    stop: set\n"
        "words = {'the', 'a', 'of', 'and', 'to'}\n"
        "tree = {'tags': set(words), 'children': []}\n"
        "tree['children'].append({'parent': tree, 'tags': {'x', 'y', 'z'}})\n"
        "params = {'stop': words, 'n': [frozenset({'x', 'y', 'z'})], frozenset(words): 1,\n"
        "          'cfg': Cfg(frozenset(words)), 'dcfg': DCfg(set(words)), 'tree': tree,\n"
        "          'nts': {Cfg(frozenset(words)), Cfg(frozenset({'q', 'r'}))}}\n"
        "print(hashlib.sha256(keys._options(validate_options(params=params))).hexdigest())\n"
        "print(keys._value_digest(params).hex())  # a helper module's global\n"
    )

    assert len({seeded(["-c", script], seed).stdout for seed in "123"}) == 1


def test_params_holding_a_set_of_what_pickle_cannot_take_are_keyed_as_before() -> None:
    # The set's items digested by pickle, which takes no lambda: the cache was turned off,
    # "its stages cannot be pickled" (probe CR F5, a regression). Keyed as they ship.
    from discodsl.caching import keys
    from discodsl.options import validate_options

    rules = {lambda word: word.isupper(), len}
    assert keys._options(validate_options(params={"rules": rules}))


def test_params_that_hold_themselves_are_keyed_at_once() -> None:
    # A dict holding itself twice, a tree with parent links: the sets' ordering walked every
    # path through the cycles, for ever (probe CR F9, a regression).
    from discodsl.caching import keys
    from discodsl.options import validate_options

    looped: dict[str, Any] = {"stop": {"a", "b"}}
    looped["self1"] = looped
    looped["self2"] = looped
    tree: dict[str, Any] = {"children": []}
    for _ in range(40):
        child = {"parent": tree, "children": [], "tags": {"x", "y"}}
        tree["children"].append(child)
        tree = child
    started = time.monotonic()
    for params in (looped, tree):
        assert keys._options(validate_options(params=params))
        assert keys._value_digest(params)  # a helper module's global
    assert time.monotonic() - started < 10


@dataclasses.dataclass
class _Scale:
    name: str
    factor: dataclasses.InitVar[int]

    def __post_init__(self, factor: int) -> None:
        self.k = factor


class _Weighted(list[int]):
    weight = 0


class _Moded(dict[str, int]):
    mode = ""


def _weighted(weight: int) -> _Weighted:
    made = _Weighted([1, 2])
    made.weight = weight
    return made


def _moded(mode: str) -> _Moded:
    made = _Moded(a=1)
    made.mode = mode
    return made


@pytest.mark.parametrize(
    "made",
    [
        lambda n: _Scale("s", n),
        lambda n: collections.defaultdict(lambda: n),
        _weighted,
        lambda n: _moded(str(n)),
        lambda n: {"stop": {"a", "b"}, "scale": _Scale("s", n)},
    ],
    ids=["initvar", "default_factory", "list_subclass", "dict_subclass", "beside_a_set"],
)
def test_params_that_differ_in_what_is_no_field_or_item_key_apart(made: Any) -> None:
    # Dataclasses were keyed by their fields, dict and list subclasses by their items: other
    # params were served the results of the first (probe CS F1, a regression).
    from discodsl.options import validate_options

    first, second = (keys._options(validate_options(params={"p": made(n)})) for n in (1, 2))
    assert first != second


def test_params_holding_a_notebooks_dataclass_key_its_methods_code() -> None:
    # A cell defining the class run again with another method: the params were keyed by
    # the class's name and fields, and the old results served (probe CS F20, a regression).
    from discodsl.options import validate_options

    def scale_class(times: int) -> Any:
        namespace: dict[str, Any] = {"__name__": "__main__", "dataclasses": dataclasses}
        exec(
            "@dataclasses.dataclass\nclass Scale:\n    base: int\n"
            f"    def apply(self, n):\n        return n * {times}\n",
            namespace,
        )
        return namespace["Scale"](10)

    first, second = (keys._options(validate_options(params={"s": scale_class(n)})) for n in (2, 3))
    assert first != second


class _Tagged(set[int]):
    __slots__ = ("scale",)


def _tagged(scale: int) -> _Tagged:
    made = _Tagged({1, 2})
    made.scale = scale
    return made


class _Node:
    """A node of a tree whose children are a set, with a link back to its parent."""

    def __init__(self, name: str, parent: _Node | None = None) -> None:
        self.name, self.parent, self.children = name, parent, set[_Node]()


def _tree(size: int) -> _Node:
    nodes = [_Node("n0")]
    for i in range(1, size):
        parent = nodes[(i - 1) // 2]
        nodes.append(_Node(f"n{i}", parent))
        parent.children.add(nodes[-1])
    return nodes[0]


def test_params_of_one_set_in_two_places_and_of_two_equal_sets_key_apart() -> None:
    # A stage that adds to one sees it in the other: keyed alike, the results of one were
    # served for the other (probe CW F1, a regression).
    from discodsl.options import validate_options

    shared = {1, 2}
    one = keys._options(validate_options(params={"a": shared, "b": shared}))
    assert one != keys._options(validate_options(params={"a": {1, 2}, "b": {1, 2}}))


def test_params_of_a_set_subclass_key_its_slots_and_its_class() -> None:
    # A subclass's slots were left out, and its class keyed by its name only (probe CW F2,
    # F10).
    from discodsl.options import validate_options

    one, ten = (keys._options(validate_options(params={"t": _tagged(n)})) for n in (1, 10))
    shipped = getattr(pickle.loads(pickle.dumps(_tagged(10))), "scale", None) == 10
    assert (one != ten) is shipped  # Python 3.10's pickle leaves a set's slots out
    namespace: dict[str, Any] = {"__name__": "__main__"}
    made = []
    for body in ("return 1", "return 2"):
        exec(f"class Tags(set):\n    def weight(self):\n        {body}\n", namespace)
        made.append(keys._options(validate_options(params={"t": namespace["Tags"]({1})})))
    assert made[0] != made[1]


class _Vocabulary(frozenset[str]):
    """Words and their language, which its own __reduce__ carries."""

    def __new__(cls, words: Any, lang: str) -> _Vocabulary:
        made = super().__new__(cls, words)
        made.lang = lang  # type: ignore[attr-defined]
        return made

    def __reduce__(self) -> Any:
        return _Vocabulary, (sorted(self), self.lang)  # type: ignore[attr-defined]


def test_params_of_a_set_subclass_key_what_its_own_reduce_carries() -> None:
    # Only the state of its reduction was keyed: "fr" was served the results of "en"
    # (probe CY F1, a regression).
    from discodsl.options import validate_options

    en, fr = (
        keys._options(validate_options(params={"v": _Vocabulary({"a", "b"}, lang)}))
        for lang in ("en", "fr")
    )
    assert en != fr


def test_a_set_of_pairs_is_keyed_in_its_own_order() -> None:
    # Each pair was pickled for its digest: a set of 1M tuples took 6 s and 288 MB more
    # (probe CY F6).
    from discodsl.options import validate_options

    pairs = {(f"w{i}", i) for i in range(200_000)}
    started = time.monotonic()
    assert keys._options(validate_options(params={"p": pairs}))
    assert time.monotonic() - started < 10


def test_params_of_objects_linked_through_sets_are_keyed_at_once() -> None:
    # Each item of each set was pickled afresh, through every path: a tree of 31 nodes
    # never got its key, and frozensets nested 20 deep took seconds (probe CW F14, F3).
    from discodsl.options import validate_options

    nested: Any = frozenset({1})
    for depth in range(40):
        nested = frozenset({nested, depth})
    started = time.monotonic()
    assert keys._options(validate_options(params={"t": _tree(255), "n": nested}))
    assert time.monotonic() - started < 10


@dataclasses.dataclass(eq=False)
class _Keyed:
    items: list[int]


@dataclasses.dataclass
class _Lazy:
    path: str
    table: dict[str, int] = dataclasses.field(init=False)


def test_params_keyed_by_objects_holding_lists_or_lacking_a_field_are_keyed() -> None:
    # Their parts were made into dict keys, or asked for: the cache was turned off, blaming
    # the stages (probe CS F2, a regression).
    from discodsl.options import validate_options

    for params in ({_Keyed([1, 2]): "a"}, {"lazy": _Lazy("x")}):
        assert keys._options(validate_options(params=params))
