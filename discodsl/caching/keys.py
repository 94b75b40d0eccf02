"""What makes two runs the same: the cache key of each stage of a run.

Stage ``i``'s key is a SHA-256 over, in order:

1. this key format, the worker runtime (:func:`discodsl.jobhome.runtime_key`:
   discodsl's worker files, cloudpickle and this Python) and where the run
   runs (``inline``, ``local``, or the master's URL): results of one runner
   are never served for another, whose partitioning or files differ;
2. the job's name and the options that can change what a stage writes
   (every option but those in :data:`INERT`, with ``params`` pickled);
3. the inputs, each URL by value and a local file also by its size and
   modification time, or by a SHA-256 of its bytes with
   ``cache_by="content"``. The results of an earlier run are files of that
   run, so they stand for it: a fresh run upstream gives another key here;
4. the code of stages 0 to ``i``, and what of stage ``i + 1`` shapes stage
   ``i``'s outputs (its grouping and partitioner, which label them, and the
   reduce function that combines them with ``combine=True``, or its
   ``combiner``): each stage (function, hooks, combiner,
   partitioner, reader, grouping, flags) pickled as it is shipped (user
   modules by value, so what the functions' globals, closures and defaults
   hold is in it), except that a code object's file is named without its
   directory (a notebook cell's file is in a directory named after its
   kernel's pid, so a restarted kernel would never hit); and for each
   module the pickle names instead of holding (installed packages, the
   standard library, modules of the user's own imported by name), its
   file's size and modification time, and so for every module of the
   user's own that such a module imports (``import``, ``from`` and
   relative imports in its source, or in a stage's body), and that one
   imports, and so on. An inline run, which runs those modules as this
   process loaded them, also has a digest of the code and the values each
   of the user's holds now: a file edited but not reloaded since does not
   key what the old code made, and a global changed in place is a change.

So an edited stage, a changed closure or global value, other params or
partitions, a touched input: each gives a new key from that stage on, and
the stages before keep theirs (which is what resuming reuses). What is not
in it: the options in :data:`INERT` (how a run is watched, scheduled or
retried, not what it computes); the contents behind a URL that is not a
local file (``http://``, ``raw://``, ``disco://`` are taken by value: a
server that changes what a URL serves must be given a new URL); anything a
stage reads on its own (a file it opens, a database, the time). A set
pickles differently in another process, so a stage holding one hits only in
the process that kept it; that misses, never serves wrong results. A class
cloudpickle ships by value is keyed by its name, not by the id it draws for
it in each process. The local runner keys the byte ranges it cuts big files
into (:meth:`~discodsl.runners.base.Runner._tasks`).
"""

from __future__ import annotations

import ast
import dataclasses
import dis
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import marshal
import os
import pickle
import sys
from collections import ChainMap
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from types import CodeType, FunctionType, ModuleType
from typing import Any

import cloudpickle

from discodsl import jobhome, shipping
from discodsl.options import JobOptions
from discodsl.worker import urls
from discodsl.worker.spec import ShippedAsFunction, StageSpec, nested_code, plain_function

__all__ = ["INERT", "stage_keys"]

FORMAT = "discodsl cache key 1"
#: Options left out of the key: they change how a run is watched, scheduled, retried or
#: checked, or how inputs travel, never what a stage writes.
INERT = frozenset(
    {
        "cache",
        "cache_by",
        "check_types",
        "kill_on_interrupt",
        "max_cores",
        "max_failures",
        "owner",
        "progress",
        "push_inputs",
        "timeout",
        "workers",
    }
)
_CHUNK = 1 << 20


def stage_keys(
    name: str,
    options: JobOptions,
    stages: Sequence[StageSpec],
    inputs: Sequence[Sequence[str]],
    where: str,
) -> list[str]:
    """The key of each of ``stages`` (see the module docstring)."""
    digest = hashlib.sha256()
    runtime = jobhome.runtime_key(sys.version_info[:2])
    for part in (FORMAT, runtime, where, name, _options(options), _inputs(inputs, options)):
        _feed(digest, part)
    keys = []
    modules = shipping.user_modules(stages)
    loaded = where == "inline"  # the stages run the modules this process has, not files
    for index, stage in enumerate(stages):
        _feed(digest, _pickled(replace(stage, yields=None), modules, loaded))
        following = stages[index + 1] if index + 1 < len(stages) else None
        key = digest.copy()
        _feed(key, _pickled(_shaping(following), modules, loaded))
        keys.append(key.hexdigest()[:40])
    return keys


