"""Classes of the client's ``__main__`` that records carry, made nameable in a worker's.

Stage code written in a script or a notebook defines its classes in
``__main__``; cloudpickle ships them by value with the job, but the records a
task writes are pickled with plain :mod:`pickle`, which names a class by
module and qualified name: ``__main__.Stat``. In a worker, ``__main__`` is
the runtime's, which has no ``Stat``, so a record holding one fails to pickle
(and, written elsewhere, to unpickle). :func:`adopt` puts each such class the
job reaches onto the worker's ``__main__`` under its name, as the client has
it, so a record pickles here and unpickles the same in the client. A name the
worker's ``__main__`` already holds is left alone (inline runs: the client's
own classes are there already), and so are classes pickle cannot name anyway
(nested or local ones: ``Outer.Inner``, ``f.<locals>.C``).

Not here: how the job is shipped (:mod:`discodsl.shipping`), loaded
(:mod:`discodsl.worker.runtime`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from types import FunctionType, MethodType
from typing import Any

# Objects looked into at most: a job's stages and params reach few, a huge params
# container many; past this the rest of it is not looked into.
LIMIT = 10_000


def adopt(*roots: Any) -> None:
    """Set each top-level class of ``__main__`` that ``roots`` reach on this process's
    ``__main__``, unless it has something of that name already."""
    main = sys.modules["__main__"]
    for cls in _main_classes(roots):
        name = cls.__qualname__
        if "." not in name and "<" not in name and not hasattr(main, name):
            setattr(main, name, cls)


def _main_classes(roots: tuple[Any, ...]) -> Iterator[type]:
    """The classes of ``__main__`` among what ``roots`` refer to, directly or not."""
    seen: set[int] = set()
    todo = list(roots)
    while todo and len(seen) < LIMIT:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, type):
            if item.__module__ == "__main__":
                yield item
                todo.extend(vars(item).values())
            continue
        if type(item).__module__ == "__main__":
            todo.append(type(item))
        todo.extend(_inside(item))


def _inside(item: Any) -> list[Any]:
    """What ``item`` refers to that may lead to a class of ``__main__``."""
    if isinstance(item, FunctionType):
        return _of_function(item)
    if isinstance(item, (staticmethod, classmethod, MethodType)):
        return [item.__func__]
    if isinstance(item, functools.partial):
        return [item.func, *item.args, *item.keywords.values()]
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset)):
        return list(item)
    fields = getattr(item, "__dataclass_fields__", None)
    if fields is not None and type(item).__module__.startswith("discodsl."):
        return [getattr(item, name) for name in fields]  # the job's own specs
    return []


def _of_function(function: FunctionType) -> list[Any]:
    """The globals a function of ``__main__`` names, its closure and its defaults (a
    function from elsewhere is imported by the worker: its classes are found there)."""
    if function.__module__ != "__main__":
        return []
    code_globals = function.__globals__
    found = [code_globals[name] for name in _names(function.__code__) if name in code_globals]
    found.extend(cell.cell_contents for cell in function.__closure__ or () if _filled(cell))
    found.extend(function.__defaults__ or ())
    found.extend((function.__kwdefaults__ or {}).values())
    return found


def _names(code: Any) -> Iterator[str]:
    """The global names ``code`` and the code nested in it refer to."""
    yield from code.co_names
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            yield from _names(const)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True
