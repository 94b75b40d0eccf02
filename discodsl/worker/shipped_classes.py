"""Classes shipped by value with a job, made nameable in a worker so that records can carry them.

Stage code written in a script, a notebook or a module of the user's own
defines its classes in ``__main__`` or in a module the nodes cannot import;
cloudpickle ships such classes by value with the job. But the records a task
writes are pickled with plain :mod:`pickle`, which names a class by module
and qualified name (``__main__.Stat``, ``myjob.Rec``) and must find that very
class there; so must the task that reads them back. :func:`adopt` gives each
such class the job reaches that name in the worker:

- a class of ``__main__`` goes on the worker's ``__main__`` (the runtime's),
  unless a name of the runtime's is in the way (inline runs load nothing: the
  client's own classes are there already);
- a class of a module that can be imported here (a local run's workers
  import the user's modules from where the program did) goes into it, in
  place of the module's own copy of the class (else a pickle found that
  copy, not the shipped class);
- a class of a module that cannot goes into a module of that name made for
  it, holding the shipped classes only, and, for a module of a package
  (``pkg.jobs``), whose top package pickle imports, the package too;
- a module the worker had loaded for real before (another module imported it)
  gets the shipped class in place of its own copy of the class, and no other.

A nested class (``Outer.Inner``, ``f.<locals>.C``; its qualified name comes with
it, see :mod:`discodsl.shipping`) is not put anywhere: pickle finds the first
through its outer class if that came too, and fails the second, as it does
in the client. Records unpickle in the client against its own classes.

Not here: how the job is shipped (:mod:`discodsl.shipping`), loaded
(:mod:`discodsl.worker.runtime`).
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import sys
from collections.abc import Callable, Iterator
from types import FunctionType, MethodType, ModuleType, SimpleNamespace
from typing import Any

# Objects looked into at most: a job's stages and params reach few, a huge params
# container many; past this the rest of it is not looked into.
LIMIT = 10_000
# Set on a module made here to hold shipped classes.
MARK = "__discodsl_shipped__"


def adopt(*roots: Any) -> None:
    """Give each top-level class shipped by value that ``roots`` reach its name here: the
    first found of those of one name (a frozen slots dataclass ships the class it was made
    from too, which its ``__setattr__`` holds; found through the class, it comes after)."""
    named: set[tuple[str, str]] = set()
    for cls in shipped(*roots):
        name = cls.__qualname__
        if "." in name or "<" in name or (cls.__module__, name) in named:
            continue
        named.add((cls.__module__, name))
        module = _home(cls.__module__)
        held = getattr(module, name, None)
        if held is None and _ours_to_fill(module):
            setattr(module, name, cls)
        elif isinstance(held, type) and held is not cls and _importable_home(module):
            setattr(module, name, cls)  # in a real module, in place of its own copy


def _ours_to_fill(module: ModuleType) -> bool:
    """Whether a shipped class may take a name ``module`` does not hold: the runtime's
    ``__main__``, a module made here, or one imported here for the class."""
    name = module.__name__
    return name == "__main__" or getattr(module, MARK, False) or name in _IMPORTED


def _importable_home(module: ModuleType) -> bool:
    """Whether ``module`` is a real module of the user's, loaded or imported here (not
    ``__main__``, the runtime's, nor one made to hold shipped classes)."""
    return module.__name__ != "__main__" and not getattr(module, MARK, False)


def _home(name: str) -> ModuleType:
    """Where a shipped class of module ``name`` goes: the module itself where it is loaded
    or importable here (a local run's workers import the user's modules from where the
    program did: a module made for the class in its place hid its functions), else one
    made for it."""
    if name == "__main__":
        return sys.modules["__main__"]
    module = sys.modules.get(name)
    if module is not None:  # made here, imported here, or loaded before (by another module)
        return module
    top = name.partition(".")[0]
    findable = _findable(top)
    if findable:
        try:
            module = importlib.import_module(name)
        except Exception:  # any failure of the user's module: the class is held apart
            pass
        else:
            _IMPORTED.add(name)
            return module
    if top != name and top not in sys.modules and not findable:
        sys.modules[top] = _holder(top)
    module = sys.modules[name] = _holder(name)
    return module


# The user's modules imported here to give a shipped class its name in them.
_IMPORTED: set[str] = set()


def _holder(name: str) -> ModuleType:
    """A module named ``name`` made to hold shipped classes."""
    module = ModuleType(name, "Classes shipped by value with a discodsl job.")
    setattr(module, MARK, True)
    return module


