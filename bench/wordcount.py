"""Wordcount: discodsl against plain Python and dask.bag, every figure side by side from one run.

usage: python bench/wordcount.py [--mb 200] [--runs 3] [--data bench/data]
                                 [--master http://HOST:8989 [--push-inputs]] [--no-dask]

Makes the corpus with bench/corpus.py (``--mb`` MB as 8 part files and as one
file, and 1 KB for start-up; kept under ``--data`` for later runs), reads it
once to warm the page cache, then times, as fresh processes, in an order that
rotates every round, and takes the median of ``--runs`` rounds:

- on the 8 parts: the README's wordcount (bench/wc_job.py) on the local
  runner; the peers in bench/peers/: mp_counter (Pool(2), a Counter per
  file), mp_pairs (Pool(2), the map's ``(word, 1)`` pairs folded by hand:
  the per-record floor), mp_shuffle (mp_pairs' maps, then Disco's dataflow
  by hand: a record file per partition, a reduce task per partition: the
  floor for the job on Disco's dataflow), mp_shuffle --calls (the same, with
  the job's reduce called per key as the job calls it, map-side and
  reduce-side: the floor for the job as declared), plain_counter (one
  process), dask.bag (2 processes); with ``--master``, the same job on that Disco master;
- on the one file: the job on the local runner (the file cut into ranges);
- on 1 KB: the job local and inline, from process start.

Every output is checked equal to plain_counter's. Columns: wall seconds, CPU
seconds of the whole process tree (bench/_timed.py waits for every
descendant), the peak RSS of the largest single process, and wall and CPU as
ratios of mp_counter's, mp_pairs', mp_shuffle's and mp_shuffle --calls'.
Compare ratios, not absolute times: a shared machine's load moves every row
(the load average is printed before and after). A row that fails or whose
output differs says so in the table, and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import corpus
from _harness import HERE, counts, failure, job, load, peer, timed

PARTS = 8
ANCHORS = ("mp_counter", "mp_pairs", "mp_shuffle", "mp_shuffle --calls")


@dataclass
class Row:
    """One command of the table, its runs' figures, and what went wrong with it."""

    name: str
    on: str  # the input: "8 parts", "1 file" or "1 KB"
    command: list[str]
    out: Path
    reference: Path  # plain_counter's output the command's output must equal
    runs: list[dict[str, float]] = field(default_factory=list)
    failure: str = ""

    def median(self, figure: str) -> float:
        return statistics.median(run[figure] for run in self.runs)


def plan(args: argparse.Namespace, data: Path) -> list[Row]:
    """The rows to time, their inputs made (and the references written) first."""
    one, parts = corpus.corpus(data, args.mb, PARTS)
    tiny, _ = corpus.corpus(data, 0.001)
    out = data / "out"
    out.mkdir(exist_ok=True)
    big, small = out / "reference", out / "reference-1kb"
    untimed(peer("plain_counter.py", *parts, "-o", big))
    untimed(peer("plain_counter.py", tiny, "-o", small))
    warm(one)

    def row(name: str, on: str, command: list[str], reference: Path = big) -> Row:
        return Row(name, on, command, Path(command[command.index("-o") + 1]), reference)

    calls_out = ("-o", out / "mp_calls")
    rows = [
        row("discodsl local", "8 parts", job("-o", out / "local-parts", *parts)),
        row("mp_counter", "8 parts", peer("mp_counter.py", "-o", out / "mp_counter", *parts)),
        row("mp_pairs", "8 parts", peer("mp_pairs.py", "-o", out / "mp_pairs", *parts)),
        row("mp_shuffle", "8 parts", peer("mp_shuffle.py", "-o", out / "mp_shuffle", *parts)),
        row("mp_shuffle --calls", "8 parts", peer("mp_shuffle.py", "--calls", *calls_out, *parts)),
        row("plain_counter", "8 parts", peer("plain_counter.py", "-o", out / "plain", *parts)),
        row("discodsl local", "1 file", job("-o", out / "local-one", one)),
        row("discodsl local", "1 KB", job("-o", out / "local-1kb", tiny), small),
        row("discodsl inline", "1 KB", job("--mode", "inline", "-o", out / "inline-1kb", tiny),
            small),
    ]
    if not args.no_dask:
        rows.insert(5, dask_row(out, parts, big))
    if args.master:
        push = ["--push-inputs"] if args.push_inputs else []
        command = job("--master", args.master, *push, "-o", out / "cluster-parts", *parts)
        rows.insert(1, row("discodsl cluster", "8 parts", command))
    return rows


