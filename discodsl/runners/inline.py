"""Inline mode: the whole job in this process, for debugging.

No subprocess, no protocol: each task runs the worker's own stage code
(:func:`~discodsl.worker.execute.run_task`) right here, so ``breakpoint()``
and ``pdb`` work and user exceptions surface unchanged. It runs the tasks a
local run would (the job's own partition count), in a shuffled order, inputs
too, so code that assumes one order of tasks or values fails here first. Not
two partitions at least, as the design sketch has it: the partition count is
part of what a job computes (``partitions=1`` gives one reduce task that sees
every key, on Disco too), so inline results would differ from the local
runner's and the cluster's. As
on a node, each task gets its own copy of the job as it ships (its stages,
the module globals they use and ``params``, unpickled for the task: what a
task changes there reaches no other task, no later run and not the caller's
modules; classes stay the caller's own) and sees the job's ``env=`` (set in
this process while the run goes), counters count successful tasks only,
and an I/O error (or :class:`~discodsl.worker.errors.Retry`) retries the
task while any other exception fails the job at once.

``submit()`` runs the job before it returns, in the calling thread (a run
in another thread is no place for ``breakpoint()``): the Run it returns has
ended. Its events are worded as a master's; its stages' outputs are kept
with its results (``results.stage(name)``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import cloudpickle

from discodsl import forking, interrupts, places, shipping
from discodsl.errors import JobError, PicklingError, SettingsError
from discodsl.results import Results, check_stage
from discodsl.runners.base import Counters, EventHandler, JobFiles, Plan, Runner
from discodsl.runners.failures import of_the_script
from discodsl.runners.grouping import DataOutput, Output, TaskGroup, group_outputs
from discodsl.stdio import notice
from discodsl.worker import counters, urls
from discodsl.worker.errors import StageError, retryable
from discodsl.worker.execute import run_task, uses_params
from discodsl.worker.inputs import Cursor, iter_input
from discodsl.worker.opening import Node
from discodsl.worker.readers import Reader
from discodsl.worker.spec import JobSpec
from discodsl.worker.task import TaskSetup

if TYPE_CHECKING:
    from collections.abc import Callable

    from discodsl.caching.reuse import Keeper
    from discodsl.options import JobOptions
    from discodsl.runners.handle import Run


class InlineRunner(Runner):
    """Runs every task of a job in the calling process, in a shuffled order; ``submit()``
    too, before it returns (so breakpoint(), Ctrl-C and exceptions behave as in any code)."""

    mode = "inline"
    background = False

    def __init__(self, seed: int | None = None, master: str | None = None):
        self.random = random.Random(seed)
        self.master = master

    def _adapt(self, options: JobOptions) -> JobOptions:
        """No ``timeout`` (nothing can stop code in this process); ``check_types`` on unless
        set."""
        if options.timeout is not None:
            raise SettingsError(
                f"timeout={options.timeout:g} cannot stop stage code running in this process "
                "(mode='inline'): use mode='local' for a job that must end in time, or "
                "timeout=None to debug it inline"
            )
        if options.check_types is None:  # a debugging run checks what annotated stages yield
            options = options.model_copy(update={"check_types": True})
        return options

    def _launch(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """The run is named after its job; its work runs every task here, and nothing can
        stop it midway (``kill()`` comes too late: submit() returns when it has ended)."""
        counted = plan.counters()
        run.submitted(plan.spec.name, counters=counted.totals, kill=lambda: None)
        return functools.partial(self._finish, plan, counted, run.log)

    def _finish(self, plan: Plan, counted: Counters, on_event: EventHandler) -> Results:
        outputs = _first_inputs(plan)
        by_stage: dict[str, list[list[str]]] = {}
        sizes: dict[str, int] = {}
        keeper = plan.keeper(self.mode)
        with (
            JobFiles(places.process_dir("inline")) as files,
            _job_env(plan.options.env, plan.job.name),
        ):
            run = _Run(plan.spec, plan.options.max_failures, self.random, files.paths[0])
            run.counters, run.on_event = counted, on_event
            for index in range(plan.start, len(plan.spec.stages)):
                stage = plan.spec.stages[index]
                outputs = run.stage(index, outputs)
                written = [o for o in outputs if isinstance(o, DataOutput)]
                by_stage[stage.name] = [list(o.urls) for o in written]
                sizes.update((o.urls[0], o.size) for o in written)
                if keeper is not None:
                    _keep(keeper, stage.name, outputs, counted)
        return Results(
            plan.spec.name,
            by_stage[plan.spec.stages[-1].name],
            node=Node(),
            mode="inline",
            counters=run.counters.totals,
            cleanup=files.remove,
            stages=functools.partial(_stage_urls, plan.spec, by_stage),
            sizes=sizes,
        )


@contextlib.contextmanager
def _job_env(env: Mapping[str, str], job: str) -> Iterator[None]:
    """The job's ``env=`` in this process's environment while its tasks run, as a worker
    process has it; then the environment as it was.

    Inline runs going at once (in threads) share the process's environment: a name they
    both set must have one value (a clash is a JobError before any task runs), and goes
    back to what it was when the last of them ends. (A local run started meanwhile in this
    process gives its workers this environment too.)
    """
    claimed: list[str] = []
    with _ENVS_LOCK:
        _check_agrees(env, job)
        try:
            for name, value in env.items():
                if name not in _ENVS:
                    _ENVS[name] = (os.environ.get(name), value, [])
                _ENVS[name][2].append(job)
                claimed.append(name)
                os.environ[name] = value
        except BaseException:  # the names set so far go back, and are not held
            _release(claimed, job)
            raise
    try:
        yield
    finally:
        with _ENVS_LOCK:
            _release(claimed, job)


def _release(names: list[str], job: str) -> None:
    """``job``'s hold on ``names`` let go (under _ENVS_LOCK): a name no inline run holds
    any more goes back to what it was before the first of them."""
    for name in names:
        before, _, runs = _ENVS[name]
        runs.remove(job)
        if runs:
            continue
        del _ENVS[name]
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# The names the env= of inline runs going in this process set: (the process's value before
# the first of them, theirs, the jobs of those runs).
_ENVS: dict[str, tuple[str | None, str, list[str]]] = {}
_ENVS_LOCK = threading.RLock()  # reentrant: a signal handler may run a job meanwhile


def _check_agrees(env: Mapping[str, str], job: str) -> None:
    for name, value in env.items():
        if name in _ENVS and _ENVS[name][1] != value:
            raise JobError(
                f"job {job!r} cannot run inline now: its env= sets {name}={value!r}, but an "
                f"inline run going in this process (of job {_ENVS[name][2][0]!r}) has set it "
                f"to {_ENVS[name][1]!r}, and inline runs share this process's environment: "
                "run it with mode='local' (its workers have their own), or after the other"
            )


def _first_inputs(plan: Plan) -> list[Output]:
    """What the run's first stage reads: the job's inputs, or the labelled outputs of the
    stage it resumes after."""
    if plan.resume is None:
        return [DataOutput(0, 0, tuple(u)) for u in plan.inputs]
    return [DataOutput(label, size, tuple(u)) for label, size, u in plan.resume.inputs]


def _keep(keeper: Keeper, stage: str, outputs: list[Output], counted: Counters) -> None:
    """Keep a finished stage's files in the cache."""
    data = [o for o in outputs if isinstance(o, DataOutput)]
    kept = [(o.label, o.size, list(o.urls)) for o in data]
    keeper.keep(stage, kept, [[urls.file_path(u) for u in o.urls] for o in data], counted.totals)


