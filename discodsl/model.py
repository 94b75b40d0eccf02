"""Frozen Stage and Job objects: what the decorators build and what ``run()`` starts.

A :class:`Stage` stays callable as the plain function it wraps, so a stage is
unit-tested by calling it. A :class:`Job` holds its stages and its validated
:class:`~discodsl.options.JobOptions`; ``run()`` picks a runner (inline,
local or cluster), whose template checks the options with the run's changes
once, and returns lazy :class:`~discodsl.results.Results`; ``submit()``
returns a :class:`~discodsl.runners.handle.Run` at once instead. Neither class is
pickled into a jobpack as itself: each Stage holds the stdlib ``StageSpec`` a worker
runs, :meth:`Job.spec` gathers them into a ``JobSpec``, and a Stage that another
stage's function calls is pickled as its plain function.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from types import FunctionType
from typing import TYPE_CHECKING, Any, Protocol

from discodsl import forking, interrupts
from discodsl.contracts import check_contracts, runtime_specs
from discodsl.errors import JobError
from discodsl.options import JobKeywords, JobOptions, Mode, validate_options
from discodsl.worker.errors import brief, notebook_cells
from discodsl.worker.spec import (
    ClientOnly,
    JobSpec,
    ShippedAsFunction,
    StageSpec,
    cleaned_prefix,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

    from discodsl.results import Results
    from discodsl.runners.base import Runner
    from discodsl.runners.handle import Run


class Recorded(Protocol):
    """What names record files a run can read: an earlier run's :class:`~discodsl.Results`
    or :class:`~discodsl.Run` (a chain); each file goes into ``listed``, if given, with the
    size its index gives (or none)."""

    def record_urls(self, listed: dict[str, tuple[int, str]] | None = None) -> list[list[str]]: ...


# One input: a path, glob, directory or URL; an earlier run; or one input's replica URLs.
Input = str | os.PathLike[str] | Recorded | Sequence[str | os.PathLike[str]]
Inputs = Input | Iterable[Input]
# run()'s and submit()'s inputs when none are given: refused as None is (a run over nothing,
# its inputs forgotten, gave [] without a word); typed as inputs, so that None given is not.
_NONE_GIVEN: Any = None


# What a Job has and a Stage does not: asked of a stage, said so (not a StageSpec's error).
# Held while a run picks its runner, which the first run of a program imports (most of
# discodsl): a fork waits until it is free (see discodsl.forking).
_IMPORTING = forking.IMPORTING


def _runner(mode: Mode | None, master: str | None) -> Runner:
    """The runner for ``mode`` (see :func:`discodsl.runners.choose`), imported under
    ``_IMPORTING`` with the program's signal handlers held while it loads (see
    interrupts.held): a program's signal handler that runs a job found the runner's
    modules half imported, and both runs died of "partially initialized module"."""
    with _IMPORTING, _held_unless_loaded(mode, master):
        from discodsl.runners import choose

        runner = choose(mode, master)
        # What every run of it imports on its way, loaded whole now.
        import discodsl.results
        import discodsl.runners.handle
        import discodsl.shipping  # noqa: F401

        # Python's first look for the temporary directory, which every run here makes its
        # own in, holds a lock of tempfile's that a handler's run would wait for for good.
        tempfile.gettempdir()
        return runner


def _held_unless_loaded(
    mode: Mode | None, master: str | None
) -> contextlib.AbstractContextManager[None]:
    """:func:`interrupts.held` while a run would import modules of its runner's; nothing
    once they are loaded (each swap of a handler sets the OS's disposition)."""
    if mode is None and "discodsl.runners" in sys.modules:  # the one choose() would take
        from discodsl.settings import configured_master

        with contextlib.suppress(Exception):  # a bad master: choose() says it
            mode = "cluster" if configured_master(master) else "local"
    runners = [_RUNNER_MODULES[mode]] if mode in _RUNNER_MODULES else _RUNNER_MODULES.values()
    if all(name in sys.modules for name in (*_ON_THE_WAY, *runners)):
        return contextlib.nullcontext()
    return interrupts.held()


_RUNNER_MODULES = {
    "local": "discodsl.runners.local",
    "inline": "discodsl.runners.inline",
    "cluster": "discodsl.runners.cluster",
}
_ON_THE_WAY = (
    "discodsl.runners",
    "discodsl.results",
    "discodsl.runners.handle",
    "discodsl.shipping",
)


class _FunctionDoc:
    """``__doc__`` of a class whose instances stand for a function: on the class, its own
    docstring; on an instance, the function's (``help(stage)``, ``job?`` in a notebook)."""

    def __init__(self, own: str | None) -> None:
        self.own = own

    def __get__(self, instance: Any, owner: type | None = None) -> str | None:
        if instance is None:
            return self.own
        return getattr(instance.function, "__doc__", None)


class RedefinedStageWarning(UserWarning):
    """A job runs a stage that has been defined again since it was declared."""


_JOB_METHODS = frozenset({"run", "submit", "with_options", "stages", "options", "jobpack"})


# The decorators a stage or job named as one hides in its module (Disco's own examples
# name their functions map and reduce).
_DECORATORS = frozenset({"map", "reduce", "stage", "job"})


def _decorating(
    args: tuple[Any, ...], kwargs: dict[str, Any], function: Callable[..., Any] | None
) -> bool:
    """Whether a call looks like a decorator's: on one function or class, or with keywords
    alone (``@reduce(combine=True)``) none of which ``function`` takes (``map(line=...)`` is
    a call of the stage)."""
    if kwargs:
        return not args and not set(kwargs) & set(_parameter_names(function))
    return len(args) == 1 and isinstance(args[0], (FunctionType, type))


def _parameter_names(function: Callable[..., Any] | None) -> list[str]:
    import inspect

    if function is None:
        return []
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin with no signature: no name is its own
        return []


def _shadowed(name: str, what: str) -> TypeError:
    return TypeError(
        f"@{name} here is {what} defined above, not discodsl's decorator: a function named "
        f"{name} takes that name over in its module from there on; name that function for "
        f"what it does (words, total), or import the decorator as another name (from "
        f"discodsl import {name} as {name}_)"
    )


@dataclass(frozen=True)
class Stage(ShippedAsFunction):
    """One stage of a pipeline: a user function plus how its input is grouped.

    ``spec`` is the stdlib :class:`~discodsl.worker.spec.StageSpec` a worker
    runs; its fields read as the stage's own (``stage.name``, ``stage.kind``,
    ``stage.grouping``, ``stage.combine``, ...). It is named as its function is
    (``__module__``, ``__name__``, ``__qualname__``), and pickles by that name
    where its module holds it, as the function would undecorated.
    """

    spec: StageSpec

    def __post_init__(self) -> None:
        _named_as(self, self.spec.function)
        for function in (self.spec.function, *(getattr(self.spec, r, None) for r in _HOOKS)):
            _note_declared(function)

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
        if field in _JOB_METHODS:
            raise AttributeError(
                f"{self.kind} stage {self.name!r} has no {field}(): a stage runs in a job; "
                f"declare one, e.g. @job def pipeline(): return [{self.name}], and call "
                f"pipeline.{field}(inputs=...)"
            )
        try:
            return getattr(self.spec, field)
        except AttributeError:
            # Named for the Stage the user holds (the spec is ours); name and obj let Python
            # suggest the closest attribute, as it does for any object.
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {field!r}", name=field, obj=self
            ) from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function, as if it were not decorated."""
        if self.name in _DECORATORS and _decorating(args, kwargs, self.function):
            raise _shadowed(self.name, f"the {self.kind} stage {self.name!r}")
        return self.function(*args, **kwargs)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.function

    __doc__ = _FunctionDoc(__doc__)

    def __reduce__(self) -> str | tuple[Any, ...]:
        """By name where its module holds it; else as its spec. (A jobpack holds it as its
        plain function: see ShippedAsFunction.)"""
        return _pickle_name(self) or (Stage, (self.spec,))

    def __copy__(self) -> Stage:
        return self  # frozen: a copy would be the same stage

    def __deepcopy__(self, memo: dict[int, Any]) -> Stage:
        return self

    def __repr__(self) -> str:
        extra = " combine" if self.combine or self.combiner else ""
        return f"<{self.kind} stage {self.name!r} ({self.grouping}{extra})>"


@dataclass(frozen=True)
class Job(ClientOnly):
    """A pipeline of stages with its options; call ``run(inputs)`` to get results."""

    name: str
    stages: tuple[Stage, ...]
    options: JobOptions = field(default_factory=lambda: JobOptions())
    # The body that declared the stages: not part of what the job is (equal jobs may have
    # been declared apart), nor of a copy pickled by value (see __reduce__).
    function: Callable[[], Sequence[Stage]] | None = field(default=None, compare=False)

    __doc__ = _FunctionDoc(__doc__)

    def __post_init__(self) -> None:
        # Checked here, not only by @job: a Job built by hand is a job as well.
        if not isinstance(self.options, JobOptions):  # Job("x", stages, {"partitions": 3})
            raise JobError(
                f"job {self.name!r} was given options={brief(self.options, 80)}, which is no "
                "JobOptions: pass JobOptions(partitions=3, ...), or declare it with @job(...) "
                "and change it with job.with_options(...)"
            )
        object.__setattr__(self, "stages", check_pipeline(self.name, self.stages, self.options))
        _named_as(self, self.function)

    @property
    def __wrapped__(self) -> Callable[[], Sequence[Stage]]:
        """The body (``inspect.getsource(job)``, ``job??`` in a notebook)."""
        if self.function is None:
            raise AttributeError("__wrapped__")
        return self.function

    def __reduce__(self) -> str | tuple[Any, ...]:
        """By name where its module holds it; else as its name, stages and options, and the
        names it took from its body (the body, which a copy's module does not hold under
        its name, stays behind)."""
        named = {key: value for key, value in self.__dict__.items() if key in _NAMES}
        return _pickle_name(self) or (_job_named, (self.name, self.stages, self.options, named))

    def __hash__(self) -> int:
        return hash((self.name, self.stages))

    def __call__(self, *args: Any, **kwargs: Any) -> list[Stage]:
        """The stages, as the decorated body returns them (a job takes no arguments: it is
        run with :meth:`run`)."""
        if self.name in _DECORATORS and _decorating(args, kwargs, self.function):
            raise _shadowed(self.name, f"the job {self.name!r}")
        if args or kwargs:
            raise TypeError(
                f"job {self.name!r} is not called with its inputs: run it, "
                f"{self.name}.run(inputs=[...]), or submit it, {self.name}.submit(inputs=[...])"
            )
        return list(self.stages)

    def with_options(self, **changes: Unpack[JobKeywords]) -> Job:
        """A copy of this job with some options changed (validated)."""
        return replace(self, options=validate_options(self.options, **changes))

    def spec(self, options: JobOptions | None = None) -> JobSpec:
        """The stdlib description of this job that a worker runs (see :func:`pipeline`)."""
        chosen = options or self.options
        return JobSpec(
            name=chosen.prefix or cleaned_prefix(self.name),
            stages=runtime_specs(
                pipeline(self.name, self.stages, chosen.partitions), bool(chosen.check_types)
            ),
            partitions=chosen.partitions or 0,  # 0: not partitioned, as Disco's workers say it
            params=chosen.params,
            memory_budget=chosen.memory_budget,
            compress=chosen.compress,
            env=dict(chosen.env),
        )

    def run(
        self,
        inputs: Inputs = _NONE_GIVEN,
        *,
        mode: Mode | None = None,
        master: str | None = None,
        **options: Unpack[JobKeywords],
    ) -> Results:
        """Run the job over ``inputs`` and return its results (iterate them for records).

        ``inputs``: paths, globs, directories, ``file://``/``http(s)://``/
        ``raw://``/``tag://`` URLs, or the results of an earlier job.
        ``mode``: ``"local"`` (default without a master: worker processes on
        this machine), ``"inline"`` (one process, for debugging) or
        ``"cluster"`` (default when ``master=`` or ``DISCO_MASTER`` is set).
        Other keywords override the job's options for this run; ``cache=True``
        serves an identical earlier run's results at once, or resumes after the
        stages it finished (:mod:`discodsl.caching`).
        """
        return self._prepared_runner(mode, master).run(self, inputs, options)

    def submit(
        self,
        inputs: Inputs = _NONE_GIVEN,
        *,
        mode: Mode | None = None,
        master: str | None = None,
        **options: Unpack[JobKeywords],
    ) -> Run:
        """Start the job over ``inputs`` and return its :class:`~discodsl.Run` at once
        (keywords as for :meth:`run`, which is ``submit(...).wait()``).

        Local and cluster runs go on in a thread of this process; an inline
        run has ended when ``submit()`` returns. A run among ``inputs`` is
        waited for first (a chain: ``b = second.submit(first.submit(x))``),
        and if it fails, this run fails naming that failure.
        """
        return self._prepared_runner(mode, master).submit(self, inputs, options)

    def _prepared_runner(self, mode: Mode | None, master: str | None) -> Runner:
        """The runner for ``mode``, picked first (it imports what the run needs, see
        _IMPORTING); a JobError if a stage runs the job, a warning if a stage it holds was
        defined again."""
        runner = _runner(mode, master)
        self._refuse_inside_a_stage()
        self._warn_of_redefined_stages()
        return runner

    def _refuse_inside_a_stage(self) -> None:
        """A JobError if a stage's code runs this job (inline, where it can: in workers the
        client is not there to run one)."""
        # Not loaded: no stage runs in this process (and no import outside _IMPORTING).
        execute = sys.modules.get("discodsl.worker.execute")
        stage = execute.running_stage() if execute is not None else None
        if stage is not None and not interrupts.here_in_handler():  # a handler may run one
            raise JobError(
                f"stage {stage!r} runs job {self.name!r}: a stage cannot run a job (its "
                "workers have no client to run one with); chain jobs instead, passing one's "
                "results as the next one's inputs, or do the work in the stage itself"
            )

    def _warn_of_redefined_stages(self) -> None:
        """Warn of each stage whose name in the job's module (a notebook's namespace) is now
        another stage of that name: its cell was run again, not the job's, which still
        runs the stage as it was."""
        scope = getattr(self.function, "__globals__", None) or {}
        for stage in self.stages:
            self._warn_of_redefined_hooks(stage)
            variable = getattr(stage.function, "__name__", "")
            if getattr(stage.function, "__qualname__", "") != variable:
                continue  # made in a function (a factory's): no global of its module
            now = scope.get(variable)
            if _another(now, stage) and _redefined(stage.function, getattr(now, "function", None)):
                job = getattr(self.function, "__name__", self.name)
                self._warn_of(stage, _defined_again(variable, scope, job))
                continue
            module = sys.modules.get(getattr(stage, "__module__", "") or "")
            if module is None or not _reloaded(stage.function):
                continue
            if _another(getattr(module, variable, None), stage):
                self._warn_of(
                    stage,
                    f"module {module.__name__!r} has been reloaded since (autoreload?) "
                    f"and holds a new {variable!r}: import it again (from {module.__name__} "
                    f"import {variable}) and declare the job again to run the new one",
                )

    def _warn_of_redefined_hooks(self, stage: Stage) -> None:
        """Warn of each function a stage was given (its combiner, partitioner, init, done or
        reader) whose name where it was defined now holds another function of that name,
        of another cell or of its module reloaded (see _redefined); not one that another
        stage there took (each stage its own ``init``)."""
        for role in _HOOKS:
            hook = getattr(stage.spec, role, None)
            variable = getattr(hook, "__name__", "")
            if not variable or getattr(hook, "__qualname__", "") != variable:
                continue  # none, or made in a function: no global of its module
            scope = getattr(hook, "__globals__", {})
            now = scope.get(variable)
            if not _redefined(hook, now) or now in self._hooks() or _a_hook_in(now, scope):
                continue
            module = scope.get("__name__")
            why = (
                f"{variable!r} has been defined again since (its cell run again?): declare "
                "the stage and the job again (run their cells) to use the new one"
                if module in (None, "__main__")
                else f"module {module!r} has been reloaded since, holding a new {variable!r}: "
                "declare the stage and the job again to use the new one"
            )
            warnings.warn(
                f"job {self.name!r} runs stage {stage.name!r} with its {role} {variable!r} "
                f"as it was when the stage was declared, but {why}",
                RedefinedStageWarning,
                stacklevel=5,
            )

    def _hooks(self) -> list[Any]:
        """Every function the job's stages were given (combiners, partitioners, ...)."""
        return [getattr(stage.spec, role, None) for stage in self.stages for role in _HOOKS]

    def _warn_of(self, stage: Stage, why: str) -> None:
        warnings.warn(
            f"job {self.name!r} runs stage {stage.name!r} as it was when the job was "
            f"declared, but {why}",
            RedefinedStageWarning,
            stacklevel=5,
        )

    def __repr__(self) -> str:
        flow = " -> ".join(stage.name for stage in self.stages)
        return f"<Job {self.name!r}: {flow}, partitions={self.options.partitions}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{escape(s.name)}</code></td><td>{s.kind}</td>"
            f"<td>{s.grouping}</td></tr>"
            for i, s in enumerate(self.stages)
        )
        return (
            f"<b>Job <code>{escape(self.name)}</code></b> (partitions={self.options.partitions})"
            f"<table><tr><th>#</th><th>stage</th><th>kind</th><th>grouping</th></tr>{rows}</table>"
        )


