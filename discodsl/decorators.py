"""``@map``, ``@reduce``, ``@stage`` and ``@job``: each usable with or without parentheses.

Every decorator checks the function's signature when it is applied, so
misuse fails at decoration time with a message naming what to write
instead; the objects returned are frozen and stay callable as the plain
function.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import warnings
from collections.abc import Callable, Sequence
from functools import partial, wraps
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, cast, overload

from discodsl.errors import JobError, outside_discodsl
from discodsl.model import Job, Stage, second_stage
from discodsl.options import JobKeywords, disco_name, option_names, validate_options
from discodsl.worker.declared import not_the_builtin
from discodsl.worker.errors import brief
from discodsl.worker.spec import (
    GROUPINGS,
    STAGE_NAME_MAX,
    STAGE_NAME_RULE,
    StageSpec,
    call_signature,
    cleaned_stage_name,
    function_stage_name,
    positional_arity,
    stage_name_ok,
    takes_params,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

F = TypeVar("F", bound=Callable[..., Any])
# What a stage's grouping= may be, for type checkers (spec.GROUPINGS, checked when declared).
Grouping = Literal["split", "group_label", "group_all", "group_node", "group_node_label"]


class MapOptions(TypedDict, total=False):
    """The options of :func:`map`, for type checkers (its signature gives their defaults)."""

    name: str | None
    grouping: Grouping
    init: Callable[..., Any] | None
    done: Callable[..., Any] | None
    concurrent: bool
    reader: Callable[..., Any] | None


class ReduceOptions(TypedDict, total=False):
    """The options of :func:`reduce`, for type checkers."""

    name: str | None
    grouping: Grouping
    combine: bool
    combiner: Callable[..., Any] | None
    partitioner: Callable[[Any, int], int] | None
    sort: bool
    init: Callable[..., Any] | None
    done: Callable[..., Any] | None
    concurrent: bool


class StageOptions(TypedDict, total=False):
    """The options of :func:`stage`, for type checkers."""

    name: str | None
    grouping: Grouping
    partitioner: Callable[[Any, int], int] | None
    init: Callable[..., Any] | None
    done: Callable[..., Any] | None
    concurrent: bool
    reader: Callable[..., Any] | None


D = TypeVar("D", bound=Callable[..., Any])

# kind -> (names of the required arguments, what a call looks like)
SHAPES = {
    "map": (("record",), "def words(line): yield word, 1"),
    "reduce": (("key", "values"), "def total(word, counts): yield word, sum(counts)"),
    "stage": (("records",), "def top(records): yield from sorted(records)[:10]"),
}


def _stage(function: Callable[..., Any], kind: str, name: str | None, **options: Any) -> Stage:
    if not callable(function):
        raise JobError(f"@{kind} decorates a function; got {brief(function, 60)}")
    if isinstance(function, Stage):
        raise JobError(
            f"@{kind}: {function.name!r} is already a {function.kind} stage: decorate its plain "
            f"function, {function.name}.function (another stage of it, named apart: "
            f"{second_stage(function)})"
        )
    if isinstance(function, Job):
        raise JobError(
            f"@{kind}: {function.name!r} is a job, not a function: a stage cannot run a job; "
            "chain jobs instead, passing one's results as the next one's inputs, or list its "
            "stages in this job"
        )
    stage_name = _stage_name(name, function, kind)
    grouping = options["grouping"]
    if grouping not in GROUPINGS:
        raise JobError(
            f"{kind} {stage_name!r}: grouping {grouping!r} is not one of Disco's "
            f"groupings: use one of {', '.join(GROUPINGS)}"
        )
    with_params = _check_signature(function, kind, stage_name)
    for flag in ("combine", "sort", "concurrent"):
        _check_flag(options, flag, kind, stage_name)
    for hook in ("init", "done", "combiner", "partitioner"):
        _check_callable(options.get(hook), hook, stage_name)
    for hook in ("init", "done"):
        _check_hook(options.get(hook), hook, stage_name)
    if options.get("combiner") is not None:  # called as the reduce is, on the map's side
        if options.get("combine"):
            raise JobError(
                f"reduce {stage_name!r}: give combine=True (the reduce itself runs map-side) "
                "or combiner=fn (that function does), not both"
            )
        _check_signature(options["combiner"], "reduce", f"combiner of {stage_name}")
    _check_partitioner(options.get("partitioner"), stage_name)
    _check_reader(options.get("reader"), stage_name)
    spec = StageSpec(stage_name, kind, function=function, takes_params=with_params, **options)
    return Stage(spec)


def _check_flag(options: dict[str, Any], flag: str, kind: str, stage: str) -> None:
    """JobError unless option ``flag``, if given, is True or False (``combine="no"`` is true);
    numpy's bool is taken as the one it holds, as job options take it."""
    value = options.get(flag, False)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = options[flag] = value.item()
    if not isinstance(value, bool):
        raise JobError(
            f"{kind} {stage!r}: {flag}={value!r} ({type(value).__name__}): give {flag}=True "
            f"or {flag}=False"
        )