def _stage_urls(spec: JobSpec, by_stage: dict[str, list[list[str]]], stage: str) -> list[list[str]]:
    """A stage's outputs, kept as the run went."""
    check_stage(spec, stage)
    return by_stage[stage]


class _Run:
    """One inline run: its counters and the task numbering across stages; files go under ``root``.

    Each task gets its own copy of the job (unpickled, as a worker process gets
    it), and a task that fails with an error worth a retry (see
    :func:`~discodsl.worker.errors.retryable`) runs again, up to
    ``max_failures`` times; only a successful attempt's counts are kept.
    """

    def __init__(self, spec: JobSpec, max_failures: int, shuffler: random.Random, root: str):
        self.spec, self.max_failures, self.random = spec, max_failures, shuffler
        self.fresh = _fresh_copies(spec)
        self.root = root
        self.counters = Counters()
        self.on_event: EventHandler = lambda kind, facts: None  # the run's EventLog
        self.taskid = 0
        self.tasks = 1  # the last stage's tasks (the job's inputs: as one task's outputs)

    def stage(self, index: int, outputs: list[Output]) -> list[Output]:
        """Run every task of stage ``index`` over ``outputs``; the stage's outputs."""
        stage = self.spec.stages[index]
        groups = group_outputs(stage.grouping, outputs, ran=self.tasks > 0)
        self.tasks = len(groups)
        self.random.shuffle(groups)
        self.on_event("stage", {"stage": stage.name, "tasks": len(groups)})
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
            # Its copy of the job, its own streams and event loop, as a worker has them.
            with shipping.task_classes(), _own_streams(), _no_event_loop():
                outputs = self._attempt(index, grouped, failures)
            if outputs is not None:
                return outputs
            failures += 1

    def _attempt(
        self, index: int, grouped: TaskGroup, failures: int
    ) -> list[tuple[int, str, int]] | None:
        """One attempt at a task: its outputs, None if it failed and is retried (after
        ``failures`` failed attempts)."""
        spec = self.fresh(index)
        task = TaskSetup(
            spec,
            index,
            self.taskid,
            label=grouped.group[0],
            workdir=self.root,
            outdir=spec.stages[index].name,
            tag="inline",
            host="localhost",
        )
        try:
            with counters.counting() as counts:
                outputs = run_task(task, *self._records(grouped, task.stage.reader))
        except SystemExit as exc:  # a worker would end; this process is the caller's
            if interrupts.raised_in_handler(exc):
                raise  # the program's own signal handler ends it: not the stage's doing
            raise _exited(task.stage.name, exc) from None
        except Exception as exc:
            self._failed(index, exc, failures + 1)
            if not retryable(exc):
                _surface(exc)
            if failures + 1 > self.max_failures:
                _surface(exc, f" (failed {failures + 1} attempts, max_failures={failures})")
            return None
        self.counters.add(counts, task.stage.name)
        self.on_event("task_done", {"stage": task.stage.name, "taskid": self.taskid})
        return outputs

    def _failed(self, index: int, exc: Exception, failures: int) -> None:
        facts = {"stage": self.spec.stages[index].name, "taskid": self.taskid}
        text = f"{type(exc).__name__}: {exc}"
        fatal, limit = not retryable(exc), self.max_failures
        self.on_event(
            "task_failed",
            {**facts, "failures": failures, "text": text, "fatal": fatal, "limit": limit},
        )

    def _records(self, grouped: TaskGroup, reader: Reader | None) -> tuple[Iterator[Any], Cursor]:
        cursor = Cursor()
        inputs = list(grouped.inputs)
        self.random.shuffle(inputs)
        records = chain.from_iterable(
            iter_input(i.urls, i.label, Node(), cursor, reader, self.spec.listed) for i in inputs
        )
        return records, cursor


