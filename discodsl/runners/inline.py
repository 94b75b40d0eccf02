"""Inline mode: the whole job in this process, for debugging.

No subprocess, no protocol: each task runs the worker's own stage code
(:func:`~discodsl.worker.execute.run_task`) right here, so ``breakpoint()``
and ``pdb`` work and user exceptions surface unchanged. Still, every stage
gets at least two partitions and tasks and inputs run in shuffled order, so
code that assumes one process or one order fails here first.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from discodsl import sources
from discodsl.options import validate_options
from discodsl.results import Results
from discodsl.runners.grouping import DataOutput, Output, TaskPlan, group_outputs
from discodsl.worker import counters
from discodsl.worker.errors import StageError
from discodsl.worker.execute import Task, run_task
from discodsl.worker.inputs import Cursor, Node, iter_input
from discodsl.worker.spec import JobSpec

if TYPE_CHECKING:
    from discodsl.model import Inputs, Job
    from discodsl.options import JobOptions

MIN_PARTITIONS = 2


class InlineRunner:
    """Runs every task of a job in the calling process, in a shuffled order."""

    def __init__(self, seed: int | None = None):
        self.random = random.Random(seed)

    def run(self, job: Job, inputs: Inputs, options: JobOptions) -> Results:
        chosen = validate_options(options, partitions=max(MIN_PARTITIONS, options.partitions))
        spec = job.spec(chosen)
        root = tempfile.mkdtemp(prefix="discodsl-inline-")
        outputs: list[Output] = [DataOutput(0, 0, tuple(u)) for u in sources.resolve(inputs)]
        totals: dict[str, int] = {}
        counters.take()
        try:
            taskid = 0
            for index in range(len(spec.stages)):
                outputs, taskid = self._stage(spec, index, outputs, root, taskid, totals)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        urls = [list(o.urls) for o in outputs if isinstance(o, DataOutput)]
        return Results(
            spec.name,
            urls,
            node=Node(),
            mode="inline",
            counters=totals,
            cleanup=lambda: shutil.rmtree(root, ignore_errors=True),
        )

    def _stage(
        self,
        spec: JobSpec,
        index: int,
        outputs: list[Output],
        root: str,
        taskid: int,
        totals: dict[str, int],
    ) -> tuple[list[Output], int]:
        stage = spec.stages[index]
        plans = group_outputs(stage.grouping, outputs)
        self.random.shuffle(plans)
        produced: list[Output] = []
        for plan in plans:
            task = Task(
                spec,
                index,
                taskid,
                label=plan.group[0],
                workdir=root,
                outdir=stage.name,
                tag="inline",
            )
            for label, path, size in self._task(task, plan):
                produced.append(DataOutput(label, size, (os.path.join(root, path),)))
            for name, amount in counters.take().items():
                totals[name] = totals.get(name, 0) + amount
            taskid += 1
        return produced, taskid

    def _task(self, task: Task, plan: TaskPlan) -> list[tuple[int, str, int]]:
        cursor = Cursor()
        records = self._records(plan, cursor)
        try:
            return run_task(task, records, cursor)
        except StageError as exc:
            cause = exc.__cause__
            if cause is None or isinstance(cause, StageError):
                raise
            _add_note(cause, str(exc))
            raise cause.with_traceback(cause.__traceback__) from None

    def _records(self, plan: TaskPlan, cursor: Cursor) -> Iterator[Any]:
        inputs = list(plan.inputs)
        self.random.shuffle(inputs)
        return chain.from_iterable(iter_input(i.urls, i.label, Node(), cursor) for i in inputs)


def _add_note(exc: BaseException, note: str) -> None:
    """Say where the error happened without changing it (a PEP 678 note on 3.11+)."""
    if sys.version_info >= (3, 11):
        exc.add_note(f"discodsl: {note}")
