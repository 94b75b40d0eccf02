"""Where a peer writes its counts: ``word<TAB>count`` lines to ``-o FILE`` or stdout, any order.

Shared by the peer scripts in this directory; nothing here counts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser taking FILE ... and ``-o OUT``, as every peer does."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("files", nargs="+", help="text files to count the words of")
    parser.add_argument("-o", "--out", help="write word<TAB>count here (default: stdout)")
    return parser


def write_counts(pairs: Iterable[tuple[str, int]], out: str | None) -> None:
    """Write one ``word<TAB>count`` line per pair to ``out`` (a path) or stdout."""
    lines = (f"{word}\t{count}\n" for word, count in pairs)
    if out is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        return
    with open(out, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
