"""Typed stage contracts: whether annotated adjacent stages agree, checked when a job is declared.

:func:`check_contracts` reads each stage's annotations (``typing.get_type_hints``,
one annotation at a time, in the function's own module: strings of ``from
__future__ import annotations`` and notebook-defined types resolve; one that
cannot be resolved is skipped) and checks that what a stage yields is what
the next one takes:

- a reduce ``fn(key: K, values: Iterable[V])`` reads the ``(K, V)`` pairs of
  the stage before it (and its own, when it combines: ``combine=True``);
- a map after another stage takes ``record: tuple[K, V]``; a ``@stage``
  takes ``records: Iterable[tuple[K, V]]``;
- the first stage reads ``str`` lines, or the pairs of an earlier job's results.

A stage yields what its return annotation's element type says:
``Iterator[X]``, ``Iterable[X]``, ``Generator[X, None, None]``, ``list[X]``.
An unannotated parameter or return, or ``Any``, is not checked.
:func:`accepts` holds the rules (see its docstring).

:func:`runtime_specs` gives the stage specs a worker checks the first records
against (:mod:`discodsl.worker.typecheck`): the annotations as plain data.
This module does not run anything, nor check what ``done`` hooks or separate
``combiner=`` functions yield.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from itertools import pairwise
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from discodsl.errors import JobError
from discodsl.worker.spec import StageSpec
from discodsl.worker.typecheck import ANY, Desc, Yields

_UNKNOWN: Any = object()  # an annotation that is absent or cannot be resolved
_UNIONS = (Union, types.UnionType)
_LINE_OR_PAIR = (str, tuple[Any, Any])


# --- reading a stage's annotations --------------------------------------------------------


def _target(function: Callable[..., Any]) -> Any:
    """What carries the annotations: the function under a partial, a callable's __call__."""
    target = function.func if isinstance(function, partial) else function
    if inspect.isfunction(target) or inspect.ismethod(target):
        return target
    return getattr(target, "__call__", None)  # noqa: B004 (a callable object's method)


