"""Whose fault a failure on the way from a stage's output to its files is, in words.

The loops that take a stage's ``(key, value)`` pairs to the files check each
with one expression and no call of ours per record; when one raises,
:func:`not_pairs` looks at the exception (and the item, when the loop knows
it) and says which: a record that is no pair, one that does not pickle, a
function that returned None or no iterable, a key that does not hash; or
user code (then the exception is the user's, to be re-raised as it is).

Not here: where the task was when it failed (:mod:`.task`'s ``Place``,
:mod:`.execute`), or the loops themselves (:mod:`.outputs`, :mod:`.combiner`).
"""

from __future__ import annotations

import inspect
import pickle
import re
from collections.abc import Callable
from itertools import pairwise
from types import CodeType
from typing import Any, NamedTuple

from discodsl.worker.errors import StageError, a_type, brief, defined_at, named
from discodsl.worker.records import NotAPair, RecordWriter, is_pair
from discodsl.worker.spec import StageSpec
from discodsl.worker.task import NO_ITEM

# What a record that is no pair, or does not pickle, raises on its way to a file: pickle
# raises AttributeError for a lambda or a class defined in a function, PicklingError for
# others (not_pairs tells these from the same errors raised by user code).
WRITE_ERRORS = (TypeError, ValueError, AttributeError, pickle.PicklingError, RecursionError)


class Maker(NamedTuple):
    """Who made the records an error is about: ``who`` for its text, ``name`` its stage's;
    ``returns``: its function returns what it makes (it has no ``yield``)."""

    name: str
    who: str
    returns: bool


def maker_of(stage: StageSpec, who: str = "") -> Maker:
    """The stage itself, unless ``who`` (a combiner of its own) made the records."""
    function = (stage.combiner or stage.function) if who else stage.function
    returns = not inspect.isgeneratorfunction(function)
    return Maker(stage.name, (who or f"stage {stage.name!r}") + defined_at(function), returns)


def hook_maker(stage: StageSpec, done: Callable[..., Any]) -> Maker:
    """The done hook, as what made the records it returns."""
    name = named(done)
    return Maker(
        stage.name, f"the done hook {name!r} of stage {stage.name!r}{defined_at(done)}", True
    )


def not_pairs(
    stage: StageSpec,
    exc: Exception,
    result: Any,
    *loops: Callable[..., Any],
    item: Any = NO_ITEM,
    maker: Maker | None = None,
) -> StageError | None:
    """The one guard on a stage's output: the StageError for ``exc``, raised while ``loops``
    took ``(key, value)`` pairs from what the stage produced (``result``: what one call
    returned, ``()`` when not known), or None when user code raised it (re-raise it).

    The loops themselves only check each item with the same expression as the record
    writer's (``item if item.__class__ is tuple and len(item) == 2 else as_pair(item)``):
    no Python call per record on the way to the file. The combiner's loops leave some
    checks to the unpacking (``key, value = item``): given the ``item`` they were
    unpacking, what that raises on one that is not a pair is the same error as
    ``as_pair``'s.
    """
    maker = maker or maker_of(stage)
    if isinstance(exc, NotAPair):
        return _bad_record(maker, exc.item)
    pickling = _raised_pickling(exc)  # in a class's own __reduce__, say: user code, but no bug
    if raised_by_user(exc, *loops) and not pickling:
        return None
    if pickling or raised_in(exc, RecordWriter.write_many, RecordWriter.write):
        deep = (
            "nested too deeply for pickle: flatten it, or pickle it yourself into bytes; "
            if isinstance(exc, RecursionError)
            else ""
        )
        error = StageError(
            f"{maker.who} yielded a record that cannot be pickled ({type(exc).__name__}: "
            f"{exc}): {deep}{_pickle_advice(exc)}",
            stage=maker.name,
        )
        error.written = True  # in a batch: the record being read then may be a later one
        return error
    if item is not NO_ITEM and not is_pair(item):
        return _bad_record(maker, item)
    if result is None or _returned_none(exc):
        return none_error(maker)
    return _shape_error(maker, result, exc)


def _pickle_advice(exc: BaseException) -> str:
    """What to do about a record pickle refused, by what pickle said."""
    said = str(exc)
    for clue, advice in _PICKLE_ADVICE:
        if clue in said:
            return advice
    return (
        "records are pickled to be written, so keys and values must be data pickle takes "
        "(str, numbers, tuples, lists, dicts, instances of classes defined at the top level "
        "of a module), not locks, generators, open files or connections"
    )


# pickle names a class (or a function) by its module and name, and finds it there to check.
_PICKLE_ADVICE = (
    (
        "it's not the same object as",
        "the class was defined again after the object was made (a notebook cell or a module "
        "run again): make the object again, from the class as it is now",
    ),
    (
        "attribute lookup",
        "pickle finds a class by its module and the name it was made with, and that name "
        "holds no such class there (namedtuple('Pt', ...) held as Point, a class made by "
        "make_dataclass or inside a function): define it at the top level of a module "
        "under the name it was made with",
    ),
    (
        "import of module",
        "pickle finds a class by its module, and that module cannot be imported by its name "
        "(a file loaded by runpy.run_path, or by importlib without sys.modules[name] = "
        "module): import the module by its name",
    ),
)


