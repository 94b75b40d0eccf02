"""Stages made with functools.partial, as tutorial 3 shows them, on every runner."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from discodsl import job, map


def grep(line: str, params: Any) -> Iterator[tuple[str, Any]]:
    if params is None or params["pattern"] in line:
        yield line, params


errors = map(functools.partial(grep, params={"pattern": "error"}), name="errors")
nested = map(functools.partial(functools.partial(grep, params={"pattern": "two"})), name="nested")
open_ended = map(functools.partial(grep), name="open_ended")


@job(params={"pattern": "ok"})
def greps_errors() -> list[Any]:
    return [errors]


@job(params={"pattern": "ok"})
def greps_nested() -> list[Any]:
    return [nested]


@job(params={"pattern": "ok"})
def greps_with_the_jobs() -> list[Any]:
    return [open_ended]


LINES = ["raw://error one\nok two"]


@pytest.mark.parametrize("mode", ["inline", "local", "cluster"], indirect=True)
def test_a_partial_that_fills_in_params_keeps_them_as_a_call_by_hand_does(mode: str) -> None:
    """The job's params replaced the partial's, silently (None for a job without params),
    while a call by hand, and the same partial as an init hook, kept them."""
    assert list(errors("error one")) == [("error one", {"pattern": "error"})]
    assert list(greps_errors.run(LINES, mode=mode)) == [("error one", {"pattern": "error"})]
    assert list(greps_nested.run(LINES, mode=mode)) == [("ok two", {"pattern": "two"})]
    # a partial that leaves params open is given the job's, as a function is
    assert list(greps_with_the_jobs.run(LINES, mode=mode)) == [("ok two", {"pattern": "ok"})]