_HOOKS = ("combiner", "partitioner", "init", "done", "reader")


def _redefined(hook: Any, now: Any) -> bool:
    """Whether ``now``, what ``hook``'s name holds where it was defined, is another function
    of that name that replaced it: of a notebook's cell (IPython compiles each cell it runs
    into a file of its own), of its module reloaded since a stage took ``hook``, or of its
    own ``def`` run again (``%run`` of its file); not a script's other function of that
    name, in the same file or imported from another."""
    if not isinstance(now, FunctionType) or now is hook or now.__name__ != hook.__name__:
        return False
    old_code, new_code = hook.__code__, now.__code__
    if new_code.co_filename != old_code.co_filename:
        return _a_cell(new_code.co_filename) or _reloaded(hook)
    return _reloaded(hook) or new_code.co_firstlineno == old_code.co_firstlineno


def _a_cell(filename: str) -> bool:
    """Whether ``filename`` is one IPython compiled a notebook's cell into."""
    return (
        filename.startswith("<ipython-input-")
        or "/ipykernel_" in filename
        or (filename in notebook_cells())
    )


def _note_declared(function: Any) -> None:
    """Note the module ``function`` (a stage's, or a hook) was declared in, as it is loaded
    now: importlib.reload gives a module a new ``__spec__`` (see _reloaded)."""
    if isinstance(function, FunctionType):
        _DECLARED.setdefault(function, function.__globals__.get("__spec__"))


