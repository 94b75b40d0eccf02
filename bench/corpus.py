"""A deterministic word corpus for the benchmarks: N MB as one file, and the same bytes in K parts.

usage: python bench/corpus.py [--mb 200] [--parts 8] [--data bench/data] [--seed S] [--stats]

Standard library only, fixed seed: the same ``--mb`` and ``--seed`` give the
same bytes. The text is lines of 5 to 20 words (uniform) separated by single
spaces; the words are drawn from a vocabulary of 200,000 distinct lowercase
ASCII words of 2 to 12 letters, frequent words short, with Zipf-Mandelbrot
frequencies (rank r drawn with probability proportional to 1/(r + 2.7)).
These are the statistics of the corpus the project's peer figures were
measured on, so ratios are comparable: 200 MB is about 2.2 million lines,
27.8 million words and 200,000 distinct words (``--stats`` counts them).

1 MB is 1,000,000 bytes, and the corpus stops at the last whole line that
fits. The K part files are the one file cut at line starts into nearly equal
pieces, so ``cat part-*`` is byte-identical to it. Files are written under a
temporary name and renamed, so an interrupted run never leaves a short corpus
that a later run would take for a whole one.

Not here: timing or running anything (``wordcount.py``, ``tasks.py`` do).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import shutil
import string
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SEED = 19_572_024
VOCABULARY = 200_000
MB = 1_000_000
BATCH = 8192  # lines drawn per call to random.choices
HERE = Path(__file__).resolve().parent


def word_length(rng: random.Random, rank: int) -> int:
    """Letters in the word of this frequency rank: about 1.5 + log4(rank), give or take 1."""
    typical = 1.5 + math.log(rank + 1, 4)
    return min(12, max(2, int(typical + rng.gauss(0.0, 1.0) + 0.5)))


def new_word(rng: random.Random, length: int, taken: set[str]) -> str:
    """A word of about ``length`` letters not in ``taken``, lengthened when short ones run out."""
    while True:
        word = "".join(rng.choices(string.ascii_lowercase, k=length))
        if word not in taken:
            taken.add(word)
            return word
        if length < 12 and rng.random() < 0.5:
            length += 1


def vocabulary(rng: random.Random, size: int = VOCABULARY) -> list[str]:
    """``size`` distinct words, most frequent first."""
    taken: set[str] = set()
    return [new_word(rng, word_length(rng, rank), taken) for rank in range(size)]


def zipf_cumulative(size: int, shift: float = 2.7) -> list[float]:
    """Cumulative weights of ranks 0..size-1 under p(r) ~ 1 / (r + shift)."""
    return list(itertools.accumulate(1.0 / (rank + shift) for rank in range(size)))


def text_batches(seed: int = SEED) -> Iterator[list[str]]:
    """Endless lists of lines (each ending in a newline), the same ones for the same seed."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    cumulative = zipf_cumulative(len(words))
    while True:
        lengths = [5 + int(rng.random() * 16) for _ in range(BATCH)]
        drawn = rng.choices(words, cum_weights=cumulative, k=sum(lengths))
        ends = itertools.accumulate(lengths)
        starts = itertools.chain([0], itertools.accumulate(lengths))
        yield [" ".join(drawn[a:b]) + "\n" for a, b in zip(starts, ends, strict=False)]


def lines(seed: int = SEED) -> Iterator[str]:
    """The corpus's lines, one at a time, endlessly."""
    for batch in text_batches(seed):
        yield from batch


def write_text(path: Path, size: int, seed: int = SEED) -> int:
    """Write whole lines up to ``size`` bytes to ``path`` (atomically); return the bytes written."""
    written = 0
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="ascii", newline="\n", buffering=1 << 20) as out:
        for line in lines(seed):
            if written + len(line) > size:
                break
            out.write(line)
            written += len(line)
    partial.replace(path)
    return written


def line_starts(path: Path, parts: int) -> list[int]:
    """Byte offsets cutting ``path`` into ``parts`` nearly equal pieces at line starts."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            handle.seek(max(cuts[-1], size * i // parts - 1))
            handle.readline()  # to the end of the line holding the byte before the cut
            cuts.append(handle.tell())
    return [*cuts, size]


def split_file(path: Path, parts: int, directory: Path) -> list[Path]:
    """Cut ``path`` into ``directory``/part-00000.txt ... (atomically, as a directory)."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cuts = line_starts(path, parts)
    with open(path, "rb") as source:
        for i, (start, end) in enumerate(itertools.pairwise(cuts)):
            with open(partial / f"part-{i:05d}.txt", "wb") as out:
                source.seek(start)
                out.write(source.read(end - start))
    partial.replace(directory)
    return part_files(directory)


def part_files(directory: Path) -> list[Path]:
    """The part files of a split corpus, in order."""
    return sorted(directory.glob("part-*.txt"))


def corpus(data: Path, mb: float, parts: int = 1, seed: int = SEED) -> tuple[Path, list[Path]]:
    """The ``mb`` MB corpus under ``data`` as one file and as ``parts`` files, made if missing."""
    data.mkdir(parents=True, exist_ok=True)
    stem = f"corpus-{mb:g}mb" + ("" if seed == SEED else f"-seed{seed}")
    one = data / f"{stem}.txt"
    if not one.exists():
        write_text(one, int(mb * MB), seed)
    if parts <= 1:
        return one, [one]
    directory = data / f"{stem}-{parts}parts"
    if not directory.exists():
        split_file(one, parts, directory)
    return one, part_files(directory)


def statistics(paths: list[Path]) -> dict[str, float]:
    """Bytes, lines, words, distinct words and mean word length of the files together."""
    counts: Counter[str] = Counter()
    size = nlines = 0
    for path in paths:
        size += path.stat().st_size
        with open(path, encoding="ascii") as handle:
            for line in handle:
                nlines += 1
                counts.update(line.split())
    words = sum(counts.values())
    letters = sum(len(w) * n for w, n in counts.items())
    return {"bytes": size, "lines": nlines, "words": words, "distinct": len(counts),
            "mean word length": round(letters / max(words, 1), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=200, help="size in MB of 1,000,000 bytes")
    parser.add_argument("--parts", type=int, default=8, help="part files (default 8)")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="output directory")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--stats", action="store_true", help="count lines, words, distinct")
    args = parser.parse_args(argv)
    if args.parts < 1 or args.mb <= 0:
        parser.error("--parts must be 1 or more and --mb above 0, e.g. --mb 200 --parts 8")
    one, parts = corpus(args.data, args.mb, args.parts, args.seed)
    print(f"{one} ({one.stat().st_size:,} bytes), {len(parts)} part file(s)", file=sys.stderr)
    if args.stats:
        for name, value in statistics([one]).items():
            print(f"{name}: {value:,}")


if __name__ == "__main__":
    main()