def _shaping(following: StageSpec | None) -> tuple[Any, ...]:
    """What of the next stage shapes a stage's outputs: whether there is one, its grouping
    and partitioner (the labels), and the reduce that combines them (``combine=True``, or
    its ``combiner``). Not the rest of it: a fixed later map keeps this stage's key."""
    if following is None:
        return ()
    combines = following.kind == "reduce" and following.combiner is None and following.combine
    return (
        following.kind,
        following.grouping,
        following.partitioner,
        following.combiner if following.kind == "reduce" else None,
        following.function if combines else None,
    )


def _feed(digest: Any, part: str | bytes) -> None:
    data = part.encode() if isinstance(part, str) else part
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def _options(options: JobOptions) -> bytes:
    keyed = {
        spec.name: getattr(options, spec.name)
        for spec in fields(JobOptions)
        if spec.name not in INERT and spec.name != "params"
    }
    plain = json.dumps(keyed, sort_keys=True, default=repr).encode()
    return plain + _pickled(_sets_ordered(options.params, _NESTING_MOST), set())


def _sets_ordered(value: Any, depth: int, made: dict[int, Any] | None = None) -> Any:
    """``value`` with each set in it (in dicts, their keys too, lists, tuples, NamedTuples
    and dataclasses, this deep) as a tuple of its items in the order of their digests: a
    set of strings pickles in the order of their hashes, which differ between processes
    (params of stop words). What holds one is written as its class's name and its parts.
    Each container is looked into once (``made``, by id): a part met again is what it
    was made the first time, and one that holds itself is itself there (pickle's memo)."""
    made = {} if made is None else made
    if id(value) in made:
        return made[id(value)]
    if depth <= 0 or not _holds_parts(value):
        return value
    made[id(value)] = value  # meanwhile: a part that holds its holder
    made[id(value)] = _parts_ordered(
        value, functools.partial(_sets_ordered, depth=depth - 1, made=made), depth
    )
    return made[id(value)]


def _holds_parts(value: Any) -> bool:
    """Whether ``value`` is a container :func:`_sets_ordered` looks into."""
    if isinstance(value, (set, frozenset, dict, list, tuple)):
        return True
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _parts_ordered(value: Any, deeper: Callable[[Any], Any], depth: int) -> Any:
    """``value``, a container, made of its parts ``deeper`` makes (see _sets_ordered)."""
    kind = type(value)
    if isinstance(value, (set, frozenset)):
        try:
            digests = [_items_digest(item, depth) for item in value]
        except Exception:  # items pickle would not take (a lambda): the set as it is
            return value
        ordered = sorted(zip(digests, map(deeper, value), strict=True), key=_first)
        return (_SET_MARK, kind.__name__, tuple(item for _, item in ordered))
    if isinstance(value, dict):
        pairs = [(deeper(key), deeper(item)) for key, item in value.items()]
        return dict(pairs) if kind is dict else (_SET_MARK, _class_name(kind), tuple(pairs))
    if isinstance(value, (list, tuple)):
        items = list(map(deeper, value))
        return kind(items) if kind in (list, tuple) else (_SET_MARK, _class_name(kind), *items)
    fields = [(f.name, deeper(getattr(value, f.name))) for f in dataclasses.fields(value)]
    return (_SET_MARK, _class_name(kind), tuple(fields))


def _class_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


_SET_MARK = "discodsl: a set, its items in the order of their digests"


def _inputs(inputs: Sequence[Sequence[str]], options: JobOptions) -> str:
    content = options.cache_by == "content"
    return json.dumps([[_identity(url, content) for url in replicas] for replicas in inputs])


def _identity(url: str, content: bool) -> list[Any]:
    """A URL, with its local file's size and time (or content digest) if it names one."""
    scheme, rest = urls.split(url)
    if scheme != "file":
        return [url]
    try:
        path = urls.file_target(rest)[0]
        if content:
            return [url, _file_digest(path)]
        found = os.stat(path)
    except (OSError, ValueError):
        return [url, None]  # the run will say what is wrong with it
    return [url, found.st_size, found.st_mtime_ns]


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- code