def _reloaded(function: Callable[..., Any]) -> bool:
    """Whether ``function``'s module has been reloaded since a stage was declared with it
    (importlib.reload gives it a new ``__spec__``), or imported again as another module
    (dropped from sys.modules first)."""
    if not isinstance(function, FunctionType):
        return False
    module = sys.modules.get(function.__module__)
    if module is not None and vars(module) is not function.__globals__:
        return function.__globals__.get("__name__") == function.__module__
    then = _DECLARED.get(function, _UNKNOWN)
    return then is not _UNKNOWN and then is not function.__globals__.get("__spec__")


# Each stage's function and hooks: its module's __spec__ when the first stage took it.
_DECLARED: weakref.WeakKeyDictionary[FunctionType, Any] = weakref.WeakKeyDictionary()
_UNKNOWN = object()


def _a_hook_in(function: Any, scope: Mapping[str, Any]) -> bool:
    """Whether ``function`` is a hook of a stage ``scope`` holds: one a stage of another cell
    took, of one name (its ``init``), not this stage's own redefined."""
    return any(  # type(), not isinstance(): a lazy proxy's __class__ may load, or fail
        issubclass(type(value), Stage)
        and any(getattr(value.spec, r, None) is function for r in _HOOKS)
        for value in list(scope.values())
    )


