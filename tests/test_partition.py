"""The default partitioner is a content hash: the same in every process, whatever PYTHONHASHSEED."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from discodsl.worker.partition import default_partition

KEYS = ["apple", "", "unicodé ✓", b"bytes", 7, -12345678901234567890, (1, "a"), 2.5, None]

SCRIPT = """
import json, sys
from discodsl.worker.partition import default_partition
keys = ["apple", "", "unicodé ✓", b"bytes", 7, -12345678901234567890, (1, "a"), 2.5, None]
print(json.dumps([default_partition(k, 13) for k in keys]))
"""


def test_same_partition_across_processes_and_hash_seeds() -> None:
    seen = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        seen.add(tuple(json.loads(out)))
    assert seen == {tuple(default_partition(k, 13) for k in KEYS)}


def test_in_range_and_spread() -> None:
    labels = [default_partition(f"word{i}", 8) for i in range(8000)]
    assert set(labels) == set(range(8))
    assert min(labels.count(p) for p in range(8)) > 800
    assert default_partition("anything", 1) == 0


def test_fast_partitioner_agrees_with_the_definition() -> None:
    from discodsl.worker.partition import partitioner

    keys = [*KEYS, "\udc80lone surrogate", "ascii", "ü" * 50, 0, -1, ("t", 1)]
    for n in (1, 2, 7, 64):
        label = partitioner(n)
        assert [label(k) for k in keys] == [default_partition(k, n) for k in keys]