def _stage_name(name: str | None, function: Callable[..., Any], kind: str) -> str:
    """The stage's name: ``name`` if given (JobError if a Disco node cannot take it), else
    its function's, cleaned of what a node cannot take."""
    if name is None:
        written = _name_of(function, kind)
        cleaned = function_stage_name(written)
        if len(cleaned) > STAGE_NAME_MAX:
            raise JobError(
                f"@{kind}: the stage {written[:40]!r}... named after its function has "
                f"{len(written)} characters: a stage's name may have at most {STAGE_NAME_MAX} "
                f"(a Disco node names the stage's files after it): give it a shorter name="
            )
        return cleaned
    if isinstance(name, str) and len(name) > STAGE_NAME_MAX:
        raise JobError(
            f"@{kind}(name={name[:40]!r}...) has {len(name)} characters: a stage's name may "
            f"have at most {STAGE_NAME_MAX} (a Disco node names the stage's files after it)"
        )
    if not stage_name_ok(name):
        raise JobError(
            f"@{kind}(name={name!r}): a stage's name must be {STAGE_NAME_RULE} (a Disco "
            f"node names the stage's files after it): write e.g. "
            f"name={cleaned_stage_name(name) if isinstance(name, str) else 'words'!r}"
        )
    return name


def _name_of(function: Callable[..., Any], kind: str) -> str:
    """A stage's default name: its function's, or its kind for a lambda."""
    target = function.func if isinstance(function, partial) else function
    name = getattr(target, "__name__", None)
    if not isinstance(name, str) or not name:  # a callable object's, or one set to no str
        name = type(target).__name__
    return kind if name == "<lambda>" else name


# What each hook is called with, cut to as many positional arguments as it takes.
_HOOK_ARGUMENTS = {"init": ("params",), "done": ("state", "params")}


def _check_hook(hook: Any, role: str, stage: str) -> None:
    """JobError unless ``hook`` is None or can take what it is called with."""
    if hook is None or not callable(hook):
        return
    target = hook.func if isinstance(hook, partial) else hook  # what is called, unwrapped not
    generator = role == "init" and (  # done's yield pairs
        inspect.isgeneratorfunction(target) or getattr(target, "__code__", None) is _CM_CODE
    )
    if generator or inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
        raise JobError(
            f"stage {stage!r}: its {role} hook is a generator or async function, whose call "
            f"only makes a generator or coroutine, its body never run; {role} is called "
            f"once per task, {_HOOK_CALLS[role]}: write e.g. {_HOOK_EXAMPLES[role]}"
        )
    given = _HOOK_ARGUMENTS[role][: positional_arity(hook)]
    why = _cannot_call(hook, len(given))
    if why:
        raise JobError(
            f"stage {stage!r}: its {role} hook is called as {role}({', '.join(given)}), with "
            f"as many of those as it takes, but {why}: write e.g. {_HOOK_EXAMPLES[role]}"
        )


# The code of every function contextlib.contextmanager makes: a call of one only makes
# the context manager, whose generator's body runs when it is entered.
_CM_CODE = getattr(contextlib.contextmanager(lambda: iter(())), "__code__", None)
_HOOK_CALLS = {
    "init": "and returns the state done gets (not a fixture: no yield; clean up in done)",
    "done": "after the task's records, and returns (or yields) pairs to add, or None",
}
_HOOK_EXAMPLES = {
    "init": "`def init(params)` (Disco's map_init(input_iter, params) and "
    "reduce_init(input_iter, params) become init(params))",
    "done": "`def done(state, params)` (state: what init returned)",
}


