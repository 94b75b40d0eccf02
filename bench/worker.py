"""The worker runtime's per-record cost, and record-file throughput, against plain Python.

usage: python bench/worker.py [--lines 1000000] [--runs 3]

(a) A map task yielding one record per input line, run as a Disco node runs it:
    the jobhome's worker process driven over real pipes by the local master side
    (NodeMaster, one worker), against a plain loop in one process doing the same
    work (read the lines, call the same function, pickle each record to a file).
    Per-record cost subtracts each side's cost for a one-line input (process
    start-up, job loading), so the ratio compares the per-record work.
(b) Record files against pickle.dump / pickle.load: runs bench/records.py.
Median of --runs, CPU and wall seconds.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from discodsl import builder, job, map
from discodsl.runners.node import NodeMaster

HERE = Path(__file__).resolve().parent


def one_record(line: str) -> Iterator[tuple[str, int]]:
    yield line, len(line)


@job
def per_line() -> list[object]:
    return [map(one_record, name="one_record")]


def plain_loop(path: str, out: str) -> None:
    """The same work without discodsl: lines in, one pickled record per line out."""
    with open(path, encoding="utf-8") as lines, open(out, "wb") as sink:
        pickler = pickle.Pickler(sink, protocol=3)
        for line in lines:
            for record in one_record(line.rstrip("\n")):
                pickler.dump(record)
                pickler.clear_memo()


def through_worker(path: str, root: str) -> None:
    pack = builder.pack_job(per_line.spec(), per_line.options, [[Path(path).as_uri()]])
    master = NodeMaster(disco_data=tempfile.mkdtemp(dir=root), workers=1, max_failures=0,
                        environ={"DISCODSL_PYTHON": sys.executable,
                                 "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    master.run(pack)


def timed(action, *args) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start, wall = os.times(), time.perf_counter()
    action(*args)
    end = os.times()
    cpu = (end.user + end.system + end.children_user + end.children_system) - (
        start.user + start.system + start.children_user + start.children_system)
    return cpu, time.perf_counter() - wall


def median(action, args, runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = [timed(action, *args) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        big, small = Path(root, "big.txt"), Path(root, "one.txt")
        big.write_text("".join(f"line number {i} of the input\n" for i in range(args.lines)))
        small.write_text("just one line\n")
        out = str(Path(root, "plain.out"))
        figures = {}
        for name, action, extra in (("worker", through_worker, root), ("plain", plain_loop, out)):
            figures[name] = (median(action, (str(big), extra), args.runs),
                             median(action, (str(small), extra), args.runs))
    print(f"(a) {args.lines:,} records, one per line; median of {args.runs} runs")
    print(f"{'':8s} {'cpu s':>8s} {'wall s':>8s} {'1-line cpu':>11s} {'1-line wall':>12s} "
          f"{'records/s (wall, per record)':>30s}")
    per_record = {}
    for name, ((cpu, wall), (cpu1, wall1)) in figures.items():
        per_record[name] = (cpu - cpu1, wall - wall1)
        rate = args.lines / max(wall - wall1, 1e-9)
        print(f"{name:8s} {cpu:8.2f} {wall:8.2f} {cpu1:11.2f} {wall1:12.2f} {rate:30,.0f}")
    if min(per_record["plain"]) <= 0.05:  # os.times() counts in 10 ms ticks
        print("per-record cost, worker / plain: too few lines to compare (try --lines 1000000)")
    else:
        cpu_ratio = per_record["worker"][0] / per_record["plain"][0]
        wall_ratio = per_record["worker"][1] / per_record["plain"][1]
        print(f"per-record cost, worker / plain: cpu {cpu_ratio:.2f}x, wall {wall_ratio:.2f}x "
              "(target <= 1.3)")
    print("\n(b) record files against pickle:")
    sys.stdout.flush()
    subprocess.run([sys.executable, str(HERE / "records.py")], check=True)


if __name__ == "__main__":
    main()
