"""Peak memory and wall time of a reduce's group-by under a memory budget.

Streams about ``--gb`` GB of ``(str key, int value)`` records (a record
counts its UTF-8 key plus 8 bytes for the int, as in a record file) from a
seeded generator, never held as a whole, and sums the values of each key:

- ``generate``: only draws the records (the floor every other row pays);
- ``dict``: groups in memory with ``defaultdict(list)`` (skipped when it
  would not fit in the memory available);
- ``sorted NNN MB``: :func:`discodsl.worker.groupby.group_sorted` with that budget;
- ``hashed NNN MB``: :func:`discodsl.worker.groupby.group_hashed` (a reduce's
  ``sort=False``) with that budget.

Each configuration runs in a child process; its peak RSS is the child's
``ru_maxrss`` and its CPU time ``ru_utime + ru_stime``, as ``os.wait4``
reports them. On a shared machine CPU time is the steadier measure of cost;
``--repeat N`` keeps each configuration's best wall and CPU time and its
highest RSS. Keys are ``user-`` and ten digits,
drawn log-uniformly from ``--keys`` of them (Zipf-like: key ``i`` is drawn
with probability about ``1/i``), values uniform in 0..999. Every row's
checksum (groups, sum of values, a key-weighted sum) must agree.

Run: ``.venv/bin/python bench/reduce_memory.py --gb 0.2``. Prints figures;
it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from random import Random
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
KEY_FORMAT = "user-{:010d}"
RECORD_BYTES = len(KEY_FORMAT.format(0)) + 8
CHUNK = 65536  # records drawn per step of the generator
DICT_BYTES_PER_RECORD = 60  # observed cost of defaultdict grouping: a list slot and the int
Checksum = tuple[int, int, int]


def records(gb: float, seed: int, keys: int) -> Iterator[tuple[str, int]]:
    """The benchmark's records, drawn a chunk at a time from a seeded generator."""
    rng = Random(seed)
    remaining = int(gb * 1e9) // RECORD_BYTES
    key_format = KEY_FORMAT.format
    while remaining > 0:
        draws = [rng.random() for _ in range(min(CHUNK, remaining))]
        remaining -= len(draws)
        names = [key_format(int(keys**draw)) for draw in draws]
        values = [int(draw * 1e9) % 1000 for draw in draws]
        yield from zip(names, values, strict=True)


def checksum(groups: Iterator[tuple[str, int]]) -> Checksum:
    """Groups, total of values and a key-weighted total, whatever the group order."""
    count = total = weighted = 0
    for key, value in groups:
        count += 1
        total += value
        weighted = (weighted + zlib.crc32(key.encode()) * value) % (1 << 61)
    return count, total, weighted


def run_generate(stream: Iterator[tuple[str, int]], budget: int, tmpdir: str) -> Checksum:
    """Only draw the records: the cost every configuration shares."""
    count = total = 0
    for _, value in stream:
        count += 1
        total += value
    return count, total, 0


def run_dict(stream: Iterator[tuple[str, int]], budget: int, tmpdir: str) -> Checksum:
    """Group everything in memory, then sum each key."""
    groups: dict[str, list[int]] = defaultdict(list)
    for key, value in stream:
        groups[key].append(value)
    return checksum((key, sum(values)) for key, values in groups.items())


def run_sorted(stream: Iterator[tuple[str, int]], budget: int, tmpdir: str) -> Checksum:
    """Group with group_sorted under ``budget`` bytes, then sum each key."""
    groupby = import_worker_groupby()
    grouped = groupby.group_sorted(stream, budget=budget, tmpdir=tmpdir, stage="bench")
    return checksum((key, sum(values)) for key, values in grouped)


def run_hashed(stream: Iterator[tuple[str, int]], budget: int, tmpdir: str) -> Checksum:
    """Group with group_hashed under ``budget`` bytes, then sum each key."""
    groupby = import_worker_groupby()
    grouped = groupby.group_hashed(stream, budget=budget, tmpdir=tmpdir, stage="bench")
    return checksum((key, sum(values)) for key, values in grouped)


def import_worker_groupby() -> Any:
    """Import discodsl.worker.groupby as a Disco node does: beside an empty discodsl package.

    Importing the full ``discodsl`` would load the client's dependencies
    (pydantic, requests) into the child and inflate its RSS; nodes never do.
    """
    for name, path in [
        ("discodsl", ROOT / "discodsl"),
        ("discodsl.worker", ROOT / "discodsl/worker"),
    ]:
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules.setdefault(name, package)
    import discodsl.worker.groupby as groupby

    return groupby


RUNNERS: dict[str, Callable[[Iterator[tuple[str, int]], int, str], Checksum]] = {
    "generate": run_generate,
    "dict": run_dict,
    "sorted": run_sorted,
    "hashed": run_hashed,
}


