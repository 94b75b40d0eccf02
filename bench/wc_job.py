"""The README's wordcount (examples/wordcount.py, combiner and all) as a command for the benchmark.

usage: python bench/wc_job.py [--mode local|inline] [-o OUT] FILE [FILE ...]
Prints (or writes) word<TAB>count for every word, in any order.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from wordcount import wordcount  # the README's example itself, not a copy of it


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--mode", default="local")
    parser.add_argument("-o", "--out")
    args = parser.parse_args()
    results = wordcount.run(inputs=args.files, mode=args.mode, progress=False)
    lines = (f"{word}\t{n}\n" for word, n in results)
    if args.out:
        with open(args.out, "w") as out:
            out.writelines(lines)
    else:
        sys.stdout.writelines(lines)


if __name__ == "__main__":
    main()
