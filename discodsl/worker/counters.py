"""Counters and status lines from stage code: ``count("malformed")``, ``status("half way")``.

Counts are summed per task and reported once at its end (one MSG, so the
master's rate limit is never at risk); runners add them up across tasks and
put them on the results. A status line is printed, which a worker forwards to
the master as a batched MSG and the inline runner shows at once.
"""

from __future__ import annotations

import json
import sys

PREFIX = "discodsl-counters: "
_counts: dict[str, int] = {}


def count(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (summed over all tasks of the job)."""
    _counts[name] = _counts.get(name, 0) + amount


def status(text: str) -> None:
    """Report a status line to whoever watches the job."""
    print(f"status: {text}", file=sys.stderr, flush=True)


def take() -> dict[str, int]:
    """The counts so far, resetting them (one task's worth)."""
    counts = dict(_counts)
    _counts.clear()
    return counts


def encode(counts: dict[str, int]) -> str:
    """The MSG text reporting ``counts``."""
    return PREFIX + json.dumps(counts, sort_keys=True)
