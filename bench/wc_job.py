"""The README's wordcount (examples/wordcount.py, combiner and all) as a command for the benchmarks.

usage: python bench/wc_job.py [--mode local|inline] [-o OUT] FILE|GLOB [FILE|GLOB ...]
       python bench/wc_job.py --master http://HOST:8989 [--push-inputs] [-o OUT] FILE ...

Runs the example's job itself (imported, not a copy): ``@map words``,
``@reduce(combine=True) total``, 4 partitions. With ``--master`` it runs on
that Disco master (cluster mode): local paths go as ``file://`` URLs, which
the nodes read when they share this file system (a master on this machine),
or, with ``--push-inputs``, are pushed to DDFS first (the push is part of
the run). Prints (or writes) word<TAB>count for every word, in any order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from wordcount import wordcount  # the README's example itself, not a copy


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``wordcount.run`` for these command-line arguments."""
    if args.master:
        return {"mode": "cluster", "master": args.master, "push_inputs": args.push_inputs}
    return {"mode": args.mode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="+", help="input files, directories or globs")
    parser.add_argument("--mode", choices=["local", "inline"], default="local")
    parser.add_argument("--master", help="run on this Disco master, e.g. http://localhost:8989")
    parser.add_argument("--push-inputs", action="store_true", help="push inputs to DDFS first")
    parser.add_argument("-o", "--out", help="write word<TAB>count here (default: stdout)")
    args = parser.parse_args()
    results = wordcount.run(inputs=args.files, progress=False, **run_options(args))
    lines = (f"{word}\t{n}\n" for word, n in results)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.writelines(lines)
    else:
        sys.stdout.writelines(lines)


if __name__ == "__main__":
    main()
