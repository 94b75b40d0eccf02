"""Word count, the simplest Python: one process, ``Counter.update(line.split())`` per line.

usage: python bench/peers/plain_counter.py FILE [FILE ...] [-o OUT]
Prints (or writes) word<TAB>count for every distinct word, in any order.
"""

from __future__ import annotations

from collections import Counter

from _output import arguments, write_counts


def count_words(paths: list[str]) -> Counter[str]:
    """The words of every file, counted in this process."""
    counts: Counter[str] = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                counts.update(line.split())
    return counts


def main() -> None:
    args = arguments(__doc__.split("\n", 1)[0]).parse_args()
    write_counts(count_words(args.files).items(), args.out)


if __name__ == "__main__":
    main()
