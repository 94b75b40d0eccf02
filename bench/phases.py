"""Where a wordcount run's time goes, phase by phase, in one process.

usage: python bench/phases.py [--mb 200] [--parts 8] [--data bench/data] [FILE ...]

Runs the README's wordcount (examples/wordcount.py: ``@map words``,
``@reduce(combine=True) total``, 4 partitions) the way a worker does, but
in this process and with no runner: one map task per part file (``--mb`` MB
of bench/corpus.py's corpus in ``--parts`` files, or the FILEs given), then
one reduce task per partition over every map task's outputs, then reading
the results back. Prints one table: wall and CPU seconds per phase, summed
over the tasks, and each phase's share of the total.

How each phase is measured (no timing code in the product: the seams are
wrapped here, and a phase that is interleaved with another in a task is
measured by a pass of its own):

- read: the task's input records, listed (inputs.iter_input; record files
  for a reduce);
- map: user code: the map function over every record, output consumed and
  dropped (its own pass);
- map: combine: the combined map's loop (``_Combiner.consume_map``) less the
  user code above: a dict update per pair, as in mp_pairs' fold;
- map: combiner calls: the combiner (here the reduce, ``combine=True``) called
  on each key's values (``_Combiner._results``, run to the end here: in the
  product its records are made lazily, as they are labelled);
- map: other: the rest of the map task (opening files, hooks);
- partition: labelling each combined record with its partition
  (``_Outputs.add_many`` less the writing in it);
- write: pickling the records and writing the files (``RecordWriter``'s
  ``write_many``, ``write`` and ``close``), map and reduce;
- reduce: group: sorting and grouping a partition's records (its own pass);
- reduce: user code: the reduce function over those groups (its own pass);
- reduce: other: the reduce task less its grouping, user code and writing;
- results: reading the reduce outputs back, as the client does.

A row below the table gives the hand-written loop on the same records for
scale: mp_pairs' fold (``into[key] = get(key, 0) + value`` over the map's
pairs), the floor of a per-record map and combine. The local runner adds
what is not here: worker start-up, the protocol, reading by the client.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import corpus
from _harness import HERE, load

sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE.parent))

from wordcount import wordcount

from discodsl.worker import combiner, execute, outputs, records
from discodsl.worker.groupby import group_sorted
from discodsl.worker.inputs import Cursor, iter_input
from discodsl.worker.opening import Node
from discodsl.worker.task import TaskSetup

ORDER = (
    "read",
    "map: user code",
    "map: combine",
    "map: combiner calls",
    "map: other",
    "partition",
    "write",
    "reduce: group",
    "reduce: user code",
    "reduce: other",
    "results",
)


class Clock:
    """Wall and CPU seconds per phase; a wrapped call nested in another counts for its own."""

    def __init__(self) -> None:
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self._stack: list[str] = []
        self._since = (0.0, 0.0)
        self.enabled = set(ORDER)  # the wrapped seams that count now

    def _charge(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self._stack:
            self.wall[self._stack[-1]] += now[0] - self._since[0]
            self.cpu[self._stack[-1]] += now[1] - self._since[1]
        self._since = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the time spent inside to ``name`` (less what nested phases take)."""
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Charge every call of ``owner.attribute`` to ``name`` (while ``self.enabled``)."""
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if name not in self.enabled:
                return original(*args, **kwargs)
            with self.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)

    def move(self, source: str, target: str, wall: float, cpu: float) -> None:
        """Count ``wall``/``cpu`` seconds measured under ``source`` as ``target``'s."""
        self.wall[source] -= wall
        self.cpu[source] -= cpu
        self.wall[target] += wall
        self.cpu[target] += cpu


def instrument(clock: Clock) -> None:
    """Wrap the seams: the combined map's loop, the combiner's calls, labelling, writing."""
    clock.wrap(combiner.Combiner, "consume_map", "map: combine")
    results = combiner.Combiner._results

    def eager(held: combiner.Combiner) -> list[list[Any]]:
        """Every combiner call made now, so that its time is its own phase's: what they
        made, in one list (as one iterable of records, the shape ``_results`` gives)."""
        with clock.phase("map: combiner calls"):
            return [list(chain.from_iterable(results(held)))]

    combiner.Combiner._results = eager  # type: ignore[method-assign]
    clock.wrap(outputs.Outputs, "add_many", "partition")
    for attribute in ("write_many", "write", "close"):
        clock.wrap(records.RecordWriter, attribute, "write")


def map_task(clock: Clock, spec: Any, taskid: int, path: Path, workdir: str) -> list[Any]:
    """One map task over ``path``; its ``(label, path, size)`` outputs."""
    with clock.phase("read"):
        lines = list(iter_input([str(path)], 0, Node(), Cursor()))
    function = spec.stages[0].function
    with clock.phase("map: user code (own pass)"):
        deque(chain.from_iterable(map(function, lines)), 0)
    user_wall = clock.wall.pop("map: user code (own pass)")
    user_cpu = clock.cpu.pop("map: user code (own pass)")
    clock.move("map: combine", "map: user code", user_wall, user_cpu)
    with clock.phase("reference"):
        fold(function, lines)
    task = TaskSetup(spec, 0, taskid, workdir=workdir, outdir="map", tag="phases")
    with clock.phase("map: other"):
        return execute.run_task(task, lines)