def _check_partitioner(partitioner: Any, stage: str) -> None:
    """JobError unless ``partitioner`` is None or can be called as ``partitioner(key, n)``;
    a warning if it calls ``hash()``."""
    if partitioner is None:
        return
    why = _cannot_call(partitioner, 2)
    if why:
        disco = _disco_partition(partitioner)
        raise JobError(
            f"stage {stage!r}: its partitioner is called as partitioner(key, n), n being the "
            f"number of partitions, but {why}{disco}: write e.g. "
            "`def by_first_letter(key, n): return ord(key[0]) % n`"
        )
    from discodsl.hash_calls import calls_hash  # here: it reads bytecode, few jobs need it

    if calls_hash(partitioner):
        warnings.warn(
            f"stage {stage!r}: its partitioner calls hash(), which for a str or bytes key "
            "differs from process to process (PYTHONHASHSEED); on a Disco cluster each task "
            "runs in a process of its own, so equal keys would go to different partitions "
            "and be reduced apart, though they meet here (local workers fork from one "
            "process): use a hash that is the same everywhere, e.g. "
            "`zlib.crc32(key.encode()) % n`",
            UnstableHashWarning,
            stacklevel=outside_discodsl(),
        )


class UnstableHashWarning(UserWarning):
    """A partitioner calls ``hash()``, which differs between a cluster's processes."""


def _disco_partition(partitioner: Any) -> str:
    """What porting Disco's ``partition(key, nr_partitions, params)`` takes, if it is one."""
    if _parameter_names(partitioner)[2:3] != ["params"]:
        return ""
    return "; for Disco's partition(key, n, params), give it params through a closure"


def _parameter_names(function: Any) -> list[str]:
    """The names of ``function``'s parameters; none if its signature cannot be read."""
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []


def _cannot_call(function: Callable[..., Any], positional: int) -> str:
    """Why ``function`` cannot be called with that many positional arguments; "" if it can,
    or if its signature cannot be read (a builtin: trusted)."""
    try:
        inspect.signature(function).bind(*[None] * positional)
    except ValueError:
        return ""
    except TypeError as exc:
        return str(exc)
    return ""


def _check_callable(value: Any, what: str, stage: str) -> None:
    if value is not None and not callable(value):
        itself = " (the reduce itself as its combiner: combine=True)" if what == "combiner" else ""
        raise JobError(
            f"stage {stage!r}: {what}= must be a function, not {brief(value, 60)}{itself}"
        )


# The reader factories of discodsl.worker.readers (``from discodsl import readers``), and
# how a call to each looks.
_READER_FACTORIES = {
    "json_lines": "()",
    "csv_rows": "()",
    "fixed": "(SIZE)",
    "whole_file": "()",
}


def _check_reader(reader: Any, stage: str) -> None:
    """JobError unless ``reader`` is None or can be called as ``reader(stream, url)``."""
    if reader is None:
        return
    _check_callable(reader, "reader", stage)
    name = getattr(reader, "__name__", "")
    if getattr(reader, "__module__", "") == "discodsl.worker.readers" and name in _READER_FACTORIES:
        raise JobError(
            f"stage {stage!r}: readers.{name} makes a reader; pass the reader it makes: "
            f"reader=readers.{name}{_READER_FACTORIES[name]}"
        )
    why = _cannot_call(reader, 2)
    if why:
        raise JobError(
            f"stage {stage!r}: reader= is called as reader(stream, url) and returns the "
            f"records of the input; {brief(reader, 60)} cannot be called so ({why}){_port(reader)}"
            ": write e.g. `def read(stream, url): return (parse(line) for line in stream)`"
        )


def _port(reader: Any) -> str:
    """What porting Disco's ``map_reader(fd, size, url[, params])`` to ``reader`` takes."""
    if _parameter_names(reader)[1:3] != ["size", "url"]:
        return ""
    return (
        "; for Disco's map_reader(fd, size, url, params), drop size (read the stream to its "
        "end) and params (give the reader what it needs through a closure, or filter in the "
        "map)"
    )


