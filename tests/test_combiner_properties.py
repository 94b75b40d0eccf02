"""Property: a combined map hands its combiner each key's values as the very objects the map
yielded, in the order it yielded them, whatever mix of values comes and whenever it folds.

The combiner counts copies of one value while every value is that object
(``yield word, 1``), lists values once another comes, and folds its buffer
when memory grows. Here maps yield items drawn from a pool of values that are
equal but not identical (``1``, ``True``, ``1.0``), of one-character strings
(never counted: see ``combiner.Combiner._consume_counting``), as tuples or two-item
lists, and folds come at random chunk ends. The combiner wraps what it is given
in a ``Combined``, and unwrapping every record it makes must give, per key, the
objects of the model (the items in yield order), each the very object yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discodsl.worker import combiner as combiner_module
from discodsl.worker import memory
from discodsl.worker.spec import StageSpec

POOL: list[Any] = [1, 1, 1, True, 1.0, 2, "x", "y", None, 10**30, ("t", 1)]
KEYS = ["a", "b", "c", "dd"]


@dataclass(frozen=True)
class Combined:
    """What the combiner made of one call's values."""

    values: tuple[Any, ...]


def wrap(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, Combined]]:
    yield key, Combined(tuple(values))


def unwrapped(value: Any) -> list[Any]:
    """The values a combined record stands for, in order (folds nest Combined values)."""
    if isinstance(value, Combined):
        return [item for inner in value.values for item in unwrapped(inner)]
    return [value]


class Written:
    """The output files a combiner writes to, as the pairs written, in order."""

    def __init__(self) -> None:
        self.pairs: list[Any] = []

    def add_many(self, pairs: Any) -> None:
        self.pairs.extend(pairs)


items = st.tuples(
    st.sampled_from(KEYS), st.integers(0, len(POOL) - 1), st.sampled_from(["tuple", "list"])
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(st.lists(items, max_size=6), max_size=30),
    folds=st.lists(st.booleans(), max_size=40),
    chunk=st.integers(1, 5),
)
def test_the_combiner_gets_every_value_yielded_in_order(
    records: list[list[tuple[str, int, str]]], folds: list[bool], chunk: int
) -> None:
    yielded = [
        [(key, POOL[index]) if form == "tuple" else [key, POOL[index]] for key, index, form in r]
        for r in records
    ]
    model: dict[str, list[Any]] = {}
    for record in yielded:
        for key, value in record:
            model.setdefault(key, []).append(value)

    def produce(number: int) -> list[Any]:
        return yielded[number]

    growth = iter(folds)
    with pytest.MonkeyPatch.context() as patch:
        # Every memory check after a chunk: grown past the budget (a fold) when drawn so.
        patch.setattr(memory, "resident_bytes", lambda: (1 << 40) if next(growth, False) else 0)
        patch.setattr(combiner_module, "CHUNK", chunk)
        after = StageSpec("keep", "reduce", "group_label", wrap, combine=True)
        written = Written()
        combiner = combiner_module.Combiner(after, wrap, None, budget=1 << 20, outputs=written)
        mapped = StageSpec("produce", "map", "split", produce)
        combiner.consume_map(mapped, produce, range(len(yielded)))
        found: dict[str, list[Any]] = {}
        for key, value in chain(written.pairs, combiner._combined()):
            found.setdefault(key, []).extend(unwrapped(value))
    assert sorted(found) == sorted(model)
    for key, values in model.items():
        assert len(found[key]) == len(values)
        assert all(got is want for got, want in zip(found[key], values, strict=True)), key


def test_the_memory_check_reads_this_processs_resident_size() -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc here: the combiner then folds on its value count alone")
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    rss = int(fields["VmRSS"].split()[0]) * 1024
    assert abs(memory.resident_bytes() - rss) < 16 * 1024 * 1024


def test_pairs_added_one_by_one_over_many_keys_are_combined_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reduce feeding a combining reduce (``add``, a pair at a time): past COMBINE_VALUES
    distinct keys, every further pair folded all that was held again (quadratic)."""
    monkeypatch.setattr(combiner_module, "COMBINE_VALUES", 64)
    calls, folds = [0], [0]
    fold = combiner_module.Combiner.fold

    def counted_fold(self: combiner_module.Combiner) -> None:
        folds[0] += 1
        fold(self)

    monkeypatch.setattr(combiner_module.Combiner, "fold", counted_fold)

    def counting(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, Combined]]:
        calls[0] += 1
        yield key, Combined(tuple(values))

    after = StageSpec("keep", "reduce", "group_label", counting, combine=True)
    written = Written()
    combiner = combiner_module.Combiner(after, counting, None, budget=1 << 30, outputs=written)
    pairs = [(f"k{n % 1000}", n) for n in range(2000)]  # 1000 keys, each twice
    for key, value in pairs:
        combiner.add(key, value)
    combiner.flush()
    found: dict[str, list[Any]] = {}
    for key, value in written.pairs:
        found.setdefault(key, []).extend(unwrapped(value))
    assert found == {key: [n for k, n in pairs if k == key] for key, _ in pairs}
    assert calls[0] <= 2 * len(pairs)
    assert folds[0] <= len(pairs) // 32  # a fold per 64 values held at most, not per pair


def test_pairs_added_one_by_one_are_written_out_when_memory_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grown = [False]
    monkeypatch.setattr(memory, "resident_bytes", lambda: (1 << 40) if grown[0] else 0)
    after = StageSpec("keep", "reduce", "group_label", wrap, combine=True)
    written = Written()
    combiner = combiner_module.Combiner(after, wrap, None, budget=1 << 20, outputs=written)
    for n in range(100):
        combiner.add(f"k{n}", n)
    assert written.pairs == []
    grown[0] = True
    for n in range(100, 3000):
        combiner.add(f"k{n}", n)
    assert written.pairs  # written out as the process grew, before the end
