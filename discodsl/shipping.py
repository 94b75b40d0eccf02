"""Shipping user code: cloudpickle a job's stages, and check in a fresh interpreter that they load.

Functions from ``__main__``, a notebook, or any module a node cannot import
(anything outside the standard library and installed packages, e.g. the
user's own scripts) are pickled by value, keeping the name of their file
(cloudpickle would write ``<dynamic-code>``) so that a worker's traceback
names it; each code object shipped is recorded in :mod:`discodsl.tracebacks`,
which adds the source lines a node could not read. Before anything runs,
:func:`preflight` loads every stage in a fresh interpreter; when something
fails, here or there, the error names the object (global, closure cell,
default, module) and the fix.
"""

from __future__ import annotations

import collections
import errno
import functools
import hashlib
import inspect
import io
import os
import subprocess
import sys
import sysconfig
import threading
import typing
from collections import ChainMap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, partial
from types import BuiltinFunctionType, CodeType, FunctionType, ModuleType
from typing import Any

import cloudpickle

from discodsl import forking, jobhome, places, tracebacks
from discodsl.errors import JobError, PicklingError
from discodsl.worker.declared import STAND_INS, NodeJob, stand_in
from discodsl.worker.shipped_classes import shipped
from discodsl.worker.spec import (
    ClientOnly,
    JobSpec,
    ShippedAsFunction,
    StageSpec,
    plain_function,
)

__all__ = [
    "INSTALLED",
    "by_value",
    "frozen",
    "installed",
    "needs_value",
    "pickle_job",
    "preflight",
    "unpicklable",
    "user_modules",
]

