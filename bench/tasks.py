"""Per-task overhead of the local runner: many one-line inputs against the same lines in one file.

usage: python bench/tasks.py [--tasks 1000] [--runs 3] [--many 20000] [--limit 300]
                             [--data bench/data]

Runs the README's wordcount (bench/wc_job.py) on the local runner, as a
fresh process each time, over the first ``--tasks`` lines of the corpus
(bench/corpus.py) given two ways: one file (one map task), and one file per
line (one map task per line). The difference, divided by the extra tasks, is
what one more task costs, in wall and CPU milliseconds (CPU of the whole
process tree); alternating, median of ``--runs``. Then ``--many`` one-line
inputs, once, killed after ``--limit`` seconds if still running: their wall
and CPU milliseconds per task, or how long they had run when killed. Every
output is checked against the lines' word counts. ``--many 0`` skips that run.

The local runner keeps its files in the temporary directory (``TMPDIR``), named
on the first line of figures with its file system's type; ``TMPDIR=/dev/shm``
measures the runner on a tmpfs.

Not here: per-record cost (bench/worker.py) or throughput (bench/wordcount.py).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import corpus
from _harness import HERE, counts, failure, job, load, timed


def one_file(data: Path, n: int) -> Path:
    """The first ``n`` lines of the corpus in one file (made if missing)."""
    path = data / f"lines-{n}.txt"
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(itertools.islice(corpus.lines(), n)), encoding="ascii")
        partial.replace(path)
    return path


def one_file_per_line(data: Path, n: int) -> Path:
    """A directory of ``n`` files holding a line each (made if missing)."""
    directory = data / f"one-line-{n}"
    if not directory.exists():
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for i, line in enumerate(itertools.islice(corpus.lines(), n)):
            (partial / f"line-{i:05d}.txt").write_text(line, encoding="ascii")
        partial.replace(directory)
    return directory


def expected(path: Path) -> Counter[str]:
    """The word counts of a text file, counted here."""
    with open(path, encoding="ascii") as handle:
        return Counter(handle.read().split())


def run_job(inputs: Path, out: Path, truth: Counter[str], limit: float) -> dict[str, float]:
    """One timed run of the wordcount over ``inputs``; its figures, or SystemExit saying why not."""
    out.unlink(missing_ok=True)
    figures, stderr = timed(job("-o", out, inputs), limit)
    why = failure(figures, stderr, limit)
    if not why and counts(out) != truth:
        why = f"output {out} differs from the lines' word counts"
    if why and not figures.get("timed_out"):
        raise SystemExit(f"wordcount over {inputs} failed: {why}\n{stderr[-2000:]}")
    return figures


def per_task(args: argparse.Namespace, data: Path) -> dict[str, float]:
    """Median wall and CPU of the one-file and one-file-per-line runs, alternating."""
    single = one_file(data, args.tasks)
    many = one_file_per_line(data, args.tasks) / "*.txt"
    truth = expected(single)
    runs: dict[str, list[dict[str, float]]] = {"one": [], "many": []}
    for _ in range(args.runs):
        runs["one"].append(run_job(single, data / "out-one", truth, args.limit))
        runs["many"].append(run_job(many, data / "out-many", truth, args.limit))
    return {f"{k} {f}": statistics.median(r[f] for r in v) for k, v in runs.items()
            for f in ("wall", "cpu")}


def scratch() -> str:
    """Where the local runner keeps a run's files (TMPDIR), and the file system's type: a
    task creates a file per partition it writes, and their cost depends on it."""
    where = os.path.realpath(tempfile.gettempdir())
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype = line.split()[:3]
            if (where + "/").startswith(point.rstrip("/") + "/") and len(point) > len(best):
                best, kind = point, fstype
    return f"{where} ({kind})"


def report_per_task(medians: dict[str, float], n: int) -> None:
    """Print the two configurations and the cost of one extra task."""
    print(f"{n:,} lines in 1 file:       wall {medians['one wall']:7.2f} s, "
          f"CPU {medians['one cpu']:7.2f} s")
    print(f"{n:,} one-line inputs:       wall {medians['many wall']:7.2f} s, "
          f"CPU {medians['many cpu']:7.2f} s")
    for figure in ("wall", "cpu"):
        extra = (medians[f"many {figure}"] - medians[f"one {figure}"]) / (n - 1) * 1000
        print(f"per extra task ({figure}):   {extra:7.2f} ms")


def many_tasks(args: argparse.Namespace, data: Path, medians: dict[str, float]) -> None:
    """Run ``--many`` one-line inputs once under ``--limit``; print the cost per task."""
    inputs = one_file_per_line(data, args.many) / "*.txt"
    truth = expected(one_file(data, args.many))
    figures = run_job(inputs, data / "out-many-limit", truth, args.limit)
    if figures.get("timed_out"):
        print(f"{args.many:,} one-line inputs: killed at the {args.limit:g} s limit "
              f"(more than {args.limit / args.many * 1000:.1f} ms per task)")
        return
    print(f"{args.many:,} one-line inputs: wall {figures['wall']:7.2f} s, "
          f"CPU {figures['cpu']:7.2f} s (limit {args.limit:g} s)")
    for figure in ("wall", "cpu"):
        extra = (figures[figure] - medians[f"one {figure}"]) / (args.many - 1) * 1000
        print(f"per extra task ({figure}):   {extra:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=1000, help="one-line inputs (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians printed")
    parser.add_argument("--many", type=int, default=20000, help="then this many, once (0: skip)")
    parser.add_argument("--limit", type=float, default=300, help="seconds a run may take")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="inputs and outputs")
    args = parser.parse_args()
    if args.tasks < 2:
        parser.error("--tasks must be 2 or more, e.g. --tasks 1000")
    data = args.data / "tasks"
    data.mkdir(parents=True, exist_ok=True)
    before = load()
    medians = per_task(args, data)
    print(f"\nlocal runner, per-task overhead; median of {args.runs} alternating runs; "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; load average {before}; "
          f"the runner's files in {scratch()}\n")
    report_per_task(medians, args.tasks)
    if args.many:
        many_tasks(args, data, medians)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
