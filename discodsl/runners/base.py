"""The runner template: what every runner does around its own work, done once, here.

:class:`Runner` is the template the three runners (inline, local, cluster)
fill in: ``submit()`` calls :meth:`Runner.prepare`, which validates the options
once, builds the :class:`~discodsl.worker.spec.JobSpec` once and resolves the
inputs to replica lists once (:func:`discodsl.sources.resolve`) into a
:class:`Plan`; then the runner's own ``_launch(plan, run)`` names and submits
the run and gives back the work that finishes it, which the
:class:`~discodsl.runners.handle.Run` does in a thread of its own (local,
cluster) or at once (inline: :attr:`Runner.background`). ``run()`` is
``submit().wait()``. Inputs that are runs (a chain) are waited for in the
new run's thread, and only then resolved.
:class:`JobFiles` holds a run's temporary files (removed at once when the run
fails, else by the results' cleanup); :class:`Counters` sums the counters
stage code reports, fed by the same events as the progress bar.

What it does not hold: choosing a runner (:func:`discodsl.runners.choose`),
showing progress (:mod:`discodsl.runners.progress`), or any runner's own work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from discodsl import sources
from discodsl.options import validate_options
from discodsl.worker.counters import PREFIX as COUNTER_PREFIX

if TYPE_CHECKING:
    from discodsl.model import Inputs, Job
    from discodsl.options import JobOptions
    from discodsl.results import Results
    from discodsl.runners.handle import Run
    from discodsl.worker.spec import JobSpec

# A handler of a run's events: ("stage", {stage, tasks}), ("task_done", {stage[, taskid]}),
# ("task_failed", {stage, taskid, failures, ...}), ("task_retry", ...),
# ("msg", {stage, taskid, text}).
EventHandler = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Plan:
    """One run, prepared once: the checked options, the job's spec, its inputs' replica lists."""

    job: Job
    options: JobOptions
    spec: JobSpec
    inputs: list[list[str]]


class Runner:
    """The template: ``submit()`` prepares the run once, then starts what ``_launch`` gives."""

    #: The runner's name, as ``mode=`` says it.
    mode = ""
    #: Whether ``submit()`` returns while the job runs (in a thread of this process);
    #: else it runs the job first (inline: breakpoint() and Ctrl-C work as in any code).
    background = True

    def run(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Results:
        """Run ``job`` over ``inputs`` with its options changed by ``overrides``: the
        results, or what the run raised."""
        return self.submit(job, inputs, overrides).wait()

    def submit(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Run:
        """Start ``job`` over ``inputs``; its :class:`~discodsl.runners.handle.Run`.

        Runs among ``inputs`` are waited for in the new run's thread, and a
        failed one fails it; options are checked here all the same.
        """
        from discodsl.runners.handle import Run, upstream_runs

        run = Run(job.name, self.mode)
        upstream = upstream_runs(inputs)
        if not upstream:
            run.start(self._launch(self.prepare(job, inputs, overrides), run), self.background)
            return run
        options = self._options(job, overrides)

        def chained() -> Results:
            run.await_inputs(upstream)
            return self._launch(self._plan(job, options, inputs), run)()

        run.start(chained, self.background)
        return run

    def prepare(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Plan:
        """The run's plan: options validated, spec built, inputs resolved, once each."""
        return self._plan(job, self._options(job, overrides), inputs)

    def _options(self, job: Job, overrides: Mapping[str, Any]) -> JobOptions:
        return self._adapt(validate_options(job.options, **overrides))

    def _plan(self, job: Job, options: JobOptions, inputs: Inputs) -> Plan:
        return Plan(job, options, job.spec(options), sources.resolve(inputs))

    def _adapt(self, options: JobOptions) -> JobOptions:
        """The runner's own checks and changes of valid options (none here)."""
        return options

    def _launch(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """Name and submit the run (``run.submitted(...)``); the work that finishes it
        (waits for it, reads its results), which ``run`` does in its thread."""
        raise NotImplementedError


class JobFiles:
    """A run's temporary directories: removed when the ``with`` block ends by an exception
    (the run failed), else kept until :meth:`remove` (the results' cleanup)."""

    def __init__(self, *paths: str):
        self.paths = list(paths)

    def remove(self) -> None:
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.remove()


class Counters:
    """The counters stage code reported, summed from a run's events.

    A task's counts (``msg`` lines starting with the counter prefix) are held
    until the task succeeds (``task_done`` naming its ``taskid``, or
    :meth:`succeeded`) and dropped when an attempt fails (``task_failed``).
    """

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self._pending: dict[tuple[str, int], dict[str, int]] = {}

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "msg":
            self._message(facts)
        elif kind == "task_done" and "taskid" in facts:
            self.succeeded(str(facts["stage"]), int(facts["taskid"]))
        elif kind == "task_failed":
            self._pending.pop((str(facts["stage"]), int(facts["taskid"])), None)

    def succeeded(self, stage: str, taskid: int) -> None:
        """Task ``stage:taskid`` is done: its counts join the job's."""
        self.add(self._pending.pop((stage, taskid), {}))

    def add(self, counts: Mapping[str, int]) -> None:
        """Add a successful task's ``counts`` to the job's."""
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value

    def _message(self, facts: Mapping[str, Any]) -> None:
        task = (str(facts.get("stage", "")), int(facts.get("taskid", -1)))
        for line in str(facts.get("text", "")).splitlines():
            if line.startswith(COUNTER_PREFIX):
                self._count(task, line[len(COUNTER_PREFIX) :])

    def _count(self, task: tuple[str, int], payload: str) -> None:
        try:
            counts = json.loads(payload)
        except ValueError:
            return
        if isinstance(counts, dict):
            pending = self._pending.setdefault(task, {})
            for name, value in counts.items():
                if isinstance(value, int):
                    pending[name] = pending.get(name, 0) + value


def fan_out(*handlers: EventHandler) -> EventHandler:
    """One event handler calling each of ``handlers`` in turn (e.g. counters, then progress)."""

    def handle(kind: str, facts: Mapping[str, Any]) -> None:
        for handler in handlers:
            handler(kind, facts)

    return handle
