"""One task of one stage: read records, group them, run the user's function, write outputs.

This is the code every runner shares: the worker runtime calls it on a Disco
node or a local child process, the inline runner calls it in the user's own
process. It knows nothing of the protocol: records come in as an iterable,
outputs go out as record files whose ``(label, path, size)`` are returned.

What a stage's output is labelled with depends on the stage after it: a
``group_label``/``group_node_label``/``split`` successor gets one label per
partition (the partitioner's), a ``group_all``/``group_node`` successor one
label (0); the last stage labels everything with its own group's label.
"""

from __future__ import annotations

import inspect
import operator
import os
import pickle
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, pairwise, repeat
from types import CodeType
from typing import Any, NamedTuple, Protocol

from discodsl.worker.errors import DataError, StageError, brief, defined_at
from discodsl.worker.groupby import group_hashed, group_sorted
from discodsl.worker.memory import Growth, runs
from discodsl.worker.partition import check_grouped, partitioner, spread
from discodsl.worker.records import HUNK_SIZE, NotAPair, RecordWriter, as_pair, is_pair
from discodsl.worker.spec import (
    JobSpec,
    StageSpec,
    params_passing,
    positional_arity,
    takes_params,
)
from discodsl.worker.typecheck import checked

WrittenFile = tuple[int, str, int]
Sink = Callable[[Any, Any], None]

# Map output is folded through the combiner once this many values are buffered.
COMBINE_VALUES = 1 << 21
# Input records read between two combiner checks, at most (fewer while records are big).
CHUNK = 2048
# A combined map looks at its memory within a record too (one that yields many pairs: a
# whole file, a JSON document), after this many new keys while counting, pairs while listing.
WITHIN_RECORD = 4096
# What a loop taking (key, value) pairs had taken when it failed, before its first item.
_NO_ITEM: Any = object()


class Position(Protocol):
    """Where reading is: an input URL and a record number (see inputs.Cursor)."""

    @property
    def url(self) -> str: ...

    @property
    def record(self) -> int: ...


@dataclass
class _NoPosition:
    url: str = ""
    record: int = -1