def _defined_again(variable: str, scope: Mapping[str, Any], job: str) -> str:
    """Why a job's stage is not what ``variable`` holds now in the job's ``scope``: a
    notebook's cell run again, or the job's own module reloaded (autoreload)."""
    module = scope.get("__name__")
    if module in (None, "__main__"):
        return (
            f"{variable!r} has been defined again since (its cell run again?): "
            "declare the job again (run its @job cell) to run the new one"
        )
    return (
        f"its module {module!r} has been reloaded since (autoreload?), holding a new "
        f"{variable!r} and the job declared again: import the job again (from {module} "
        f"import {job}) to run the new one"
    )


def _another(found: Any, stage: Stage) -> bool:
    """Whether ``found``, what a name of ``stage`` holds now, is another stage of its name
    made from another function (a cell run again); not one of the same function with other
    options (``reduce(sort=False)(total.function)``)."""
    if not isinstance(found, Stage) or found is stage or found.name != stage.name:
        return False
    return found.function is not stage.function


_NAMES = ("__module__", "__name__", "__qualname__")


def _named_as(wrapper: Stage | Job, function: Callable[..., Any] | None) -> None:
    """Give ``wrapper`` the names of ``function`` (as functools.update_wrapper does)."""
    for name in _NAMES:
        value = getattr(function, name, None)
        if isinstance(value, str):
            object.__setattr__(wrapper, name, value)


