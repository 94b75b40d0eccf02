"""Inline mode: the whole job in this process, for debugging.

No subprocess, no protocol: each task runs the worker's own stage code
(:func:`~discodsl.worker.execute.run_task`) right here, so ``breakpoint()``
and ``pdb`` work and user exceptions surface unchanged. Still, every stage
gets at least two partitions and tasks and inputs run in shuffled order, so
code that assumes one process or one order fails here first. As on a node,
each task gets its own copy of ``params``, counters count successful tasks
only, and an I/O error (or :class:`~discodsl.worker.errors.Retry`) retries
the task while any other exception fails the job at once.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import cloudpickle

from discodsl.errors import SettingsError
from discodsl.results import Results
from discodsl.runners.base import Counters, JobFiles, Plan, Runner
from discodsl.runners.grouping import DataOutput, Output, TaskGroup, group_outputs
from discodsl.worker import counters
from discodsl.worker.errors import StageError, retryable
from discodsl.worker.execute import TaskSetup, run_task
from discodsl.worker.inputs import Cursor, Node, iter_input
from discodsl.worker.spec import JobSpec

if TYPE_CHECKING:
    from discodsl.options import JobOptions

MIN_PARTITIONS = 2


class InlineRunner(Runner):
    """Runs every task of a job in the calling process, in a shuffled order."""

    def __init__(self, seed: int | None = None):
        self.random = random.Random(seed)

    def _adapt(self, options: JobOptions) -> JobOptions:
        """No ``timeout`` (nothing can stop code in this process); two partitions at least."""
        if options.timeout is not None:
            raise SettingsError(
                f"timeout={options.timeout:g} cannot stop stage code running in this process "
                "(mode='inline'): use mode='local' for a job that must end in time, or "
                "timeout=None to debug it inline"
            )
        return options.model_copy(update={"partitions": max(MIN_PARTITIONS, options.partitions)})

    def _run(self, plan: Plan) -> Results:
        outputs: list[Output] = [DataOutput(0, 0, tuple(u)) for u in plan.inputs]
        with JobFiles(tempfile.mkdtemp(prefix="discodsl-inline-")) as files:
            run = _Run(plan.spec, plan.options.max_failures, self.random, files.paths[0])
            for index in range(len(plan.spec.stages)):
                outputs = run.stage(index, outputs)
        urls = [list(o.urls) for o in outputs if isinstance(o, DataOutput)]
        return Results(
            plan.spec.name,
            urls,
            node=Node(),
            mode="inline",
            counters=run.counters.totals,
            cleanup=files.remove,
        )


class _Run:
    """One inline run: its counters and the task numbering across stages; files go under ``root``.

    Each task gets its own copy of ``params`` (unpickled, as a worker process
    gets it), and a task that fails with an error worth a retry (see
    :func:`~discodsl.worker.errors.retryable`) runs again, up to
    ``max_failures`` times; only a successful attempt's counts are kept.
    """

    def __init__(self, spec: JobSpec, max_failures: int, shuffler: random.Random, root: str):
        self.spec, self.max_failures, self.random = spec, max_failures, shuffler
        self.params = cloudpickle.dumps(spec.params)
        self.root = root
        self.counters = Counters()
        self.taskid = 0

    def stage(self, index: int, outputs: list[Output]) -> list[Output]:
        """Run every task of stage ``index`` over ``outputs``; the stage's outputs."""
        stage = self.spec.stages[index]
        groups = group_outputs(stage.grouping, outputs)
        self.random.shuffle(groups)
        produced: list[Output] = []
        for grouped in groups:
            for label, path, size in self._task(index, grouped):
                url = Path(self.root, path).as_uri()
                produced.append(DataOutput(label, size, (url,)))
            self.taskid += 1
        return produced

    def _task(self, index: int, grouped: TaskGroup) -> list[tuple[int, str, int]]:
        failures = 0
        while True:
            spec = replace(self.spec, params=cloudpickle.loads(self.params))
            task = TaskSetup(
                spec,
                index,
                self.taskid,
                label=grouped.group[0],
                workdir=self.root,
                outdir=spec.stages[index].name,
                tag="inline",
            )
            try:
                with counters.counting() as counts:
                    outputs = run_task(task, *self._records(grouped))
            except Exception as exc:
                failures += 1
                if not retryable(exc) or failures > self.max_failures:
                    _surface(exc)
                continue
            self.counters.add(counts)
            return outputs

    def _records(self, grouped: TaskGroup) -> tuple[Iterator[Any], Cursor]:
        cursor = Cursor()
        inputs = list(grouped.inputs)
        self.random.shuffle(inputs)
        records = chain.from_iterable(iter_input(i.urls, i.label, Node(), cursor) for i in inputs)
        return records, cursor


def _surface(exc: Exception) -> NoReturn:
    """Raise what the user's code raised, with a note saying where; else ``exc`` itself."""
    cause = exc.__cause__
    if not isinstance(exc, StageError) or cause is None or isinstance(cause, StageError):
        raise exc
    _add_note(cause, str(exc))
    raise cause.with_traceback(cause.__traceback__) from None


def _add_note(exc: BaseException, note: str) -> None:
    """Say where the error happened without changing it (a PEP 678 note on 3.11+)."""
    if sys.version_info >= (3, 11):
        exc.add_note(f"discodsl: {note}")
