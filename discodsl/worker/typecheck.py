"""Run-time checks of what a stage yields against its return annotation, standard library only.

The client (:mod:`discodsl.contracts`) turns a stage's annotation into a
:class:`Yields`: plain data a node can unpickle without importing the user's
modules. A description (``Desc``) is a tuple whose first item says what it is:

- ``("any",)``: anything;
- ``("class", classes)``: ``isinstance(value, classes)`` for builtin and
  standard-library classes (``float`` also lists ``int``, as typing does);
- ``("named", module, qualname)``: an instance of a class of that name or of
  a subclass, compared by name along ``type(value).__mro__`` (so a class
  defined in a notebook or an unimportable module is never imported here);
- ``("union", descs)``, ``("literal", values)``;
- ``("tuple", descs)`` for ``tuple[A, B]``, ``("tuple_of", desc)`` for
  ``tuple[A, ...]``;
- ``("items", container, desc)`` for ``list[A]``, ``set[A]`` ...,
  ``("mapping", container, key, value)`` for ``dict[K, V]``: the container
  is checked, and the first :data:`ELEMENTS` elements of a collection.

:func:`checked` wraps a stage function so that the first
:data:`CHECK_RECORDS` records a task's calls yield are checked; with no
``Yields`` it returns the function itself, so a check that is off costs
nothing. It does not check a stage's input, nor what ``done`` hooks and
combiners yield.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from discodsl.worker.errors import StageError, a_type, brief

# Records checked per task; later ones pass unchecked.
CHECK_RECORDS = 100
# Elements of a collection value (a list, a dict ...) checked per record.
ELEMENTS = 8

Desc = tuple[Any, ...]
ANY: Desc = ("any",)


@dataclass(frozen=True)
class Yields:
    """What a stage's return annotation says it yields, as a worker checks it.

    ``item`` describes each yielded record; ``key`` and ``value`` (a description
    and its text, e.g. ``(("class", (int,)), "int")``) are set when the record
    is annotated as a ``tuple[K, V]``. ``annotation`` is the return annotation's text.
    """

    annotation: str
    item: Desc
    item_text: str
    key: tuple[Desc, str] | None = None
    value: tuple[Desc, str] | None = None


def checked(spec: Any, function: Callable[..., Any], limit: int = CHECK_RECORDS) -> Any:
    """``function`` (a stage's, bound) checking the first ``limit`` records its calls yield
    against ``spec.yields``; ``function`` itself when there is nothing to check."""
    expected: Yields | None = getattr(spec, "yields", None)
    if expected is None or limit <= 0:
        return function
    left = [limit]
    name = spec.name

    def checking_call(*args: Any) -> Any:
        result = function(*args)
        if left[0] <= 0 or result is None:
            return result
        try:
            iterator = iter(result)
        except TypeError:
            return result  # the stage's own output check says what is wrong
        return _checking(name, expected, iterator, left)

    return checking_call


def _checking(name: str, expected: Yields, iterator: Iterator[Any], left: list[int]) -> Any:
    for item in iterator:
        check_record(name, expected, item)
        left[0] -= 1
        yield item
        if left[0] <= 0:
            yield from iterator
            return


def check_record(name: str, expected: Yields, item: Any) -> None:
    """StageError naming stage ``name``, ``item`` and the type expected, if ``item`` does not
    match; an item that is not a pair at all is left to the stage's own output check."""
    pair = (item.__class__ is tuple or isinstance(item, list)) and len(item) == 2
    if expected.key is not None and expected.value is not None:
        if pair:
            _check_part(name, expected, item, 0, expected.key)
            _check_part(name, expected, item, 1, expected.value)
    elif pair and not matches(expected.item, tuple(item)):
        raise StageError(
            f"stage {name!r} yielded {brief(item, 80)}, but {name} is annotated "
            f"`-> {expected.annotation}`: records must be {expected.item_text}; "
            "fix what the stage yields, or its annotation",
            stage=name,
        )


def _check_part(name: str, expected: Yields, item: Any, index: int, part: tuple[Desc, str]) -> None:
    desc, text = part
    value = item[index]
    if matches(desc, value):
        return
    which = ("key", "value")[index]
    raise StageError(
        f"stage {name!r} yielded {brief(item, 80)}: its {which} {brief(value, 40)} is "
        f"{a_type(value)}, but {name} is annotated `-> {expected.annotation}`: "
        f"{which}s must be {text}; yield {text} {which}s, or change the annotation",
        stage=name,
    )


def matches(desc: Desc, value: Any) -> bool:
    """Whether ``value`` fits the description ``desc`` (see the module docstring)."""
    try:
        return _MATCHERS[desc[0]](desc, value)
    except Exception:  # a value whose __eq__ or __iter__ fails: not ours to judge
        return True


def _named(desc: Desc, value: Any) -> bool:
    _, module, qualname = desc
    return any(c.__module__ == module and c.__qualname__ == qualname for c in type(value).__mro__)


def _tuple(desc: Desc, value: Any) -> bool:
    parts = desc[1]
    return (
        isinstance(value, tuple)
        and len(value) == len(parts)
        and all(matches(d, v) for d, v in zip(parts, value, strict=False))
    )


def _tuple_of(desc: Desc, value: Any) -> bool:
    return isinstance(value, tuple) and all(matches(desc[1], v) for v in value[:ELEMENTS])


def _items(desc: Desc, value: Any) -> bool:
    _, container, element = desc
    if not matches(container, value):
        return False
    if not isinstance(value, Collection):
        return True  # an iterator: reading it would consume it
    return all(matches(element, v) for v in islice(value, ELEMENTS))


def _mapping(desc: Desc, value: Any) -> bool:
    _, container, key, item = desc
    if not matches(container, value):
        return False
    if not isinstance(value, Mapping):
        return True
    pairs = islice(value.items(), ELEMENTS)
    return all(matches(key, k) and matches(item, v) for k, v in pairs)


_MATCHERS: dict[str, Callable[[Desc, Any], bool]] = {
    "any": lambda desc, value: True,
    "class": lambda desc, value: isinstance(value, desc[1]),
    "named": _named,
    "union": lambda desc, value: any(matches(d, value) for d in desc[1]),
    "literal": lambda desc, value: value in desc[1],
    "tuple": _tuple,
    "tuple_of": _tuple_of,
    "items": _items,
    "mapping": _mapping,
}
