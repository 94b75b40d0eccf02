"""One task of one stage: read records, group them, run the user's function, write outputs.

This is the code every runner shares: the worker runtime calls it on a Disco
node or a local child process, the inline runner calls it in the user's own
process. It knows nothing of the protocol: records come in as an iterable,
outputs go out as record files whose ``(label, path, size)`` are returned.

Not here: what a task is (:mod:`.task`), how user functions are called
(:mod:`.calls`), the files written (:mod:`.outputs`), the combiner
(:mod:`.combiner`), grouping (:mod:`.groupby`), and whose fault a bad record
is (:mod:`.blame`).
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

from discodsl.worker import current
from discodsl.worker.blame import (
    WRITE_ERRORS,
    Maker,
    bad_result,
    hook_maker,
    maker_of,
    none_error,
    not_pairs,
)
from discodsl.worker.calls import (
    Stopped,
    args_before_params,
    call_hook,
    one_pair_refused,
    params_bound,
    pass_pairs,
    results_of,
)
from discodsl.worker.combiner import Combiner, combiner_for, combining
from discodsl.worker.errors import DataError, MalformedRecord, StageError, brief, named
from discodsl.worker.groupby import group_hashed, group_sorted
from discodsl.worker.outputs import Outputs, stream
from discodsl.worker.partition import check_grouped
from discodsl.worker.records import as_pair, is_pair
from discodsl.worker.spec import JobSpec, StageSpec
from discodsl.worker.task import NO_ITEM, NoPosition, Place, Position, Sink, TaskSetup, WrittenFile
from discodsl.worker.typecheck import checked


def run_task(
    task: TaskSetup, records: Iterable[Any], position: Position | None = None
) -> list[WrittenFile]:
    """Run ``task`` over ``records``; the ``(label, path, size)`` of each output written.

    A failure in user code is re-raised as :class:`StageError` naming the
    stage, the input URL and the record number (from ``position``), with the
    original exception as its ``__cause__``.
    """
    where = Place(position or NoPosition())
    records = _pairs_only(task, records, where)
    outputs = Outputs(task, where)
    # Another's, inline, when a signal handler of the program's runs a job during a task.
    interrupted = running_stage()
    _RUNNING.stage = task.stage.name
    this = _this_task(task, where)
    before = current.entered(this)
    try:
        with _user_code(task, where):
            _process(task, records, outputs, where)
        return outputs.close()
    except BaseException:
        outputs.abort()
        raise
    finally:
        current.left(this, before)
        _RUNNING.stage = interrupted


def _this_task(task: TaskSetup, where: Place) -> current.ThisTask:
    """What this_task() tells ``task``'s code: its partition is its group's label where
    its stage groups by label (a reduce's), else its number, as Disco's this_partition()."""
    stage = task.stage
    by_label = stage.grouping in ("group_label", "group_node_label")
    partition = task.label if by_label else task.taskid
    name = task.jobname or task.job.name
    read = where if stage.grouping == "split" else None  # a reduce's keys are all its inputs'
    return current.ThisTask(name, stage.name, task.taskid, partition, task.host, task.master, read)


def running_stage() -> str | None:
    """The name of the stage this thread is running a task of, if any (inline mode: a
    stage's code runs in the program's own process)."""
    return getattr(_RUNNING, "stage", None)


_RUNNING = threading.local()


def uses_params(job: JobSpec, index: int) -> bool:
    """Whether a task of stage ``index`` of ``job`` hands the job's params to a function:
    the stage's own (if it takes them), its init or done hook, or the next reduce's
    combining function (see _process and combiner_for)."""
    stage = job.stages[index]
    after = job.stages[index + 1] if index + 1 < len(job.stages) else None
    hooks = stage.init is not None or stage.done is not None
    return stage.takes_params or hooks or combining(after) is not None


def _process(task: TaskSetup, records: Iterable[Any], outputs: Outputs, where: Place) -> None:
    stage, params, sink = task.stage, task.job.params, outputs.sink()
    state = call_hook(stage.init, params)
    combiner = combiner_for(task, where, outputs)
    target: Sink = combiner.add if combiner else sink
    function = checked(
        stage, params_bound(stage.function, stage.takes_params, params, args_before_params(stage))
    )
    function = one_pair_refused(maker_of(stage), stage.function, function)
    if stage.kind == "map":
        if combiner:
            combiner.consume_map(stage, function, records)
        else:  # chained into the writing loop: no Python call of ours per pair
            stream(stage, results_of(function, records), outputs)
    elif stage.kind == "reduce":
        # Grouping reads every record before the first call: what fails after (the keys'
        # sort) names no record.
        groups = where.noting_keys(_groups(task, _read_through(records, where)))
        _run_reduce(stage, function, groups, outputs, combiner)
    else:
        _emit(stage, function(iter(records)), target)
    where.past_records = True
    if stage.done is not None and (last := call_hook(stage.done, params, state)) is not None:
        _emit(stage, last, target, hook_maker(stage, stage.done))  # a done hook may return nothing
    if combiner:
        combiner.flush()


def _read_through(records: Iterable[Any], where: Place) -> Iterator[Any]:
    """``records``; ``where`` knows when the last has been read."""
    yield from records
    where.past_records = True


def _pairs_only(task: TaskSetup, records: Iterable[Any], where: Position) -> Iterable[Any]:
    """``records``, checked to be pairs when this task reads a reduce-only job's inputs."""
    stage = task.stage
    if task.stage_index != 0 or not (stage.kind == "reduce" or stage.function is pass_pairs):
        return records
    reduce = stage if stage.kind == "reduce" else task.successor or stage
    return _refusing_non_pairs(records, f"job {task.job.name!r}", reduce.name, where)


def _refusing_non_pairs(
    records: Iterable[Any], job: str, reduce: str, where: Position
) -> Iterator[Any]:
    """Each record; a text line (the input is no record file), or a record that is no
    (key, value) pair (a bytes line of a blob DDFS.chunk wrote), fails the task."""
    for record in records:
        if record.__class__ is tuple and len(record) == 2:
            yield record
            continue
        if record.__class__ is str:
            raise _text_refused(record, job, reduce, where)
        if not is_pair(record):
            raise _refused(
                job,
                reduce,
                where,
                f"in input {where.url}, record {where.record} is no (key, value) pair "
                f"({brief(record, 60)}, a {type(record).__name__}): put a @map first that "
                f"makes pairs of the records, e.g. `return [parse, {reduce}]` (a blob "
                "DDFS.chunk wrote holds each line as a bytes record)",
            )
        yield record


def _text_refused(line: str, job: str, reduce: str, where: Position) -> MalformedRecord:
    """The error of a reduce-only job given text (a line, ``line``), not record files."""
    if _legacy_line(line):
        fix = (
            "it reads as Disco's legacy record format (<klen> <key> <vlen> <value> a "
            "line), which is not read: rewrite it with Disco 0.5's DiscoOutputStream "
            "or discodsl's RecordWriter, or put a @map first that parses the lines"
        )
    else:
        fix = (
            "put a @map first that turns each line into (key, value) pairs, e.g. "
            f"`return [parse, {reduce}]`"
        )
    problem = f"input {where.url} is text (line {where.record}: {brief(line, 60)}): {fix}"
    return _refused(job, reduce, where, problem)


def _refused(job: str, reduce: str, where: Position, problem: str) -> MalformedRecord:
    """The error of a reduce-only job whose input is not what a reduce reads: ``problem``
    (the input's, not the stage code's, which never ran on it; not retried)."""
    return MalformedRecord(
        f"{job} starts with the reduce {reduce!r}, which reads record files of (key, value) "
        f"pairs (an earlier job's results, or files Disco wrote), but {problem}",
        url=where.url,
        record=where.record,
    )


def _legacy_line(line: str) -> bool:
    """Whether ``line`` is a record of Disco's legacy format: ``<klen> <key> <vlen> <value>``
    (lengths of ASCII keys and values, as its writer's test files hold)."""
    key_size, _, rest = line.partition(" ")
    if not _ascii_count(key_size) or len(rest) <= int(key_size) or rest[int(key_size)] != " ":
        return False
    value_size, _, value = rest[int(key_size) + 1 :].partition(" ")
    return _ascii_count(value_size) and len(value) == int(value_size)


def _ascii_count(text: str) -> bool:
    """Whether ``text`` is a length as that format writes one: ASCII digits, few of them
    (``isdigit()`` takes a superscript two, which ``int()`` refuses)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


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
    outputs: Outputs,
    combiner: Combiner | None,
) -> None:
    if combiner is None:
        stream(stage, results_of(function, groups, spread=True), outputs)
        return
    for key, values in groups:  # into the next reduce's combiner
        _emit(stage, function(key, values), combiner.add)


def _emit(stage: StageSpec, result: Any, sink: Sink, maker: Maker | None = None) -> None:
    """Write the pairs of ``result``, what one call made (the stage's, or ``maker``'s)."""
    maker = maker or maker_of(stage)
    if result is None:
        raise none_error(maker)
    try:
        iterator = iter(result)
    except TypeError:
        raise bad_result(maker, result) from None
    try:
        for item in iterator:
            key, value = item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
            sink(key, value)
    except WRITE_ERRORS as exc:
        error = not_pairs(stage, exc, result, _emit, maker=maker)
        if error is None:
            raise
        raise error from None


@contextmanager
def _user_code(task: TaskSetup, where: Place) -> Iterator[None]:
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
    except Stopped as carried:
        raise _wrap(task, where, carried.stop) from carried.stop
    except BaseException as exc:  # KeyboardInterrupt, GeneratorExit, its own: the stage's
        raise _wrap(task, where, exc) from exc


def _place(where: Place, reading: bool = False, written: bool = False) -> tuple[str, str, int]:
    """Where user code failed, in words, and the input URL and record to name: a reduce's
    key (its input is a file of ours, no help), else the input and record being read (with
    ``reading``, a reader's failure, the one after the last it gave; with ``written``, a
    record that failed as its batch was written, made at that record or before)."""
    if where.key is not NO_ITEM:
        return f" on the key {brief(where.key, 80)}", "", -1
    if not where.url or where.past_records:  # a done hook, after every input: none to blame
        return "", "", -1
    number = where.record + 1 if reading else where.record
    if written and number >= 0:
        made = f", at or before record {number} (records are written in batches)"
        return f" on input {where.url!r}{made}", where.url, -1
    record = f", record {number}" if number >= 0 else ""
    return f" on input {where.url!r}{record}", where.url, number


def _wrap(task: TaskSetup, where: Place, exc: BaseException) -> StageError:
    stage = task.stage.name
    culprit = _culprit(task, exc, where.helped)
    place, url, record = _place(where, reading=culprit.startswith("the reader"))
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    text = f"{culprit} raised {text}" if culprit else text
    text += _combined_values(task, exc) if not culprit else ""
    if isinstance(exc, KeyboardInterrupt) and text == "KeyboardInterrupt":  # Ctrl-C, inline
        error = StageError(f"stage {stage!r} was interrupted{place}", stage, url, record)
    else:
        error = StageError(f"stage {stage!r} failed{place}: {text}", stage, url, record)
    error.exc_type = type(exc).__name__
    return error


def _combined_values(task: TaskSetup, exc: BaseException) -> str:
    """For a reduce that is its own combiner and failed on a value's type in its reduce
    task: that some values are what it yielded map-side (a count made "2 times")."""
    stage = task.stage
    if not (isinstance(exc, TypeError) and stage.kind == "reduce" and stage.combine):
        return ""
    if stage.combiner is not None or task.stage_index == 0 or not _MIXED.search(str(exc)):
        return ""
    return (
        f" (if its values are of two kinds: reduce {stage.name!r} runs map-side too "
        "(combine=True), and the values it is given include what it yielded there, so it "
        "must take values of the kind it yields)"
    )


# What a TypeError says of values of two types met in one operation.
_MIXED = re.compile(
    r"unsupported operand type|can only concatenate|not supported between instances|"
    r"must be \w+, not \w+|can't multiply sequence"
)


def _culprit(task: TaskSetup, exc: BaseException, helped: Any = NO_ITEM) -> str:
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
    if after is not None:  # a reduce's combiner, or the partitioner of a reduce or @stage
        theirs = f"of {after.kind} {after.name!r}"
        suspects += [
            (combining(after), "the combiner", theirs),
            (after.partitioner, "the partitioner", theirs),
        ]
    for function, role, owner in suspects:
        code = getattr(getattr(function, "func", function), "__code__", None)
        if code is not None and code in codes:
            on_key = role in _HELPERS and helped is not NO_ITEM
            key = f", on the key {brief(helped, 80)}," if on_key else ""
            return f"{role} {named(function)!r} {owner}{key}"
    return ""


_HELPERS = ("the combiner", "the partitioner")  # called on a key, which their errors name