def _job_named(
    name: str, stages: tuple[Stage, ...], options: JobOptions, names: dict[str, str]
) -> Job:
    """A job pickled by value, named again as the original was (see Job.__reduce__)."""
    made = Job(name, stages, options)
    for attribute, value in names.items():
        object.__setattr__(made, attribute, value)
    return made


def _pickle_name(wrapper: Stage | Job) -> str:
    """``wrapper``'s qualified name if its module holds it so (pickle can name it), or ""."""
    qualname: str = wrapper.__dict__.get("__qualname__", "")
    found: Any = sys.modules.get(wrapper.__dict__.get("__module__", ""))
    if not qualname or "<" in qualname:
        return ""
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return qualname if found is wrapper else ""


def check_pipeline(
    name: str, stages: Sequence[Any], options: JobOptions | None = None
) -> tuple[Stage, ...]:
    """The stages as a tuple, or JobError saying what to write instead.

    A job may start with a reduce (Disco's reduce-only jobs): its inputs are
    then read as record files; see :func:`pipeline`.
    """
    if isinstance(stages, Stage):
        stages = [stages]
    if not isinstance(stages, (list, tuple)) or not stages:
        raise JobError(
            f"job {name!r} must return a non-empty list of stages, e.g. `return [words, total]`;"
            f" it returned {brief(stages, 80)}"
        )
    for item in stages:
        if not isinstance(item, Stage):
            raise JobError(f"job {name!r} returned {brief(item, 60)}, {_not_a_stage(item)}")
    _check_unique(name, stages)
    check_contracts(name, [stage.spec for stage in stages])
    if options is not None:
        check_partitioning(name, stages, options.partitions)
    return tuple(stages)


