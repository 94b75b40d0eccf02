"""A task's output files: each record labelled (by the next stage's partitioner, or one
label for all) and written to the record file of its label, opened on its first record.

What a stage's output is labelled with depends on the stage after it: a
``group_label``/``group_node_label``/``split`` successor gets one label per
partition (the partitioner's), a ``group_all``/``group_node`` successor one
label (0); the last stage labels everything with its own group's label.

Not here: the record format (:mod:`.records`), the partitioning loop
(:mod:`.partition`), or what is written (:mod:`.execute`, :mod:`.combiner`).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from functools import partial
from itertools import chain
from typing import Any

from discodsl.worker.blame import WRITE_ERRORS, not_pairs
from discodsl.worker.errors import StageError, brief
from discodsl.worker.memory import runs
from discodsl.worker.partition import partitioner, spread
from discodsl.worker.records import HUNK_SIZE, RecordWriter
from discodsl.worker.spec import StageSpec
from discodsl.worker.task import NoPosition, Place, Sink, TaskSetup, WrittenFile


class Outputs:
    """One record file per output label, opened on its first record."""

    def __init__(self, task: TaskSetup, where: Place | None = None):
        self.task = task
        self.writers: dict[int, RecordWriter] = {}
        self.names: dict[int, str] = {}  # each writer's path, from the task's workdir
        self.labeler, self.constant = _labeler(task, where or Place(NoPosition()))
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


def stream(stage: StageSpec, results: Iterator[Any], outputs: Outputs) -> None:
    """Write every pair of every one of ``results`` (what the user's calls returned)."""
    try:
        outputs.add_many(chain.from_iterable(results))
    except WRITE_ERRORS as exc:
        error = not_pairs(stage, exc, (), *WRITING)
        if error is None:
            raise
        raise error from None


# The loops of ours that take (key, value) pairs on their way to the files.
WRITING = (RecordWriter.write_many, Outputs.add_many, spread, runs)


def _labeler(task: TaskSetup, where: Place) -> tuple[Callable[[Any], int], int | None]:
    """How this task labels a record by its key, and the one label if it is constant (a
    partitioner that fails notes its key in ``where``)."""
    after, partitions = task.successor, task.job.partitions
    if after is None and _map_only_partitioned(task):
        return _lenient(partitioner(partitions, stage=task.stage.name)), None
    if after is None:
        own = task.label if isinstance(task.label, int) else 0
        return (lambda key: own), own
    if after.grouping in _ONE_LABEL or (partitions <= 1 and after.partitioner is None):
        return (lambda key: 0), 0
    if after.partitioner is None:
        return partitioner(partitions, stage=task.stage.name), None
    # A partitioner of one's own is called with one partition too, as Disco calls it.
    partition, owner, stage = after.partitioner, f"{after.kind} {after.name!r}", task.stage.name

    def label(key: Any) -> int:
        try:
            found = partition(key, partitions)
        except BaseException:
            where.helped = key
            raise
        return _checked(found, key, partitions, owner, stage)

    return label, None


def _lenient(label: Callable[[Any], int]) -> Callable[[Any], int]:
    """``label``, but 0 for a key it refuses (one of no canonical form: a dict, an object
    of a class of one's own): a map-only job's outputs are grouped by nothing after, so
    such keys are no risk there, and a job that ran with one partition runs with many."""

    def lenient(key: Any) -> int:
        try:
            return label(key)
        except StageError:
            return 0

    return lenient


# The groupings whose stage has one task: what goes to it is labelled 0.
_ONE_LABEL = ("group_all", "group_node")


def _map_only_partitioned(task: TaskSetup) -> bool:
    """Whether this task is a map-only job's map, its outputs labelled by partition as
    Disco's classic map labels them whenever the job has partitions (with no reduce, by
    the default partitioner)."""
    job = task.job
    return len(job.stages) == 1 and task.stage.kind == "map" and job.partitions > 1


def _hunk_size(task: TaskSetup) -> int:
    """The hunk each of this task's output files buffers before writing it: Disco's 1 MiB,
    less when so many partitions buffer at once that they would hold more than an eighth of
    the memory budget (a hunk of any size reads alike), down to MIN_HUNK."""
    spread = task.successor is not None or _map_only_partitioned(task)
    files = (task.job.partitions or 1) if spread else 1
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


def _checked(label: Any, key: Any, partitions: int, owner: str, stage: str) -> int:
    """``label`` as an int, if the partitioner of ``owner`` (``reduce 'total'``, the next
    stage; called on ``key``, of ``stage``) may return it: an int, or an integer of another
    type (an IntEnum, numpy's)."""
    if type(label) is not int:
        with suppress(TypeError):
            label = operator.index(label)
    if type(label) is int and 0 <= label < partitions:
        return label
    raise StageError(
        f"the partitioner of {owner} returned {label!r} for the key "
        f"{brief(key, 80)} of stage {stage!r}; it must return an int from 0 to "
        f"{partitions - 1} (partitions={partitions})",
        stage=stage,
    )