def _check_readers(job: str, stages: Sequence[Stage]) -> None:
    """Only the first stage reads the job's inputs, so only it may have a reader."""
    for later in stages[1:]:
        if later.spec.reader is not None:
            raise JobError(
                f"job {job!r}: stage {later.name!r} has reader=, but only the first stage "
                "reads the job's inputs (the later ones read the records the stages before "
                "them wrote): move reader= to the first stage"
            )


def _check_signature(function: Callable[..., Any], kind: str, name: str) -> bool:
    """Whether the function takes ``params``; JobError if it cannot take its arguments."""
    if _is_async(function):
        raise JobError(
            f"{kind} {name!r} is async; stages run in worker processes without an "
            f"event loop: write it as a plain `def` (e.g. {SHAPES[kind][1]})"
        )
    try:
        signature = call_signature(function)
    except (TypeError, ValueError):
        return False  # a builtin: trust it
    with_params = takes_params(function, len(SHAPES[kind][0]))
    problem = _params_misplaced(function, kind, name, signature) or _arity_problem(
        function, kind, name, signature, with_params
    )
    if problem:
        raise JobError(problem)
    return with_params


def _is_async(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` gives a coroutine or an async generator: an ``async
    def``, inside a partial, or as an object's ``__call__``. A plain function that
    ``functools.wraps`` made around an async one is not: it may run it (``asyncio.run``),
    and one that returns its coroutine is told so when it runs."""
    target = function.func if isinstance(function, partial) else function
    candidates = [target]
    if not inspect.isroutine(target):
        candidates.append(type(target).__call__)  # a callable object's own method
    return any(inspect.iscoroutinefunction(c) or inspect.isasyncgenfunction(c) for c in candidates)


def _shown(signature: inspect.Signature) -> str:
    """The parameters of ``signature`` as written, without their annotations and with each
    default as ``...`` (one may be huge, or a secret): ``(*, line)`` shows that a call
    cannot fill ``line`` by position (the names alone showed ``()``)."""
    bare = [
        p.replace(annotation=p.empty, default=p.default if p.default is p.empty else _DEFAULT)
        for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=bare, return_annotation=signature.empty))


class _Default:
    """A default shown as ``...``."""

    def __repr__(self) -> str:
        return "..."


_DEFAULT = _Default()


def _positional_names(signature: inspect.Signature) -> list[str]:
    """The names of the parameters a positional call can fill, in order."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.kind in kinds]


def _params_misplaced(
    function: Callable[..., Any], kind: str, name: str, signature: inspect.Signature
) -> str | None:
    """The message for ``params`` among the first parameters, or Disco's classic reduce."""
    required = SHAPES[kind][0]
    names = _positional_names(signature)
    if kind == "reduce" and (names[1:2] == ["out"] or names[1:] == ["params"]):
        return _classic_reduce(function, name, names)
    if "params" in names[: len(required)]:
        others = [n for n in names if n != "params"]
        # Its own names moved round if it has enough, else the names a call fills.
        fixed = ", ".join([*(others if len(others) >= len(required) else required), "params"])
        return (
            f"{kind} {name!r} takes {_shown(signature)} but a {kind} is called with "
            f"({', '.join(required)}, params): `params` comes last, write "
            f"`def {getattr(function, '__name__', name)}({fixed})`"
        )
    return None


def _arity_problem(
    function: Callable[..., Any],
    kind: str,
    name: str,
    signature: inspect.Signature,
    with_params: bool,
) -> str | None:
    """The message for parameters a call cannot fill: too many, too few, keyword-only."""
    required, example = SHAPES[kind]
    parameters = signature.parameters.values()
    names = _positional_names(signature)
    needed = len(required) + (1 if with_params and "params" in names else 0)
    mandatory = [p for p in parameters if p.name in names and p.default is p.empty]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if names[:1] in (["self"], ["cls"]) and len(mandatory) > needed:
        return (
            f"{kind} {name!r} takes {_shown(signature)}: a method, but a stage is a plain "
            f"function, called as ({', '.join(required)}[, params]): define it at a module's "
            f"top level, e.g. `{example}`"
        )
    if len(mandatory) > needed or (len(names) < needed and not varargs):
        fix = _arity_fix(function, kind, name, names)
        return (
            f"{kind} {name!r} takes {_shown(signature)} but a {kind} is "
            f"called with ({', '.join(required)}[, params]): {fix}write e.g. `{example}`"
        )
    keyword_only = [
        p.name
        for p in parameters
        if p.kind is p.KEYWORD_ONLY
        and p.default is p.empty
        and not (with_params and p.name == "params")
    ]
    if keyword_only:
        return (
            f"{kind} {name!r} has the keyword-only parameter {keyword_only[0]!r} with no "
            f"default, which no call passes (a {kind} is called with "
            f"({', '.join(required)}[, params]), positionally): write e.g. `{example}`"
        )
    return None


def _arity_fix(function: Callable[..., Any], kind: str, name: str, names: list[str]) -> str:
    """What to do with one parameter too many: call it ``params``, or take a map's pair whole."""
    required = SHAPES[kind][0]
    if len(names) != len(required) + 1:
        return ""
    extra = names[len(required)]
    fix = f"name the parameter {extra!r} `params` to get the job's params, or "
    if kind == "map":  # a map over an earlier job's pairs, written as a reduce
        fix += (
            f"for (key, value) records (an earlier job's results), take the pair whole, "
            f"`def {getattr(function, '__name__', name)}(record): {', '.join(names)} = "
            "record`, or "
        )
    return fix


