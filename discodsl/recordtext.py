"""Records as lines of text, for ``discodsl run`` and ``results``: escaped TSV, or tagged
JSON lines (:data:`OUTPUT_FORMATS` says how; ``ast.literal_eval`` of a TSV field that reads
as a literal gives its value back, any other field is text).

Not here: where the lines go (:mod:`discodsl.stdio`).
"""

from __future__ import annotations

import ast
import collections
import json
import math
import numbers
import re
import sys
import warnings
from collections.abc import Iterable
from enum import Enum
from typing import IO, Any

from discodsl.errors import JobError
from discodsl.worker.errors import digits_unlimited

OUTPUT_FORMATS = """\
output, one record per line:
  TSV (default)  KEY<TAB>VALUE. A str prints as itself with \\ TAB NEWLINE CR
                 written as \\\\ \\t \\n \\r, unless that text reads as a Python
                 literal (None, 2, 'x'): then as its repr, quoted. Any other value
                 prints as its repr (None, 2, b'x', ('k', 1)), a set's items sorted
                 where it sits in tuples, namedtuples, lists and dicts (the same from
                 run to run; not inside other classes' reprs). So a field that
                 ast.literal_eval reads is that value; any other field is text.
                 (A repr that is no literal, e.g. nan or a datetime, reads as text.)
  --json         JSON lines: one [KEY, VALUE] array per line. str, int, finite
                 float, bool, None, lists and dicts with str keys are JSON; any
                 other value (tuple, bytes, set, nan, other objects, a dict whose
                 only key is "repr", a str holding a lone surrogate, which strict
                 JSON parsers refuse) is {"repr": "<its Python repr>"}.
  A result that is no (KEY, VALUE) pair (a line of a raw:// input a job of
  no stages gives back) is one field: alone on its line, or a one-item
  array.
"""


def write_records(results: Iterable[Any], out: IO[str], *, as_json: bool) -> None:
    """TSV or JSON lines, as :data:`OUTPUT_FORMATS` says; a JobError naming the record
    whose key or value cannot be printed (its repr raised)."""
    for number, record in enumerate(results):
        try:
            line = _whole_line(record, as_json=as_json)
        except Exception as exc:
            raise JobError(
                f"cannot print record {number} of the results ({_kinds(record)}): its repr() "
                f"raised {type(exc).__name__}: {exc}; fix that class's __repr__, or read the "
                "results in Python"
            ) from exc
        out.write(line + "\n")


def _kinds(record: Any) -> str:
    if _paired(record):
        return f"{type(record[0]).__name__} key, {type(record[1]).__name__} value"
    return f"a {type(record).__name__}, no (key, value) pair"


def _paired(record: Any) -> bool:
    return type(record) is tuple and len(record) == 2


def _whole_line(record: Any, *, as_json: bool) -> str:
    """One record as a line, its ints whole: one of more digits than Python turns into
    text by default (``sys.get_int_max_str_digits()``, 4,300) raises ValueError, so the
    record is written again with the limit lifted, for that record alone."""
    try:
        return _line(record, as_json=as_json)
    except ValueError:
        if getattr(sys, "get_int_max_str_digits", int)() == 0:  # no limit (3.10 has none)
            raise
    with digits_unlimited():
        return _line(record, as_json=as_json)


def _line(record: Any, *, as_json: bool) -> str:
    """One record as a line of TSV or JSON: a pair's two fields, or anything else's one."""
    if type(record) is not tuple or len(record) != 2:  # (_paired, inline: once a record)
        return json.dumps([_json_value(record)], allow_nan=False) if as_json else _tsv_field(record)
    key, value = record
    if as_json:
        return json.dumps([_json_value(key), _json_value(value)], allow_nan=False)
    return f"{_tsv_field(key)}\t{_tsv_field(value)}"


def _plain(value: Any) -> Any:
    """A str, int or float of a subclass that only holds one (numpy's str_ and float64),
    or an integer of another library's type (numpy's int64), as that plain value; an Enum
    member, or any other value, as it is."""
    if type(value) in _AS_THEY_ARE or isinstance(value, Enum):
        return value
    if isinstance(value, _PLAIN_TYPES):
        return next(base for base in _PLAIN_TYPES if isinstance(value, base))(value)
    if isinstance(value, numbers.Integral):  # numpy's int64, which is no int
        return int(value)
    return value


_PLAIN_TYPES = (str, int, float)
_AS_THEY_ARE = frozenset({str, int, float, bool})


def _tsv_field(value: Any) -> str:
    """A str as itself (escaped) unless that reads as a literal or is no UTF-8 (a lone
    surrogate); anything else as its repr."""
    kind = type(value)
    if kind is int or kind is float or kind is bool or value is None:
        return repr(value)  # the usual: no escapes, no sets
    if kind is str and value.isalnum() and value.isascii() and not value[0].isdigit():
        return value if value not in _NAMED_LITERALS else repr(value)  # a word, the usual
    value = _plain(value)
    if type(value) is not str:
        return _CONTROL.sub(lambda m: _ESCAPES[m[0]], stable_repr(value))  # a repr's raw tabs
    if not value.isascii() and not _utf8(value):
        return repr(value)  # which writes a lone surrogate as \udXXX
    text = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    text = text.replace("\r", "\\r")
    return repr(value) if reads_as_literal(text) else text


def _utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CONTROL = re.compile("[\t\n\r]")
# The words ast.literal_eval reads.
_NAMED_LITERALS = frozenset({"None", "True", "False"})


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


_WORD = re.compile(r"[ \t]*([^\W\d]\w*)(.?)")