def _pickled(value: Any, modules: set[str], loaded: bool = False) -> bytes:
    """``value`` pickled as it is shipped (``modules`` by value), file names without their
    directory, followed by the size and time of each module it names by reference (and,
    when ``loaded``, the code that module has in this process: see _loaded_code)."""
    with io.BytesIO() as file, shipping.by_value(modules):
        pickler = _Hasher(file)
        pickler.dump(value)
        return file.getvalue() + _module_stamps(pickler.references, loaded, pickler.names)


_CLOUDPICKLE_CODE = cloudpickle.Pickler.dispatch_table[CodeType]


def _code(code: CodeType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of ``code``, its file named without the directory and its
    lines without their numbers (see _without_lines)."""
    renamed = _without_lines(code).replace(co_filename=os.path.basename(code.co_filename))
    reduced: tuple[Any, tuple[Any, ...]] = _CLOUDPICKLE_CODE(renamed)
    return reduced


def _without_lines(code: CodeType) -> CodeType:
    """``code`` as a key takes it: where its lines are in the file left out (a line added
    above a stage, a longer helper before it, changes nothing it does), nested code too.
    Never run: a traceback's lines are the shipped code's."""
    consts = tuple(_without_lines(c) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=1, co_linetable=b"", co_consts=consts)


class _Hasher(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, noting the modules of what it pickles by reference."""

    dispatch_table = ChainMap({CodeType: _code}, cloudpickle.Pickler.dispatch_table)

    def __init__(self, file: io.BytesIO):
        super().__init__(file, protocol=cloudpickle.DEFAULT_PROTOCOL)
        self.references: set[str] = set()
        self.names: set[str] = set()  # the global and attribute names its functions use

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, ShippedAsFunction):  # as it ships: its function
            return plain_function, (obj.function,)
        if isinstance(obj, ModuleType):
            self.references.add(obj.__name__)
        elif isinstance(obj, FunctionType):  # what its body imports, run only where it runs
            package = obj.__globals__.get("__package__") or ""
            self.references.update(_code_imports(obj.__code__, package))
            self.names.update(_names_in([obj.__code__]))
        reduced = super().reducer_override(obj)
        if reduced is NotImplemented:
            if isinstance(obj, (type, FunctionType)) or shipping.pickles_by_name(obj):
                self.references.add(getattr(obj, "__module__", None) or "")
        elif isinstance(obj, type):
            reduced = _stably_tracked(obj, reduced)
        return reduced


def _stably_tracked(cls: type, reduced: Any) -> Any:
    """cloudpickle's reduction of a class it ships by value (one of the script's, a
    NamedTuple or a dataclass), with the tracker id it draws at random in each process
    replaced by the class's name (else such a stage's key differs from process to
    process), and without the ``__slotnames__`` that pickling an instance caches on the
    class (an inline run's records: its second run missed the cache)."""
    try:
        maker, arguments, *rest = reduced
        tracker = cloudpickle.cloudpickle._get_or_create_tracker_id(cls)
    except (AttributeError, TypeError, ValueError):  # another cloudpickle: a miss, at worst
        return reduced
    if not isinstance(arguments, tuple) or tracker not in arguments:
        return reduced
    stable = f"{cls.__module__}.{cls.__qualname__}"
    if rest and isinstance(rest[0], tuple) and len(rest[0]) == 2 and isinstance(rest[0][0], dict):
        state, slots = rest[0]
        rest[0] = ({k: v for k, v in state.items() if k != "__slotnames__"}, slots)
    return (maker, tuple(stable if part == tracker else part for part in arguments), *rest)


@functools.lru_cache(maxsize=1024)
def _code_imports(code: CodeType, package: str) -> tuple[str, ...]:
    """The modules the statements of ``code`` (a function of a module in ``package``), and
    of the functions and comprehensions inside it, import, as _imports names them."""
    names: list[str] = []
    for each in nested_code(code):
        steps = list(dis.get_instructions(each))
        for at, step in enumerate(steps):
            if step.opname != "IMPORT_NAME" or at < 2:
                continue
            level, taken = steps[at - 2].argval, steps[at - 1].argval  # its two arguments
            if not isinstance(level, int):
                continue
            try:
                base = importlib.util.resolve_name("." * level + step.argval, package)
            except (ImportError, ValueError):
                continue
            names += [base, *(f"{base}.{name}" for name in taken or () if name != "*")]
    return _with_parents(names)