def _not_a_stage(item: Any) -> str:
    """Why ``item``, which a job body returned, is not a stage, and the fix."""
    inner = getattr(item, "__wrapped__", None)
    if isinstance(inner, Stage):
        return (
            f"a function wrapping the {inner.kind} stage {inner.name!r}, not the stage: put "
            f"the other decorator below @{inner.kind} (nearer the def), so that it wraps "
            "the plain function"
        )
    if isinstance(item, Job):
        return (
            f"a job, not a stage: put its stages in the list, `[*{item.name}(), ...]`, or "
            f"chain the jobs, passing {item.name}.run(...)'s results as the inputs"
        )
    return "which is not a stage: decorate it with @map, @reduce or @stage"


def second_stage(stage: Stage) -> str:
    """The code that declares a second stage of ``stage``'s function, named apart, with the
    options of the first (a stage listed twice must be two)."""
    spec, name = stage.spec, stage.name
    held = getattr(spec.function, "__name__", "")  # where the program holds it, most likely
    # A lambda's stage is held by a variable only the program knows: named so, and said.
    var = held if held.isidentifier() else "STAGE"
    options = [f"name='{name}_2'"]
    if spec.grouping != _DECLARED_GROUPING.get(spec.kind, spec.grouping):
        options.append(f"grouping={spec.grouping!r}")
    options += [f"{field}={var}.{field}" for field in _FUNCTIONS if getattr(spec, field)]
    options += [f"{field}={value}" for field, value in _FLAGS if getattr(spec, field) is value]
    code = f"{var}_2 = {spec.kind}({var}.function, {', '.join(options)})"
    return code if var == held else f"{code}, STAGE being the variable that holds the stage"


# What second_stage repeats of a stage's options: those holding functions, the flags that
# differ from their defaults, and the grouping where it is not the decorator's own.
_FUNCTIONS = ("init", "done", "combiner", "partitioner", "reader")
_FLAGS = (("combine", True), ("sort", False), ("concurrent", True))
_DECLARED_GROUPING = {"map": "split", "reduce": "group_label", "stage": "group_label"}


