"""What the master's and DDFS's answers must look like, and the errors when they do not.

:func:`fits` checks parsed JSON against a shape, :func:`answer_json` parses
an answer's body and checks it, :func:`shape_error` is the
:class:`~discodsl.errors.BadAnswer` for a body of the wrong shape, and
:func:`snippet` is the short printable form of a body that error messages quote.

It sends nothing (that is :mod:`discodsl.http`) and knows no endpoint's
shape (those are with the methods that call the endpoints, in
:mod:`discodsl.client` and :mod:`discodsl.ddfs`).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import requests

from discodsl.errors import BadAnswer

__all__ = ["OneOf", "answer_json", "fits", "shape_error", "snippet"]


class OneOf:
    """A shape matching any of several shapes."""

    def __init__(self, *shapes: object):
        self.shapes = shapes


def fits(value: object, shape: object) -> bool:
    """Does ``value`` (parsed JSON) have ``shape``?

    Shapes: a type (``int`` excludes ``bool``; ``object`` is anything),
    ``[s]`` a list of ``s``, ``(s1, s2)`` a list of that length,
    ``{"key": s}`` an object with at least those keys, ``OneOf(...)``.
    """
    if isinstance(shape, OneOf):
        return any(fits(value, s) for s in shape.shapes)
    if shape is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(shape, type):
        return isinstance(value, shape)
    if isinstance(shape, list):
        return isinstance(value, list) and all(fits(v, shape[0]) for v in value)
    if isinstance(shape, tuple):
        return (
            isinstance(value, list)
            and len(value) == len(shape)
            and all(fits(v, s) for v, s in zip(value, shape, strict=True))
        )
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(
            k in value and fits(value[k], s) for k, s in shape.items()
        )
    return False


def snippet(data: bytes | str, limit: int = 200) -> str:
    """A short, printable form of an answer's body (a JSON string is unquoted)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    with contextlib.suppress(ValueError, RecursionError):
        value = json.loads(text)
        if isinstance(value, str):
            text = value
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def answer_json(resp: requests.Response, endpoint: str, shape: object, what: str) -> Any:
    """The answer's JSON, checked against ``shape`` (described as ``what``)."""
    try:
        value = json.loads(resp.content)
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser takes
        value = resp.content
    if isinstance(value, bytes) or not fits(value, shape):
        raise shape_error(endpoint, what, resp.content)
    return value


def shape_error(endpoint: str, what: str, got: object) -> BadAnswer:
    """The error for an answer to ``endpoint`` that is not ``what`` was expected."""
    shown = snippet(got) if isinstance(got, (bytes, str)) else repr(got)[:200]
    return BadAnswer(
        f"{endpoint} answered {shown!r}, expected {what}: is this a Disco 0.5.4 master? "
        'its /disco/version answers with its version, "0.5.4"',
        endpoint=endpoint,
    )
