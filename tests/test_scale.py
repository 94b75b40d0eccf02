"""Scale held: many inputs, many tasks, a big reduce partition. Slow: run with `pytest -m slow`.

Memory is measured where it is spent, in processes that start fresh, so an earlier
peak of the test process hides nothing:

- every worker (one process per task) reads its own peak resident size (VmHWM) when
  its task ends (a ``done`` hook) and reports it as a counter of its own,
  ``peak_kb_<pid>_<random>``: counters are summed over tasks, and a name per task keeps
  each value whole even when a pid is reused;
- the job is driven from a child interpreter, which reports how far its own peak rose
  over what it held before the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import count, job, map, reduce, stage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parent.parent
MB = 1024  # in kB, the unit of /proc/<pid>/status
BUDGET_KB = 200 * MB  # what a worker, or the driver's growth, may take in the first two tests
PEAK = "peak_kb_"


def vm_kb(field: str) -> int:
    """This process's ``field`` (VmHWM: peak resident, VmRSS: resident now), in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def report_peak() -> None:
    """A done hook: this worker's peak resident size so far, as a counter of its own."""
    count(f"{PEAK}{os.getpid()}_{uuid.uuid4().hex[:8]}", vm_kb("VmHWM"))


def drive(call: str, timeout: float) -> dict[str, Any]:
    """Run ``call`` (an expression over this module, named ``t``, giving Results) in a fresh
    interpreter: what the results hold, the counters, and the interpreter's peak growth."""
    script = (
        "import json, tests.test_scale as t\n"
        "before = t.vm_kb('VmHWM')\n"
        f"results = {call}\n"
        "got, counters = dict(results), results.counters\n"
        "print(json.dumps({'got': got, 'counters': counters,"
        " 'growth_kb': t.vm_kb('VmHWM') - before}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return outcome


def worker_peaks(counters: dict[str, int]) -> list[int]:
    """The peak of every worker that reported one, in kB."""
    return [kb for name, kb in counters.items() if name.startswith(PEAK)]


def assert_within(outcome: dict[str, Any], tasks: int, worker_kb: int) -> None:
    peaks = worker_peaks(outcome["counters"])
    assert len(peaks) == tasks, f"{len(peaks)} of {tasks} tasks reported their peak"
    assert max(peaks) < worker_kb, f"a worker peaked at {max(peaks) // MB} MB"
    assert outcome["growth_kb"] < BUDGET_KB, f"the driver grew {outcome['growth_kb'] // MB} MB"


@stage(grouping="group_all", done=report_peak)
def count_records(records: Iterable[Any]) -> Iterator[tuple[str, int]]:
    yield "records", sum(1 for _ in records)


@job
def fifty_thousand_inputs() -> list[Any]:
    return [count_records]


def test_fifty_thousand_inputs() -> None:
    call = "t.fifty_thousand_inputs.run([f'raw://{i}' for i in range(50_000)], progress=False)"
    outcome = drive(call, timeout=1800)
    assert outcome["got"] == {"records": 50_000}
    assert_within(outcome, tasks=1, worker_kb=BUDGET_KB)


@map(done=report_peak)
def one(line: str) -> Iterator[tuple[str, int]]:
    yield "lines", 1


@reduce(combine=True, done=report_peak)
def add(key: str, values: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield key, sum(values)


@job(partitions=1)
def ten_thousand_tasks() -> list[Any]:
    return [one, add]


def test_ten_thousand_tasks() -> None:
    call = "t.ten_thousand_tasks.run([f'raw://{i}' for i in range(10_000)], progress=False)"
    outcome = drive(call, timeout=1800)
    assert outcome["got"] == {"lines": 10_000}
    assert_within(outcome, tasks=10_001, worker_kb=BUDGET_KB)


SPILLS = "spill_files_open"
FIRST_KEY = "000000"


def open_spill_files() -> int:
    """How many group-by spill files this process has open."""
    fds = Path("/proc/self/fd")
    targets = []
    for fd in os.listdir(fds):
        try:
            targets.append(os.readlink(fds / fd))
        except OSError:
            continue  # the fd listdir itself used, closed by now
    return sum(Path(target).name.startswith("groupby-") for target in targets)


@map(done=report_peak)
def keyed(line: str) -> Iterator[tuple[str, str]]:
    yield line[:6], line


@reduce(done=report_peak)
def longest(key: str, values: Iterable[str]) -> Iterator[tuple[str, int]]:
    if key == FIRST_KEY:  # the first group of the sorted merge: the runs are open now
        count(SPILLS, open_spill_files())
    yield key, max(len(v) for v in values)


GROUP_BUDGET = 64 * 1024 * 1024


@job(partitions=1, memory_budget=GROUP_BUDGET)
def big_partition() -> list[Any]:
    return [keyed, longest]


# Over the budget a grouping worker may hold: the interpreter with cloudpickle, the runtime
# and this module (a map worker of this job peaks at 18 MB), plus the budget's estimate
# erring and the merge's batches (the reduce peaked at 94 MB when this was written).
SLACK_KB = 48 * MB


def test_a_one_gigabyte_partition_with_a_64_megabyte_budget(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    line = "x" * 90
    with open(path, "w") as handle:
        for i in range(11_000_000):  # ~1 GB of reduce input, one partition
            handle.write(f"{i % 100_000:06d}{line}\n")
    assert os.path.getsize(path) > 1_000_000_000
    outcome = drive(f"t.big_partition.run([{str(path)!r}], progress=False)", timeout=3000)
    got = outcome["got"]
    assert len(got) == 100_000 and set(got.values()) == {96}
    counters = outcome["counters"]
    assert counters.get(SPILLS, 0) > 1, "the reduce grouped 1 GB without spilling runs"
    peaks = worker_peaks(counters)
    assert len(peaks) > 1  # the map tasks and the reduce
    limit = GROUP_BUDGET // 1024 + SLACK_KB
    assert max(peaks) < limit, f"a worker peaked at {max(peaks) // MB} MB, over {limit // MB} MB"