@contextlib.contextmanager
def _no_event_loop() -> Iterator[None]:
    """An event loop of the task's own, none running, as in a worker's process: the
    program's (a notebook's, which runs each cell inside it; none in a thread, or after an
    asyncio.run()) is set aside, so a stage's ``asyncio.run(...)`` and
    ``get_event_loop()`` work here as everywhere else; then the program's is back, as it
    was."""
    if "asyncio" not in sys.modules and threading.current_thread() is threading.main_thread():
        yield  # a stage importing it gets a loop from get_event_loop(), as in a worker
        return
    with forking.IMPORTING:  # a fork in the middle would leave its child asyncio half made
        import asyncio  # in another thread, which has no loop of its own where a worker's has

    running = asyncio.events._get_running_loop()
    policy = asyncio.get_event_loop_policy()
    local = getattr(policy, "_local", None)  # the default policy's, per thread
    kept = (getattr(local, "_loop", None), getattr(local, "_set_called", None))
    fresh = policy.new_event_loop()  # what get_event_loop() makes in a worker's process
    asyncio.events._set_running_loop(None)
    policy.set_event_loop(fresh)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(running)
        if local is None or kept[1] is None:  # a policy of another kind
            policy.set_event_loop(kept[0])
        else:  # as it was: whether the program may have a loop made for it too
            local._loop, local._set_called = kept
        if not fresh.is_running():
            fresh.close()