def bad_result(maker: Maker, result: Any) -> StageError:
    if inspect.iscoroutine(result) or inspect.isasyncgen(result):
        return _async_error(maker, type(result).__name__, result)
    return StageError(
        f"{maker.who} returned {a_type(result)} ({brief(result, 80)}); "
        "a stage must yield (key, value) pairs or return an iterable of them",
        stage=maker.name,
    )


def none_error(maker: Maker) -> StageError:
    return StageError(
        f"{maker.who} returned None: a stage must yield (key, value) pairs, "
        "such as `yield word, 1`, or return an iterable of them; to produce nothing for "
        "this input, return [] (or just `return` in a function that yields)",
        stage=maker.name,
    )


def _returned_none(exc: BaseException) -> bool:
    """Whether ``exc`` is what iterating a stage's None result raises (in our loop)."""
    return isinstance(exc, TypeError) and "'NoneType' object is not iterable" in str(exc)


def _async_error(maker: Maker, kind: str, result: Any) -> StageError:
    """The error for a stage that returned a ``kind`` (``coroutine``, ``async_generator``):
    ``result`` if it is at hand, closed unawaited, and Python's warning that it was never
    awaited kept out of the task's output (the error says so)."""
    if inspect.iscoroutine(result):
        result.close()
    _collect_unawaited()
    what = f"an {kind}" if kind.startswith("async") else f"a {kind}"
    if kind == "async_generator":
        return StageError(
            f"{maker.who} returned {what}: it calls an async generator function, and stages "
            "run without an event loop; collect what it yields in a plain `def`, e.g. "
            "`return asyncio.run(collect(line))` with `async def collect(line): return "
            "[pair async for pair in pairs(line)]`",
            stage=maker.name,
        )
    return StageError(
        f"{maker.who} returned {what}, never awaited: it calls an async function, and "
        "stages run without an event loop; run that to its end in a plain `def`, e.g. "
        "`return asyncio.run(fetch(line))`",
        stage=maker.name,
    )


def _collect_unawaited() -> None:
    """Free a coroutine a stage returned that the loop that failed on it dropped, without
    Python's warning (an inline run printed it at some later collection, in another run's
    lines)."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        gc.collect()


def _shape_error(maker: Maker, result: Any, exc: Exception) -> StageError:
    async_result = _ASYNC_RESULT.search(str(exc)) if isinstance(exc, TypeError) else None
    if async_result:  # result: what one call returned in a combined map, else ()
        return _async_error(maker, async_result[1], result)
    if "unhashable" in str(exc):
        return StageError(
            f"{maker.who} yielded a key that cannot be grouped ({exc}): keys must be "
            "hashable, e.g. a str, an int or a tuple; turn a list key into a tuple",
            stage=maker.name,
        )
    if not hasattr(result, "__iter__"):
        return bad_result(maker, result)
    return StageError(
        f"{maker.who} must yield (key, value) pairs, such as `yield word, 1`, "
        f"or return an iterable of them; what it produced did not unpack: {exc}",
        stage=maker.name,
    )


# What iterating an async function's result raises: the one way a stage's loop sees it.
_ASYNC_RESULT = re.compile(r"^'(coroutine|async_generator)' object is not iterable")

# What pickle calls of a class's own, to pickle its instances.
_PICKLING_HOOKS = frozenset(
    {"__reduce__", "__reduce_ex__", "__getstate__", "__getnewargs__", "__getnewargs_ex__"}
)


def _raised_pickling(exc: BaseException) -> bool:
    """Whether ``exc`` came from a class's pickling hook, called by the record writer."""
    frames: list[CodeType] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    writers = {RecordWriter.write_many.__code__, RecordWriter.write.__code__}
    return any(
        code.co_name in _PICKLING_HOOKS and caller in writers for caller, code in pairwise(frames)
    )


def raised_by_user(exc: BaseException, *loops: Callable[..., Any]) -> bool:
    """Whether ``exc`` came from inside user code, not from unpacking its output in ``loops``."""
    return _last_code(exc) is not None and not raised_in(exc, *loops)


def raised_in(exc: BaseException, *functions: Callable[..., Any]) -> bool:
    """Whether the innermost Python frame ``exc`` went through is one of ``functions``'."""
    return _last_code(exc) in {function.__code__ for function in functions}


def _last_code(exc: BaseException) -> CodeType | None:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame.f_code


def _bad_record(maker: Maker, item: Any) -> StageError:
    if item.__class__ in (tuple, list) and len(item) > 2:
        fix = "a record is a two-item tuple: carry more in the value, as `yield key, (a, b)`"
    elif maker.returns:
        fix = (
            "it has no `yield`, so what it returns is iterated, each item a record: a "
            "returned pair (`return word, 1`) gives its two items, a dict its keys; yield "
            "pairs (`yield word, 1`), or return a list of them (`list(counts.items())`)"
        )
    else:
        fix = "yield two-item tuples such as `yield word, 1`"
    return StageError(
        f"{maker.who} produced {brief(item, 80)} ({type(item).__name__}), not a (key, value) "
        f"pair: {fix}",
        stage=maker.name,
    )