class _Place:
    """Where a task is, for the errors of its user code: on a record of an input while the
    records are taken one by one, then past them (a reduce's groups, a combiner's calls, a
    done hook), where no record is to blame."""

    def __init__(self, position: Position) -> None:
        self.position = position
        self.past_records = False
        self.key: Any = _NO_ITEM  # the key of the reduce's group being made, if one is
        # The key the next reduce's combiner or partitioner was last called on, if it failed
        # or has not returned yet: an error of theirs names it.
        self.helped: Any = _NO_ITEM

    def noting_keys(self, groups: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """``groups``, each key noted as its group comes (an error then names it), until
        they end."""
        for key, values in groups:
            self.key = key
            yield key, values
        self.key = _NO_ITEM

    @property
    def url(self) -> str:
        return self.position.url

    @property
    def record(self) -> int:
        return -1 if self.past_records else self.position.record


@dataclass
class TaskSetup:
    """What one task needs besides its records: which stage, where to write."""

    job: JobSpec
    stage_index: int
    taskid: int = 0
    label: int | str = 0
    workdir: str = "."
    outdir: str = "out"
    tmpdir: str = ""
    tag: str = field(default_factory=lambda: str(os.getpid()))

    @property
    def stage(self) -> StageSpec:
        """The stage this task runs."""
        return self.job.stages[self.stage_index]

    @property
    def successor(self) -> StageSpec | None:
        """The stage that reads this task's outputs, if any."""
        following = self.job.stages[self.stage_index + 1 :]
        return following[0] if following else None


def run_task(
    task: TaskSetup, records: Iterable[Any], position: Position | None = None
) -> list[WrittenFile]:
    """Run ``task`` over ``records``; the ``(label, path, size)`` of each output written.

    A failure in user code is re-raised as :class:`StageError` naming the
    stage, the input URL and the record number (from ``position``), with the
    original exception as its ``__cause__``.
    """
    where = _Place(position or _NoPosition())
    records = _pairs_only(task, records, where)
    outputs = _Outputs(task, where)
    # Another's, inline, when a signal handler of the program's runs a job during a task.
    interrupted = running_stage()
    _RUNNING.stage = task.stage.name
    try:
        with _user_code(task, where):
            _process(task, records, outputs, where)
        return outputs.close()
    except BaseException:
        outputs.abort()
        raise
    finally:
        _RUNNING.stage = interrupted


def running_stage() -> str | None:
    """The name of the stage this thread is running a task of, if any (inline mode: a
    stage's code runs in the program's own process)."""
    return getattr(_RUNNING, "stage", None)


_RUNNING = threading.local()


def _process(task: TaskSetup, records: Iterable[Any], outputs: _Outputs, where: _Place) -> None:
    stage, params, sink = task.stage, task.job.params, outputs.sink()
    state = _call_hook(stage.init, params)
    combiner = _combiner(task, where, outputs)
    target: Sink = combiner.add if combiner else sink
    function = checked(stage, _bound(stage.function, stage.takes_params, params, _before(stage)))
    function = _one_pair_refused(_maker(stage), stage.function, function)
    if stage.kind == "map":
        if combiner:
            combiner.consume_map(stage, function, records)
        else:  # chained into the writing loop: no Python call of ours per pair
            _stream(stage, _calls(function, records), outputs)
    elif stage.kind == "reduce":
        # Grouping reads every record before the first call: what fails after (the keys'
        # sort) names no record.
        groups = where.noting_keys(_groups(task, _read_through(records, where)))
        _run_reduce(stage, function, groups, outputs, combiner)
    else:
        _emit(stage, function(iter(records)), target)
    where.past_records = True
    if stage.done is not None and (last := _call_hook(stage.done, params, state)) is not None:
        _emit(stage, last, target, _hook_maker(stage, stage.done))  # a done hook may return nothing
    if combiner:
        combiner.flush()


def _read_through(records: Iterable[Any], where: _Place) -> Iterator[Any]:
    """``records``; ``where`` knows when the last has been read."""
    yield from records
    where.past_records = True


def pass_pairs(record: Any) -> tuple[Any]:
    """The function of the map a reduce-only job with partitions > 1 starts with (see
    ``discodsl.model.pipeline``): each record passed on as it is, to be labelled."""
    return (record,)


def _pairs_only(task: TaskSetup, records: Iterable[Any], where: Position) -> Iterable[Any]:
    """``records``, checked to be pairs when this task reads a reduce-only job's inputs."""
    stage = task.stage
    if task.stage_index != 0 or not (stage.kind == "reduce" or stage.function is pass_pairs):
        return records
    reduce = stage if stage.kind == "reduce" else task.successor or stage
    return _refusing_text(records, f"job {task.job.name!r}", reduce.name, where)


def _refusing_text(records: Iterable[Any], job: str, reduce: str, where: Position) -> Iterator[Any]:
    """Each record; a text line (a ``str``: the input is no record file) fails the task."""
    for record in records:
        if record.__class__ is str:
            raise StageError(
                f"{job} starts with the reduce {reduce!r}, which reads record files of "
                f"(key, value) pairs (an earlier job's results, or files Disco wrote), but "
                f"input {where.url} is text (line {where.record}: {brief(record, 60)}): put a @map "
                f"first that turns each line into (key, value) pairs, e.g. `return [parse, "
                f"{reduce}]`",
                stage=reduce,
            )
        yield record


def _bound(
    function: Callable[..., Any], takes_params: bool, params: Any, before: int
) -> Callable[..., Any]:
    """``function`` with ``params`` filled in, if it takes them (after ``before``
    arguments), by keyword or positionally as it takes them (see ``params_passing``)."""
    if not takes_params:
        return function
    if params_passing(function, before) == "keyword":
        return partial(function, params=params)
    return lambda *args: function(*args, params)


def _before(stage: StageSpec) -> int:
    """How many arguments a call of the stage's function passes before ``params``."""
    return 2 if stage.kind == "reduce" else 1


def _one_pair_refused(
    maker: _Maker, own: Callable[..., Any], function: Callable[..., Any]
) -> Callable[..., Any]:
    """``function`` (``own``, bound), refusing a two-item tuple it returns: ``return key,
    value`` in a function without ``yield``, whose two items would be taken as records, and
    silently so when each is a pair itself (a tuple key and a tuple value). A function
    that yields is ``function`` itself."""
    if not maker.returns or own is pass_pairs:
        return function

    def call(*args: Any) -> Any:
        result = function(*args)
        if result.__class__ is tuple and len(result) == 2:
            raise _returned_pair(maker, result)
        return result

    return call


def _returned_pair(maker: _Maker, result: tuple[Any, Any]) -> StageError:
    key, value = result
    return StageError(
        f"{maker.who} returned the two-item tuple {brief(result, 80)}; it has no `yield`, so "
        f"what it returns is iterated, each item a record: {brief(key, 40)} and "
        f"{brief(value, 40)} would be two records: yield the pair (`yield key, value`), or "
        "return a list of pairs (`return [(key, value)]`)",
        stage=maker.name,
    )


def _call_hook(hook: Callable[..., Any] | None, params: Any, *state: Any) -> Any:
    """Call an init or done hook with as many of ``(*state, params)`` as it accepts."""
    if hook is None:
        return None
    args = (*state, params)
    return hook(*args[: positional_arity(hook)])


class _Stopped(Exception):
    """A StopIteration that the user's function raised, carried out of :func:`_calls`."""

    def __init__(self, stop: StopIteration) -> None:
        super().__init__(stop)
        self.stop = stop


def _calls(
    function: Callable[..., Any], arguments: Iterable[Any], spread: bool = False
) -> Iterator[Any]:
    """What ``function`` returns for each of ``arguments`` (each spread into its positional
    arguments if ``spread``), as ``map`` (or ``starmap``) gives it, but a StopIteration the
    function raises stays an error: ``map`` would take it for the end of the arguments and
    drop the rest of the task's records without a word."""
    for argument in arguments:
        try:
            result = function(*argument) if spread else function(argument)
        except StopIteration as stop:
            raise _Stopped(stop) from None
        yield result


def _stream(stage: StageSpec, results: Iterator[Any], outputs: _Outputs) -> None:
    """Write every pair of every one of ``results`` (what the user's calls returned)."""
    try:
        outputs.add_many(chain.from_iterable(results))
    except _WRITE_ERRORS as exc:
        error = _not_pairs(stage, exc, (), *_WRITING)
        if error is None:
            raise
        raise error from None


def _groups(task: TaskSetup, records: Iterable[Any]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """A reduce task's records grouped by key (sorted unless ``sort=False``), every record
    read before the first group comes."""
    stage = task.stage
    group = group_sorted if stage.sort else group_hashed
    groups = group(
        records,
        budget=task.job.memory_budget,
        tmpdir=task.tmpdir or task.workdir,
        stage=stage.name,
    )
    first = next(groups, None)
    grouped = groups if first is None else chain((first,), groups)
    return grouped if stage.partitioner is not None else _partitionable(grouped, stage.name)


def _partitionable(
    groups: Iterator[tuple[Any, Iterator[Any]]], stage: str
) -> Iterator[tuple[Any, Iterator[Any]]]:
    """``groups``, a key the default partitioner would refuse (a class of the user's, a
    dict) failing the task as it does with several partitions: with one, nothing else
    would, and a key that compares by identity is a group of its own per record."""
    for group in groups:
        if group[0].__class__ is not str:
            check_grouped(group[0], stage)
        yield group


def _run_reduce(
    stage: StageSpec,
    function: Callable[..., Any],
    groups: Iterator[tuple[Any, Iterator[Any]]],
    outputs: _Outputs,
    combiner: _Combiner | None,
) -> None:
    if combiner is None:
        _stream(stage, _calls(function, groups, spread=True), outputs)
        return
    for key, values in groups:  # into the next reduce's combiner
        _emit(stage, function(key, values), combiner.add)


def _emit(stage: StageSpec, result: Any, sink: Sink, maker: _Maker | None = None) -> None:
    """Write the pairs of ``result``, what one call made (the stage's, or ``maker``'s)."""
    maker = maker or _maker(stage)
    if result is None:
        raise _none_error(maker)
    try:
        iterator = iter(result)
    except TypeError:
        raise _bad_result(maker, result) from None
    try:
        for item in iterator:
            key, value = item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
            sink(key, value)
    except _WRITE_ERRORS as exc:
        error = _not_pairs(stage, exc, result, _emit, maker=maker)
        if error is None:
            raise
        raise error from None


# What a record that is no pair, or does not pickle, raises on its way to a file: pickle
# raises AttributeError for a lambda or a class defined in a function, PicklingError for
# others (_not_pairs tells these from the same errors raised by user code).
_WRITE_ERRORS = (TypeError, ValueError, AttributeError, pickle.PicklingError)


class _Maker(NamedTuple):
    """Who made the records an error is about: ``who`` for its text, ``name`` its stage's;
    ``returns``: its function returns what it makes (it has no ``yield``)."""

    name: str
    who: str
    returns: bool


def _maker(stage: StageSpec, who: str = "") -> _Maker:
    """The stage itself, unless ``who`` (a combiner of its own) made the records."""
    function = (stage.combiner or stage.function) if who else stage.function
    returns = not inspect.isgeneratorfunction(function)
    return _Maker(stage.name, (who or f"stage {stage.name!r}") + defined_at(function), returns)


def _hook_maker(stage: StageSpec, done: Callable[..., Any]) -> _Maker:
    """The done hook, as what made the records it returns."""
    name = getattr(done, "__qualname__", "")
    return _Maker(
        stage.name, f"the done hook {name!r} of stage {stage.name!r}{defined_at(done)}", True
    )


def _not_pairs(
    stage: StageSpec,
    exc: Exception,
    result: Any,
    *loops: Callable[..., Any],
    item: Any = _NO_ITEM,
    maker: _Maker | None = None,
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
    maker = maker or _maker(stage)
    if isinstance(exc, NotAPair):
        return _bad_record(maker, exc.item)
    pickling = _raised_pickling(exc)  # in a class's own __reduce__, say: user code, but no bug
    if _raised_by_user(exc, *loops) and not pickling:
        return None
    if pickling or _raised_in(exc, RecordWriter.write_many, RecordWriter.write):
        error = StageError(
            f"{maker.who} yielded a record that cannot be pickled ({type(exc).__name__}: "
            f"{exc}): records are pickled to be written, so keys and values must be data "
            "pickle takes (str, numbers, tuples, lists, dicts, instances of classes defined at "
            "the top level of a module), not locks, generators, open files or connections",
            stage=maker.name,
        )
        error.written = True  # in a batch: the record being read then may be a later one
        return error
    if item is not _NO_ITEM and not is_pair(item):
        return _bad_record(maker, item)
    if result is None or _returned_none(exc):
        return _none_error(maker)
    return _shape_error(maker, result, exc)


def _bad_result(maker: _Maker, result: Any) -> StageError:
    return StageError(
        f"{maker.who} returned a {type(result).__name__} ({brief(result, 80)}); "
        "a stage must yield (key, value) pairs or return an iterable of them",
        stage=maker.name,
    )


def _none_error(maker: _Maker) -> StageError:
    return StageError(
        f"{maker.who} returned None: a stage must yield (key, value) pairs, "
        "such as `yield word, 1`, or return an iterable of them; to produce nothing for "
        "this input, return [] (or just `return` in a function that yields)",
        stage=maker.name,
    )


def _returned_none(exc: BaseException) -> bool:
    """Whether ``exc`` is what iterating a stage's None result raises (in our loop)."""
    return isinstance(exc, TypeError) and "'NoneType' object is not iterable" in str(exc)


def _shape_error(maker: _Maker, result: Any, exc: Exception) -> StageError:
    if "unhashable" in str(exc):
        return StageError(
            f"{maker.who} yielded a key that cannot be grouped ({exc}): keys must be "
            "hashable, e.g. a str, an int or a tuple; turn a list key into a tuple",
            stage=maker.name,
        )
    if not hasattr(result, "__iter__"):
        return _bad_result(maker, result)
    return StageError(
        f"{maker.who} must yield (key, value) pairs, such as `yield word, 1`, "
        f"or return an iterable of them; what it produced did not unpack: {exc}",
        stage=maker.name,
    )


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


def _raised_by_user(exc: BaseException, *loops: Callable[..., Any]) -> bool:
    """Whether ``exc`` came from inside user code, not from unpacking its output in ``loops``."""
    return _last_code(exc) is not None and not _raised_in(exc, *loops)


def _raised_in(exc: BaseException, *functions: Callable[..., Any]) -> bool:
    """Whether the innermost Python frame ``exc`` went through is one of ``functions``'."""
    return _last_code(exc) in {function.__code__ for function in functions}


def _last_code(exc: BaseException) -> CodeType | None:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame.f_code


def _bad_record(maker: _Maker, item: Any) -> StageError:
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


@contextmanager
def _user_code(task: TaskSetup, where: _Place) -> Iterator[None]:
    """Turn an exception from user code into a StageError that says where it happened."""
    try:
        yield
    except StageError as exc:
        if not exc.url:  # raised by a check of what the stage made: where it was, said once
            place, exc.url, record = _place(where, written=exc.written)
            exc.record = exc.record if exc.record >= 0 else record
            exc.args = (f"{exc}{';' if place else ''}{place}",)
        raise
    except (DataError, SystemExit):
        # An unreadable input is not the stage's fault: it names the URL itself. A stage
        # that exits ends its worker, as in Disco (the runner says how it ended).
        raise
    except _Stopped as carried:
        raise _wrap(task, where, carried.stop) from carried.stop
    except BaseException as exc:  # KeyboardInterrupt, GeneratorExit, its own: the stage's
        raise _wrap(task, where, exc) from exc


def _place(where: _Place, reading: bool = False, written: bool = False) -> tuple[str, str, int]:
    """Where user code failed, in words, and the input URL and record to name: a reduce's
    key (its input is a file of ours, no help), else the input and record being read (with
    ``reading``, a reader's failure, the one after the last it gave; with ``written``, a
    record that failed as its batch was written, made at that record or before)."""
    if where.key is not _NO_ITEM:
        return f" on the key {brief(where.key, 80)}", "", -1
    if not where.url or where.past_records:  # a done hook, after every input: none to blame
        return "", "", -1
    number = where.record + 1 if reading else where.record
    if written and number >= 0:
        made = f", at or before record {number} (records are written in batches)"
        return f" on input {where.url!r}{made}", where.url, -1
    record = f", record {number}" if number >= 0 else ""
    return f" on input {where.url!r}{record}", where.url, number


def _wrap(task: TaskSetup, where: _Place, exc: BaseException) -> StageError:
    stage = task.stage.name
    culprit = _culprit(task, exc, where.helped)
    place, url, record = _place(where, reading=culprit.startswith("the reader"))
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    text = f"{culprit} raised {text}" if culprit else text
    error = StageError(f"stage {stage!r} failed{place}: {text}", stage, url, record)
    error.exc_type = type(exc).__name__
    return error


def _culprit(task: TaskSetup, exc: BaseException, helped: Any = _NO_ITEM) -> str:
    """Which of the task's functions other than its stage's own raised ``exc`` (a hook, or
    the next reduce's combiner or partitioner), in words; "" for the stage function."""
    codes = set()
    tb = exc.__traceback__
    while tb is not None:
        codes.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    stage, after = task.stage, task.successor
    own = f"of stage {stage.name!r}"
    suspects = [
        (stage.init, "the init hook", own),
        (stage.done, "the done hook", own),
        (stage.reader, "the reader", own),
    ]
    if after is not None and after.kind == "reduce":
        theirs = f"of reduce {after.name!r}"
        suspects += [
            (_combining(after), "the combiner", theirs),
            (after.partitioner, "the partitioner", theirs),
        ]
    for function, role, owner in suspects:
        code = getattr(getattr(function, "func", function), "__code__", None)
        if code is not None and code in codes:
            named = role in _HELPERS and helped is not _NO_ITEM
            key = f", on the key {brief(helped, 80)}," if named else ""
            return f"{role} {getattr(function, '__qualname__', '')!r} {owner}{key}"
    return ""


_HELPERS = ("the combiner", "the partitioner")  # called on a key, which their errors name


class _Combiner:
    """Folds map output per key through the next stage's reduce before it is written.

    Values are buffered per key, in the order they came. While every value
    is one and the same object (``yield word, 1``: the constant ``1``), each
    key's values are *counted* rather than listed: ``counts[key]`` copies of
    ``same``. That is exact (the combiner gets those very objects, in order),
    not a guess about the combiner, and costs a dict update per pair where a
    list append costs about twice that. The first other value turns the counts
    into lists, and from then on every value is listed.

    What is held goes through the combiner straight into the output files
    when the process has grown by half the memory budget, and at the end; a
    key's values are folded (replaced by what the combiner makes of them)
    whenever COMBINE_VALUES values in all are held, and written out if that
    leaves half as many.

    A map's key that does not hash (a list: a sorted reduce takes it) ends the
    combining for the task: what is held is combined and written, and every
    later pair is written as the map made it (a combiner may run on a key any
    number of times, or not at all).
    """

    def __init__(
        self,
        stage: StageSpec,
        function: Callable[..., Any],
        params: Any,
        budget: int,
        outputs: _Outputs,
        where: _Place | None = None,
        source: StageSpec | None = None,
    ):
        self.outputs = outputs  # where combined records go: when memory runs short, and at the end
        self.source = source  # the stage whose records it combines (named if one is bad)
        # Whether it takes params: asked of the reduce when declared (combine=True), else here.
        own = function is not stage.function
        with_params = takes_params(function, 2) if own else stage.takes_params
        self.who = (  # who makes the combined records, for the errors about them
            f"the combiner {getattr(function, '__qualname__', function)!r} of reduce {stage.name!r}"
            if own
            else ""
        )
        bound = _bound(function, with_params, params, 2)
        self.stage, self.function = (
            stage,
            _one_pair_refused(_maker(stage, self.who), function, bound),
        )
        # Plain dicts, not defaultdicts: CPython specialises subscripts of exact dicts,
        # which makes the per-value loops below about a quarter faster.
        self.buffer: dict[Any, list[Any]] = {}
        self.counts: dict[Any, int] = {}  # copies of ``same`` after buffer[key]'s values
        self.same: Any = _UNSET
        self.counting = True
        self.passing: Iterator[Any] | None = None  # once a key did not hash: its record's rest
        self.count = 0
        # Flushes once the process has grown by half the budget, looking between runs of
        # input records (up to CHUNK of them, one while each adds megabytes), and within a
        # record every WITHIN_RECORD new keys or pairs.
        self.growth = Growth(budget // 2, most=CHUNK)
        self.unlooked = 1  # pairs add() takes before it looks at the memory again
        self.where = where or _Place(_NoPosition())  # notes the key of each call

    def add(self, key: Any, value: Any) -> None:
        """Hold one pair (of a stage that is no map: see consume_map for a map's); one whose
        key does not hash is written as it is (after what is held, in order)."""
        self.unlooked -= 1
        if self.unlooked <= 0:
            self._check_memory()
            self.unlooked = self.growth.every
        try:
            if self.counting:
                if value is self.same:
                    self.counts[key] = self.counts.get(key, 0) + 1
                    return
                self._stop_counting()
            try:
                self.buffer[key].append(value)
            except KeyError:
                self.buffer[key] = [value]
        except TypeError:
            if _hashes(key):
                raise
            self.flush()
            self.outputs.add_many([(key, value)])
            return
        self.count += 1
        if self.count >= COMBINE_VALUES:
            self.fold()
            if self.count >= COMBINE_VALUES // 2:  # many keys, few values each: a fold at
                self.flush()  # the next pair would go over them all again, so write them

    def consume_map(
        self, stage: StageSpec, function: Callable[[Any], Any], records: Iterable[Any]
    ) -> None:
        """The hot loop of a combined map (``stage``): no per-record call but the user's."""
        iterator: Iterator[Any] = iter(records)
        if self.counting:
            iterator = self._consume_counting(stage, function, iterator)
        if not self.counting and self.passing is None:
            iterator = self._consume_listed(stage, function, iterator)
        if self.passing is not None:  # the rest as the map makes it, uncombined
            self.flush()
            _stream(stage, chain((self.passing,), map(function, iterator)), self.outputs)

    def _consume_counting(
        self, stage: StageSpec, function: Callable[[Any], Any], iterator: Iterator[Any]
    ) -> Iterator[Any]:
        """Count values while each is ``same``; the records left when one is not.

        An item is unpacked first, and counted with no other check when its value is
        ``same``: a pair (a two-item tuple or list) unpacks so, and so does a two-item
        iterable of another type ending in that very object. A two-character string
        is the one such iterable a stage could yield by mistake (``yield word``), so
        values are not counted when the first is a one-character string; the others
        (bytes, sets, ranges) pass, as anything that unpacks passes in Disco. Any
        other item is checked as every loop checks one. Checking each item's type
        before unpacking it cost the fold 5% (0.90 s against 0.85 s on a 25 MB part of
        the benchmark's corpus).
        """
        counts, same = self.counts, self.same
        get = counts.get
        item: Any = _NO_ITEM
        fresh = WITHIN_RECORD  # new keys before the next look within a record
        for records in runs(iterator, self.growth):
            for record in records:
                result = function(record)
                try:
                    items = iter(result)
                    for item in items:
                        key, value = item  # not a two-item iterable: see _not_pairs
                        if value is same:
                            held = get(key, 0)
                            counts[key] = held + 1
                            if held:
                                continue
                            fresh -= 1
                            if not fresh:  # the dicts are flushed in place: names hold
                                fresh = self._look_within_record()
                            continue
                        if item.__class__ is not tuple:
                            key, value = as_pair(item)
                        if same is _UNSET and not counts and _countable(value):  # the first
                            same = self.same = value
                            counts[key] = 1
                        else:
                            self._stop_counting()
                            rest = self._listed(stage, chain(((key, value),), items))
                            self.passing = rest  # None, unless a key did not hash
                            return chain(records, iterator)
                except (TypeError, ValueError) as exc:
                    if _unhashable_key(exc, item, _Combiner._consume_counting):
                        self._stop_counting()
                        self.passing = chain((item,), items)
                        return chain(records, iterator)
                    error = _not_pairs(stage, exc, result, _Combiner._consume_counting, item=item)
                    if error is None:
                        raise
                    raise error from None
            self._check_memory()
            counts, get = self.counts, self.counts.get
        return iterator

    def _consume_listed(
        self, stage: StageSpec, function: Callable[[Any], Any], iterator: Iterator[Any]
    ) -> Iterator[Any]:
        """List every value, as each call of ``function`` yields it; the records left if a
        key does not hash (``passing``)."""
        buffer = self.buffer
        item: Any = _NO_ITEM
        pairs = WITHIN_RECORD  # pairs before the next look within a record
        for records in runs(iterator, self.growth):
            for record in records:
                result = function(record)
                try:
                    items = iter(result)
                    for item in items:
                        if item.__class__ is not tuple:
                            item = as_pair(item)
                        key, value = item  # a tuple of other length: see _not_pairs
                        try:
                            buffer[key].append(value)
                        except KeyError:
                            buffer[key] = [value]
                        pairs -= 1
                        if not pairs:  # the buffer is flushed in place: the name holds
                            pairs = self._look_within_record()
                except (TypeError, ValueError) as exc:
                    if _unhashable_key(exc, item, _Combiner._consume_listed):
                        self.passing = chain((item,), items)
                        return chain(records, iterator)
                    error = _not_pairs(stage, exc, result, _Combiner._consume_listed, item=item)
                    if error is None:
                        raise
                    raise error from None
            self._check_memory()
            buffer = self.buffer
        return iterator

    def _listed(self, stage: StageSpec, items: Iterable[Any]) -> Iterator[Any] | None:
        """The rest of the record that ended the counting: check each of ``items`` is a
        pair and list its value; from the first whose key does not hash, the items left
        (that one first), else None."""
        iterator, buffer = iter(items), self.buffer
        item: Any = _NO_ITEM
        pairs = WITHIN_RECORD
        try:
            for item in iterator:
                key, value = item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
                try:
                    buffer[key].append(value)
                except KeyError:
                    buffer[key] = [value]
                pairs -= 1
                if not pairs:
                    pairs = self._look_within_record()
        except (TypeError, ValueError) as exc:
            if _unhashable_key(exc, item, _Combiner._listed):
                return chain((item,), iterator)
            error = _not_pairs(stage, exc, (), _Combiner._listed)
            if error is None:
                raise
            raise error from None
        return None

    def _look_within_record(self) -> int:
        """Within a record that yields many pairs: combine and write what is held if the
        process is over half the budget; the count of new keys or pairs to the next look."""
        if self.growth.over():
            self.flush()
            self.growth.released()
        return WITHIN_RECORD

    def _holds_unpicklable(self, exc: Exception) -> bool:
        """Whether ``exc`` is the pickler's, and a record as the source stage made it (a
        key and one of the values held) does not pickle; only once writing failed."""
        if not _raised_in(exc, RecordWriter.write_many, RecordWriter.write):
            return False
        held = ((key, value) for key, values in self.buffer.items() for value in values)
        for record in chain(held, ((key, self.same) for key in self.counts)):
            try:
                pickle.dumps(record)
            except Exception:
                return True
        return False

    def _stop_counting(self) -> None:
        """Turn the counts into listed values; from now on every value is listed."""
        self.counting = False
        self._list_counts()

    def _list_counts(self) -> None:
        """Append each key's counted copies of ``same`` to its list."""
        buffer, same = self.buffer, self.same
        for key, copies in self.counts.items():
            listed = buffer.get(key)
            if listed is None:
                buffer[key] = [same] * copies
            else:
                listed += [same] * copies
        self.counts.clear()

    def _check_memory(self) -> None:
        """Once the process has grown by half the budget since the last check that found it
        so: combine what is held and write it out. A fold alone would keep every key, and a
        map with many keys would grow past any budget; a combiner may run any number of
        times, and the reduce combines what comes from several."""
        if self.growth.look():
            self.flush()
            self.growth.released()

    def fold(self) -> None:
        """Replace each key's buffered values by what the combiner makes of them."""
        folded: dict[Any, list[Any]] = {}
        for key, value in self._combined():
            try:
                folded[key].append(value)
            except KeyError:
                folded[key] = [value]
        self.buffer = folded
        self.counts = {}
        self.count = sum(map(len, folded.values()))

    def _combined(self) -> Iterator[tuple[Any, Any]]:
        """Every key's buffered values through the combiner (a lone value as it is)."""
        try:
            for item in chain.from_iterable(self._results()):
                yield item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
        except (TypeError, ValueError) as exc:
            error = _not_pairs(self.stage, exc, (), *_COMBINING, maker=_maker(self.stage, self.who))
            if error is None:
                raise
            raise error from None

    def _results(self) -> Iterator[Iterable[Any]]:
        """What the combiner returns for each key: listed keys first, then counted ones."""
        if self.counts and self.buffer:  # only after a fold while counting
            self._list_counts()
        return chain(self._listed_results(), self._counted_results())

    def _listed_results(self) -> Iterator[Iterable[Any]]:
        function, where = self.function, self.where
        for key, values in self.buffer.items():
            if len(values) == 1:
                yield ((key, values[0]),)
                continue
            where.helped = key  # named if it fails
            try:
                made = tuple(function(key, iter(values)))
            except StopIteration as stop:  # this generator would make it a RuntimeError
                raise _Stopped(stop) from None
            one = made[0] if len(made) == 1 else None  # the usual: one pair, of this key
            if one.__class__ is not tuple or len(one) != 2 or (one[0] is not key and one[0] != key):
                self._same_key(key, made)
            yield made
        where.helped = _NO_ITEM

    def _counted_results(self) -> Iterator[Iterable[Any]]:
        function, same, where = self.function, self.same, self.where
        for key, copies in self.counts.items():
            if copies == 1:
                yield ((key, same),)
                continue
            where.helped = key
            try:
                made = tuple(function(key, repeat(same, copies)))
            except StopIteration as stop:
                raise _Stopped(stop) from None
            one = made[0] if len(made) == 1 else None  # the usual: one pair, of this key
            if one.__class__ is not tuple or len(one) != 2 or (one[0] is not key and one[0] != key):
                self._same_key(key, made)
            yield made
        where.helped = _NO_ITEM

    def _same_key(self, key: Any, made: tuple[Any, ...]) -> None:
        """A StageError if a pair the combiner ``made`` of ``key``'s values has another key:
        the reduce would change it again (a combiner runs any number of times, or not at
        all). No pair (a filter on the key) passes, and so does what is no pair, for the
        writing to refuse."""
        for item in made:
            if is_pair(item) and item[0] is not key and item[0] != key:
                who = self.who or f"reduce {self.stage.name!r}, as its own combiner"
                raise StageError(
                    f"{who}, given the key {brief(key, 60)}, yielded the key "
                    f"{brief(item[0], 60)}: a combiner must yield the key it is given (it runs "
                    "on part of a key's values in each map task, any number of times, and the "
                    "reduce takes what it yields in place of those values); a reduce that "
                    "renames its keys cannot combine: drop combine=True, or give "
                    "combiner=fn, a function that only folds the values",
                    stage=self.stage.name,
                )

    def flush(self) -> None:
        """Combine what is held, straight into the output files (whose writing checks each
        record is a pair: no Python frame of ours per record on the way), and let it go."""
        try:
            self.outputs.add_many(chain.from_iterable(self._results()))
        except _WRITE_ERRORS as exc:
            if self.source is not None and self._holds_unpicklable(exc):
                # The source stage's record (a key with one value passes on as it came).
                error = _not_pairs(self.source, exc, (), *_WRITING)
            else:
                error = _not_pairs(
                    self.stage, exc, (), *_WRITING, *_COMBINING, maker=_maker(self.stage, self.who)
                )
            if error is None:
                raise
            raise error from None
        self.buffer.clear()
        self.counts.clear()
        self.count = 0


_UNSET: Any = object()  # no value counted yet

# The combiner's loops over what it makes of each key's values.
_COMBINING = (_Combiner._combined, _Combiner._listed_results, _Combiner._counted_results)


def _unhashable_key(exc: Exception, item: Any, loop: Callable[..., Any]) -> bool:
    """Whether ``exc``, raised in ``loop``, is the hashing of ``item``'s key failing (a
    pair whose key is a list, a set, a dict)."""
    if not (isinstance(exc, TypeError) and is_pair(item)) or _raised_by_user(exc, loop):
        return False
    return not _hashes(item[0])


def _hashes(key: Any) -> bool:
    """Whether ``key`` hashes."""
    try:
        hash(key)
    except TypeError:
        return False
    return True


def _countable(value: Any) -> bool:
    """Whether the combiner may count copies of ``value`` (see _consume_counting)."""
    return not (value.__class__ is str and len(value) == 1)


def _combiner(task: TaskSetup, where: _Place, outputs: _Outputs) -> _Combiner | None:
    after = task.successor
    function = _combining(after)
    if after is None or function is None:
        return None
    budget = task.job.memory_budget
    return _Combiner(after, function, task.job.params, budget, outputs, where, task.stage)


def _combining(after: StageSpec | None) -> Callable[..., Any] | None:
    """What folds a map's output in its own task: the next reduce's ``combiner``, or the
    reduce itself with ``combine=True``; None if nothing does."""
    if after is None or after.kind != "reduce":
        return None
    if after.combiner is not None:
        return after.combiner
    return after.function if after.combine else None


class _Outputs:
    """One record file per output label, opened on its first record."""

    def __init__(self, task: TaskSetup, where: _Place | None = None):
        self.task = task
        self.writers: dict[int, RecordWriter] = {}
        self.names: dict[int, str] = {}  # each writer's path, from the task's workdir
        self.labeler, self.constant = _labeler(task, where or _Place(_NoPosition()))
        self.spread = _spreader(task, self.labeler)
        self.directory = os.path.join(task.workdir, task.outdir)
        self.hunk_size = _hunk_size(task)

    def sink(self) -> Sink:
        """A function writing one record to the file for its label."""
        writers, labeler, writer_for = self.writers, self.labeler, self._writer
        if self.constant is not None:
            return self._constant_sink(self.constant)

        def add(key: Any, value: Any) -> None:
            label = labeler(key)
            writer = writers.get(label) or writer_for(label)
            writer.write(key, value)

        return add

    def _constant_sink(self, label: int) -> Sink:
        opened: list[RecordWriter] = []

        def add(key: Any, value: Any) -> None:
            if not opened:
                opened.append(self._writer(label))
            opened[0].write(key, value)

        return add

    def add_many(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Write many records, each to the file for its label."""
        if self.constant is not None:
            iterator = iter(pairs)
            for first in iterator:  # no file for a label without records, as in Disco
                self._writer(self.constant).write_many(chain((first,), iterator))
            return
        self.spread(pairs, write=self._write_batch)

    def _write_batch(self, label: int, pairs: list[tuple[Any, Any]]) -> None:
        self._writer(label).write_many(pairs)

    def _writer(self, label: int) -> RecordWriter:
        writer = self.writers.get(label)
        return writer if writer is not None else self._open(label)

    def _open(self, label: int) -> RecordWriter:
        task = self.task
        name = f"{task.stage.name}-{task.taskid}-{label}-{task.tag}"
        path = os.path.join(self.directory, name)
        writer = RecordWriter(path, compress=task.job.compress, hunk_size=self.hunk_size)
        self.writers[label] = writer
        self.names[label] = f"{task.outdir}/{name}"
        return writer

    def close(self) -> list[WrittenFile]:
        return [
            (label, self.names[label], writer.close())
            for label, writer in sorted(self.writers.items())
        ]

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


# The loops of ours that take (key, value) pairs on their way to the files.
_WRITING = (RecordWriter.write_many, _Outputs.add_many, spread, runs)


def _labeler(task: TaskSetup, where: _Place) -> tuple[Callable[[Any], int], int | None]:
    """How this task labels a record by its key, and the one label if it is constant (a
    partitioner that fails notes its key in ``where``)."""
    after = task.successor
    if after is None:
        own = task.label if isinstance(task.label, int) else 0
        return (lambda key: own), own
    partitions = task.job.partitions
    if after.grouping in ("group_all", "group_node") or partitions <= 1:
        return (lambda key: 0), 0
    if after.partitioner is None:
        return partitioner(partitions, stage=task.stage.name), None
    partition, reduce, stage = after.partitioner, after.name, task.stage.name

    def label(key: Any) -> int:
        try:
            found = partition(key, partitions)
        except BaseException:
            where.helped = key
            raise
        return _checked(found, key, partitions, reduce, stage)

    return label, None


def _hunk_size(task: TaskSetup) -> int:
    """The hunk each of this task's output files buffers before writing it: Disco's 1 MiB,
    less when so many partitions buffer at once that they would hold more than an eighth of
    the memory budget (a hunk of any size reads alike), down to MIN_HUNK."""
    files = (task.job.partitions or 1) if task.successor is not None else 1
    return max(MIN_HUNK, min(HUNK_SIZE, task.job.memory_budget // 8 // files))


# The smallest hunk a task's output is written in, however many partitions it has.
MIN_HUNK = 16 * 1024


def _spreader(task: TaskSetup, labeler: Callable[[Any], int]) -> Callable[..., None]:
    """How this task sorts many records into their partitions (see ``partition.spread``):
    by the default partitioner's own loop when it is the labeler, else by ``labeler``."""
    partitions, stage = task.job.partitions, task.stage.name
    after = task.successor
    default = after is not None and after.partitioner is None
    label = None if default else labeler
    limit = task.job.memory_budget // 4  # held in batches; a combiner may hold half
    return partial(spread, partitions=partitions, stage=stage, label=label, limit=limit)


def _checked(label: Any, key: Any, partitions: int, reduce: str, stage: str) -> int:
    """``label`` as an int, if the partitioner of ``reduce`` (called on ``key``, of
    ``stage``) may return it: an int, or an integer of another type (an IntEnum, numpy's)."""
    if type(label) is not int:
        with suppress(TypeError):
            label = operator.index(label)
    if type(label) is int and 0 <= label < partitions:
        return label
    raise StageError(
        f"the partitioner of reduce {reduce!r} returned {label!r} for the key "
        f"{brief(key, 80)} of stage {stage!r}; it must return an int from 0 to "
        f"{partitions - 1} (partitions={partitions})",
        stage=stage,
    )
