"""Write web server access logs in Common Log Format, with known facts planted in them.

::

    python make_logs.py OUTDIR [--files 4] [--lines 3000] [--seed 54]

writes ``OUTDIR/web-1.log`` ... one file per server, ``--lines`` lines
each, all on one day, and prints the facts as JSON. The same arguments
always write the same bytes: the only randomness is a seeded
``random.Random(seed).random()``, whose sequence Python promises to keep
across versions. Standard library only.

Planted (by construction or by a wide margin, so they hold for the default
size and every seed tried; :func:`make_logs` checks them and raises
ValueError when a tiny size or an odd seed spoils one):

- ``TOP_URL`` is the most requested URL, by a wide margin;
- ``WORST_HOUR`` has the highest share of server errors (status >= 500),
  and ``SECOND_WORST_HOUR`` the second highest;
- exactly ``MALFORMED_PER_FILE`` lines of every file are malformed (no
  valid Common Log Format line), so ``files * MALFORMED_PER_FILE`` in all.

:func:`make_logs` returns the facts it counted while writing (hits per URL,
requests and errors per hour), so a job's answers can be checked against
them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

DAY = "14/Mar/2024"
TOP_URL = "/downloads/disco-0.5.4.tar.gz"
WORST_HOUR = 14
SECOND_WORST_HOUR = 9
MALFORMED_PER_FILE = 9

# URL and its share of requests; TOP_URL leads the next one by far.
URLS = [
    (TOP_URL, 0.24),
    ("/", 0.14),
    ("/docs/start.html", 0.10),
    ("/docs/howto/ddfs.html", 0.07),
    ("/docs/faq.html", 0.07),
    ("/static/disco.css", 0.08),
    ("/static/logo.png", 0.08),
    ("/api/jobs", 0.06),
    ("/api/status", 0.05),
    ("/blog/2024/pipelines.html", 0.04),
    ("/downloads/disco-0.5.3.tar.gz", 0.03),
    ("/favicon.ico", 0.02),
    ("/wp-login.php", 0.02),
]
# Share of each hour's traffic: quiet nights, busy afternoons.
HOURS = [1, 1, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 6, 7, 8, 8, 7, 6, 5, 4, 3, 3, 2, 1]
# Chance of a server error per request, by hour.
ERROR_RATE = {WORST_HOUR: 0.30, SECOND_WORST_HOUR: 0.15}
BASE_ERROR_RATE = 0.01
METHODS = [("GET", 0.9), ("POST", 0.07), ("HEAD", 0.03)]
USERS = [("-", 0.95), ("ana", 0.03), ("bo", 0.02)]


def _pick(rng: random.Random, weighted: Sequence[tuple[T, float]]) -> T:
    point = rng.random() * sum(weight for _, weight in weighted)
    for item, weight in weighted:
        point -= weight
        if point < 0:
            return item
    return weighted[-1][0]


def _request(rng: random.Random, hour: int) -> tuple[str, int, str]:
    """One request line's time, URL, status; the whole line."""
    url = _pick(rng, URLS)
    minute, second = int(rng.random() * 60), int(rng.random() * 60)
    if rng.random() < ERROR_RATE.get(hour, BASE_ERROR_RATE):
        status = _pick(rng, [(500, 0.5), (502, 0.2), (503, 0.3)])
    elif url == "/wp-login.php":
        status = 404
    elif rng.random() < 0.1:
        status = 304
    else:
        status = 200
    size = "-" if status == 304 else str(200 + int(rng.random() * 50_000))
    ip = f"10.{int(rng.random() * 4)}.{int(rng.random() * 256)}.{1 + int(rng.random() * 254)}"
    user = _pick(rng, USERS)
    method = _pick(rng, METHODS)
    stamp = f"{DAY}:{hour:02d}:{minute:02d}:{second:02d} +0000"
    line = f'{ip} - {user} [{stamp}] "{method} {url} HTTP/1.1" {status} {size}'
    return f"{hour:02d}:{minute:02d}:{second:02d}", status, line


def _malformed(rng: random.Random, good_line: str, kind: int) -> str:
    """A line no Common Log Format parser accepts, of one of three kinds."""
    if kind == 0:  # cut short while being written
        return good_line[: len(good_line) // 2]
    if kind == 1:  # a status that is not a number
        return good_line.rsplit(" ", 2)[0] + " OK -"
    return f"upstream timed out ({int(rng.random() * 100)}: Connection timed out)"


def make_logs(
    outdir: str | os.PathLike[str], files: int = 4, lines: int = 3000, seed: int = 54
) -> dict[str, object]:
    """Write ``files`` logs of ``lines`` lines into ``outdir``; the facts, as counted."""
    if lines <= MALFORMED_PER_FILE:
        raise ValueError(f"lines={lines} leaves no room for requests: use a few hundred or more")
    os.makedirs(outdir, exist_ok=True)
    rng = random.Random(seed)
    hits: Counter[str] = Counter()
    requests: Counter[int] = Counter()
    errors: Counter[int] = Counter()
    paths = []
    for number in range(1, files + 1):
        entries = []
        for _ in range(lines - MALFORMED_PER_FILE):
            hour = _pick(rng, list(enumerate(HOURS)))
            when, status, line = _request(rng, hour)
            entries.append((when, line))
            url = line.split('"')[1].split()[1]
            hits[url] += 1
            requests[hour] += 1
            errors[hour] += status >= 500
        entries.sort(key=lambda entry: entry[0])
        log = [line for _, line in entries]
        for kind in range(MALFORMED_PER_FILE):
            spoiled = entries[int(rng.random() * len(entries))][1]
            log.insert(int(rng.random() * len(log)), _malformed(rng, spoiled, kind % 3))
        path = os.path.join(outdir, f"web-{number}.log")
        with open(path, "w", encoding="ascii", newline="\n") as handle:
            handle.write("\n".join(log) + "\n")
        paths.append(path)
    rates = {hour: errors[hour] / requests[hour] for hour in requests}
    ranked = sorted(rates, key=lambda hour: (-rates[hour], hour))
    facts: dict[str, object] = {
        "files": paths,
        "lines": files * lines,
        "malformed": files * MALFORMED_PER_FILE,
        "top_url": hits.most_common(1)[0][0],
        "hits": dict(sorted(hits.items())),
        "requests_per_hour": {h: requests[h] for h in sorted(requests)},
        "errors_per_hour": {h: errors[h] for h in sorted(requests)},
        "worst_hours": ranked[:2],
    }
    if facts["top_url"] != TOP_URL or ranked[:2] != [WORST_HOUR, SECOND_WORST_HOUR]:
        raise ValueError(
            f"seed={seed}, lines={lines} spoiled the planted facts (top URL "
            f"{facts['top_url']}, worst hours {ranked[:2]}): use more lines or another seed"
        )
    return facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", help="directory to write web-N.log into")
    parser.add_argument("--files", type=int, default=4, help="log files (servers), default 4")
    parser.add_argument("--lines", type=int, default=3000, help="lines per file, default 3000")
    parser.add_argument("--seed", type=int, default=54, help="random seed, default 54")
    args = parser.parse_args(argv)
    facts = make_logs(args.outdir, files=args.files, lines=args.lines, seed=args.seed)
    print(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main()
