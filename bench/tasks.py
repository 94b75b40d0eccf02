"""Per-task overhead of the local runner: many one-line inputs against the same lines in one file.

usage: python bench/tasks.py [--tasks 1000] [--runs 3] [--many 20000] [--limit 300]
                             [--data bench/data]

Runs the README's wordcount (bench/wc_job.py) on the local runner, as a
fresh process each time, over the first ``--tasks`` lines of the corpus
(bench/corpus.py) given two ways: one file (one map task), and one file per
line (one map task per line). The difference, divided by the extra tasks, is
what one more task costs, in wall and CPU milliseconds (CPU of the whole
process tree); alternating, median of ``--runs``. The same is measured of
bench/peers/mp_shuffle.py, the job's dataflow by hand with a process forked
per task and the same files per task (no framework, no worker protocol):
the floor for a task's cost on this machine, against which the runner's is
given as a ratio. Then ``--many`` one-line
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
from _harness import HERE, counts, failure, job, load, peer, timed

# The commands timed, by name: the local runner, and the floor.
RUNNER, FLOOR = "discodsl local", "mp_shuffle"


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


def command(name: str, inputs: list[Path], out: Path) -> list[str]:
    """The command line of ``name`` (RUNNER or FLOOR) over ``inputs``, writing to ``out``."""
    if name == RUNNER:
        return job("-o", out, *inputs)
    return peer("mp_shuffle.py", "-o", out, *inputs)


def run_job(command: list[str], out: Path, truth: Counter[str], limit: float) -> dict[str, float]:
    """One timed run of a wordcount ``command`` writing to ``out``; its figures, or
    SystemExit saying why not."""
    out.unlink(missing_ok=True)
    figures, stderr = timed(command, limit)
    why = failure(figures, stderr, limit)
    if not why and counts(out) != truth:
        why = f"output {out} differs from the lines' word counts"
    if why and not figures.get("timed_out"):
        raise SystemExit(f"{' '.join(command)[:300]} failed: {why}\n{stderr[-2000:]}")
    return figures


def per_task(args: argparse.Namespace, data: Path) -> dict[str, dict[str, float]]:
    """Median wall and CPU of the one-file and one-file-per-line runs of the runner and of
    the floor, alternating: {name: {"one wall": s, ...}}."""
    single = one_file(data, args.tasks)
    inputs = {"one": [single], "many": sorted(one_file_per_line(data, args.tasks).glob("*.txt"))}
    truth = expected(single)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.runs):
        for name in (RUNNER, FLOOR):
            for kind, paths in inputs.items():
                out = data / f"out-{kind}"
                figures = run_job(command(name, paths, out), out, truth, args.limit)
                runs.setdefault((name, kind), []).append(figures)
    medians: dict[str, dict[str, float]] = {}
    for (name, kind), figures in runs.items():
        for figure in ("wall", "cpu"):
            medians.setdefault(name, {})[f"{kind} {figure}"] = statistics.median(
                run[figure] for run in figures
            )
    return medians


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


def extra_ms(medians: dict[str, float], figure: str, n: int) -> float:
    """What one more task cost, in milliseconds of ``figure`` (wall or cpu)."""
    return (medians[f"many {figure}"] - medians[f"one {figure}"]) / (n - 1) * 1000


def report_per_task(medians: dict[str, dict[str, float]], n: int) -> None:
    """Print the two configurations of the runner and of the floor, what one extra task
    costs each, and the runner's cost as a ratio of the floor's."""
    print(f"| command | {n:,} lines in 1 file: wall s, CPU s | {n:,} one-line inputs: "
          "wall s, CPU s | per extra task: wall ms, CPU ms |")
    print("| --- | --- | --- | --- |")
    for name, figures in medians.items():
        print(f"| {name} | {figures['one wall']:.2f}, {figures['one cpu']:.2f} "
              f"| {figures['many wall']:.2f}, {figures['many cpu']:.2f} "
              f"| {extra_ms(figures, 'wall', n):.2f}, {extra_ms(figures, 'cpu', n):.2f} |")
    for figure in ("wall", "cpu"):
        ratio = extra_ms(medians[RUNNER], figure, n) / extra_ms(medians[FLOOR], figure, n)
        print(f"per extra task ({figure}), {RUNNER} / {FLOOR}: {ratio:.2f}x")


def many_tasks(args: argparse.Namespace, data: Path, medians: dict[str, float]) -> None:
    """Run ``--many`` one-line inputs once under ``--limit``; print the cost per task."""
    inputs = one_file_per_line(data, args.many) / "*.txt"
    truth = expected(one_file(data, args.many))
    out = data / "out-many-limit"
    figures = run_job(command(RUNNER, [inputs], out), out, truth, args.limit)
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
        many_tasks(args, data, medians[RUNNER])
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