def reads_as_literal(text: str) -> bool:
    """Whether :func:`ast.literal_eval` reads ``text`` (most words, dates, times, addresses
    and numbers are told unparsed), or would with no limit on an int's digits (Python's
    4,300: such a str is quoted, so that it is not taken for the int)."""
    if _starts_with_a_name(text):
        return False
    if _NUMERIC_TEXT.fullmatch(text):
        return _ONE_NUMBER.fullmatch(text) is not None
    return literal_evaluates(text)


def literal_evaluates(text: str) -> bool:
    """What :func:`reads_as_literal` tells, asked of :func:`ast.literal_eval` itself."""
    try:
        with warnings.catch_warnings():  # "1or 2" is read with a SyntaxWarning
            warnings.simplefilter("ignore")
            ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:  # the digit limit is a SyntaxError in a literal
        return "integer string conversion" in str(exc)
    except (TypeError, MemoryError, RecursionError):
        return False
    return True


# Text of digits, dots, dashes, colons, slashes, signs and blanks (dates, times, addresses,
# versions, ids): with no letter, quote, bracket, comma nor ``#``, a literal only as one
# decimal number, signed or not, or as ``...``; parsing each such field cost ten times
# writing it.
_NUMERIC_TEXT = re.compile(r"[0-9.:/_+\- ]*")
_DIGITS = r"[0-9](?:_?[0-9])*"
_NUMBER = rf"(?:{_DIGITS}\.(?:{_DIGITS})?|\.{_DIGITS}|[1-9](?:_?[0-9])*|0(?:_?0)*)"
_ONE_NUMBER = re.compile(rf"[ ]*(?:(?:[+-][ ]*)?{_NUMBER}|\.\.\.)[ ]*")


def _starts_with_a_name(text: str) -> bool:
    """Text led by a name that is no None/True/False nor a b'' or r"" prefix: no literal."""
    word = _WORD.match(text)
    if word is None or word[1] in ("None", "True", "False", "set"):  # set(): an empty set
        return False
    return not (len(word[1]) <= 2 and word[2] in ("'", '"'))


def _json_value(value: Any) -> Any:
    """``value`` where JSON holds it exactly, else ``{"repr": repr(value)}``."""
    value = _plain(value)
    kind = type(value)
    if kind is str:
        return value if _unicode(value) else {"repr": repr(value)}
    if kind in (int, bool) or value is None or (kind is float and math.isfinite(value)):
        return value
    if kind is list:
        return [_json_value(item) for item in value]
    if (
        kind is dict
        and all(type(k) is str and _unicode(k) for k in value)
        and list(value) != ["repr"]
    ):
        return {k: _json_value(v) for k, v in value.items()}
    return {"repr": stable_repr(value)}


def _unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text, which strict JSON parsers take: no lone surrogate
    (an undecodable byte of a file name), which JSON would write as an escape they refuse."""
    return _SURROGATE.search(text) is None


_SURROGATE = re.compile("[\ud800-\udfff]")


def stable_repr(value: Any) -> str:
    """``repr(value)``, but with the items of each set and frozenset in it sorted (see
    _item_reprs), so that the same results print alike from run to run: a set's
    own order follows its items' hashes, which for str and bytes change from process to
    process. A container that holds itself, or nests too deep, prints as repr() has it."""
    text = repr(value)
    if "{" not in text:  # no set in it (nor a dict): nothing to order
        return text
    try:
        return _ordered_repr(value, set())
    except (_Cyclic, RecursionError):
        return text


class _Cyclic(Exception):
    """A container holds itself: repr() shows it as it does."""


def _ordered_repr(value: Any, inside: set[int]) -> str:
    kind = type(value)
    if kind not in _CONTAINERS:
        if _named_tuple(value):  # as its own repr, Point(x=1, y={...})
            fields = (
                f"{name}={_ordered_repr(item, inside)}"
                for name, item in zip(value._fields, value, strict=True)
            )
            return f"{kind.__name__}({', '.join(fields)})"
        return repr(value)
    if id(value) in inside:
        raise _Cyclic
    inside.add(id(value))
    try:
        if kind is dict:
            items = (
                f"{_ordered_repr(k, inside)}: {_ordered_repr(v, inside)}" for k, v in value.items()
            )
            return "{" + ", ".join(items) + "}"
        parts = _item_reprs(value, inside)
    finally:
        inside.discard(id(value))
    if kind is tuple:
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    if kind is list:
        return "[" + ", ".join(parts) + "]"
    inner = "{" + ", ".join(parts) + "}" if parts else ""
    return inner if kind is set and parts else f"{kind.__name__}({inner})"


def _named_tuple(value: Any) -> bool:
    """Whether ``value`` is a namedtuple (or NamedTuple) that prints as they do."""
    repr_code = getattr(type(value).__repr__, "__code__", None)
    return isinstance(value, tuple) and repr_code is _NAMEDTUPLE_REPR


_NAMEDTUPLE_REPR = collections.namedtuple("_", "a").__repr__.__code__  # every one's


def _item_reprs(items: Any, inside: set[int]) -> list[str]:
    """The reprs of a tuple's or list's items, in order; of a set's, sorted: all str, all
    bytes or all numbers (no NaN) by value, any others by how they print (a total order:
    sets of sets compare by inclusion only)."""
    if type(items) in (tuple, list):
        return [_ordered_repr(item, inside) for item in items]
    kinds = {type(item) for item in items}
    if kinds <= {str} or kinds <= {bytes} or (kinds <= {int, float} and _no_nan(items)):
        return [_ordered_repr(item, inside) for item in sorted(items)]
    return sorted(_ordered_repr(item, inside) for item in items)


def _no_nan(numbers: Any) -> bool:
    return all(number == number for number in numbers)


_CONTAINERS = frozenset({tuple, list, dict, set, frozenset})
