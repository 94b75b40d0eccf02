"""Word count the way a job's map and combiner do it, by hand: the per-record floor on a few cores.

usage: python bench/peers/mp_pairs.py FILE [FILE ...] [-p PROCESSES] [-o OUT]
``multiprocessing.Pool``, one task per input file. Each task runs the same
generator a job's map is (a line in, ``(word, 1)`` pairs out) and folds its
pairs into a dict as they come, as a combiner would; the parent folds the
tasks' dicts together. No framework and no files between phases: the cost of
one Python call and one dict update per record, which a MapReduce job with
a per-record map cannot go below. Prints (or writes) word<TAB>count for
every distinct word, in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from multiprocessing import Pool

from _output import arguments, write_counts


def words(line: str) -> Iterator[tuple[str, int]]:
    """The map: each word of the line with a 1."""
    for word in line.split():
        yield word, 1


def fold(pairs: Iterable[tuple[str, int]], into: dict[str, int]) -> None:
    """Add each pair's value to its key's total in ``into``."""
    get = into.get
    for key, value in pairs:
        into[key] = get(key, 0) + value


def count_file(path: str) -> dict[str, int]:
    """One task: the map over every line of one file, folded as it goes."""
    totals: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fold(words(line), totals)
    return totals


def count_files(paths: list[str], processes: int) -> dict[str, int]:
    """Every file counted in the pool, the tasks' dicts folded together here."""
    totals: dict[str, int] = {}
    with Pool(processes) as pool:
        for part in pool.imap_unordered(count_file, paths):
            fold(part.items(), totals)
    return totals


def main() -> None:
    parser = arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("-p", "--processes", type=int, default=2, help="pool size (default 2)")
    args = parser.parse_args()
    write_counts(count_files(args.files, args.processes).items(), args.out)


if __name__ == "__main__":
    main()