def _findable(name: str) -> bool:
    """Whether the top-level module ``name`` could be imported here (not importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _came_by_value(cls: type) -> bool:
    """Whether ``cls`` came by value: a class of ``__main__``, or one its module does not
    hold (a class pickled by reference was looked up in its loaded module)."""
    # The types of modules, functions and cells are no builtins' names, yet none came by
    # value: looking into a module a stage names (json, re) ran the walk out of its limit.
    if cls.__module__ == "builtins":
        return False
    module = sys.modules.get(cls.__module__)
    return cls.__module__ == "__main__" or getattr(module, cls.__qualname__, None) is not cls


def _module_by_value(module: ModuleType) -> bool:
    """Whether ``module`` came by value (cloudpickle makes such a module, which is not the
    one of that name here, if there is one)."""
    return sys.modules.get(module.__name__) is not module


def _ran_by_reference(function: FunctionType) -> bool:
    """Whether ``function`` came by reference: it runs in its loaded module."""
    module = sys.modules.get(function.__module__)
    return function.__module__ != "__main__" and function.__globals__ is getattr(
        module, "__dict__", None
    )


def shipped(*roots: Any, travels: Callable[[str], bool] | None = None) -> Iterator[type]:
    """The classes shipped by value among what ``roots`` refer to, directly or not.

    In a worker, a class came by value if its module does not hold it. In the client,
    ``travels`` says which modules ship by value (``__main__``, the user's own): there,
    the classes a job's records may hold, for the jobs that read them.
    """
    by_value = _came_by_value if travels is None else (lambda cls: travels(cls.__module__))
    by_reference = _ran_by_reference if travels is None else (lambda f: not travels(f.__module__))
    module_by_value = _module_by_value if travels is None else (lambda m: travels(m.__name__))
    seen: set[int] = set()
    todo = list(roots)
    while todo and len(seen) < LIMIT:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, type):
            if by_value(item):
                yield item
                todo.extend(vars(item).values())
            continue
        if isinstance(item, ModuleType):  # named by a stage: ``recs.Rec``
            if module_by_value(item):
                todo.extend(vars(item).values())
            continue
        if by_value(type(item)):
            todo.append(type(item))
            todo.extend(getattr(item, "__dict__", {}).values())  # what it holds, by value too
            todo.extend(_in_slots(item))  # a frozen slots dataclass holds its fields so
        if not (isinstance(item, FunctionType) and by_reference(item)):
            todo.extend(_inside(item))


def _inside(item: Any) -> list[Any]:
    """What ``item`` refers to that may lead to a class shipped by value (a function: one
    that did not come by reference)."""
    if isinstance(item, FunctionType):
        return _of_function(item)
    if isinstance(item, (staticmethod, classmethod, MethodType)):
        return [item.__func__]
    if isinstance(item, functools.partial):
        return [item.func, *item.args, *item.keywords.values()]
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset, collections.deque)):
        return list(item)
    if isinstance(item, collections.ChainMap):
        return list(item.maps)
    if isinstance(item, (collections.UserDict, collections.UserList)):
        return [item.data]
    if isinstance(item, _namespaces()):  # params as attributes
        return list(vars(item).values())
    fields = getattr(item, "__dataclass_fields__", None)
    if fields is not None and type(item).__module__.startswith("discodsl."):
        return [getattr(item, name) for name in fields]  # the job's own specs
    return []


def _in_slots(item: Any) -> list[Any]:
    """What ``item`` holds in the slots its class and those it derives from declare."""
    held = []
    for cls in type(item).__mro__:
        slots = vars(cls).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            try:
                held.append(getattr(item, _mangled(name, cls)))
            except AttributeError:  # an empty slot
                continue
    return held


def _mangled(name: str, cls: type) -> str:
    """The attribute a slot ``name`` of ``cls`` is: a private one (``__x``) is stored as
    ``_C__x``, as Python mangles it (of a class named with underscores alone, as it is)."""
    owner = cls.__name__.lstrip("_")
    if not name.startswith("__") or name.endswith("__") or not owner:
        return name
    return f"_{owner}{name}"


def _namespaces() -> tuple[type, ...]:
    """The classes of namespaces: SimpleNamespace, and argparse's if it is loaded (an
    instance of it cannot be here otherwise; a worker does not import it, 4 ms a start)."""
    argparse = sys.modules.get("argparse")
    return (SimpleNamespace,) if argparse is None else (SimpleNamespace, argparse.Namespace)


def _of_function(function: FunctionType) -> list[Any]:
    """The globals a function shipped by value names, its closure and its defaults."""
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