def _classic_reduce(function: Callable[..., Any], name: str, names: list[str]) -> str:
    """The message for Disco's classic ``reduce(iter, out, params)`` or ``reduce(iter,
    params)`` given to ``@reduce``."""
    called = getattr(function, "__name__", name)
    classic, given, made = (
        ("iter, out, params", "an output object", "yields pairs where Disco's called out.add")
        if names[1:2] == ["out"]
        else ("iter, params", "its records (kvgroup(sorted(iter)))", "yields pairs")
    )
    return (
        f"reduce {name!r} takes ({', '.join(names)}), Disco's classic reduce({classic}), "
        f"called once per partition with {given}; a @reduce is called once per key, with "
        f"that key's values, and {made}: "
        f"write `def {called}(key, values, params): yield key, ...`, or for a whole partition "
        f"at once `@stage(grouping='group_label') def {called}(records, params)` (its records "
        "unsorted)"
    )


def _known_options_only(decorator: D) -> D:
    """``decorator`` (``map``, ``reduce`` or ``stage``), which names a keyword it does not
    take, and the ones it does, instead of Python's bare TypeError."""
    parameters = inspect.signature(decorator).parameters
    options = sorted(name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY)
    _STAGE_OPTIONS[decorator.__name__] = options

    @wraps(decorator)
    def checked(*args: Any, **keywords: Any) -> Any:
        unknown = sorted(keywords.keys() - parameters.keys())
        if unknown:
            raise JobError(_unknown_option(decorator.__name__, unknown[0], options))
        if len(args) > 1:  # map(f, items): Python's map, which an import of ours replaced
            raise TypeError(not_the_builtin(decorator.__name__, len(args)))
        return decorator(*args, **keywords)

    return cast("D", checked)


def _unknown_option(kind: str, name: str, options: list[str]) -> str:
    """The message for ``@kind(name=...)``: what ``name`` may have meant, and the options."""
    return (
        f"@{kind} has no option {name!r}{_meant(kind, name, options)}; "
        f"the options of @{kind} are {', '.join(options)}"
    )


# Each stage decorator's options, by its name (filled as each is defined).
_STAGE_OPTIONS: dict[str, list[str]] = {}

# Options of Disco's pipeline stages (disco.worker.pipeline's Stage), and what to do instead.
_PIPELINE_NAMES = {
    "process": "decorate the process function itself, as `@stage def fn(records[, params])`, "
    "called once per task with all its records, yielding the (key, value) pairs Disco's "
    "process(interface, state, label, inp) gave interface.output(label).add",
    "combine": "drop it: a @stage is called once per task on all its inputs' records, as with "
    "combine=True",
    "sort": "sort inside the stage, as sorted(records) (a @stage's records come unsorted), or "
    "use a @reduce, which groups and sorts by key",
    "input_chain": "give the job's first stage a reader, @map(reader=...) (see discodsl.readers)",
    "input_hook": "drop it: a @stage gets all its inputs' records in one iterator",
    "output_chain": "drop it: output is Disco's record files (@job(compress=...))",
}