def _module_stamps(names: set[str], loaded: bool, used: set[str]) -> bytes:
    stamps: list[tuple[Any, ...]] = []
    modules = sorted(_with_own_imports(names))
    own = {
        name: _own_functions(sys.modules[name])
        for name in modules
        if loaded and name in sys.modules and _users(sys.modules[name])
    }
    # Names the stages or any of these modules' code use: ``consts.K`` read in a helper.
    named = used | _names_in([f.__code__ for functions in own.values() for _, f in functions])
    for name in modules:
        found = _stat(_module_file(name))
        stamps.append((name, found.st_size, found.st_mtime_ns) if found else (name,))
        if name in own:
            stamps.append((name, _loaded_code(sys.modules[name], own[name], named)))
    return repr(stamps).encode()


def _users(module: ModuleType) -> bool:
    """Whether ``module`` is the user's: shipped by value, or the script or notebook
    (``__main__``, named here only by what pickles by its name there: an ``lru_cache``
    wrapper, whose redefinition its pickle does not show)."""
    return module.__name__ == "__main__" or shipping.needs_value(module)


def _own_functions(module: ModuleType) -> list[tuple[str, FunctionType]]:
    """The functions of a module of the user's, by the global that holds each: its own
    functions, its classes' methods, and what a decorator's wrapper wraps (``__wrapped__``:
    an ``lru_cache``'s, a ``functools.wraps`` wrapper's)."""
    found: list[tuple[str, FunctionType]] = []
    for name, value in sorted(vars(module).items()):
        if issubclass(type(value), ModuleType) or _module_name(value) != module.__name__:
            continue
        members = vars(value).values() if issubclass(type(value), type) else [value]
        for member in members:
            found += [(name, function) for function in _unwrapped(member)]
    return found


def _unwrapped(value: Any) -> list[FunctionType]:
    """``value`` if it is a function (or a class's or static method's), and each function
    it wraps (``__wrapped__``), outermost first."""
    functions: list[FunctionType] = []
    for _ in range(_WRAPS_MOST):
        try:
            value = getattr(value, "__func__", value)
            if isinstance(value, FunctionType):
                functions.append(value)
            value = value.__wrapped__
        except Exception:  # none (AttributeError), or an object whose __getattr__ fails
            break
    return functions


_WRAPS_MOST = 8  # decorators followed through __wrapped__ at most (a proxy may never end)


def _module_name(value: Any) -> Any:
    """``value.__module__``, or None if it has none or asking fails (a proxy object)."""
    try:
        return getattr(value, "__module__", None)
    except Exception:
        return None


def _loaded_code(
    module: ModuleType, functions: list[tuple[str, FunctionType]], named: set[str]
) -> str:
    """A digest of the code a module of the user's holds in this process (``functions``,
    and their defaults), and of the values of the globals that code or the stages
    (``named``: ``helper.TABLE``) name, a class's attributes included: an inline run runs
    them, which its file, edited and not reloaded since it was imported (or a value changed
    in place, ``TABLE["a"] = 2``, ``Config.factor = 10``), no longer says. A global nothing
    names is left out (a big table no stage uses costs nothing)."""
    digest = hashlib.sha256()
    for name, function in functions:
        digest.update(name.encode() + marshal.dumps(_without_lines(function.__code__)))
        cells = [_cell_value(cell) for cell in function.__closure__ or ()]
        digest.update(_value_digest((function.__defaults__, function.__kwdefaults__, cells)))
    for name, value in sorted(vars(module).items()):
        if name not in named or issubclass(type(value), (ModuleType, FunctionType)):
            continue
        if issubclass(type(value), type):
            if value.__module__ == module.__name__:
                digest.update(name.encode() + _value_digest(_class_values(value)))
        else:
            digest.update(name.encode() + _value_digest(value))
    return digest.hexdigest()


def _cell_value(cell: Any) -> Any:
    """What a closure's cell holds (a factory's ``scale``), or None while it is empty."""
    try:
        return cell.cell_contents
    except ValueError:
        return None


