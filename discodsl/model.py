"""Frozen Stage and Job objects: what the decorators build and what ``run()`` starts.

A :class:`Stage` stays callable as the plain function it wraps, so a stage is
unit-tested by calling it. A :class:`Job` holds its stages and its validated
:class:`~discodsl.options.JobOptions`; ``run()`` picks a runner (inline,
local or cluster), whose template checks the options with the run's changes
once, and returns lazy :class:`~discodsl.results.Results`. Neither class is
ever pickled into a jobpack: each Stage holds the stdlib ``StageSpec`` a worker
runs, and :meth:`Job.spec` gathers them into a ``JobSpec``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from discodsl.errors import JobError
from discodsl.options import JobOptions, Mode, validate_options
from discodsl.worker.spec import JobSpec, StageSpec

if TYPE_CHECKING:
    from discodsl.results import Results

Inputs = str | os.PathLike[str] | Sequence[Any] | Any


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline: a user function plus how its input is grouped.

    ``spec`` is the stdlib :class:`~discodsl.worker.spec.StageSpec` a worker
    runs; its fields read as the stage's own (``stage.name``, ``stage.kind``,
    ``stage.grouping``, ``stage.combine``, ...).
    """

    spec: StageSpec

    @property
    def function(self) -> Callable[..., Any]:
        return self.spec.function

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def grouping(self) -> str:
        return self.spec.grouping

    def __getattr__(self, field: str) -> Any:
        """The other fields of ``spec`` (``combine``, ``takes_params``, ``init``, ...)."""
        if field.startswith("__") or field == "spec":
            raise AttributeError(field)
        return getattr(self.spec, field)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function, as if it were not decorated."""
        return self.function(*args, **kwargs)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.function

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return getattr(self.function, "__doc__", None)

    def __repr__(self) -> str:
        extra = " combine" if self.combine or self.combiner else ""
        return f"<{self.kind} stage {self.name!r} ({self.grouping}{extra})>"


@dataclass(frozen=True)
class Job:
    """A pipeline of stages with its options; call ``run(inputs)`` to get results."""

    name: str
    stages: tuple[Stage, ...]
    options: JobOptions = field(default_factory=lambda: JobOptions())
    function: Callable[[], Sequence[Stage]] | None = None

    def __call__(self) -> list[Stage]:
        """The stages, as the decorated body returns them."""
        return list(self.stages)

    def with_options(self, **changes: Any) -> Job:
        """A copy of this job with some options changed (validated)."""
        return replace(self, options=validate_options(self.options, **changes))

    def spec(self, options: JobOptions | None = None) -> JobSpec:
        """The stdlib description of this job that a worker runs."""
        chosen = options or self.options
        return JobSpec(
            name=chosen.prefix or _prefix(self.name),
            stages=tuple(stage.spec for stage in self.stages),
            partitions=chosen.partitions,
            params=chosen.params,
            memory_budget=chosen.memory_budget,
            compress=chosen.compress,
            env=dict(chosen.env),
        )

    def run(
        self,
        inputs: Inputs = (),
        *,
        mode: Mode | None = None,
        master: str | None = None,
        **options: Any,
    ) -> Results:
        """Run the job over ``inputs`` and return its results (iterate them for records).

        ``inputs``: paths, globs, directories, ``file://``/``http(s)://``/
        ``raw://``/``tag://`` URLs, or the results of an earlier job.
        ``mode``: ``"local"`` (default without a master: worker processes on
        this machine), ``"inline"`` (one process, for debugging) or
        ``"cluster"`` (default when ``master=`` or ``DISCO_MASTER`` is set).
        Other keywords override the job's options for this run.
        """
        from discodsl.runners import choose

        return choose(mode, master).run(self, inputs, options)

    def __repr__(self) -> str:
        flow = " -> ".join(stage.name for stage in self.stages)
        return f"<Job {self.name!r}: {flow}, partitions={self.options.partitions}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{s.name}</code></td><td>{s.kind}</td>"
            f"<td>{s.grouping}</td></tr>"
            for i, s in enumerate(self.stages)
        )
        return (
            f"<b>Job <code>{self.name}</code></b> (partitions={self.options.partitions})"
            f"<table><tr><th>#</th><th>stage</th><th>kind</th><th>grouping</th></tr>{rows}</table>"
        )


def _prefix(name: str) -> str:
    """A job name Disco takes as a prefix: letters, digits and underscores only."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned or "job"


def check_pipeline(name: str, stages: Sequence[Any]) -> tuple[Stage, ...]:
    """The stages as a tuple, or JobError saying what to write instead."""
    if isinstance(stages, Stage):
        stages = [stages]
    if not isinstance(stages, (list, tuple)) or not stages:
        raise JobError(
            f"job {name!r} must return a non-empty list of stages, e.g. `return [words, total]`;"
            f" it returned {stages!r:.80}"
        )
    for item in stages:
        if not isinstance(item, Stage):
            raise JobError(
                f"job {name!r} returned {item!r:.60}, which is not a stage: "
                "decorate it with @map, @reduce or @stage"
            )
    if stages[0].kind == "reduce":
        raise JobError(
            f"job {name!r} starts with the reduce {stages[0].name!r}: a reduce needs "
            "(key, value) pairs from an earlier stage; put a @map before it"
        )
    _check_unique(name, stages)
    return tuple(stages)


def _check_unique(name: str, stages: Sequence[Stage]) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise JobError(
                f"job {name!r} has two stages named {stage.name!r}: give one another name, "
                f"e.g. @map(name='{stage.name}_2')"
            )
        seen.add(stage.name)