def stated_types(function: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``function`` by parameter name (``return`` too);
    those missing or not resolvable are left out."""
    target = _target(function)
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    resolved = {name: _resolve(value, namespace) for name, value in raw.items()}
    return {name: value for name, value in resolved.items() if value is not _UNKNOWN}


class _One:
    """Holds one annotation for ``typing.get_type_hints``."""

    def __init__(self, annotation: Any):
        self.__annotations__ = {"it": annotation}


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    try:
        return typing.get_type_hints(_One(annotation), namespace)["it"]
    except Exception:  # a name not defined, a syntax error in a string: skipped
        return _UNKNOWN


def _parameters(spec: StageSpec) -> list[tuple[str, Any]]:
    """The stage's positional parameters and their annotations (``_UNKNOWN`` when none)."""
    try:
        parameters = inspect.signature(spec.function).parameters.values()
    except (TypeError, ValueError):
        return []
    hints = stated_types(spec.function)
    positional = (p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return [(p.name, hints.get(p.name, _UNKNOWN)) for p in positional]


def yielded(spec: StageSpec) -> Any:
    """The type of each record the stage yields, per its return annotation, or ``_UNKNOWN``."""
    returned = stated_types(spec.function).get("return", _UNKNOWN)
    if _is_any(returned) or not _accepts_class(Iterable[Any], returned):
        return _UNKNOWN
    return _item_type(get_origin(returned), get_args(returned))


def _item_type(origin: Any, args: tuple[Any, ...]) -> Any:
    """The type of each item an iterable of generic ``origin[*args]`` gives, or
    ``_UNKNOWN``: a mapping's keys, an items view's pairs, a tuple's members."""
    if origin is ItemsView and len(args) == 2:
        return tuple[args[0], args[1]]  # type: ignore[valid-type]
    if origin is tuple and args and args[-1] is not Ellipsis:
        return _union(_plain(arg) for arg in args)
    return _plain(args[0]) if args and args[0] is not Ellipsis else _UNKNOWN


def _pair(item: Any) -> tuple[Any, Any] | None:
    """``(K, V)`` of a ``tuple[K, V]`` record type (or a union of them), else None."""
    if get_origin(item) in _UNIONS:
        pairs = [_pair(member) for member in get_args(item)]
        if any(p is None for p in pairs):
            return None
        return _union(p[0] for p in pairs if p), _union(p[1] for p in pairs if p)
    args = get_args(item)
    if get_origin(item) is tuple and len(args) == 2 and args[1] is not Ellipsis:
        return args[0], args[1]
    fields = _fields_of(item) if isinstance(item, type) else ()
    return (fields[0], fields[1]) if len(fields) == 2 else None  # a NamedTuple of two


def _union(members: Iterable[Any]) -> Any:
    return Union.__getitem__(tuple(members))


# --- the compatibility rules --------------------------------------------------------------


def accepts(expected: Any, produced: Any) -> bool:
    """Whether a value of type ``produced`` may go where ``expected`` is annotated.

    Equal types and subclasses; ``Any``, ``object`` and TypeVars accept and are
    accepted by anything; every member of a produced union must be accepted
    (by some member of an expected one); ``int`` goes where ``float`` is
    expected and ``float`` where ``complex`` is, as in typing; generic
    aliases compare their origins (``list`` is an ``Iterable``, not an
    ``Iterator``) and their arguments, tuples element by element. What
    cannot be judged (a Protocol, a forward reference) is accepted.
    """
    expected, produced = _plain(expected), _plain(produced)
    if _is_any(expected) or _is_any(produced):
        return True
    if get_origin(produced) in _UNIONS:
        return all(accepts(expected, member) for member in get_args(produced))
    if get_origin(expected) in _UNIONS:
        return any(accepts(member, produced) for member in get_args(expected))
    if get_origin(produced) is Literal:
        return all(_accepts_value(expected, value) for value in get_args(produced))
    if get_origin(expected) is Literal:
        return False
    return _accepts_class(expected, produced)


def _plain(tp: Any) -> Any:
    """``None`` as ``NoneType``, a NewType as its base, ``Annotated[X, ...]`` as X, a
    TypedDict as ``dict`` (its instances are plain dicts)."""
    if tp is None:
        return type(None)
    if typing.is_typeddict(tp):
        return dict
    while hasattr(tp, "__supertype__"):
        tp = tp.__supertype__
    if get_origin(tp) is typing.Annotated:
        return _plain(get_args(tp)[0])
    return tp


def _is_any(tp: Any) -> bool:
    if tp is Any or tp is object or tp is _UNKNOWN or isinstance(tp, TypeVar):
        return True
    return get_origin(tp) is None and not isinstance(tp, type)  # unknown forms: unchecked


def _accepts_value(expected: Any, value: Any) -> bool:
    if get_origin(expected) is Literal:
        return value in get_args(expected)
    return accepts(expected, type(value))


def _accepts_class(expected: Any, produced: Any) -> bool:
    e_origin, p_origin = get_origin(expected) or expected, get_origin(produced) or produced
    if not (isinstance(e_origin, type) and isinstance(p_origin, type)):
        return True
    if not _subclass(p_origin, e_origin):
        return False
    e_args, p_args = get_args(expected), get_args(produced)
    if e_args and not p_args and e_origin is tuple:
        p_args = _fields_of(p_origin)  # a NamedTuple is the tuple of its fields' types
    if not e_args or not p_args:
        return True
    if e_origin is tuple:
        return _accepts_tuple(e_args, p_args)
    if issubclass(p_origin, tuple):
        return all(accepts(e_args[0], arg) for arg in p_args if arg is not Ellipsis)
    if len(e_args) == len(p_args):
        return all(map(accepts, e_args, p_args))
    return accepts(e_args[0], p_args[0])  # Iterator[X] against Generator[X, S, R]


def _fields_of(cls: type) -> tuple[Any, ...]:
    """The types of a NamedTuple's fields, in order; () for another class, or fields whose
    types cannot be resolved (then anything is accepted)."""
    if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        return ()
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        return ()
    return tuple(hints.get(name, Any) for name in cls._fields)


def _accepts_tuple(e_args: tuple[Any, ...], p_args: tuple[Any, ...]) -> bool:
    produced = [arg for arg in p_args if arg is not Ellipsis]
    if len(e_args) == 2 and e_args[1] is Ellipsis:
        return all(accepts(e_args[0], arg) for arg in produced)
    if len(p_args) == 2 and p_args[1] is Ellipsis:
        return all(accepts(arg, p_args[0]) for arg in e_args)  # length unknown: lenient
    return len(e_args) == len(p_args) and all(map(accepts, e_args, p_args))


def _subclass(produced: type, expected: type) -> bool:
    if expected is float and issubclass(produced, int):
        return True
    if expected is complex and issubclass(produced, (int, float)):
        return True
    try:
        return issubclass(produced, expected) or _same_name(produced, expected)
    except TypeError:  # a Protocol without @runtime_checkable
        return True


def _same_name(produced: type, expected: type) -> bool:
    """Whether ``produced`` has a class of ``expected``'s module and name among its bases: the
    same class defined again since (a notebook cell run again), as records take it."""
    named = (expected.__module__, expected.__qualname__)
    return any((base.__module__, base.__qualname__) == named for base in produced.__mro__)


# --- what each stage takes, checked against what the one before it yields -----------------


def check_contracts(name: str, specs: Sequence[StageSpec]) -> None:
    """JobError naming the first pair of adjacent stages whose annotations disagree, and the fix."""
    if specs:
        _check_first(specs[0])
    for spec in specs:
        _check_yield(spec)
    for before, after in pairwise(specs):
        taken = _taken_record(after)
        if taken is not None:  # whatever the stage before yields
            _refuse_named_records(after, taken[0], taken[1])
        _check_adjacent(before, after, "")
    for spec in specs:
        if spec.kind == "reduce" and spec.combine:
            why = (
                f"reduce {spec.name!r} runs map-side too (combine=True): it reads what it yields; "
            )
            _check_adjacent(spec, spec, why)
        if spec.kind == "reduce" and spec.combiner is not None:
            name = getattr(spec.combiner, "__name__", "combiner")
            why = (
                f"the combiner of reduce {spec.name!r} runs map-side: the reduce reads what it "
                "yields; "
            )
            combiner = dataclasses.replace(spec, function=spec.combiner, name=name)
            _check_adjacent(combiner, spec, why)


def _check_yield(spec: StageSpec) -> None:
    """A JobError for a stage annotated to make what holds no (key, value) pairs: no
    iterable (``-> int``), or records of another length (``tuple[str, int, int]``)."""
    returned = stated_types(spec.function).get("return", _UNKNOWN)
    if returned is _UNKNOWN or returned in (None, type(None)) or _is_any(returned):
        return  # None: a stage that forgot to yield is told so when it runs, as unannotated
    if not _accepts_class(Iterable[Any], returned):
        raise JobError(
            f"{spec.kind} {spec.name!r} is annotated `-> {type_name(returned)}`, which holds "
            "no records: a stage yields (key, value) pairs; annotate it e.g. "
            "`-> Iterator[tuple[str, int]]`"
        )
    item = yielded(spec)
    args = get_args(item)
    if get_origin(item) is tuple and Ellipsis not in args and len(args) != 2:
        raise JobError(
            f"{spec.kind} {spec.name!r} is annotated to yield {type_name(item)}, records of "
            f"{len(args)} items, where each record is a (key, value) pair: yield "
            f"(key, value), e.g. a tuple as the key or the value"
        )
    if isinstance(item, type):
        _check_record_class(spec, item)


def _check_record_class(spec: StageSpec, item: type) -> None:
    """A JobError for a stage annotated to yield, as its records, a class that is no pair:
    numbers, text, a dataclass, a NamedTuple of other than two fields."""
    fields = getattr(item, "_fields", None) if issubclass(item, tuple) else None
    if fields is not None and len(fields) != 2:
        raise JobError(
            f"{spec.kind} {spec.name!r} is annotated to yield {type_name(item)}, a NamedTuple "
            f"of {len(fields)} fields, as its records, where each record is a (key, value) "
            "pair: yield (key, value), e.g. the NamedTuple as the value"
        )
    if fields is None and (issubclass(item, _NO_PAIRS) or dataclasses.is_dataclass(item)):
        raise JobError(
            f"{spec.kind} {spec.name!r} is annotated to yield {type_name(item)}, which is no "
            "(key, value) pair: yield pairs, e.g. `yield word, 1`, annotated "
            "`-> Iterator[tuple[str, int]]`"
        )


# Record types that are never a (key, value) pair: numbers, and text (not unpacked).
_NO_PAIRS = (int, float, complex, str)


def _check_first(spec: StageSpec) -> None:
    """A first map or stage reads str lines, or the pairs of an earlier job's results."""
    if spec.reader is not None:
        return  # its reader (discodsl.readers) makes the records: any type
    taken = _taken_record(spec)
    if taken is not None:
        _refuse_named_records(spec, taken[0], taken[1])
    if taken is None or any(accepts(taken[1], tp) for tp in _LINE_OR_PAIR):
        return
    parameter, record, annotation = taken
    fixed = _with_element(annotation, str) if spec.kind == "stage" else "str"
    raise JobError(
        f"{spec.kind} {spec.name!r} takes records of type {type_name(record)}, but the first "
        "stage of a job reads str lines of text inputs (or the (key, value) tuples of an "
        f"earlier job's results): change {spec.name}'s `{parameter}: "
        f"{type_name(annotation)}` to `{parameter}: {fixed}`"
    )


def _refuse_named_records(spec: StageSpec, parameter: str, record: Any) -> None:
    """A JobError for a stage whose records are annotated as a NamedTuple: a record travels
    as a (key, value) tuple, whatever the stage before made it, and has no fields."""
    if get_origin(record) in (Union, types.UnionType):  # Optional[Point], Point | None
        members = [m for m in get_args(record) if m is not type(None)]
        if all(_named_tuple(m) for m in members):  # a plain pair of them takes a record
            _refuse_named_records(spec, parameter, members[0])
        return
    if not _named_tuple(record):
        return
    fields = _fields_of(record)
    pair = f"tuple[{type_name(fields[0])}, {type_name(fields[1])}]" if len(fields) == 2 else "tuple"
    raise JobError(
        f"{spec.kind} {spec.name!r} takes records of type {type_name(record)}, a NamedTuple, "
        "but a record reaches a stage as a plain (key, value) tuple, whatever the stage "
        f"before made it: take `{parameter}: {pair}`, and make a {type_name(record)} of it "
        f"in the stage if you need its fields ({type_name(record)}(*{parameter}))"
    )


def _named_tuple(kind: Any) -> bool:
    """Whether ``kind`` is a NamedTuple class."""
    return isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields")


def _taken_record(spec: StageSpec) -> tuple[str, Any, Any] | None:
    """For a map or stage: its record parameter, the record type it states, its annotation."""
    parameters = _parameters(spec)
    if spec.kind not in ("map", "stage") or not parameters or parameters[0][1] is _UNKNOWN:
        return None
    parameter, annotation = parameters[0]
    if spec.kind == "map":
        return parameter, annotation, annotation
    args = get_args(annotation)
    record = args[0] if args and _accepts_class(Iterable[Any], annotation) else Any
    return parameter, record, annotation


def _check_adjacent(before: StageSpec, after: StageSpec, why: str) -> None:
    item = yielded(before)
    if item is _UNKNOWN:
        return
    if after.kind == "reduce":
        _check_reduce(before, after, item, why)
    else:
        _check_records(before, after, item)


def _check_records(before: StageSpec, after: StageSpec, item: Any) -> None:
    taken = _taken_record(after)
    if taken is None:
        return
    parameter, record, annotation = taken
    produced = item if after.kind == "map" else Iterator[item]
    if accepts(annotation, produced):
        return
    element = (get_args(annotation) or (None,))[0]  # list[tuple[str, int]]: an iterator's
    if after.kind != "map" and element is not None and accepts(element, item):
        raise _not_an_iterator(after, parameter, annotation)
    fixed = type_name(item) if after.kind == "map" else _with_element(annotation, item)
    _refuse(before, after, item, ("records", record), (parameter, annotation, fixed))


def _check_reduce(before: StageSpec, after: StageSpec, item: Any, why: str) -> None:
    pair, parameters = _pair(item), _parameters(after)
    if pair is None or len(parameters) < 2:
        return
    (key_name, key_type), (values_name, values_type) = parameters[:2]
    if key_type is not _UNKNOWN and not accepts(key_type, pair[0]):
        fixed = type_name(pair[0])
        _refuse(before, after, item, ("keys", key_type), (key_name, key_type, fixed), why)
    if values_type is not _UNKNOWN:
        _check_values(before, after, item, (values_name, values_type), why)


def _check_values(
    before: StageSpec, after: StageSpec, item: Any, values: tuple[str, Any], why: str
) -> None:
    name, annotation = values
    if not accepts(annotation, Iterator[Any]):
        raise _not_an_iterator(after, name, annotation)
    value = _pair(item)[1]  # type: ignore[index]
    if accepts(annotation, Iterator[value]):  # type: ignore[valid-type]
        return
    element, fixed = get_args(annotation)[0], _with_element(annotation, value)
    _refuse(before, after, item, ("values", element), (name, annotation, fixed), why)


def _not_an_iterator(after: StageSpec, name: str, annotation: Any) -> JobError:
    """A reduce's ``values``, or a @stage's ``records``, annotated as a list, a Sequence
    ...: they come as an iterator."""
    element = (get_args(annotation) or (Any,))[0]
    what = "values" if after.kind == "reduce" else "records"
    return JobError(
        f"{after.kind} {after.name!r} takes `{name}: {type_name(annotation)}`, but a "
        f"{after.kind}'s {what} come as an iterator (read once, no len()): annotate `{name}: "
        f"{_with_element(annotation, element, 'Iterable')}`, and call list({name}) if you "
        "need a list"
    )


def _refuse(
    before: StageSpec,
    after: StageSpec,
    item: Any,
    taken: tuple[str, Any],
    change: tuple[str, Any, str],
    why: str = "",
) -> typing.NoReturn:
    """JobError: ``after`` takes ``taken`` (what, type) but ``before`` yields ``item``; the
    fix is ``change`` (parameter, its annotation, the annotation to write)."""
    (what, wanted), (parameter, annotation, fixed) = taken, change
    if wanted is Any:  # an annotation that holds no records at all (`records: int`)
        takes = f"annotates `{parameter}: {type_name(annotation)}`, which holds no {what}"
        other = ""
    else:
        takes = f"takes {what} of type {type_name(wanted)}"
        other = f", or make {before.name} yield {type_name(wanted)} {what}"
    raise JobError(
        f"{why}stage {before.name!r} yields {_pair_name(item)} but {after.kind} {after.name!r} "
        f"{takes}: change {after.name}'s `{parameter}: {type_name(annotation)}` to "
        f"`{parameter}: {fixed}`{other}"
    )


# --- names for messages -------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """``tuple[str, int]``, ``str | None``, ``Iterator[int]``: a type as one writes it."""
    tp = _plain(tp) if tp is not None else tp
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    origin, args = get_origin(tp), get_args(tp)
    if origin in _UNIONS:
        return " | ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None and args:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{type_name(origin)}[{inner}]"
    if isinstance(tp, (type, TypeVar)):
        return getattr(tp, "__qualname__", None) or tp.__name__
    return repr(tp).replace("typing.", "")


def _pair_name(item: Any) -> str:
    pair = _pair(item)
    return f"({type_name(pair[0])}, {type_name(pair[1])})" if pair else type_name(item)


def _with_element(annotation: Any, element: Any, container: str = "") -> str:
    """``annotation``'s container (or ``container``) holding ``element``: ``Iterable[int]``."""
    origin = get_origin(annotation)
    name = container or (type_name(origin) if origin is not None else "Iterable")
    return f"{name}[{type_name(element)}]"


# --- the run-time check: annotations as plain data -------------------------------------------


def runtime_specs(specs: Sequence[StageSpec], on: bool) -> tuple[StageSpec, ...]:
    """``specs``, each with what it yields described for the worker to check when ``on``."""
    if not on:
        return tuple(specs)
    return tuple(replace(spec, yields=runtime_type(spec)) for spec in specs)


def runtime_type(spec: StageSpec) -> Yields | None:
    """What a worker checks the stage's records against; None when nothing is stated."""
    item = yielded(spec)
    desc = describe(item)
    if desc == ANY:
        return None
    returned = stated_types(spec.function)["return"]
    pair = _pair(item)
    parts = [(describe(tp), type_name(tp)) for tp in pair] if pair else [None, None]
    return Yields(type_name(returned), desc, type_name(item), parts[0], parts[1])


def describe(tp: Any) -> Desc:
    """The plain-data description of ``tp`` (see :mod:`discodsl.worker.typecheck`)."""
    tp = _plain(tp)
    origin, args = get_origin(tp), get_args(tp)
    if _is_any(tp):
        return ANY
    if origin in _UNIONS:
        members = tuple(describe(arg) for arg in args)
        return ANY if ANY in members else ("union", members)
    if origin is Literal:
        return ("literal", args)
    if origin is tuple and args:
        return _describe_tuple(args)
    if origin is not None:
        return _describe_generic(origin, args)
    return _describe_class(tp)


def _describe_tuple(args: tuple[Any, ...]) -> Desc:
    if len(args) == 2 and args[1] is Ellipsis:
        return ("tuple_of", describe(args[0]))
    if args == ((),):
        return ("tuple", ())
    return ("tuple", tuple(describe(arg) for arg in args))


def _describe_generic(origin: Any, args: tuple[Any, ...]) -> Desc:
    container = _describe_class(origin)
    if not args or not isinstance(origin, type):
        return container
    if issubclass(origin, Mapping) and len(args) == 2:
        return ("mapping", container, describe(args[0]), describe(args[1]))
    if issubclass(origin, Iterable):
        return ("items", container, describe(args[0]))
    return container


def _describe_class(cls: Any) -> Desc:
    if not isinstance(cls, type) or cls is object or getattr(cls, "_is_protocol", False):
        return ANY
    if cls is float:
        return ("class", (float, int))
    if cls is complex:
        return ("class", (complex, float, int))
    if cls.__module__.split(".")[0] in sys.stdlib_module_names or cls.__module__ == "builtins":
        return ("class", (cls,))
    return ("named", cls.__module__, cls.__qualname__)