def _class_values(cls: type) -> dict[str, Any]:
    """A class's own attributes that are values, not methods (``Config.factor``)."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("__")
        and not callable(value)
        and not isinstance(value, (staticmethod, classmethod, property))
    }


def _names_in(codes: list[CodeType]) -> set[str]:
    """The global names ``codes`` and the code inside them (functions, comprehensions) use."""
    return {name for code in codes for each in nested_code(code) for name in each.co_names}


def _value_digest(value: Any) -> bytes:
    """A digest of a module's global ``value`` as it is now: its pickle (cloudpickle's if it
    holds a lambda, ``defaultdict(lambda: 1)``), or, if it does not pickle (a lock, a
    connection), its type. A set's items come in another order in another process, so a
    value whose pickle may hold one is digested item by item (see _items_digest)."""
    try:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a lambda or a local class inside: cloudpickle takes those
            data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if _SET_OPCODES.isdisjoint(data):  # no set: one digest of the bytes
            return hashlib.sha256(data).digest()
        return _items_digest(value, _NESTING_MOST)
    except Exception:  # any pickling failure: keyed by its type only
        return f"{type(value).__module__}.{type(value).__qualname__}".encode()


# Protocol 4's set opcodes (EMPTY_SET, FROZENSET); other bytes of a pickle may match them
# too, which costs only the slower digest.
_SET_OPCODES = frozenset(pickle.EMPTY_SET + pickle.FROZENSET)
_NESTING_MOST = 50  # containers digested item by item this deep, then by their pickle


def _items_digest(value: Any, depth: int, made: dict[int, bytes] | None = None) -> bytes:
    """A digest of ``value`` the same in every process: a set's or a frozenset's from its
    items' digests in order, a dict's, a list's and a tuple's from their items', anything
    else (or past ``depth``) from its pickle. Each container is digested once (``made``,
    by id); one met again inside itself is a mark of its own."""
    kind = type(value)
    if depth <= 0 or kind not in (set, frozenset, dict, list, tuple):
        return hashlib.sha256(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).digest()
    made = {} if made is None else made
    if id(value) in made:
        return made[id(value)]
    made[id(value)] = b"itself"  # meanwhile: a part that holds its holder
    parts = [p for pair in value.items() for p in pair] if kind is dict else list(value)
    items = [_items_digest(part, depth - 1, made) for part in parts]
    if kind is set or kind is frozenset:
        items.sort()
    made[id(value)] = hashlib.sha256(kind.__name__.encode() + b"".join(items)).digest()
    return made[id(value)]


def _stat(path: str | None) -> os.stat_result | None:
    try:
        return os.stat(path) if path else None
    except OSError:
        return None


def _with_own_imports(names: set[str]) -> set[str]:
    """``names``, and the modules that the user's own modules among them import, and that
    those import, and so on (an installed package's imports are its own business): loaded,
    or (imported only where a stage runs) found on ``sys.path``."""
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if name in found or (path is None and name not in sys.modules):
            continue
        found.add(name)
        stat = _stat(path)
        if stat is not None and path and path.endswith(".py") and _own(name, path):
            package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
            pending += _imports(path, stat.st_size, stat.st_mtime_ns, package)
    return found


def _own(name: str, path: str) -> bool:
    """Whether the module ``name`` (its file at ``path``) is one of the user's own."""
    module = sys.modules.get(name)
    return shipping.needs_value(module) if module is not None else not shipping.installed(path)


def _module_file(name: str) -> str | None:
    """The file of the module ``name``: loaded, or where importing it would find it (its
    packages' paths searched, nothing imported); None if none is found."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    path: list[str] | None = None
    spec = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        package = sys.modules.get(prefix)
        if package is not None:
            path = list(getattr(package, "__path__", []) or [])
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(prefix, path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    return spec.origin if spec is not None and spec.has_location else None


@functools.lru_cache(maxsize=1024)
def _imports(path: str, size: int, mtime_ns: int, package: str) -> tuple[str, ...]:
    """The modules the source at ``path`` (of a module in ``package``) imports, by name,
    with their parent packages, and each name a ``from`` import takes that may be a
    submodule; for one version of the file."""
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except (ImportError, ValueError):
                continue
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return _with_parents(names)


def _with_parents(names: list[str]) -> tuple[str, ...]:
    """``names`` and their parent packages, each once, in order."""
    parents = [name.rsplit(".", depth)[0] for name in names for depth in range(name.count("."))]
    return tuple(dict.fromkeys([*names, *parents]))