def _check_unique(name: str, stages: Sequence[Stage]) -> None:
    seen: dict[str, Stage] = {}
    for stage in stages:
        if stage.name in seen:
            kind, other = stage.spec.kind, f"name='{stage.name}_2'"
            anonymous = getattr(stage.spec.function, "__name__", "") == "<lambda>"
            example = f"{kind}(lambda ..., {other})" if anonymous else f"@{kind}({other})"
            if seen[stage.name] is stage:  # one stage listed twice: a second of its function
                example = second_stage(stage)
            raise JobError(
                f"job {name!r} has two stages named {stage.name!r}: give one another name, "
                f"e.g. {example}{_inner_function(stage)}"
            )
        seen[stage.name] = stage


def _inner_function(stage: Stage) -> str:
    """What names a stage after a decorator's inner function, if that is what names it."""
    function = stage.spec.function
    qualified = getattr(function, "__qualname__", "")
    if not (isinstance(qualified, str) and ".<locals>." in qualified):
        return ""
    if hasattr(function, "__wrapped__") or not getattr(function, "__closure__", None):
        return ""
    return (
        f"; or, if {qualified!r} is a decorator's wrapper, add @functools.wraps(function) to "
        "it, which names the stage after the function it wraps"
    )


# A label-grouped stage over outputs that are all labelled 0 is one task: said as Disco's
# v1 jobs say it (jobpack:pipeline1 makes the reduce group_all when there is one).
_UNLABELLED = {"group_label": "group_all", "group_node_label": "group_node"}


def pipeline(name: str, stages: Sequence[Stage], partitions: int | None) -> tuple[StageSpec, ...]:
    """The stage specs a worker runs for ``stages`` with ``partitions``, in Disco's meaning.

    ``partitions=None``: every output is one unlabelled stream (label 0), so a
    ``group_label`` stage is one task over everything (``group_all``). A job
    that starts with a reduce reads its inputs, all labelled 0, as record
    files: with one partition (or None) the reduce is one task over them all
    (``group_all``, which also reads every label of a ``dir://`` input); with
    ``partitions=N > 1`` a map named ``<reduce>_inputs`` runs first, one task
    per input, passing each record on labelled by the reduce's partitioner,
    so N reduce tasks share the keys.
    """
    check_partitioning(name, stages, partitions)
    specs = [_regrouped(stage.spec, partitions is None) for stage in stages]
    first = specs[0]
    if first.kind != "reduce" or first.grouping not in _UNLABELLED:
        return tuple(specs)
    if partitions is not None and partitions > 1:
        return (_input_labeller(first, specs), *specs)
    return (_regrouped(first, True), *specs[1:])


def _regrouped(spec: StageSpec, unlabelled: bool) -> StageSpec:
    if unlabelled and spec.grouping in _UNLABELLED:
        return replace(spec, grouping=_UNLABELLED[spec.grouping])
    return spec


def _input_labeller(reduce: StageSpec, specs: Sequence[StageSpec]) -> StageSpec:
    """The map that labels a reduce-only job's input records by partition, under a free name."""
    from discodsl.worker.calls import pass_pairs

    taken = {spec.name for spec in specs}
    name = f"{reduce.name}_inputs"
    while name in taken:
        name += "_"
    return StageSpec(name, "map", "split", pass_pairs)


def check_partitioning(name: str, stages: Sequence[Stage], partitions: int | None) -> None:
    """JobError if a stage's partitioner could never be called: with ``partitions=None``, on
    the first stage (no stage before it labels records; a reduce's hidden map does), or on a
    stage that takes every record (of a node) in one task."""
    for index, stage in enumerate(stages):
        if stage.partitioner is None:
            continue
        if partitions is None:
            raise JobError(
                f"job {name!r}: stage {stage.name!r} has a partitioner, but partitions=None "
                "writes every record to one unpartitioned output (label 0), so it would never "
                "be called: drop partitioner= from its decorator, or set partitions=N "
                "(e.g. partitions=4)"
            )
        first = not index and stage.kind != "reduce"  # a first reduce's inputs are labelled
        why = "is the first stage (no stage before it labels records)" if first else ""
        if stage.grouping in _ONE_TASK:
            why = f"takes {_ONE_TASK[stage.grouping]} in one task (grouping={stage.grouping!r})"
        if why:
            raise JobError(
                f"job {name!r}: stage {stage.name!r} has a partitioner, but it {why}, so the "
                "partitioner would never be called: drop partitioner= from its decorator"
            )


# The groupings whose tasks take every record, or every record of a node, whatever its label.
_ONE_TASK = {"group_all": "every record", "group_node": "every record of a node"}