def child(args: argparse.Namespace) -> None:
    """Run one configuration and print its wall time and checksum as JSON."""
    start = time.perf_counter()
    result = RUNNERS[args.child](records(args.gb, args.seed, args.keys), args.budget, args.tmpdir)
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "checksum": list(result)}))


def measure(args: argparse.Namespace, kind: str, budget: int) -> dict[str, Any]:
    """Run a configuration in a child process; its wall, checksum and peak RSS in MB."""
    command = [sys.executable, __file__, "--child", kind, "--budget", str(budget)]
    command += ["--gb", str(args.gb), "--seed", str(args.seed), "--keys", str(args.keys)]
    command += ["--tmpdir", args.tmpdir]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{kind} {budget} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(output)
    result["rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu"] = usage.ru_utime + usage.ru_stime
    return result


def measure_best(args: argparse.Namespace, kind: str, budget: int) -> dict[str, Any]:
    """``measure`` ``--repeat`` times: the best wall and CPU time, the highest RSS."""
    runs = [measure(args, kind, budget) for _ in range(args.repeat)]
    best = dict(runs[0])
    best["wall"] = min(run["wall"] for run in runs)
    best["cpu"] = min(run["cpu"] for run in runs)
    best["rss_mb"] = max(run["rss_mb"] for run in runs)
    return best


def dict_fits(gb: float) -> tuple[bool, float]:
    """Whether the in-memory grouping should fit in available memory, and its estimate in MB."""
    need = gb * 1e9 / RECORD_BYTES * DICT_BYTES_PER_RECORD / MB
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MB
    return need < 0.7 * available, need


def report(args: argparse.Namespace) -> None:
    """Run every configuration and print the figures and the targets."""
    count = int(args.gb * 1e9) // RECORD_BYTES
    print(
        f"{args.gb:g} GB = {count:,} records of {RECORD_BYTES} B (key {KEY_FORMAT!r}, int 0..999), "
        f"keys drawn log-uniformly from {args.keys:,}, seed {args.seed}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    configs = [("generate", 0, "generate"), ("dict", 0, "dict (in memory)")]
    for kind in ("sorted", "hashed"):
        configs += [(kind, mb * MB, f"group_{kind} {mb} MB") for mb in args.budgets]
    rows: dict[str, dict[str, Any]] = {}
    fits, need = dict_fits(args.gb)
    for kind, budget, label in configs:
        if kind == "dict" and not fits:
            print(f"{label:20s} skipped: would need about {need:,.0f} MB")
            continue
        row = rows[label] = measure_best(args, kind, budget) | {"budget": budget}
        print(
            f"{label:20s} wall {row['wall']:7.1f} s   CPU {row['cpu']:7.1f} s   "
            f"peak RSS {row['rss_mb']:6.0f} MB",
            flush=True,
        )
    print_targets(rows)


def print_targets(rows: dict[str, dict[str, Any]]) -> None:
    """Compare the rows: checksums agree, RSS over budget, time over the dict's."""
    sums = {tuple(row["checksum"]) for label, row in rows.items() if label != "generate"}
    print(f"checksums agree: {len(sums) == 1} ({len(sums)} distinct)")
    base = rows.get("dict (in memory)")
    for label, row in rows.items():
        if not row["budget"]:
            continue
        over = row["rss_mb"] - row["budget"] / MB
        line = f"{label:20s} RSS - budget {over:+5.0f} MB (target <= +100: "
        line += f"{'met' if over <= 100 else 'MISSED'})"
        if base:
            line += f"   vs dict: wall {row['wall'] / base['wall']:.2f}x"
            line += f", CPU {row['cpu'] / base['cpu']:.2f}x"
            line += f", CPU beyond generating {beyond(row, base, rows['generate'])}"
        print(line)


def beyond(row: dict[str, Any], base: dict[str, Any], floor: dict[str, Any]) -> str:
    """CPU ratio of the grouping alone, generation taken off both sides; n/a if noise ate it."""
    mine, theirs = row["cpu"] - floor["cpu"], base["cpu"] - floor["cpu"]
    if mine <= 0 or theirs <= 0:
        return "n/a"
    return f"{mine / theirs:.2f}x"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--child`` is how the parent starts one configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="data size in GB (default 1)")
    parser.add_argument(
        "--budgets",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 512],
        help="budgets in MB of both groupings (default 64,512)",
    )
    parser.add_argument("--keys", type=int, default=5_000_000, help="key space (default 5M)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration, best kept")
    parser.add_argument("--tmpdir", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or one configuration of it when started as a child."""
    args = parse(argv)
    if args.child:
        child(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