@contextlib.contextmanager
def _own_streams() -> Iterator[None]:
    """The program's sys.stdout and sys.stderr put back after a task, as a worker's end
    puts Python's own back: a stage that silenced them (``sys.stdout = None``) silenced the
    program's prints for good."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _fresh_copies(spec: JobSpec) -> Callable[[int], JobSpec]:
    """What makes each task's own copy of the job (given its stage's index): the job as it
    ships, unpickled, but without its params for a task that hands them to no function (a
    reduce's: a big table unpickled for each task cost seconds); else (its stages do not
    pickle: a debugging run takes them as they are, said on stderr) the job with its params
    unpickled. PicklingError if the params do not pickle."""
    try:
        pickled = shipping.pickle_job(spec)
        bare = pickled if spec.params is None else shipping.pickle_job(replace(spec, params=None))
        shared = shipping.shared_by_name(spec)  # which loads here as the program's own
        if shared is not None:
            raise shared
        return lambda index: cast(
            JobSpec, shipping.loads_afresh(pickled if uses_params(spec, index) else bare)
        )
    except shipping.StageRunsAJob:
        raise
    except PicklingError as exc:
        failure = exc
    try:
        params = cloudpickle.dumps(spec.params)
    except Exception as exc:
        raise shipping.unpicklable(spec, exc) from exc
    notice(
        f"discodsl: job {spec.name!r} runs inline on its stages as they are, sharing their "
        f"module state between tasks, as it cannot ship to workers: {failure}"
    )
    return lambda index: replace(spec, params=cloudpickle.loads(params))


def _exited(stage: str, exc: SystemExit) -> StageError:
    """The failure of a task whose code called ``sys.exit``: it would end a worker (the
    local runner reports that); inline, it would end the caller's program, so it fails."""
    return StageError(
        f"stage {stage!r} (or code it calls) called sys.exit({exc.code!r}), which would end "
        "this process (a worker's, run anywhere but inline): raise an exception to fail a "
        "task instead",
        stage=stage,
    )


def _surface(exc: Exception, tries: str = "") -> NoReturn:
    """Raise what the user's code raised, with a note saying where (and ``tries``, how
    often it was tried); else ``exc`` itself (our own StageError too, whose cause is only
    the detail it explains)."""
    cause = exc.__cause__
    user_raised = isinstance(exc, StageError) and bool(exc.exc_type)
    if not user_raised or cause is None or isinstance(cause, StageError):
        if tries:
            _add_note(exc, f"{type(exc).__name__}{tries}")
        raise exc
    copied = _SCRIPTS_COPY if of_the_script(type(cause).__name__, str(cause)) else ""
    _add_note(cause, f"{exc}{tries}{copied}")
    raise cause.with_traceback(cause.__traceback__) from None


# What to do when stage code pickled a function or class of the script by name (a
# multiprocessing Pool's pickle does), as it runs inline on a copy of the job.
_SCRIPTS_COPY = (
    "; an inline run runs a copy of the job as it ships, whose functions and classes of "
    "the script (__main__) are copies, which the standard pickle (a multiprocessing "
    "Pool's, a queue's) cannot name as __main__'s, as a worker cannot: define them in a "
    "module the stage imports (installed on the nodes, or shipped with "
    "cloudpickle.register_pickle_by_value)"
)


def _add_note(exc: BaseException, note: str) -> None:
    """Say where the error happened without changing it: a PEP 678 note (on 3.10, which
    has no add_note and prints no notes, set as 3.11 sets it, for code that reads it)."""
    if sys.version_info >= (3, 11):
        exc.add_note(f"discodsl: {note}")
    else:
        setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), f"discodsl: {note}"])  # noqa: B010
