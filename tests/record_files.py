"""Record files for tests: lists of ``(key, value)`` pairs written where a job can read them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from discodsl.worker.records import RecordWriter


def write_inputs(directory: Path, files: Iterable[Iterable[tuple[Any, Any]]]) -> list[str]:
    """One record file per list of pairs (``part-0``, ``part-1``, ... in ``directory``,
    overwritten); their paths, as a job's inputs."""
    paths = []
    for index, records in enumerate(files):
        path = directory / f"part-{index}"
        with RecordWriter(str(path)) as writer:
            for key, value in records:
                writer.write(key, value)
        paths.append(str(path))
    return paths
