"""Whether a partitioner calls the builtin ``hash()``, which for a str or bytes key differs
from process to process (``PYTHONHASHSEED``): in its own code, through the program's
functions it calls, under another name, or as a key's ``__hash__`` method. What the
program calls of the standard library or an installed package is not followed (a
library's own ``mmh3.hash`` is no builtin)."""

from __future__ import annotations

import builtins
import dis
import inspect
import sys
from collections.abc import Callable
from functools import partial
from types import FunctionType, MethodType
from typing import Any

from discodsl.worker.spec import nested_code

# How many calls deep the program's own functions are followed from the partitioner.
DEPTH = 4
_LOADS_NAME = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_ATTRIBUTE = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def calls_hash(partitioner: Callable[..., Any]) -> bool:
    """Whether calling ``partitioner`` may call the builtin ``hash()``."""
    function = _code_of(partitioner)
    return function is not None and _calls(function, set(), DEPTH)


def _code_of(function: Any) -> FunctionType | None:
    """The Python function that calling ``function`` runs: itself, a partial's, a method's,
    or a callable object's ``__call__``; None for a builtin."""
    while isinstance(function, partial):
        function = function.func
    if isinstance(function, MethodType):
        function = function.__func__
    if not isinstance(function, FunctionType):
        function = inspect.getattr_static(type(function), "__call__", None)  # an object's
    return function if isinstance(function, FunctionType) else None


def _calls(function: FunctionType, seen: set[FunctionType], depth: int) -> bool:
    if function in seen:
        return False
    seen.add(function)
    for value in _values_named(function):
        if value is builtins.hash:
            return True
        followed = depth and isinstance(value, FunctionType) and _programs(value)
        if followed and _calls(value, seen, depth - 1):
            return True
    return False


def _values_named(function: FunctionType) -> list[Any]:
    """What the names ``function``'s code loads stand for (its globals, builtins and closure
    cells), and the builtin ``hash`` for a ``.__hash__`` it takes of anything."""
    cells = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
    values: list[Any] = []
    for code in nested_code(function.__code__):
        for instruction in dis.get_instructions(code):
            name, opname = instruction.argval, instruction.opname
            if opname in _LOADS_ATTRIBUTE and name == "__hash__":
                values.append(builtins.hash)
            elif opname in _LOADS_NAME:
                values.append(function.__globals__.get(name, vars(builtins).get(name)))
            elif opname == "LOAD_DEREF" and name in cells:
                try:
                    values.append(cells[name].cell_contents)
                except ValueError:  # a cell not yet filled
                    continue
    return values


def _programs(function: FunctionType) -> bool:
    """Whether ``function`` is the program's, not the standard library's or a package's."""
    where = function.__code__.co_filename
    return not where.startswith((sys.prefix, sys.base_prefix, sys.exec_prefix, "<frozen"))
