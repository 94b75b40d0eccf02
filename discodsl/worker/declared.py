"""``@map``, ``@reduce``, ``@stage`` and ``@job`` as a Disco node has them: each gives back
the function it decorates, as it is (its own ``.function`` too).

A module of the user's that stages call may declare stages and jobs too (a
team's ``logs.py`` with its ``parse()`` beside its jobs): on a node, where
the client is not, importing such a module must not fail, and there its
stages are their plain functions (the stages a task runs come from the
jobpack, not from it), its jobs :class:`NodeJob`, their functions that list
them. A stage that calls ``map(f, items)`` where ``from discodsl import map``
replaced Python's gets the client's TypeError, as inline. The jobhome's
``discodsl`` package offers these (:data:`discodsl.jobhome.NODE_PACKAGE_INIT`),
and a stage holding one of the client's decorators ships it as the one here
(:mod:`discodsl.shipping`: :data:`STAND_INS` names them).

Not here: the declarations themselves (:mod:`discodsl.decorators`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from discodsl.worker.errors import StageError


def map(*args: Any, **options: Any) -> Any:
    """``@map`` or ``@map(...)`` on a node: the function itself."""
    return _declared("map", args)


def reduce(*args: Any, **options: Any) -> Any:
    """``@reduce`` or ``@reduce(...)`` on a node: the function itself."""
    return _declared("reduce", args)


def stage(*args: Any, **options: Any) -> Any:
    """``@stage`` or ``@stage(...)`` on a node: the function itself."""
    return _declared("stage", args)


def job(function: Any = None, /, **options: Any) -> Any:
    """``@job`` or ``@job(...)`` on a node: a :class:`NodeJob` of the function."""
    return NodeJob if function is None else NodeJob(function)


class NodeJob:
    """A job as a node has it (``@job``, or a job a module shipped by value holds): its
    body, called as it is, ``with_options()`` giving it back, and no run.

    A stage cannot run a job (a node has no client to run one with): ``run()`` and
    ``submit()`` raise a StageError saying so; any other part of a client's job is not
    here either (an AttributeError naming it).
    """

    def __init__(self, function: Callable[..., Any] | None, name: str | None = None) -> None:
        self.function = function
        self.name = name or str(getattr(function, "__name__", "job"))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:  # a job made of its stages alone
            raise StageError(f"job {self.name!r} has no function that lists its stages here")
        return self.function(*args, **kwargs)

    def with_options(self, **options: Any) -> NodeJob:
        return self

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise StageError(
            f"a stage ran job {self.name!r}: a stage cannot run a job (its workers have no "
            "client to run one with); chain jobs instead, passing one's results as the next "
            "one's inputs, or do the work in the stage itself"
        )

    submit = run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # pickle's and copy's look-ups, before __dict__ is set
            raise AttributeError(name)
        job = self.__dict__.get("name", "?")
        raise AttributeError(
            f"job {job!r} has no {name!r} on a node, where a job is its function, "
            "called as it is (and with_options() gives it back): the rest of the client's "
            "job stays with the program; use it inside the functions that run jobs",
            name=name,
            obj=self,
        )

    def __repr__(self) -> str:
        return f"<job {self.name!r} as a node has it>"


def stand_in(kind: str) -> Callable[..., Any]:
    """The declaration ``kind`` (``"map"``...) as a node has it: what the client's pickles as."""
    return STAND_INS[kind]


def not_the_builtin(kind: str, given: int) -> str:
    """The message for ``map(f, items)`` once ``from discodsl import map`` replaced Python's
    (or ``reduce(f, items)``, functools')."""
    theirs = {"map": "builtins.map", "reduce": "functools.reduce"}.get(kind)
    replaced = f"replaced {theirs} here: call that one, or" if theirs else "is imported:"
    return (
        f"discodsl's {kind}() is the stage decorator, which takes a function, not {given} "
        f"arguments: `from discodsl import {kind}` {replaced} import ours as "
        f"`from discodsl import {kind} as {kind}_stage`"
    )


def _declared(kind: str, args: tuple[Any, ...]) -> Any:
    if len(args) > 1:
        raise TypeError(not_the_builtin(kind, len(args)))
    return _unchanged(args[0]) if args else _unchanged


def _unchanged(function: Any) -> Any:
    """``function``, which is its own ``.function`` too, as a stage's function is its
    ``.function`` in the client (``map(words.function, name="words_2")`` at a module's top
    level, the README's second stage of a function)."""
    with suppress(AttributeError, TypeError):  # a builtin takes no attributes
        if not hasattr(function, "function"):
            function.function = function
    return function


# The declarations a node has, by the name the client's have.
STAND_INS: dict[str, Callable[..., Any]] = {
    "map": map,
    "reduce": reduce,
    "stage": stage,
    "job": job,
}
