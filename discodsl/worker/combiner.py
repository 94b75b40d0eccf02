"""The combiner: a map's output folded per key through the next reduce in the map's own
task, before it is written, within the job's memory budget.

Not here: when a task has one (:func:`combiner_for`, called by :mod:`.execute`), or
the files it writes to (:mod:`.outputs`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from typing import Any

from discodsl.worker.blame import WRITE_ERRORS, maker_of, not_pairs, raised_by_user, raised_in
from discodsl.worker.calls import Stopped, one_pair_refused, params_bound
from discodsl.worker.errors import StageError, brief, named
from discodsl.worker.group_errors import hashable
from discodsl.worker.memory import Growth, runs
from discodsl.worker.outputs import WRITING, Outputs, stream
from discodsl.worker.records import RecordWriter, as_pair, is_pair
from discodsl.worker.spec import StageSpec, takes_params
from discodsl.worker.task import NO_ITEM, NoPosition, Place, TaskSetup

# Map output is folded through the combiner once this many values are buffered.
COMBINE_VALUES = 1 << 21
# Input records read between two combiner checks, at most (fewer while records are big).
CHUNK = 2048
# A combined map looks at its memory within a record too (one that yields many pairs: a
# whole file, a JSON document), after at most this many new keys while counting, pairs while
# listing: fewer while they are big (Growth.paced).
WITHIN_RECORD = 4096


class Combiner:
    """Folds map output per key through the next stage's reduce before it is written.

    Values are buffered per key, in the order they came. While every value
    is one and the same object (``yield word, 1``: the constant ``1``), each
    key's values are *counted* rather than listed: ``counts[key]`` copies of
    ``same``. That is exact (the combiner gets those very objects, in order),
    not a guess about the combiner, and costs a dict update per pair where a
    list append costs about twice that. The first other value turns the counts
    into lists, and from then on every value is listed.

    What is held goes through the combiner straight into the output files
    when the process has grown by half the memory budget, and at the end; a
    key's values are folded (replaced by what the combiner makes of them)
    whenever COMBINE_VALUES values in all are held, and written out if that
    leaves half as many.

    A map's key that does not hash (a list: a sorted reduce takes it) ends the
    combining for the task: what is held is combined and written, and every
    later pair is written as the map made it (a combiner may run on a key any
    number of times, or not at all).
    """

    def __init__(
        self,
        stage: StageSpec,
        function: Callable[..., Any],
        params: Any,
        budget: int,
        outputs: Outputs,
        where: Place | None = None,
        source: StageSpec | None = None,
    ):
        self.outputs = outputs  # where combined records go: when memory runs short, and at the end
        self.source = source  # the stage whose records it combines (named if one is bad)
        # Whether it takes params: asked of the reduce when declared (combine=True), else here.
        own = function is not stage.function
        with_params = takes_params(function, 2) if own else stage.takes_params
        self.who = (  # who makes the combined records, for the errors about them
            f"the combiner {named(function)!r} of reduce {stage.name!r}" if own else ""
        )
        bound = params_bound(function, with_params, params, 2)
        self.stage, self.function = (
            stage,
            one_pair_refused(maker_of(stage, self.who), function, bound),
        )
        # Plain dicts, not defaultdicts: CPython specialises subscripts of exact dicts,
        # which makes the per-value loops below about a quarter faster.
        self.buffer: dict[Any, list[Any]] = {}
        self.counts: dict[Any, int] = {}  # copies of ``same`` after buffer[key]'s values
        self.same: Any = _UNSET
        self.counting = True
        self.passing: Iterator[Any] | None = None  # once a key did not hash: its record's rest
        self.count = 0
        # Flushes once the process has grown by half the budget, looking between runs of
        # input records (up to CHUNK of them, one while each adds megabytes), and within a
        # record every WITHIN_RECORD new keys or pairs at most (one while each is big).
        self.growth = Growth(budget // 2, most=CHUNK)
        self.unlooked = 1  # pairs add() takes before it looks at the memory again
        self.within = 1  # new keys or pairs between two looks within a record (paced)
        self.where = where or Place(NoPosition())  # notes the key of each call

    def add(self, key: Any, value: Any) -> None:
        """Hold one pair (of a stage that is no map: see consume_map for a map's); one whose
        key does not hash is written as it is (after what is held, in order)."""
        self.unlooked -= 1
        if self.unlooked <= 0:
            self._check_memory()
            self.unlooked = self.growth.every
        try:
            if self.counting:
                if value is self.same:
                    self.counts[key] = self.counts.get(key, 0) + 1
                    return
                self._stop_counting()
            try:
                self.buffer[key].append(value)
            except KeyError:
                self.buffer[key] = [value]
        except TypeError:
            if hashable(key):
                raise
            self.flush()
            self.outputs.add_many([(key, value)])
            return
        self.count += 1
        if self.count >= COMBINE_VALUES:
            self.fold()
            if self.count >= COMBINE_VALUES // 2:  # many keys, few values each: a fold at
                self.flush()  # the next pair would go over them all again, so write them

    def consume_map(
        self, stage: StageSpec, function: Callable[[Any], Any], records: Iterable[Any]
    ) -> None:
        """The hot loop of a combined map (``stage``): no per-record call but the user's."""
        iterator: Iterator[Any] = iter(records)
        if self.counting:
            iterator = self._consume_counting(stage, function, iterator)
        if not self.counting and self.passing is None:
            iterator = self._consume_listed(stage, function, iterator)
        if self.passing is not None:  # the rest as the map makes it, uncombined
            self.flush()
            stream(stage, chain((self.passing,), map(function, iterator)), self.outputs)

    def _consume_counting(
        self, stage: StageSpec, function: Callable[[Any], Any], iterator: Iterator[Any]
    ) -> Iterator[Any]:
        """Count values while each is ``same``; the records left when one is not.

        An item is unpacked first, and counted with no other check when its value is
        ``same``: a pair (a two-item tuple or list) unpacks so, and so does a two-item
        iterable of another type ending in that very object. A two-character string
        is the one such iterable a stage could yield by mistake (``yield word``), so
        values are not counted when the first is a one-character string; the others
        (bytes, sets, ranges) pass, as anything that unpacks passes in Disco. Any
        other item is checked as every loop checks one. Checking each item's type
        before unpacking it cost the fold 5% (0.90 s against 0.85 s on a 25 MB part of
        the benchmark's corpus).
        """
        counts, same = self.counts, self.same
        get = counts.get
        item: Any = NO_ITEM
        fresh = self.within  # new keys before the next look within a record
        for records in runs(iterator, self.growth):
            for record in records:
                result = function(record)
                try:
                    items = iter(result)
                    for item in items:
                        key, value = item  # not a two-item iterable: see not_pairs
                        if value is same:
                            held = get(key, 0)
                            counts[key] = held + 1
                            if held:
                                continue
                            fresh -= 1
                            if not fresh:  # the dicts are flushed in place: names hold
                                fresh = self._look_within_record()
                            continue
                        if item.__class__ is not tuple:
                            key, value = as_pair(item)
                        if same is _UNSET and not counts and _countable(value):  # the first
                            same = self.same = value
                            counts[key] = 1
                        else:
                            self._stop_counting()
                            rest = self._listed(stage, chain(((key, value),), items))
                            self.passing = rest  # None, unless a key did not hash
                            return chain(records, iterator)
                except (TypeError, ValueError) as exc:
                    if _unhashable_key(exc, item, Combiner._consume_counting):
                        self._stop_counting()
                        self.passing = chain((item,), items)
                        return chain(records, iterator)
                    error = not_pairs(stage, exc, result, Combiner._consume_counting, item=item)
                    if error is None:
                        raise
                    raise error from None
            self._check_memory()
            counts, get = self.counts, self.counts.get
        return iterator

    def _consume_listed(
        self, stage: StageSpec, function: Callable[[Any], Any], iterator: Iterator[Any]
    ) -> Iterator[Any]:
        """List every value, as each call of ``function`` yields it; the records left if a
        key does not hash (``passing``)."""
        buffer = self.buffer
        item: Any = NO_ITEM
        pairs = self.within  # pairs before the next look within a record
        for records in runs(iterator, self.growth):
            for record in records:
                result = function(record)
                try:
                    items = iter(result)
                    for item in items:
                        if item.__class__ is not tuple:
                            item = as_pair(item)
                        key, value = item  # a tuple of other length: see not_pairs
                        try:
                            buffer[key].append(value)
                        except KeyError:
                            buffer[key] = [value]
                        pairs -= 1
                        if not pairs:  # the buffer is flushed in place: the name holds
                            pairs = self._look_within_record()
                except (TypeError, ValueError) as exc:
                    if _unhashable_key(exc, item, Combiner._consume_listed):
                        self.passing = chain((item,), items)
                        return chain(records, iterator)
                    error = not_pairs(stage, exc, result, Combiner._consume_listed, item=item)
                    if error is None:
                        raise
                    raise error from None
            self._check_memory()
            buffer = self.buffer
        return iterator

    def _listed(self, stage: StageSpec, items: Iterable[Any]) -> Iterator[Any] | None:
        """The rest of the record that ended the counting: check each of ``items`` is a
        pair and list its value; from the first whose key does not hash, the items left
        (that one first), else None."""
        iterator, buffer = iter(items), self.buffer
        item: Any = NO_ITEM
        pairs = self.within
        try:
            for item in iterator:
                key, value = item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
                try:
                    buffer[key].append(value)
                except KeyError:
                    buffer[key] = [value]
                pairs -= 1
                if not pairs:
                    pairs = self._look_within_record()
        except (TypeError, ValueError) as exc:
            if _unhashable_key(exc, item, Combiner._listed):
                return chain((item,), iterator)
            error = not_pairs(stage, exc, (), Combiner._listed)
            if error is None:
                raise
            raise error from None
        return None

    def _look_within_record(self) -> int:
        """Within a record that yields many pairs: combine and write what is held if the
        process is over half the budget; the count of new keys or pairs to the next look."""
        if self.growth.over():
            self.flush()
            self.growth.released()
        self.within = self.growth.paced(self.within, WITHIN_RECORD)
        return self.within

    def _holds_unpicklable(self, exc: Exception) -> bool:
        """Whether ``exc`` is the pickler's, and a record as the source stage made it (a
        key and one of the values held) does not pickle; only once writing failed."""
        if not raised_in(exc, RecordWriter.write_many, RecordWriter.write):
            return False
        held = ((key, value) for key, values in self.buffer.items() for value in values)
        for record in chain(held, ((key, self.same) for key in self.counts)):
            try:
                pickle.dumps(record)
            except Exception:
                return True
        return False

    def _stop_counting(self) -> None:
        """Turn the counts into listed values; from now on every value is listed."""
        self.counting = False
        self._list_counts()

    def _list_counts(self) -> None:
        """Append each key's counted copies of ``same`` to its list."""
        buffer, same = self.buffer, self.same
        for key, copies in self.counts.items():
            listed = buffer.get(key)
            if listed is None:
                buffer[key] = [same] * copies
            else:
                listed += [same] * copies
        self.counts.clear()

    def _check_memory(self) -> None:
        """Once the process has grown by half the budget since the last check that found it
        so: combine what is held and write it out. A fold alone would keep every key, and a
        map with many keys would grow past any budget; a combiner may run any number of
        times, and the reduce combines what comes from several."""
        if self.growth.look():
            self.flush()
            self.growth.released()

    def fold(self) -> None:
        """Replace each key's buffered values by what the combiner makes of them."""
        folded: dict[Any, list[Any]] = {}
        for key, value in self._combined():
            try:
                folded[key].append(value)
            except KeyError:
                folded[key] = [value]
        self.buffer = folded
        self.counts = {}
        self.count = sum(map(len, folded.values()))

    def _combined(self) -> Iterator[tuple[Any, Any]]:
        """Every key's buffered values through the combiner (a lone value as it is)."""
        try:
            for item in chain.from_iterable(self._results()):
                yield item if item.__class__ is tuple and len(item) == 2 else as_pair(item)
        except (TypeError, ValueError) as exc:
            error = not_pairs(
                self.stage, exc, (), *_COMBINING, maker=maker_of(self.stage, self.who)
            )
            if error is None:
                raise
            raise error from None

    def _results(self) -> Iterator[Iterable[Any]]:
        """What the combiner returns for each key: listed keys first, then counted ones."""
        if self.counts and self.buffer:  # only after a fold while counting
            self._list_counts()
        return chain(self._listed_results(), self._counted_results())

    def _listed_results(self) -> Iterator[Iterable[Any]]:
        function, where = self.function, self.where
        for key, values in self.buffer.items():
            if len(values) == 1:
                yield ((key, values[0]),)
                continue
            where.helped = key  # named if it fails
            try:
                made = tuple(function(key, iter(values)))
            except StopIteration as stop:  # this generator would make it a RuntimeError
                raise Stopped(stop) from None
            one = made[0] if len(made) == 1 else None  # the usual: one pair, of this key
            if one.__class__ is not tuple or len(one) != 2 or (one[0] is not key and one[0] != key):
                self._same_key(key, made)
            yield made
        where.helped = NO_ITEM

    def _counted_results(self) -> Iterator[Iterable[Any]]:
        function, same, where = self.function, self.same, self.where
        for key, copies in self.counts.items():
            if copies == 1:
                yield ((key, same),)
                continue
            where.helped = key
            try:
                made = tuple(function(key, repeat(same, copies)))
            except StopIteration as stop:
                raise Stopped(stop) from None
            one = made[0] if len(made) == 1 else None  # the usual: one pair, of this key
            if one.__class__ is not tuple or len(one) != 2 or (one[0] is not key and one[0] != key):
                self._same_key(key, made)
            yield made
        where.helped = NO_ITEM

    def _same_key(self, key: Any, made: tuple[Any, ...]) -> None:
        """A StageError if a pair the combiner ``made`` of ``key``'s values has another key:
        the reduce would change it again (a combiner runs any number of times, or not at
        all). No pair (a filter on the key) passes, and so does what is no pair, for the
        writing to refuse."""
        for item in made:
            if is_pair(item) and item[0] is not key and item[0] != key:
                who = self.who or f"reduce {self.stage.name!r}, as its own combiner"
                raise StageError(
                    f"{who}, given the key {brief(key, 60)}, yielded the key "
                    f"{brief(item[0], 60)}: a combiner must yield the key it is given (it runs "
                    "on part of a key's values in each map task, any number of times, and the "
                    "reduce takes what it yields in place of those values); a reduce that "
                    "renames its keys cannot combine: drop combine=True, or give "
                    "combiner=fn, a function that only folds the values",
                    stage=self.stage.name,
                )

    def flush(self) -> None:
        """Combine what is held, straight into the output files (whose writing checks each
        record is a pair: no Python frame of ours per record on the way), and let it go."""
        try:
            self.outputs.add_many(chain.from_iterable(self._results()))
        except WRITE_ERRORS as exc:
            if self.source is not None and self._holds_unpicklable(exc):
                # The source stage's record (a key with one value passes on as it came).
                error = not_pairs(self.source, exc, (), *WRITING)
            else:
                error = not_pairs(
                    self.stage, exc, (), *WRITING, *_COMBINING, maker=maker_of(self.stage, self.who)
                )
            if error is None:
                raise
            raise error from None
        self.buffer.clear()
        self.counts.clear()
        self.count = 0


_UNSET: Any = object()  # no value counted yet
# The combiner's loops over what it makes of each key's values.
_COMBINING = (Combiner._combined, Combiner._listed_results, Combiner._counted_results)


def _unhashable_key(exc: Exception, item: Any, loop: Callable[..., Any]) -> bool:
    """Whether ``exc``, raised in ``loop``, is the hashing of ``item``'s key failing (a
    pair whose key is a list, a set, a dict)."""
    if not (isinstance(exc, TypeError) and is_pair(item)) or raised_by_user(exc, loop):
        return False
    return not hashable(item[0])


def _countable(value: Any) -> bool:
    """Whether the combiner may count copies of ``value`` (see _consume_counting)."""
    return not (value.__class__ is str and len(value) == 1)


def combiner_for(task: TaskSetup, where: Place, outputs: Outputs) -> Combiner | None:
    after = task.successor
    function = combining(after)
    if after is None or function is None:
        return None
    budget = task.job.memory_budget
    return Combiner(after, function, task.job.params, budget, outputs, where, task.stage)


def combining(after: StageSpec | None) -> Callable[..., Any] | None:
    """What folds a map's output in its own task: the next reduce's ``combiner``, or the
    reduce itself with ``combine=True``; None if nothing does."""
    if after is None or after.kind != "reduce":
        return None
    if after.combiner is not None:
        return after.combiner
    return after.function if after.combine else None
