"""``@map``, ``@reduce``, ``@stage`` and ``@job`` as a Disco node has them: each gives back
the function it decorates, as it is.

A module of the user's that stages call may declare stages and jobs too (a
team's ``logs.py`` with its ``parse()`` beside its jobs): on a node, where
the client is not, importing such a module must not fail, and there its
stages are their plain functions (the stages a task runs come from the
jobpack, not from it), its jobs the functions that list them. A stage that
calls ``map(f, items)`` where ``from discodsl import map`` replaced Python's
gets the client's TypeError, as inline. The jobhome's ``discodsl`` package
offers these (:data:`discodsl.jobhome.NODE_PACKAGE_INIT`), and a stage holding
one of the client's decorators ships it as the one here
(:mod:`discodsl.shipping`).

Not here: the declarations themselves (:mod:`discodsl.decorators`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
    """``@job`` or ``@job(...)`` on a node: the function itself, returning its stages."""
    return _unchanged if function is None else function


def stand_in(kind: str) -> Callable[..., Any]:
    """The declaration ``kind`` (``"map"``...) as a node has it: what the client's pickles as."""
    return _STAND_INS[kind]


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
    return args[0] if args else _unchanged


def _unchanged(function: Any) -> Any:
    return function


_STAND_INS: dict[str, Callable[..., Any]] = {
    "map": map,
    "reduce": reduce,
    "stage": stage,
    "job": job,
}
