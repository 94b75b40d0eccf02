"""How a task calls the user's functions: ``params`` bound, hooks given what they take, a
StopIteration kept an error, and a pair returned by a function without ``yield`` refused.

Not here: what is done with what the calls make (:mod:`.execute`, :mod:`.combiner`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from discodsl.worker.blame import Maker
from discodsl.worker.errors import StageError, brief, defined_at, named
from discodsl.worker.spec import StageSpec, params_passing, positional_arity


def pass_pairs(record: Any) -> tuple[Any]:
    """The function of the map a reduce-only job with partitions > 1 starts with (see
    ``discodsl.model.pipeline``): each record passed on as it is, to be labelled."""
    return (record,)


def params_bound(
    function: Callable[..., Any], takes_params: bool, params: Any, before: int
) -> Callable[..., Any]:
    """``function`` with ``params`` filled in, if it takes them (after ``before``
    arguments), by keyword or positionally as it takes them (see ``params_passing``)."""
    if not takes_params:
        return function
    if params_passing(function, before) == "keyword":
        return partial(function, params=params)
    return lambda *args: function(*args, params)


def args_before_params(stage: StageSpec) -> int:
    """How many arguments a call of the stage's function passes before ``params``."""
    return 2 if stage.kind == "reduce" else 1


def one_pair_refused(
    maker: Maker, own: Callable[..., Any], function: Callable[..., Any]
) -> Callable[..., Any]:
    """``function`` (``own``, bound), refusing a two-item tuple it returns: ``return key,
    value`` in a function without ``yield``, whose two items would be taken as records, and
    silently so when each is a pair itself (a tuple key and a tuple value). A function
    that yields is ``function`` itself."""
    if not maker.returns or own is pass_pairs:
        return function

    def call(*args: Any) -> Any:
        result = function(*args)
        if result.__class__ is tuple and len(result) == 2:
            raise _returned_pair(maker, result)
        return result

    return call


def _returned_pair(maker: Maker, result: tuple[Any, Any]) -> StageError:
    key, value = result
    return StageError(
        f"{maker.who} returned the two-item tuple {brief(result, 80)}; it has no `yield`, so "
        f"what it returns is iterated, each item a record: {brief(key, 40)} and "
        f"{brief(value, 40)} would be two records: yield the pair (`yield key, value`), or "
        "return a list of pairs (`return [(key, value)]`)",
        stage=maker.name,
    )


def call_hook(hook: Callable[..., Any] | None, params: Any, *state: Any) -> Any:
    """Call an init or done hook with as many of ``(*state, params)`` as it accepts."""
    if hook is None:
        return None
    args = (*state, params)
    returned = hook(*args[: positional_arity(hook)])
    if inspect.iscoroutine(returned):  # a plain def functools.wraps made around an async one
        returned.close()
        role = "init" if not state else "done"
        raise StageError(
            f"the {role} hook {named(hook)!r}{defined_at(hook)} returned a coroutine, never "
            "awaited: its body never ran (it calls an async function, and tasks run without "
            "an event loop); run that to its end in a plain `def`, e.g. "
            "`return asyncio.run(setup(params))`"
        )
    return returned


class Stopped(Exception):
    """A StopIteration that the user's function raised, carried out of :func:`results_of`."""

    def __init__(self, stop: StopIteration) -> None:
        super().__init__(stop)
        self.stop = stop


def results_of(
    function: Callable[..., Any], arguments: Iterable[Any], spread: bool = False
) -> Iterator[Any]:
    """What ``function`` returns for each of ``arguments`` (each spread into its positional
    arguments if ``spread``), as ``map`` (or ``starmap``) gives it, but a StopIteration the
    function raises stays an error: ``map`` would take it for the end of the arguments and
    drop the rest of the task's records without a word."""
    for argument in arguments:
        try:
            result = function(*argument) if spread else function(argument)
        except StopIteration as stop:
            raise Stopped(stop) from None
        yield result