def _meant(kind: str, name: str, options: list[str]) -> str:
    """`` (what to write instead)``, when there is a likely fix; else ``""``."""
    if name == "reader":
        return " (only the job's first stage reads its inputs: put reader= on that stage's @map)"
    if kind == "stage" and name in _PIPELINE_NAMES:
        return f" (Disco's pipeline Stage({name}=): {_PIPELINE_NAMES[name]})"
    owners = [other for other, theirs in _STAGE_OPTIONS.items() if name in theirs]
    if owners:
        return f" ({name}= is an option of @{owners[0]}: put it on the @{owners[0]} stage)"
    job_options = sorted(option_names() - set(options))
    close = difflib.get_close_matches(name, options + job_options, n=2)
    if not close or (close[0] not in options and disco_name(name)):
        return disco_name(name)
    best = close[0]
    if best not in options:  # a job option is the closest; a stage option as close is said too
        also = [o for o in close[1:] if o in options and _as_close(name, o, best)]
        job_hint = f"{best}= is an option of @job: write @job({best}=...)"
        return f" (did you mean {also[0]}=? {job_hint})" if also else f" ({job_hint})"
    return f" (did you mean {best}=?)"


def _as_close(name: str, option: str, other: str) -> bool:
    """Whether ``option`` is about as close a spelling of ``name`` as ``other`` is."""
    ratio = difflib.SequenceMatcher(None, name, option).ratio()
    return ratio >= difflib.SequenceMatcher(None, name, other).ratio() - 0.1


@overload
def map(function: F, /, **options: Unpack[MapOptions]) -> Stage: ...
@overload
def map(function: None = None, /, **options: Unpack[MapOptions]) -> Callable[[F], Stage]: ...
@_known_options_only
def map(
    function: F | None = None,
    *,
    name: str | None = None,
    grouping: Grouping = "split",
    init: Callable[..., Any] | None = None,
    done: Callable[..., Any] | None = None,
    concurrent: bool = False,
    reader: Callable[..., Any] | None = None,
) -> Stage | Callable[[F], Stage]:
    """Declare a map stage: ``function(record[, params])`` yields ``(key, value)`` pairs.

    A record is a line of a text input (``str``, no newline) or a
    ``(key, value)`` pair of a record file (e.g. an earlier job's results);
    with ``reader=`` (see :mod:`discodsl.worker.readers`, e.g.
    ``readers.json_lines()``), what that reader makes of each input.
    ``init(params)`` runs before the task's first record; ``done(state,
    params)`` after its last, and may yield more pairs. ``concurrent=True``
    (every kind of stage takes it) is Disco's pipeline flag: a master may
    start the stage's tasks while the previous stage's still run, feeding
    them its outputs as they come; the local runner starts a stage once the
    one before has ended.
    """
    options: dict[str, Any] = dict(
        grouping=grouping, init=init, done=done, concurrent=concurrent, reader=reader
    )
    if function is None:
        return partial(_stage, kind="map", name=name, **options)
    return _stage(function, "map", name, **options)


@overload
def reduce(function: F, /, **options: Unpack[ReduceOptions]) -> Stage: ...
@overload
def reduce(function: None = None, /, **options: Unpack[ReduceOptions]) -> Callable[[F], Stage]: ...
@_known_options_only
def reduce(
    function: F | None = None,
    *,
    name: str | None = None,
    grouping: Grouping = "group_label",
    combine: bool = False,
    combiner: Callable[..., Any] | None = None,
    partitioner: Callable[[Any, int], int] | None = None,
    sort: bool = True,
    init: Callable[..., Any] | None = None,
    done: Callable[..., Any] | None = None,
    concurrent: bool = False,
) -> Stage | Callable[[F], Stage]:
    """Declare a reduce: ``function(key, values[, params])`` once per distinct key.

    ``combine=True`` also runs it map-side on partial groups (its output must
    be pairs it can read back, as a sum's is); ``combiner=`` names a separate
    map-side function of the same shape. A combiner runs any number of times
    on a key, or not at all: a key with one value in a map task keeps it.
    ``partitioner(key, n)`` picks the reduce task (0..n-1) for each key; the
    default is a stable content hash.
    ``sort=False`` groups by hashing, in first-seen order (past the memory budget, in
    no order to count on).
    """
    options: dict[str, Any] = dict(
        grouping=grouping,
        combine=combine,
        combiner=combiner,
        partitioner=partitioner,
        sort=sort,
        init=init,
        done=done,
        concurrent=concurrent,
    )
    if function is None:
        return partial(_stage, kind="reduce", name=name, **options)
    return _stage(function, "reduce", name, **options)


