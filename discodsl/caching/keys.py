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
stage reads on its own (a file it opens, a database, the time). A set,
which iterates in another order in another process, is keyed by its items
in the order of their digests (:class:`_Hasher`). A class
cloudpickle ships by value is keyed by its name, not by the id it draws for
it in each process. The local runner keys the byte ranges it cuts big files
into (:meth:`~discodsl.runners.base.Runner._tasks`).
"""

from __future__ import annotations

import ast
import contextlib
import dis
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import marshal
import os
import sys
from collections import ChainMap
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from types import CodeType, FunctionType, ModuleType
from typing import Any, cast

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
    return plain + _pickled(options.params, set())


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
    with shipping.by_value(modules):
        pickler, data = _dumped(value)
    return data + _module_stamps(pickler.references, loaded, pickler.names)


def _dumped(value: Any) -> tuple[_Hasher, bytes]:
    """``value`` pickled as a key takes it, and the pickler."""
    with io.BytesIO() as file:
        pickler = _Hasher(file)
        pickler.dump(value)
        return pickler, file.getvalue()


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
    """cloudpickle's pickler, noting the modules of what it pickles by reference, and
    writing each set and frozenset as its items in the order of their own pickles'
    digests, and its class: a set of strings iterates in the order of their hashes, which
    differ between processes (params of stop words; a helper's table). All else is as
    pickle writes it (a dataclass's every attribute, a defaultdict's factory). A set met
    again inside its own items is a mark."""

    dispatch_table = ChainMap({CodeType: _code}, cloudpickle.Pickler.dispatch_table)

    def __init__(self, file: io.BytesIO, sets: _Sets | None = None):
        super().__init__(file, protocol=cloudpickle.DEFAULT_PROTOCOL)
        self.references: set[str] = set()
        self.names: set[str] = set()  # the global and attribute names its functions use
        self.sets = _Sets() if sets is None else sets

    def persistent_id(self, obj: Any, kinds: tuple[type, ...] = (set, frozenset)) -> Any:
        """A set's class, items in order and state (a tuple, pickled in its place; the same
        tuple for the same set, which pickle's memo writes once, as it would the set);
        None for all else (pickled as pickle does). Called for every object: the check
        is kept to one call."""
        if not isinstance(obj, kinds):
            return None
        sets = self.sets
        made = sets.made.get(id(obj))
        if made is not None:
            return made[1]
        if id(obj) in sets.open:
            return (_SET_MARK, "itself")
        sets.open.add(id(obj))
        try:
            items = self._ordered(cast("Iterable[Any]", obj))
        finally:
            sets.open.discard(id(obj))
        state = None if type(obj) in kinds else _state_of(obj)  # a subclass's attributes
        made = sets.made[id(obj)] = (obj, (_SET_MARK, type(obj), items, state))
        return made[1]

    def _ordered(self, members: Iterable[Any]) -> tuple[Any, ...]:
        """A set's ``members`` in order: their own if all are strs, bytes or numbers, or
        tuples of them (stop words, pairs: no pickle each, a total order), else that of
        their digests."""
        if all(map(_plain, members)):
            with contextlib.suppress(TypeError):  # a str beside an int: no order of its own
                return tuple(sorted(members))
        return tuple(sorted(members, key=self._digest))

    def _digest(self, item: Any) -> bytes:
        """The digest of ``item``'s pickle, as a key takes it: once for each item (a graph
        of objects linked through sets would be walked again for each path)."""
        found = self.sets.digests.get(id(item))
        if found is not None:
            return found[1]
        with io.BytesIO() as file:
            _Hasher(file, self.sets).dump(item)
            digest = hashlib.sha256(file.getvalue()).digest()
        self.sets.digests[id(item)] = (item, digest)
        return digest

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


_SET_MARK = "discodsl: a set, its items in the order of their digests"
_ATOMS = (str, bytes, int, float)


def _plain(member: Any) -> bool:
    """Whether a set's ``member`` is a str, bytes or a number, or a tuple of them, whose
    own order is the same in every process."""
    kind = type(member)
    if kind in _ATOMS:
        return True
    return kind is tuple and all(type(item) in _ATOMS for item in member)


class _Sets:
    """What the hashers of one key share of the sets they meet, by id (each object kept,
    so that its id stays its own): each set's persistent id as made, its digest's items'
    digests, and the sets being ordered now (one met again inside its own items is a
    mark)."""

    def __init__(self) -> None:
        self.made: dict[int, tuple[Any, Any]] = {}
        self.digests: dict[int, tuple[Any, bytes]] = {}
        self.open: set[int] = set()


def _state_of(obj: Any) -> Any:
    """What pickle writes of a set subclass's instance beside its items: its __reduce_ex__
    but for the list of its items a plain set's reduction holds (a subclass's own
    __reduce__ may hold anything: its arguments, its ``__dict__`` and slots); its
    ``__dict__`` if that fails."""
    try:
        reduced = obj.__reduce_ex__(cloudpickle.DEFAULT_PROTOCOL)
    except Exception:
        return getattr(obj, "__dict__", None)
    if not isinstance(reduced, tuple):
        return reduced
    parts = list(reduced[1:])
    if parts and parts[0] == (list(obj),):  # the items, in hash order: written in order
        parts[0] = None
    return tuple(parts)


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
    """A digest of a module's global ``value`` as it is now: its pickle (cloudpickle's, as
    it ships: ``defaultdict(lambda: 1)``, its sets in order), or, if it does not pickle (a
    lock, a connection), its type."""
    try:
        data = _dumped(value)[1]
    except Exception:  # any pickling failure: keyed by its type only
        return f"{type(value).__module__}.{type(value).__qualname__}".encode()
    return hashlib.sha256(data).digest()


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