def dask_row(out: Path, parts: list[Path], reference: Path) -> Row:
    """The dask.bag row, or a row saying how to install dask."""
    command = peer("dask_wc.py", "--workers", 2, "-o", out / "dask", *parts)
    row = Row("dask.bag", "8 parts", command, out / "dask", reference)
    if importlib.util.find_spec("dask") is None:
        row.failure = "dask is not installed: pip install -e '.[bench]'"
    return row


def untimed(command: list[str]) -> None:
    """Run a command that must succeed (making a reference output)."""
    subprocess.run(command, check=True)


def warm(path: Path) -> None:
    """Read ``path`` once so that every timed run finds it in the page cache."""
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def measure(row: Row, limit: float) -> None:
    """Time one run of ``row``; record its figures, or why it failed."""
    row.out.unlink(missing_ok=True)
    figures, stderr = timed(row.command, limit)
    row.failure = failure(figures, stderr, limit)
    if row.failure:
        return
    if counts(row.out) != counts(row.reference):
        row.failure = f"output {row.out} differs from plain_counter's"
    else:
        row.runs.append(figures)


def rounds(rows: list[Row], runs: int, limit: float) -> None:
    """``runs`` rounds over the rows, each starting one row later than the last."""
    for i in range(runs):
        order = rows[i % len(rows) :] + rows[: i % len(rows)]
        for row in order:
            if not row.failure:
                measure(row, limit)
                print(f"round {i + 1}: {row.name}, {row.on} ({row.failure or 'ok'})",
                      file=sys.stderr)


def cells(row: Row, anchors: dict[str, Row]) -> list[str]:
    """The table cells of one row."""
    if row.failure:
        return [row.on, row.name, f"FAILED: {row.failure}"]
    base = [row.on, row.name] + [f"{row.median(f):.2f}" for f in ("wall", "cpu")]
    base.append(f"{row.median('rss_mb'):.0f}")
    for anchor in anchors.values():
        usable = row.on != "1 KB" and not anchor.failure and anchor.runs
        for figure in ("wall", "cpu"):
            ratio = row.median(figure) / anchor.median(figure) if usable else None
            base.append(f"{ratio:.2f}x" if ratio else "-")
    return base


def table(rows: list[Row]) -> list[str]:
    """The rows as a Markdown table, columns aligned."""
    anchors = {r.name: r for r in rows if r.name in ANCHORS and r.on == "8 parts"}
    head = ["input", "command", "wall s", "CPU s", "peak RSS MB"]
    for name in anchors:
        head += [f"wall / {name}", f"CPU / {name}"]
    body = [cells(row, anchors) for row in rows]
    whole = [head] + [b for b in body if len(b) == len(head)]  # not a failure's long message
    widths = [max(len(r[i]) for r in whole) for i in range(len(head))]

    def line(items: list[str]) -> str:
        pairs = enumerate(zip(items, widths, strict=False))
        padded = [s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return [line(head), rule, *(line(b) for b in body)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=200, help="corpus size (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="corpus and outputs")
    parser.add_argument("--master", help="add a row on this Disco master (cluster mode)")
    parser.add_argument("--push-inputs", action="store_true", help="master row: DDFS inputs")
    parser.add_argument("--no-dask", action="store_true", help="leave out the dask.bag row")
    parser.add_argument("--limit", type=float, default=1800, help="seconds a run may take")
    args = parser.parse_args()
    rows = plan(args, args.data)
    before = load()
    rounds(rows, args.runs, args.limit)
    print(f"\nwordcount, {args.mb:g} MB corpus ({PARTS} parts or 1 file) and 1 KB; median of "
          f"{args.runs} rotating rounds; {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}; load average {before} before, {load()} after\n")
    print("\n".join(table(rows)))
    if args.master:
        print("\ncluster row: CPU and RSS are the client's only (the master runs the tasks)")
    sys.exit(1 if any(row.failure for row in rows) else 0)


if __name__ == "__main__":
    main()
