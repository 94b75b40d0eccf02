"""What one task is, and where it is: the description runners give :func:`.execute.run_task`.

:class:`TaskSetup` names the job, the stage and where the task writes;
:class:`Place` follows where the task is among its records (an input and a
record number, then past them: a reduce's key, a combiner's), so that an
error of user code can name it.

Not here: running a task (:mod:`.execute`), or the errors themselves (:mod:`.blame`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from discodsl.worker.spec import JobSpec, StageSpec

# An output file a task wrote: its label, its path from the task's workdir, its size.
WrittenFile = tuple[int, str, int]
# What takes one record, (key, value), on its way to a file or a combiner.
Sink = Callable[[Any, Any], None]
# What a loop taking (key, value) pairs had taken when it failed, before its first item.
NO_ITEM: Any = object()


class Position(Protocol):
    """Where reading is: an input URL and a record number (see inputs.Cursor)."""

    @property
    def url(self) -> str: ...

    @property
    def record(self) -> int: ...


@dataclass
class NoPosition:
    url: str = ""
    record: int = -1


class Place:
    """Where a task is, for the errors of its user code: on a record of an input while the
    records are taken one by one, then past them (a reduce's groups, a combiner's calls, a
    done hook), where no record is to blame."""

    def __init__(self, position: Position) -> None:
        self.position = position
        self.past_records = False
        self.key: Any = NO_ITEM  # the key of the reduce's group being made, if one is
        # The key the next reduce's combiner or partitioner was last called on, if it failed
        # or has not returned yet: an error of theirs names it.
        self.helped: Any = NO_ITEM

    def noting_keys(self, groups: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """``groups``, each key noted as its group comes (an error then names it), until
        they end."""
        for key, values in groups:
            self.key = key
            yield key, values
        self.key = NO_ITEM

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
    jobname: str = ""  # the run's (this_task().job); "" for the job's own name
    host: str = ""
    master: str = ""

    @property
    def stage(self) -> StageSpec:
        """The stage this task runs."""
        return self.job.stages[self.stage_index]

    @property
    def successor(self) -> StageSpec | None:
        """The stage that reads this task's outputs, if any."""
        following = self.job.stages[self.stage_index + 1 :]
        return following[0] if following else None
