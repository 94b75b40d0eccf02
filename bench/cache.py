"""What a cached run costs: a notebook cell run again, in the process that ran it first.

usage: python bench/cache.py [--mb 20] [--parts 8] [--repeat 20] [--data bench/data]

In one process, as a notebook would: the README's wordcount (bench/wc_job.py's
job) runs once with ``cache=True`` over ``--mb`` MB of corpus in ``--parts``
files (bench/corpus.py) and once over a 1 KB file, on the local and inline
runners; then each of those runs again ``--repeat`` times, served from the
cache. For each row: the first run's seconds, the median and the slowest
served run's seconds (the whole ``run()`` call: options, keys, inputs
looked at, the cache read), and whether the served records equal the first
run's. With ``cache_by="content"`` the inputs are read and hashed at each
run, so that row grows with the input; the ``stat`` rows do not.

The cache is a temporary directory of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import corpus
from _harness import HERE

sys.path.insert(0, str(HERE.parent))
from examples.wordcount import wordcount


def timed_run(inputs: list[str], **options: object) -> tuple[float, dict[str, int]]:
    """Seconds of one ``wordcount.run(...)`` call, and its records (the notice kept quiet)."""
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        results = wordcount.run(inputs, progress=False, cache=True, **options)
    elapsed = time.perf_counter() - started
    return elapsed, results.to_dict()


def row(name: str, inputs: list[str], repeat: int, **options: object) -> None:
    first, records = timed_run(inputs, **options)
    served = [timed_run(inputs, **options) for _ in range(repeat)]
    same = all(found == records for _, found in served)
    times = [seconds for seconds, _ in served]
    print(
        f"| {name} | {first:.3f} | {statistics.median(times):.4f} | {max(times):.4f} | "
        f"{'yes' if same else 'NO'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    args = parser.parse_args()
    _, parts = corpus.corpus(args.data, args.mb, args.parts)
    big = [str(path) for path in parts]
    with tempfile.TemporaryDirectory(prefix="discodsl-bench-cache-") as cache:
        os.environ["DISCODSL_CACHE_DIR"] = cache
        small = Path(cache, "..", f"{Path(cache).name}-1kb.txt").resolve()
        small.write_text("".join(itertools.islice(corpus.lines(), 40)))
        print(f"wordcount with cache=True; {args.repeat} served runs per row, in one process\n")
        print("| runner, inputs | first run s | served: median s | served: max s | same records |")
        print("| --- | ---: | ---: | ---: | --- |")
        try:
            for mode in ("local", "inline"):
                row(f"{mode}, 1 KB", [str(small)], args.repeat, mode=mode)
                row(f"{mode}, {args.mb:g} MB in {len(big)} files", big, args.repeat, mode=mode)
            row(
                f"local, {args.mb:g} MB, cache_by='content'",
                big,
                args.repeat,
                mode="local",
                cache_by="content",
            )
        finally:
            small.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
