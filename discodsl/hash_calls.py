"""Whether a partitioner calls the builtin ``hash()``, which for a str or bytes key differs
from process to process (``PYTHONHASHSEED``): in its own code, through the program's
functions and methods it calls, under another name (a global, ``builtins.hash``, a
default argument, a partial), or as a key's ``__hash__`` method. What the program calls
of the standard library or an installed package is not followed (a library's own
``mmh3.hash`` is no builtin). A static look: a name made at run time
(``getattr(builtins, "hash")``) is not seen."""

from __future__ import annotations

import builtins
import dis
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from functools import cache, partial
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from discodsl.worker.spec import nested_code

# How many calls deep the program's own functions are followed from the partitioner.
DEPTH = 6
_LOADS_NAME = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_ATTRIBUTE = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def calls_hash(partitioner: Callable[..., Any]) -> bool:
    """Whether calling ``partitioner`` may call the builtin ``hash()``."""
    if _partial_of_hash(partitioner):
        return True
    return any(_calls(function, set(), DEPTH) for function in _functions_of(partitioner))


def _functions_of(value: Any) -> list[FunctionType]:
    """The Python functions calling ``value`` runs: itself, a method's, a partial's (and
    what it is given), a caching wrapper's, or a callable object's ``__call__``."""
    if isinstance(value, partial):
        given = (value.func, *value.args, *value.keywords.values())
        return [f for part in given for f in _functions_of(part)]
    if isinstance(value, (staticmethod, classmethod, MethodType)):
        value = value.__func__
    if not isinstance(value, FunctionType) and callable(_wrapped(value)):
        value = _wrapped(value)  # functools.lru_cache and the like
    if not isinstance(value, FunctionType) and not isinstance(value, type):
        value = inspect.getattr_static(type(value), "__call__", None)  # an object's
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
    return [value] if isinstance(value, FunctionType) else []


def _wrapped(value: Any) -> Any:
    """``value.__wrapped__``, or None: an object of the program's whose ``__getattr__``
    raises what it likes must not fail the declaration."""
    try:
        return inspect.getattr_static(value, "__wrapped__", None)
    except Exception:  # a property of the object's own that fails
        return None


def _calls(function: FunctionType, seen: set[FunctionType], depth: int) -> bool:
    if function in seen:
        return False
    seen.add(function)
    for value in _values_named(function):
        if value is builtins.hash or _partial_of_hash(value):
            return True
        if depth:
            followed = [f for f in _functions_of(value) if _programs(f)]
            if any(_calls(each, seen, depth - 1) for each in followed):
                return True
    return False


def _partial_of_hash(value: Any) -> bool:
    """Whether ``value`` is a partial of ``hash``, or one given it."""
    if not isinstance(value, partial):
        return False
    given = (value.func, *value.args, *value.keywords.values())
    return any(part is builtins.hash or _partial_of_hash(part) for part in given)


def _values_named(function: FunctionType) -> Iterator[Any]:
    """What ``function`` may call: what the names its code loads stand for (its globals,
    builtins, closure cells), its default arguments, the methods of the program's classes
    it takes from one of them or from ``self``, and the builtin ``hash`` for
    ``builtins.hash`` or a key's ``__hash__``."""
    cells = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
    own = _own_class(function)
    yield from function.__defaults__ or ()
    yield from (function.__kwdefaults__ or {}).values()
    for code in nested_code(function.__code__):
        loaded: Any = None  # what the instruction before loaded, if known
        for instruction in dis.get_instructions(code):
            name, opname = instruction.argval, instruction.opname
            if opname in _LOADS_ATTRIBUTE:
                yield from _attribute(name, loaded)
            if opname == "LOAD_FAST" and own is not None and _is_self(code, function, name):
                loaded = _InstanceOf(own)  # self, in a method of the program's class
                continue
            loaded = _loaded(function, cells, opname, name)
            if loaded is not None:
                yield loaded


def _is_self(code: CodeType, function: FunctionType, name: str) -> bool:
    """Whether ``name``, loaded in ``code``, is ``function``'s first parameter (``self``)."""
    own = function.__code__
    return code is own and own.co_argcount > 0 and name == own.co_varnames[0]


class _InstanceOf:
    """An instance of ``cls``, as ``self`` in one of its methods is."""

    def __init__(self, cls: type) -> None:
        self.cls = cls


def _own_class(function: FunctionType) -> type | None:
    """The class of the program's whose method ``function`` is, by its qualified name."""
    owner = function.__qualname__.rpartition(".")[0]
    klass = function.__globals__.get(owner) if owner and "<" not in owner else None
    return klass if isinstance(klass, type) and _programs_module(klass.__module__) else None


def _loaded(function: FunctionType, cells: dict[str, Any], opname: str, name: Any) -> Any:
    """What a LOAD_GLOBAL, LOAD_NAME or LOAD_DEREF of ``name`` loads; None otherwise."""
    if opname in _LOADS_NAME:
        return function.__globals__.get(name, vars(builtins).get(name))
    if opname == "LOAD_DEREF" and name in cells:
        try:
            return cells[name].cell_contents
        except ValueError:  # a cell not yet filled
            return None
    return None


def _attribute(name: str, owner: Any) -> Iterator[Any]:
    """What attribute ``name`` of ``owner`` (what the instruction before loaded, if known)
    may be: ``builtins.hash``, a method of a class of the program's (of the class, or of
    an instance of it), and the builtin ``hash`` for any ``__hash__`` (a key's, of a class
    not known here: a program's own class that hashes its own way is warned of too)."""
    if owner is builtins and name == "hash":
        yield builtins.hash
    klass = _program_class_of(owner)
    if klass is not None:
        member = inspect.getattr_static(klass, name, None)
        if member is not None:
            yield member
    if name == "__hash__":
        yield builtins.hash


def _program_class_of(owner: Any) -> type | None:
    """The program's class ``owner`` is, or is an instance of; None if none or not known."""
    if isinstance(owner, _InstanceOf):
        return owner.cls
    if owner is None or isinstance(owner, ModuleType):
        return None
    klass = owner if isinstance(owner, type) else type(owner)
    return klass if _programs_module(getattr(klass, "__module__", "")) else None


def _programs_module(name: str) -> bool:
    """Whether the module ``name`` is the program's: a notebook's ``__main__`` has no file."""
    module = sys.modules.get(name)
    where = getattr(module, "__file__", None) if isinstance(module, ModuleType) else None
    if where is None:
        return name == "__main__"
    return _programs_file(where)


def _programs(function: FunctionType) -> bool:
    """Whether ``function`` is the program's, not the standard library's or a package's."""
    return _programs_file(function.__code__.co_filename)


def _programs_file(where: str) -> bool:
    if where.startswith("<frozen"):
        return False
    if where.startswith("<"):  # a notebook cell, an exec()'d string: the program's
        return True
    return not os.path.abspath(where).startswith(_libraries())


@cache
def _libraries() -> tuple[str, ...]:
    """Where the standard library, installed packages and discodsl are, each with its
    separator."""
    paths = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.add(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.abspath(path), "") for path in paths if path)