PREFLIGHT_TIMEOUT = 60.0
# Where the standard library and installed packages are (links resolved).
INSTALLED = tuple(
    os.path.realpath(path)
    for path in {
        sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    if path
)
_checked: set[str] = set()


def pickle_job(spec: JobSpec) -> bytes:
    """cloudpickle ``spec``, user modules by value; PicklingError naming what failed."""
    named = _job_named_by_a_stage(spec)
    if named is not None:
        raise StageRunsAJob(
            f"job {spec.name!r} has a stage that refers to the job {named!r}: a stage "
            "cannot run a job (its workers have no client to run one with); chain jobs "
            "instead, passing one's results as the next one's inputs, or do the work in "
            "the stage itself; a stage that needs only the job's name takes it as text "
            f"({named!r}) or from params"
        )
    with by_value(user_modules(spec.stages)):
        try:
            data = _dumps(spec)
        except _ClientObject as exc:
            holder = _client_holder(spec)
            fix = (
                "keep it out of params: pass plain data (its name), and use it where the job runs"
                if holder.startswith("params")
                else "import it inside the functions that use it where jobs run, or keep "
                "it out of the modules stages use"
            )
            raise PicklingError(
                f"job {spec.name!r} ships {exc.args[0]}, of discodsl's client, which a node does "
                "not have (it has the declarations, readers, count, status and the errors "
                f"stage code raises: DataError, MalformedRecord, Retry, StageError): "
                f"{holder}; {fix}"
            ) from None
        except _Shadowing as exc:
            raise PicklingError(
                f"job {spec.name!r} uses your module {exc.name!r} ({exc.path}), which has the "
                f"name of a standard library module: a worker imports the standard library's "
                f"{exc.name!r}, not yours. Rename your module (e.g. to my_{exc.name}.py) and "
                "the imports of it"
            ) from None
        except Exception as exc:
            raise unpicklable(spec, exc) from exc
    return data


def carried(spec: JobSpec) -> tuple[type, ...]:
    """The classes that travel by value with ``spec`` (of ``__main__``, or of a module that
    ships by value), and those it carries for its inputs: what its records may hold."""
    registered = cloudpickle.list_registry_pickle_by_value()

    @functools.cache  # a module's answer once: it looks at the module's file
    def travels(name: str) -> bool:
        module = sys.modules.get(name)
        if name == "__main__" or name in registered:
            return True
        return module is not None and needs_value(module)

    found = shipped(spec.stages, spec.params, travels=travels)
    classes = list(dict.fromkeys([*spec.carried, *found]))
    names = collections.Counter(_name(cls) for cls in classes)
    return tuple(cls for cls in classes if names[_name(cls)] == 1 or _named_so(cls))


def _name(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def _named_so(cls: type) -> bool:
    """Whether ``cls`` is the class its module holds by its name, or its module holds no
    other: of two classes of one name, the one a record is read as (a frozen slots dataclass
    leaves behind the class it was made from, which the next job's workers then named, and
    could not set a record's slots on). A class alone of its name travels though its module
    holds another by now (an instance made before a notebook's cell defined it again)."""
    if "." in cls.__qualname__ or "<" in cls.__qualname__:
        return True  # nested: pickle finds it through its outer class
    held = getattr(sys.modules.get(cls.__module__), cls.__qualname__, cls)
    return held is cls or not isinstance(held, type)


def frozen(spec: JobSpec) -> JobSpec:
    """A copy of ``spec`` as it would ship now: code and globals pickled by value are
    copied as they are, so later changes to them do not reach it."""
    loaded: JobSpec = cloudpickle.loads(pickle_job(spec))
    return loaded


def _ship_code(code: CodeType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of ``code`` with its real file name, remembered as shipped."""
    tracebacks.remember(code)
    constructor, args = _CLOUDPICKLE_CODE(code)
    named = tuple(code.co_filename if arg == tracebacks.DYNAMIC else arg for arg in args)
    return constructor, named


_CLOUDPICKLE_CODE = cloudpickle.Pickler.dispatch_table[CodeType]


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, whose code objects keep the name of their file, and which
    ships the type names (``NewType``, 3.12's ``type`` aliases) of modules that travel by
    value by value too: they pickle by name, which names nothing on a node (a stage's
    annotation holding one failed the run)."""

    dispatch_table = ChainMap({CodeType: _ship_code}, cloudpickle.Pickler.dispatch_table)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, ShippedAsFunction):
            return plain_function, (obj.function,)
        if isinstance(obj, ClientOnly):  # held, not named by a stage (_job_named_by_a_stage)
            return NodeJob, (getattr(obj, "function", None), obj.name)
        if isinstance(obj, FunctionType) and _declaration(obj):
            return stand_in, (obj.__name__,)
        if isinstance(obj, (type, FunctionType)) and _client_only(obj.__module__):
            raise _ClientObject(f"{obj.__module__}.{obj.__qualname__}")
        if isinstance(obj, (ModuleType, FunctionType, type)):
            _refuse_shadowing(obj.__name__ if isinstance(obj, ModuleType) else obj.__module__)
        if isinstance(obj, _TYPE_NAMES) and _travels(getattr(obj, "__module__", "") or ""):
            name: Any = obj  # a NewType, or a TypeAliasType (3.12), which typeshed may lack
            if isinstance(obj, typing.NewType):
                return typing.NewType, (name.__name__, name.__supertype__)
            kind: Callable[..., Any] = type(obj)
            alias = partial(kind, type_params=name.__type_params__)
            return alias, (name.__name__, name.__value__)
        reduced = super().reducer_override(obj)
        if isinstance(obj, type) and obj in _IN_TASK:
            reduced = _as_before_the_task(_IN_TASK[obj], reduced)
        slots = vars(obj).get("__slots__") if isinstance(obj, type) else None
        if slots:  # not a NamedTuple's (), which its metaclass will not be given
            reduced = _keeping_slots(slots, reduced)
        if isinstance(obj, type) and obj.__qualname__ != obj.__name__:
            return _keeping_qualname(obj.__qualname__, reduced)
        return reduced


@contextmanager
def task_classes() -> Iterator[None]:
    """Around one inline task, which loads its copy of the job (:func:`loads_afresh`) and
    runs it: the classes of this process that ship by value, as they were before, after it.

    The task's copy is unpickled here, where such a class is this process's own again, and
    cloudpickle sets the state it was pickled with on it: methods copied with copies of
    their globals, class attributes copied, as a worker has them; and the task may add
    attributes of its own (a cache). They stayed: the script's class changed under it (its
    methods reading stale globals, a class attribute a stage filled), and a cached job's
    key with it. One such task goes at a time in this process (inline runs in threads take
    turns, task by task): two at once shared the class, one's load dropping what the
    other's stage had just set. A job pickled meanwhile ships the classes as they were
    before the task. A change the program makes to such a class from another thread while
    a task runs is undone with the task's.
    """
    global _TASK_THREAD
    with forking.TASK_CLASSES:
        with forking.PICKLING:  # the classes a run pickled are tracked: ours to put back
            tracked = getattr(cloudpickle.cloudpickle, "_DYNAMIC_CLASS_TRACKER_BY_CLASS", {})
            before = {cls: dict(vars(cls)) for cls in list(tracked.keys())}
            outer = dict(_IN_TASK)  # a task's, when a signal handler runs a job within it
            _IN_TASK.update({**before, **outer})  # what a job pickled meanwhile ships of them
            outer_thread, _TASK_THREAD = _TASK_THREAD, threading.current_thread()
        try:
            yield
        finally:
            with forking.PICKLING:
                for cls, attributes in before.items():
                    _put_back(cls, attributes)
                _IN_TASK.clear()
                _IN_TASK.update(outer)
                _TASK_THREAD = outer_thread


def loads_afresh(pickled: bytes) -> Any:
    """``cloudpickle.loads(pickled)``: an inline task's copy of the job (in task_classes)."""
    return cloudpickle.loads(pickled)


def _put_back(cls: type, attributes: dict[str, Any]) -> None:
    """``cls`` as it was, holding ``attributes``: what a task added deleted, what its load
    or its stage replaced set back."""
    for name in [name for name in vars(cls) if name not in attributes]:
        delattr(cls, name)
    for name, value in attributes.items():
        if vars(cls).get(name, value) is not value:
            setattr(cls, name, value)


# One inline task at a time loads and runs with the classes that ship by value, under
# forking.TASK_CLASSES (reentrant: a program's signal handler may run a job inline within a
# task); the attributes those classes had before the task that goes now, which a job
# pickled meanwhile ships (another thread's run is not held up for the task, and does not
# get the task's copies), and a child forked meanwhile gets back.
_IN_TASK: dict[type, dict[str, Any]] = {}
_TASK_THREAD: threading.Thread | None = None  # the thread whose inline task goes now


def _mend_in_child() -> None:
    """In a child forked while an inline task ran in a thread it does not have: the
    classes as they were before the task. A child the task's own thread forked (a stage's
    process) keeps them as the task has them, as a worker's child does."""
    if _TASK_THREAD is threading.current_thread():
        return
    for cls, attributes in _IN_TASK.items():
        _put_back(cls, attributes)
    _IN_TASK.clear()


forking.in_child(_mend_in_child)


def _declaration(function: FunctionType) -> bool:
    """Whether ``function`` is one of the client's declarations (``discodsl.map``...), which
    a stage holds where ``from discodsl import map`` replaced Python's ``map``: it ships as
    the node's (discodsl.worker.declared), where the client is not."""
    module = sys.modules.get("discodsl.decorators")
    return function.__name__ in STAND_INS and getattr(module, function.__name__, 0) is function


def _keeping_qualname(qualname: str, reduced: Any) -> Any:
    """cloudpickle's reduction of a class by value, which names the class it makes by its
    bare name, made to give it its qualified name too (``Outer.Inner``, ``f.<locals>.C``): a
    worker's pickle of a record names the class so, and must find it, or fail, as here."""
    if not (isinstance(reduced, tuple) and len(reduced) == 6 and reduced[5] is _SET_CLASS):
        return reduced
    state, slots = reduced[2]
    return (*reduced[:2], ({**state, "__qualname__": qualname}, slots), *reduced[3:])


def _as_before_the_task(before: dict[str, Any], reduced: Any) -> Any:
    """cloudpickle's reduction of a class by value, with the attributes it had before the
    inline task that now holds its copies (what cloudpickle leaves out, it still does)."""
    if not (isinstance(reduced, tuple) and len(reduced) == 6 and reduced[5] is _SET_CLASS):
        return reduced
    state, slots = reduced[2]
    kept = {name: before[name] for name in state if name in before}
    return (*reduced[:2], (kept, slots), *reduced[3:])


def _keeping_slots(slots: Any, reduced: Any) -> Any:
    """cloudpickle's reduction of a class by value, made to create the class with its
    ``__slots__`` (cloudpickle 3.1 made it without, then set the name: a worker's instance
    had a ``__dict__``, pickled its state as one, and the client's class, which has no
    ``__dict__``, could not take it back)."""
    if not (isinstance(reduced, tuple) and len(reduced) == 6 and reduced[0] is _MAKE_CLASS):
        return reduced
    constructor, name, bases, type_kwargs, tracker, extra = reduced[1]
    made = (constructor, name, bases, {**type_kwargs, "__slots__": slots}, tracker, extra)
    return (reduced[0], made, *reduced[2:])


_SET_CLASS = getattr(cloudpickle.cloudpickle, "_class_setstate", None)
_MAKE_CLASS = getattr(cloudpickle.cloudpickle, "_make_skeleton_class", None)


# The kinds of type names that pickle by their module's name, whatever the module.
_TYPE_NAMES: tuple[type, ...] = (
    typing.NewType,
    *([typing.TypeAliasType] if hasattr(typing, "TypeAliasType") else []),  # 3.12
)


def _job_named_by_a_stage(spec: JobSpec) -> str | None:
    """The name of a job a stage names itself (a global, a closure's value, a default: to
    run it), if one does; a job held otherwise (a module of the user's shipped by value
    that declares one) goes as a node has it, a NodeJob."""
    for _, _, function in _functions(spec.stages):
        for _, value in _parts(function):
            if isinstance(value, ClientOnly):
                return value.name
    return None


def _client_holder(spec: JobSpec) -> str:
    """Which part of the params or stage holds the client's object that stopped ``spec``'s
    pickling, and through what (a closure variable, a global, a default, and which
    attribute of it)."""
    held = _client_in("params", spec.params)
    if held:
        return f"{held} holds it"
    for stage, role, function in _functions(spec.stages):
        owner = f"stage {stage.name!r}" + ("" if role == "function" else f" ({role} hook)")
        for what, value in _parts(function):
            if what != "the function itself" and _ships_client(value):
                held = f"{owner} holds it through its {what} ({type(value).__name__})"
                return held + _through_attribute(what, value, function)
    return "a stage, or a module shipped with it by value, holds it"


def _client_in(what: str, value: Any) -> str:
    """The innermost part of ``value`` (named from ``what``: ``params['c']``, ``.err``) that
    ships the client's object, with its type; "" if none does."""
    if not _ships_client(value):
        return ""
    attributes = getattr(value, "__dict__", None)
    parts = list(_items(what, value))
    if isinstance(attributes, dict) and not isinstance(value, (type, ModuleType)):
        parts += [(f"{what}.{name}", item) for name, item in attributes.items()]
    inner = next((found for found in (_client_in(*part) for part in parts) if found), "")
    return inner or f"{what} ({type(value).__name__})"


def _through_attribute(what: str, value: Any, function: Callable[..., Any]) -> str:
    """Where in ``value`` (an object a stage's ``function`` holds) the client's object is,
    an attribute or its class's code, and the fix of a closure over an object whole; ""
    for a class or a module."""
    name = what.split("'")[1] if "'" in what else "it"
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict) or isinstance(value, (type, ModuleType)):
        return ""
    culprit = next((k for k, v in attributes.items() if _ships_client(v)), None)
    where = (
        f"at {name}.{culprit}"
        if culprit is not None
        else f"whose class {type(value).__qualname__} ships by value, code and all"
    )
    code = getattr(inspect.unwrap(function), "__code__", None)
    used = [n for n in getattr(code, "co_names", ()) if n in attributes and n != culprit]
    example = f" ({name}.{used[0]}, say)" if used else ""
    return (
        f", {where}: copy what the stage uses{example} into a local variable before "
        f"defining the stage, so that it does not close over {name!r} whole"
    )


def _ships_client(value: Any) -> bool:
    """Whether pickling ``value`` as a job's part meets an object of discodsl's client."""
    try:
        _dumps(value)
    except _ClientObject:
        return True
    except Exception:
        return False
    return False


class _ClientObject(Exception):
    """A class or function of discodsl's client (``discodsl.errors.TaskFailed``), which no
    node has, met while pickling the job."""


def _client_only(module: str | None) -> bool:
    """Whether ``module`` is one of discodsl's that a node has not (its client's); None is
    no module's (code made by ``exec(code, {})``), which ships by value."""
    if module is None or not module.startswith("discodsl.") or module == "discodsl.readers":
        return False
    return not module.startswith("discodsl.worker.") and module != "discodsl.worker"


class StageRunsAJob(PicklingError):
    """A stage refers to a job, to run it: no runner can run that (not even inline, on the
    stages as they are), so no runner falls back on anything."""


class _Shadowing(Exception):
    """A module of the user's, pickled by name, that has a standard library module's name."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name, path)
        self.name, self.path = name, path


def _refuse_shadowing(module_name: object) -> None:
    """_Shadowing if ``module_name`` is a module of the user's named like one of the standard
    library's: it pickles by name, and a worker imports the standard library's."""
    if not isinstance(module_name, str):
        return
    top = module_name.partition(".")[0]
    if top not in sys.stdlib_module_names:
        return
    path = getattr(sys.modules.get(top), "__file__", None)
    if (
        path
        and not _installed_file(path)
        and top not in cloudpickle.list_registry_pickle_by_value()
    ):
        raise _Shadowing(top, path)


@cache
def _installed_file(path: str) -> bool:
    """:func:`installed`, once a file: the standard library's modules are met often."""
    return installed(path)


def _travels(module_name: str) -> bool:
    """Whether objects of the module ``module_name`` travel by value."""
    module = sys.modules.get(module_name)
    if module_name == "__main__" or module is None:
        return True
    return needs_value(module) or module_name in cloudpickle.list_registry_pickle_by_value()


def _dumps(value: Any) -> bytes:
    with io.BytesIO() as file:
        _Pickler(file, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(value)
        return file.getvalue()


def _functions(stages: Sequence[StageSpec]) -> Iterator[tuple[StageSpec, str, Callable[..., Any]]]:
    for stage in stages:
        for role in ("function", "init", "done", "combiner", "partitioner", "reader"):
            value = getattr(stage, role)
            if value is not None:
                yield stage, role, value


def user_modules(stages: Sequence[StageSpec]) -> set[str]:
    """The modules of ``stages``' functions that must travel by value (see needs_value)."""
    names = set()
    for _, _, function in _functions(stages):
        target = function.func if isinstance(function, partial) else function
        module = sys.modules.get(getattr(target, "__module__", "") or "")
        if module is not None and needs_value(module):
            names.add(module.__name__)
    return names


def needs_value(module: ModuleType) -> bool:
    """Whether a node could not import ``module`` (so it must travel by value)."""
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in ("discodsl", "cloudpickle"):
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return name not in sys.builtin_module_names
    return not installed(path)


def installed(path: str) -> bool:
    """Whether the file at ``path`` is the standard library's or an installed package's."""
    return os.path.realpath(path).startswith(INSTALLED)


# cloudpickle's by-value registry is one for the process: runs submitted from several
# threads take turns, so that one never unregisters a module another is pickling. A fork
# waits for its turn too (see discodsl.forking): a child forked while another thread held
# it would wait for it for good (and the registry would be half changed).
_REGISTRY = forking.PICKLING


@contextmanager
def by_value(names: set[str]) -> Iterator[None]:
    """While in the block (one thread at a time), cloudpickle pickles the modules ``names``
    by value."""
    with _REGISTRY:
        registered = []
        already = set(cloudpickle.list_registry_pickle_by_value())  # the program's: left so
        for name in sorted(names - already):
            try:
                cloudpickle.register_pickle_by_value(sys.modules[name])
                registered.append(name)
            except ValueError:
                pass  # already by value, or not a registrable module
        try:
            yield
        finally:
            for name in registered:
                cloudpickle.unregister_pickle_by_value(sys.modules[name])


def unpicklable(spec: JobSpec, exc: Exception) -> PicklingError:
    """What in ``spec`` failed to pickle, and the fix: a part of its params, or of a stage."""
    param = _unpicklable("params", spec.params)
    if param is not None:
        return _bad_params(spec, *param)
    for stage, role, function in _functions(spec.stages):
        wrapped = hasattr(function, "__wrapped__") and pickles(inspect.unwrap(function))
        for what, value in _parts(function):
            try:
                cloudpickle.dumps(value)
            except Exception as inner:
                itself = what == "the callable object" and value is function
                return _culprit(stage, role, what, value, inner, wrapped or itself)
    return PicklingError(f"job {spec.name!r} cannot be pickled: {exc}")


def pickles(value: Any) -> bool:
    """Whether cloudpickle takes ``value`` (a class of a script's: by value)."""
    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


def _unpicklable(what: str, value: Any) -> tuple[str, Any, Exception] | None:
    """The innermost part of ``value`` (named from ``what``, e.g. ``params['db']['lock']``)
    that cannot be pickled, and why; None if ``value`` pickles."""
    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        for part, item in _items(what, value):
            found = _unpicklable(part, item)
            if found is not None:
                return found
        return what, value, exc
    return None


def _items(what: str, value: Any) -> Iterator[tuple[str, Any]]:
    """A dict's values, or a list's or tuple's items, each named as an index of ``what``."""
    if isinstance(value, dict):
        yield from ((f"{what}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        yield from ((f"{what}[{index}]", item) for index, item in enumerate(value))


def _bad_params(spec: JobSpec, what: str, value: Any, exc: Exception) -> PicklingError:
    fix = _cached_property_fix(
        value,
        exc,
        "pass plain data in params, or cache the value in the instance's __dict__ in a "
        "plain @property",
    ) or (
        "params must be plain data that pickles (numbers, strings, lists, dicts, ...): "
        "create locks, connections and the like inside the stage, or in an init hook "
        "(init(params) runs once per task)"
    )
    return PicklingError(
        f"job {spec.name!r} cannot be shipped to the workers: {what} ({type(value).__name__}) "
        f"cannot be pickled ({exc}). {fix}"
    )


def _culprit(
    stage: StageSpec, role: str, what: str, value: Any, exc: Exception, wrapped: bool
) -> PicklingError:
    owner = f"stage {stage.name!r}" + ("" if role == "function" else f" ({role} hook)")
    fix = (
        "Create it inside the function or in an init hook instead of capturing it, or "
        "pass plain data through params="
    )
    if wrapped:  # a decorator's wrapper (functools.lru_cache, singledispatch), or an object
        fix = (
            "Decorate a plain `def`: what wraps the function here cannot be pickled; put "
            "that decorator on a helper the stage calls instead"
        )
    fix = (
        _cached_property_fix(
            value,
            exc,
            "cache the value in the instance's __dict__ in a plain @property, or define the "
            "class in a module installed on the nodes",
        )
        or fix
    )
    if isinstance(value, ModuleType) and RecursionError in map(type, (exc, exc.__cause__)):
        fix = (  # cloudpickle pickles a module by value whole, each time it meets it
            "A module shipped by value that imports another shipped by value, which imports "
            "it back, cannot be pickled (cloudpickle follows the cycle for ever): register "
            "one of them only (cloudpickle.register_pickle_by_value), install them on the "
            "nodes, or break the cycle of imports"
        )
    return PicklingError(
        f"{owner} cannot be shipped to the workers: {what} ({type(value).__name__}) "
        f"cannot be pickled ({exc}). {fix}"
    )


def _cached_property_fix(value: Any, exc: Exception, instead: str) -> str:
    """What to do about ``value``, of a class of the user's that holds a
    functools.cached_property, whose lock does not pickle (Python before 3.12), when that
    lock is what ``exc`` says failed: ``instead``; "" otherwise."""
    name = _cached_property_of(value)
    cls = value if isinstance(value, type) else type(value)
    ours = (cls.__module__ or "").partition(".")[0] == "discodsl"
    if not name or ours or "lock" not in str(exc).lower():
        return ""
    return (
        f"Its class holds a functools.cached_property ({name}), whose lock cannot be "
        f"pickled on this Python: {instead}"
    )


def _cached_property_of(value: Any) -> str:
    """The name of a functools.cached_property of ``value``'s class (or of ``value``, a
    class), where one holds a lock (Python before 3.12); "" if none does."""
    cls = value if isinstance(value, type) else type(value)
    for klass in cls.__mro__:
        for name, attribute in vars(klass).items():
            if isinstance(attribute, functools.cached_property) and hasattr(attribute, "lock"):
                return name
    return ""


def _parts(function: Callable[..., Any]) -> Iterator[tuple[str, Any]]:
    """Each object a function drags along: closure cells, globals it names, defaults."""
    if isinstance(function, partial):
        yield from (("a partial() argument", arg) for arg in function.args)
        yield from ((f"partial() keyword {k!r}", v) for k, v in function.keywords.items())
        function = function.func
    if not isinstance(function, FunctionType):
        yield "the callable object", function
        return
    closure = inspect.getclosurevars(function)
    yield from ((f"closure variable {k!r}", v) for k, v in closure.nonlocals.items())
    yield from ((f"global {k!r}", v) for k, v in closure.globals.items())
    yield from ((f"default of {k!r}", v) for k, v in _defaults(function).items())
    yield "the function itself", function


def _defaults(function: FunctionType) -> dict[str, Any]:
    signature = inspect.signature(function)
    return {k: p.default for k, p in signature.parameters.items() if p.default is not p.empty}


def preflight(spec: JobSpec, pickled: bytes) -> None:
    """Load ``pickled`` in a fresh interpreter, as a node would; PicklingError if it fails.

    Only the standard library, installed packages, the job home's own modules and
    what the job's ``env={"PYTHONPATH": ...}`` names are importable there (not the
    current directory or the script's).
    A job that passed once in this process is not checked again.
    """
    path = spec.env.get("PYTHONPATH", "")  # the job's own, as a node gives it its workers
    digest = hashlib.sha256(pickled + path.encode(errors="surrogateescape")).hexdigest()
    if digest in _checked:
        return
    failure = _load_in_child(pickled, path)
    if failure:
        raise _load_error(spec, failure)
    _checked.add(digest)


_CHILD = """
import sys, cloudpickle
data = sys.stdin.buffer.read()
try:
    cloudpickle.loads(data)
except BaseException as exc:
    sys.stdout.write(f"{type(exc).__name__}: {exc}")
"""


def _load_in_child(pickled: bytes, path: str = "") -> str:
    """What failed loading ``pickled`` in a fresh interpreter, with the job's ``path`` as
    its PYTHONPATH (relative entries from the job home, as on a node); "" if nothing."""
    home = _runtime_home()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path:
        env["PYTHONPATH"] = path
    try:
        done = subprocess.run(
            [sys.executable, "-s", "-c", _CHILD],
            input=pickled,
            capture_output=True,
            timeout=PREFLIGHT_TIMEOUT,
            env=env,
            cwd=home,
        )
    except subprocess.TimeoutExpired:
        return f"loading the job took over {PREFLIGHT_TIMEOUT:.0f} s"
    except OSError as exc:  # no interpreter could start: not the job's doing
        raise JobError(
            f"could not start the interpreter that checks the job loads ({exc}): "
            + _PREFLIGHT_FIXES.get(exc.errno or 0, _NO_INTERPRETER)
        ) from exc
    return done.stdout.decode(errors="replace").strip() or _crash(done)


_AT_A_LIMIT = (
    "this process is at a limit of open files or processes (ulimit -n, ulimit -u): close "
    "the files it keeps open, or raise the limit"
)
_NO_INTERPRETER = (
    "this program's Python (sys.executable) cannot be run any more (a virtualenv removed or "
    "rebuilt since it started?): start the program again from a Python that runs"
)
_PREFLIGHT_FIXES = {
    errno.EMFILE: _AT_A_LIMIT,
    errno.ENFILE: _AT_A_LIMIT,
    errno.EAGAIN: _AT_A_LIMIT,
    errno.ENOMEM: "this machine has no memory left to start it: free some, or raise ulimit -v",
}


def _crash(done: subprocess.CompletedProcess[bytes]) -> str:
    if done.returncode == 0:
        return ""
    return f"the interpreter exited with {done.returncode}: {done.stderr.decode()[-500:]}"


@cache
def _runtime_home() -> str:
    """A directory laid out like a job home (runtime and cloudpickle only), made once."""
    home = places.process_dir("preflight")  # removed as the process ends
    for name, data in jobhome.runtime_files(sys.version_info[:2]).items():
        path = os.path.join(home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return home


def _load_error(spec: JobSpec, failure: str) -> PicklingError:
    suspects = list(_suspects(spec, failure))
    for stage, role, what, value in suspects:  # pickled by reference: what failed, surely
        if pickles_by_name(value):
            return _reference_error(stage, role, what, value, failure)
    if suspects:
        stage, role, what, value = suspects[0]
        return PicklingError(
            f"stage {stage.name!r} ({role}) refers to {what} {_not_on_nodes(value, failure)}"
        )
    param = _param_from("params", spec.params, failure)
    if param is not None:
        what, value = param
        return PicklingError(
            f"job {spec.name!r} cannot be shipped to the workers: {what} is a "
            f"{type(value).__name__} {_not_on_nodes(value, failure)}, or pass plain data in "
            "params="
        )
    return PicklingError(
        f"job {spec.name!r} does not load in a fresh interpreter ({failure}): make sure every "
        "module its stages use is installed, ship your own with the job "
        "(cloudpickle.register_pickle_by_value(module)), or define the code in the script or "
        "notebook"
    )


_Suspect = tuple[StageSpec, str, str, Any]  # (stage, role, what the part is, the part)


def _suspects(spec: JobSpec, failure: str) -> Iterator[_Suspect]:
    """Each part of a stage from a module ``failure`` names; for a module that ships by
    value, the objects in it pickled by reference first."""
    shipped = user_modules(spec.stages) | set(cloudpickle.list_registry_pickle_by_value())
    for stage, role, function in _functions(spec.stages):
        for what, value in _parts(function):
            module = _module_of(value)
            if not module or f"'{module.split('.')[0]}'" not in failure:
                continue
            if isinstance(value, ModuleType) and module in shipped:
                for name, item in vars(value).items():
                    if pickles_by_name(item) and _module_of(item) == module:
                        yield stage, role, f"{name!r} of {what}", item
            yield stage, role, what, value


def _not_on_nodes(value: Any, failure: str) -> str:
    """``from module M, which does not load on a node (failure): install ...``: how to have
    the module of ``value`` there."""
    module = _module_of(value)
    top = module.split(".")[0]
    return (
        f"from module {module!r}, which does not load on a node ({failure}): install {top!r} "
        f"on the nodes, or ship it with the job: `import cloudpickle, {top}` and "
        f"`cloudpickle.register_pickle_by_value({top})` before running it"
    )


def _param_from(what: str, value: Any, failure: str) -> tuple[str, Any] | None:
    """The first part of params (``what``, ``params['fn']``...) from a module ``failure``
    names, if one is."""
    module = _module_of(value)
    if module and f"'{module.split('.')[0]}'" in failure:
        return what, value
    for part, item in _items(what, value):
        found = _param_from(part, item, failure)
        if found is not None:
            return found
    return None


def pickles_by_name(value: Any) -> bool:
    """Whether pickle writes ``value`` as its module's name and its own, as a
    ``functools.lru_cache`` wrapper asks: shipping the module by value does not ship it.
    Functions, classes and modules are left out: cloudpickle ships those by value."""
    if not callable(value) or isinstance(
        value, (FunctionType, type, ModuleType, BuiltinFunctionType)
    ):
        return False
    try:
        return isinstance(value.__reduce_ex__(cloudpickle.DEFAULT_PROTOCOL), str)
    except Exception:
        return False


def _reference_error(
    stage: StageSpec, role: str, what: str, value: Any, failure: str
) -> PicklingError:
    """What to do about ``value``, pickled by reference to a module a node cannot load."""
    module = _module_of(value)
    top = module.split(".")[0]
    fix = "build it inside the stage or in an init hook (init(params) runs once per task)"
    if hasattr(value, "__wrapped__"):  # functools.cache, lru_cache
        fix = (
            "make it a plain function (drop the decorator), or build the cache inside the "
            "stage or in an init hook (init(params) runs once per task)"
        )
    install = "" if top == "__main__" else f", or install {top!r} on the nodes"
    return PicklingError(
        f"stage {stage.name!r} ({role}) refers to {what} from module {module!r}, which does "
        f"not load on a node ({failure}): a {type(value).__name__} pickles as a reference to "
        f"its name in {module!r}, so shipping that module with the job "
        f"(cloudpickle.register_pickle_by_value) does not ship it: {fix}{install}"
    )


def shared_by_name(spec: JobSpec) -> PicklingError | None:
    """The error for a part of a stage (a global it names) that pickles as its name in a
    module that ships by value (an ``lru_cache`` helper of the script): loaded in this
    process, a copy of the job gets that very object, which a node does not have; None if
    there is none."""
    shipped = {"__main__", *user_modules(spec.stages), *cloudpickle.list_registry_pickle_by_value()}
    for stage, role, function in _functions(spec.stages):
        for what, value in _parts(function):
            if not hasattr(value, "__wrapped__") or isinstance(
                value, (ShippedAsFunction, ClientOnly)
            ):
                continue  # no caching wrapper (a NewType ships), or a stage or a job
            if _module_of(value) in shipped and pickles_by_name(value):
                return _reference_error(stage, role, what, value, "pickled by its name")
    return None


def _module_of(value: Any) -> str:
    if isinstance(value, ModuleType):
        return value.__name__
    return str(getattr(value, "__module__", "") or "")