@overload
def stage(function: F, /, **options: Unpack[StageOptions]) -> Stage: ...
@overload
def stage(function: None = None, /, **options: Unpack[StageOptions]) -> Callable[[F], Stage]: ...
@_known_options_only
def stage(
    function: F | None = None,
    *,
    name: str | None = None,
    grouping: Grouping = "group_label",
    partitioner: Callable[[Any, int], int] | None = None,
    init: Callable[..., Any] | None = None,
    done: Callable[..., Any] | None = None,
    concurrent: bool = False,
    reader: Callable[..., Any] | None = None,
) -> Stage | Callable[[F], Stage]:
    """Declare a general stage: ``function(records[, params])`` once per task.

    ``records`` iterates every record of the task's input (read by ``reader``,
    when given, as for :func:`map`); the grouping says
    what a task gets: ``split`` (one input each), ``group_label`` (one
    partition each), ``group_all`` (everything, one task), ``group_node``,
    ``group_node_label`` (per node, on a cluster). It yields ``(key, value)``
    pairs; the label (partition) of each is chosen, from the key alone, by the
    *next* stage's ``partitioner`` (``fn(key, n)``; default: a hash of the key
    that is the same in every process), as for :func:`reduce`: this stage's
    own ``partitioner`` labels what the stage before it yields.
    """
    options: dict[str, Any] = dict(
        grouping=grouping,
        partitioner=partitioner,
        init=init,
        done=done,
        concurrent=concurrent,
        reader=reader,
    )
    if function is None:
        return partial(_stage, kind="stage", name=name, **options)
    return _stage(function, "stage", name, **options)


@overload
def job(function: Callable[[], Sequence[Stage]], /, **options: Unpack[JobKeywords]) -> Job: ...
@overload
def job(
    function: None = None, /, **options: Unpack[JobKeywords]
) -> Callable[[Callable[[], Sequence[Stage]]], Job]: ...
def job(
    function: Callable[[], Sequence[Stage]] | None = None, /, **options: Unpack[JobKeywords]
) -> Job | Callable[[Callable[[], Sequence[Stage]]], Job]:
    """Declare a job: the decorated body returns its stages in order.

    Keywords are :class:`~discodsl.options.JobOptions` (``partitions``,
    ``params``, ...), validated now and again at ``run()``.
    """
    checked = validate_options(**options)

    def build(body: Callable[[], Sequence[Stage]]) -> Job:
        if not callable(body):
            raise JobError(f"@job decorates a function returning stages; got {brief(body, 60)}")
        if isinstance(body, Stage):
            raise JobError(
                f"@job decorates a function returning stages, not the {body.kind} stage "
                f"{body.name!r} itself: declare the job apart, as `@job def "
                f"{body.name}_job(): return [{body.name}]`"
            )
        if isinstance(body, Job):
            raise JobError(
                f"@job decorates a function returning stages, not the job {body.name!r} "
                f"itself: for other options, write `{body.name}.with_options(...)`"
            )
        name = _callable_name(body)
        if inspect.signature(body).parameters:
            raise JobError(
                f"job {name!r} takes arguments; a job body takes none and returns "
                "its stages: use params= for values the stages need"
            )
        # The body's stages are checked, and made a tuple, as the job is made.
        made = Job(name, cast(tuple[Stage, ...], body()), checked, body)
        _check_readers(name, made.stages)
        return made

    return build if function is None else build(function)


def _callable_name(body: Callable[..., Any]) -> str:
    """A job body's name: its own, or a partial's function's, or its class's."""
    target = body.func if isinstance(body, partial) else body
    return str(getattr(target, "__name__", None) or type(target).__name__)
