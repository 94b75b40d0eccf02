"""Word count, the best plain Python on a few cores: ``multiprocessing.Pool``, a Counter per file.

usage: python bench/peers/mp_counter.py FILE [FILE ...] [-p PROCESSES] [-o OUT]
One task per input file (``imap_unordered``); each returns its Counter, which
the parent merges as it arrives. Prints (or writes) word<TAB>count for every
distinct word, in any order.
"""

from __future__ import annotations

from collections import Counter
from multiprocessing import Pool

from _output import arguments, write_counts


def count_file(path: str) -> Counter[str]:
    """One task: the words of one file."""
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            counts.update(line.split())
    return counts


def count_files(paths: list[str], processes: int) -> Counter[str]:
    """Every file counted in the pool, the Counters merged here."""
    total: Counter[str] = Counter()
    with Pool(processes) as pool:
        for counts in pool.imap_unordered(count_file, paths):
            if total:
                total.update(counts)
            else:
                total = counts  # the first needs no merging
    return total


def main() -> None:
    parser = arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("-p", "--processes", type=int, default=2, help="pool size (default 2)")
    args = parser.parse_args()
    write_counts(count_files(args.files, args.processes).items(), args.out)


if __name__ == "__main__":
    main()