def fold(function: Callable[[Any], Iterable[tuple[Any, Any]]], lines: list[str]) -> None:
    """mp_pairs' loop: the map's pairs folded into a dict by hand."""
    into: dict[Any, Any] = {}
    get = into.get
    for line in lines:
        for key, value in function(line):
            into[key] = get(key, 0) + value


def reduce_task(clock: Clock, spec: Any, label: int, inputs: list[str], workdir: str) -> list[Any]:
    """The reduce task of partition ``label`` over the map outputs ``inputs``."""
    with clock.phase("read"):
        pairs = list(chain.from_iterable(read_file(path) for path in inputs))
    stage = spec.stages[1]
    with clock.phase("reduce: group"):
        for _, values in group_sorted(pairs, budget=spec.memory_budget, tmpdir=workdir):
            deque(values, 0)
    groups = [  # untimed: the groups again, for the user code's own pass
        (key, list(values))
        for key, values in group_sorted(pairs, budget=spec.memory_budget, tmpdir=workdir)
    ]
    with clock.phase("reduce: user code"):
        for key, values in groups:
            deque(stage.function(key, iter(values)), 0)
    del groups
    # Fresh records for the task: the passes above left every key's hash cached.
    pairs = list(chain.from_iterable(read_file(path) for path in inputs))
    task = TaskSetup(spec, 1, label, label=label, workdir=workdir, outdir="reduce", tag="phases")
    clock.enabled.discard("partition")  # the last stage's add_many runs the reduce, lazily
    try:
        with clock.phase("reduce: task"):
            return execute.run_task(task, pairs)
    finally:
        clock.enabled.add("partition")


def read_file(path: str) -> list[Any]:
    with open(path, "rb") as stream:
        return list(records.read_records(stream, path))


def run(files: list[Path], workdir: str) -> Clock:
    """Every phase of the job over ``files``, timed."""
    clock = Clock()
    instrument(clock)
    spec = wordcount.spec()
    written: list[tuple[int, str, int]] = []
    for taskid, path in enumerate(files):
        written += map_task(clock, spec, taskid, path, workdir)
    outputs: list[str] = []
    for label in sorted({label for label, _, _ in written}):
        inputs = [os.path.join(workdir, name) for tag, name, _ in written if tag == label]
        done = reduce_task(clock, spec, len(files) + label, inputs, workdir)
        outputs += [os.path.join(workdir, name) for _, name, _ in done]
    with clock.phase("results"):
        total = sum(len(read_file(path)) for path in outputs)
    print(f"{total:,} distinct words", file=sys.stderr)
    settle_reduce(clock)
    return clock


def settle_reduce(clock: Clock) -> None:
    """The reduce task's time less its grouping and user code (timed in their own passes)."""
    for figures in (clock.wall, clock.cpu):
        task = figures.pop("reduce: task", 0.0)
        figures["reduce: other"] = task - figures["reduce: group"] - figures["reduce: user code"]


def table(clock: Clock, title: str) -> str:
    """The phases as a Markdown table, and the hand-written loop below it."""
    total_wall = sum(clock.wall[name] for name in ORDER)
    total_cpu = sum(clock.cpu[name] for name in ORDER)
    rows = [
        "| phase | wall s | CPU s | share |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {clock.wall[name]:.2f} | {clock.cpu[name]:.2f} | "
            f"{clock.wall[name] / total_wall:.0%} |"
            for name in ORDER
        ),
        f"| total | {total_wall:.2f} | {total_cpu:.2f} | 100% |",
    ]
    loop = clock.cpu["map: user code"] + clock.cpu["map: combine"]
    reference = (
        f"\nfor scale, mp_pairs' hand-written loop (map and fold) over the same records: "
        f"wall {clock.wall['reference']:.2f} s, CPU {clock.cpu['reference']:.2f} s; "
        f"map: user code and map: combine together are {loop / clock.cpu['reference']:.2f}x "
        "its CPU"
    )
    return f"{title}\n\n" + "\n".join(rows) + reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="*", type=Path, help="part files (default: the corpus)")
    parser.add_argument("--mb", type=float, default=200, help="corpus size (default 200)")
    parser.add_argument("--parts", type=int, default=8, help="corpus part files (default 8)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the corpus is")
    args = parser.parse_args()
    files = args.files or corpus.corpus(args.data, args.mb, args.parts)[1]
    workdir = tempfile.mkdtemp(prefix="phases-")
    try:
        clock = run(files, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    size = sum(path.stat().st_size for path in files) / 1e6
    title = (
        f"wordcount by phase, {size:.0f} MB in {len(files)} map tasks and 4 reduce tasks, "
        f"in one process; Python {sys.version.split()[0]}; load average {load()}"
    )
    print(table(clock, title))


if __name__ == "__main__":
    main()
