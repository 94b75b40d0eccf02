"""Wordcount: discodsl's local runner against plain Python peers, side by side in one run.

usage: python bench/wordcount.py [--mb 200] [--runs 3] [--data bench/data]

Makes the corpus with ../shared/bench/make_corpus.py (MB as 8 part files and
as one file, plus 1 KB for start-up), then times, alternating and taking the
median of --runs: the README's wordcount (bench/wc_job.py) on the local
runner over the 8 parts and over the one file; mp_counter.py and
plain_counter.py; and the 1 KB job, local and inline. Each run is a fresh
process; outputs are checked equal. Prints wall, CPU, the peak RSS of the
largest process, and the ratios against mp_counter.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent.parent / "shared" / "bench"
PY = sys.executable


def make_corpus(data: Path, mb: float) -> tuple[list[str], str, str]:
    data.mkdir(parents=True, exist_ok=True)
    one, parts, tiny = (
        data / f"corpus-{mb:g}mb.txt",
        data / f"corpus-{mb:g}mb-parts",
        data / "corpus-1kb.txt",
    )
    maker = str(PEERS / "make_corpus.py")
    if not one.exists():
        subprocess.run([PY, maker, "--mb", str(mb), "--out", str(one)], check=True)
    if not parts.exists():
        subprocess.run(
            [PY, maker, "--mb", str(mb), "--files", "8", "--out", str(parts)], check=True
        )
    if not tiny.exists():
        subprocess.run([PY, maker, "--mb", "0.001", "--out", str(tiny)], check=True)
    return sorted(glob.glob(str(parts / "part-*"))), str(one), str(tiny)


def timed(command: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [PY, str(HERE / "_timed.py"), *command], capture_output=True, text=True, check=True
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    if figures["code"] != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return figures


def counts(path: str) -> Counter[str]:
    result: Counter[str] = Counter()
    with open(path) as handle:
        for line in handle:
            word, n = line.rsplit("\t", 1)
            result[word] += int(n)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", default=str(HERE / "data"))
    args = parser.parse_args()
    parts, one, tiny = make_corpus(Path(args.data), args.mb)
    out = Path(args.data) / "out"
    out.mkdir(exist_ok=True)
    job = str(HERE / "wc_job.py")
    commands = {
        "discodsl local, 8 parts": [PY, job, "-o", str(out / "dsl-parts"), *parts],
        "discodsl local, 1 file": [PY, job, "-o", str(out / "dsl-one"), one],
        "mp_counter, 8 parts": [
            PY,
            str(PEERS / "peers" / "mp_counter.py"),
            *parts,
            "-o",
            str(out / "mp"),
        ],
        "plain_counter, 1 file": [
            PY,
            str(PEERS / "peers" / "plain_counter.py"),
            one,
            "-o",
            str(out / "plain"),
        ],
        "discodsl local, 1 KB": [PY, job, "-o", str(out / "tiny-local"), tiny],
        "discodsl inline, 1 KB": [
            PY,
            job,
            "--mode",
            "inline",
            "-o",
            str(out / "tiny-inline"),
            tiny,
        ],
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            runs[name].append(timed(command))
    reference = counts(str(out / "plain"))
    for name in ("dsl-parts", "dsl-one", "mp"):
        if counts(str(out / name)) != reference:
            raise SystemExit(f"output {name} differs from plain_counter's")
    if counts(str(out / "tiny-local")) != counts(str(out / "tiny-inline")):
        raise SystemExit("1 KB outputs differ between local and inline")
    report(runs, args)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    median = {
        n: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mb")}
        for n, rs in runs.items()
    }
    print(
        f"\n{args.mb:g} MB corpus, median of {args.runs} alternating runs, {os.cpu_count()} cores"
    )
    print(f"{'command':28s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s}")
    for name, m in median.items():
        print(f"{name:28s} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss_mb']:12.0f}")
    mp = median["mp_counter, 8 parts"]["wall"]
    print(
        f"\nlocal 8 parts / mp_counter: {median['discodsl local, 8 parts']['wall'] / mp:.2f}x "
        "(target <= 1.25)"
    )
    print(
        f"local 1 file / mp_counter 8 parts: {median['discodsl local, 1 file']['wall'] / mp:.2f}x "
        "(target <= 1.4)"
    )
    print(
        f"1 KB local: {median['discodsl local, 1 KB']['wall']:.2f} s (target <= 0.5); "
        f"inline: {median['discodsl inline, 1 KB']['wall']:.2f} s (target <= 0.3)"
    )


if __name__ == "__main__":
    main()
