"""Property: any pipeline of maps, reduces and general stages gives, on every runner, the
records a plain Python model of it gives, whatever the groupings and the partition count.

A pipeline is one to four steps drawn from: a map (keys halved, records fanned
out, records dropped, every record dropped), a reduce summing each key's
values (with no combiner, ``combine=True`` or a combiner of its own, sorted or
not), and a ``@stage`` under any grouping that passes its task's records on, or
sums them per key within the task (not under ``split``, whose tasks each hold
one input: there the sums would depend on how the records were spread). The
model runs the same functions over all the records at once, so the job's
results, as a multiset, must equal the model's: a grouping that splits a key
between tasks, a partition lost or read twice, a stage left without inputs
that hangs or fails, each shows. It runs on the inline, the local and the
cluster runner (the test master, or the real one ``DISCODSL_TEST_REAL_MASTER``
names: one node, so ``group_node`` holds every record as ``group_all`` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discodsl import job, map, reduce, stage
from tests.record_files import write_inputs

Record = tuple[int, int]


def halve(record: Record) -> Iterator[Record]:
    yield record[0] // 2, record[1]


def fan_out(record: Record) -> Iterator[Record]:
    yield record
    yield record[0] + 10, 1


def keep_even(record: Record) -> Iterator[Record]:
    if record[0] % 2 == 0:
        yield record


def drop_all(record: Record) -> list[Record]:
    return []


def add_up(key: int, values: Iterable[int]) -> Iterator[Record]:
    yield key, sum(values)


def pass_on(records: Iterable[Record]) -> Iterator[Record]:
    yield from records


def sum_per_key(records: Iterable[Record]) -> Iterator[Record]:
    yield from _sums(records).items()


def _sums(records: Iterable[Record]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for key, value in records:
        totals[key] = totals.get(key, 0) + value
    return totals


MAPS = {f.__name__: f for f in (halve, fan_out, keep_even, drop_all)}
STAGES = {f.__name__: f for f in (pass_on, sum_per_key)}
GROUPINGS = ["split", "group_label", "group_all", "group_node", "group_node_label"]
COMBINERS: dict[str, dict[str, Any]] = {
    "none": {},
    "itself": {"combine": True},
    "own": {"combiner": add_up},
}

# A step: ("map", function), ("reduce", combiner, sorted) or ("stage", function, grouping).
Step = tuple[str, str, Any]


@st.composite
def steps(draw: st.DrawFn) -> Step:
    kind = draw(st.sampled_from(["map", "reduce", "stage"]))
    if kind == "map":
        return kind, draw(st.sampled_from(sorted(MAPS))), None
    if kind == "reduce":
        return kind, draw(st.sampled_from(sorted(COMBINERS))), draw(st.booleans())
    grouping = draw(st.sampled_from(GROUPINGS))
    function = "pass_on" if grouping == "split" else draw(st.sampled_from(sorted(STAGES)))
    return kind, function, grouping


Case = tuple[list[list[Record]], list[Step], int | None]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    records = st.lists(st.tuples(st.integers(-6, 6), st.integers(-3, 3)), max_size=12)
    files = draw(st.lists(records, min_size=1, max_size=3))
    pipeline = draw(st.lists(steps(), min_size=1, max_size=4))
    return files, pipeline, draw(st.sampled_from([1, 2, 3, None]))


def _stage_of(index: int, step: Step) -> Any:
    kind, function, option = step
    name = f"step{index}_{function}"
    if kind == "map":
        return map(name=name)(MAPS[function])
    if kind == "reduce":
        return reduce(name=name, sort=option, **COMBINERS[function])(add_up)
    return stage(name=name, grouping=option)(STAGES[function])


def _job(pipeline: list[Step], partitions: int | None) -> Any:
    stages = [_stage_of(index, step) for index, step in enumerate(pipeline)]

    @job(partitions=partitions)
    def pipeline_job() -> list[Any]:
        return stages

    return pipeline_job


def _model(files: list[list[Record]], pipeline: list[Step]) -> Counter[Record]:
    """The pipeline's records, by its functions over all the records at once."""
    records = [record for records in files for record in records]
    for kind, function, _ in pipeline:
        if kind == "map":
            records = [out for record in records for out in MAPS[function](record)]
        elif kind == "reduce" or function == "sum_per_key":
            records = list(_sums(records).items())
    return Counter(records)


SLOW = [HealthCheck.too_slow]
# Examples per runner: a local run of four stages takes about a second, a cluster one more.
EXAMPLES = {"inline": 120, "local": 20, "cluster": 10}


def test_pipelines_give_what_the_model_gives(mode: str, tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES[mode], suppress_health_check=SLOW, deadline=None)
    @given(case=cases())
    def check(case: Case) -> None:
        files, pipeline, partitions = case
        results = _job(pipeline, partitions).run(inputs=write_inputs(tmp_path, files), mode=mode)
        assert Counter(tuple(record) for record in results) == _model(files, pipeline)

    check()
