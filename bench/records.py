"""Record file throughput against plain pickle: prints MB/s and the ratios.

Writes and reads N ``(str, int)`` records with RecordWriter / read_records
(compression off, then on) and with ``pickle.dump`` / ``pickle.load`` (default
protocol) of the same list, on local files, best of a few runs. "read" iterates
over the records as a task does; "list" also keeps them all in a list, as
``pickle.load`` must. Times are CPU
seconds (steadier than wall time on a shared machine; wall time is printed
too). MB/s counts each format's own file bytes. The target is a time ratio of
at most 1.5 against pickle with compression off.

    .venv/bin/python bench/records.py [N]
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from typing import Any

from discodsl.worker import records
from discodsl.worker.records import PROTOCOL, RecordWriter, read_records

RUNS = 3


def best_time(action: Callable[[], Any]) -> tuple[float, float]:
    """The least CPU and wall seconds of RUNS runs of ``action``."""
    cpu, wall = [], []
    for _ in range(RUNS):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        action()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def pickle_write(path: str, data: list[tuple[str, int]]) -> None:
    with open(path, "wb") as file:
        pickle.dump(data, file)


def pickle_read(path: str) -> list[tuple[str, int]]:
    with open(path, "rb") as file:
        loaded: list[tuple[str, int]] = pickle.load(file)
        return loaded


def ours_write(path: str, data: list[tuple[str, int]], compress: bool) -> None:
    with RecordWriter(path, compress=compress) as writer:
        writer.write_many(data)


def ours_read(path: str) -> list[Any]:
    """Read every record into a list, as pickle.load must."""
    with open(path, "rb") as file:
        return list(read_records(file, path))


def ours_stream(path: str) -> None:
    """Read every record and drop it, as a task consumes its input."""
    with open(path, "rb") as file:
        collections.deque(read_records(file, path), maxlen=0)


Result = tuple[tuple[float, float], int]


def measure(directory: str, data: list[tuple[str, int]]) -> dict[str, Result]:
    """``{case: ((cpu seconds, wall seconds), file bytes)}`` for pickle and for our format."""
    results = {}
    base = os.path.join(directory, "pickle.bin")
    results["pickle write"] = (best_time(lambda: pickle_write(base, data)), os.path.getsize(base))
    results["pickle read"] = (best_time(lambda: pickle_read(base)), os.path.getsize(base))
    for compress in (False, True):
        name = "zlib" if compress else "raw"
        path = os.path.join(directory, f"records-{name}.disco")
        results.update(measure_ours(path, name, data, compress))
    return results


def measure_ours(
    path: str, name: str, data: list[tuple[str, int]], compress: bool
) -> dict[str, Result]:
    write = best_time(lambda: ours_write(path, data, compress))
    size = os.path.getsize(path)
    if ours_read(path) != data:
        raise SystemExit(f"records {name}: read back differs from what was written")
    return {
        f"records {name} write": (write, size),
        f"records {name} read": (best_time(lambda: ours_stream(path)), size),
        f"records {name} list": (best_time(lambda: ours_read(path)), size),
    }


def report(count: int, results: dict[str, Result]) -> None:
    print(
        f"{count} (str, int) records; records use pickle protocol {PROTOCOL}, pickle.dump "
        f"{pickle.DEFAULT_PROTOCOL}; best of {RUNS}; fast hunk loader: "
        f"{records._load_shared is records._load_shared_fast}"
    )
    print(f"{'case':20} {'cpu s':>7} {'wall s':>7} {'MB':>6} {'MB/s cpu':>9} {'Mrec/s':>7}")
    for case, ((cpu, wall), size) in results.items():
        print(
            f"{case:20} {cpu:7.3f} {wall:7.3f} {size / 1e6:6.1f} {size / 1e6 / cpu:9.1f} "
            f"{count / cpu / 1e6:7.2f}"
        )
    for mode in ("write", "read"):
        base_cpu, base_wall = results[f"pickle {mode}"][0]
        for name in ("raw", "zlib"):
            for case in [mode, "list"] if mode == "read" else [mode]:
                cpu, wall = results[f"records {name} {case}"][0]
                print(
                    f"{case:5} ratio records {name:4} / pickle {mode}: {cpu / base_cpu:.2f}x cpu, "
                    f"{wall / base_wall:.2f}x wall"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("count", nargs="?", type=int, default=1_000_000, help="records")
    count = parser.parse_args().count
    data = [(f"key-{i}", i) for i in range(count)]
    with tempfile.TemporaryDirectory() as directory:
        report(count, measure(directory, data))


if __name__ == "__main__":
    main()
