"""The benchmarks stand on their own: a deterministic corpus, and nothing from outside the repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _corpus(data: Path, seed: str = "7") -> list[Path]:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "corpus.py"),
            "--mb",
            "0.2",
            "--parts",
            "3",
            "--data",
            str(data),
            "--seed",
            seed,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return sorted(p for p in data.rglob("*") if p.is_file())


def test_the_parts_are_the_one_file_cut_at_line_starts(tmp_path: Path) -> None:
    files = _corpus(tmp_path)
    whole = max(files, key=lambda p: p.stat().st_size)
    parts = sorted(p for p in files if p != whole)
    assert len(parts) == 3
    assert b"".join(p.read_bytes() for p in parts) == whole.read_bytes()
    assert all(p.read_bytes().endswith(b"\n") for p in parts)
    assert 150_000 < whole.stat().st_size <= 200_000


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = _corpus(tmp_path / "a")
    again = _corpus(tmp_path / "b")
    other = _corpus(tmp_path / "c", seed="8")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]


def test_nothing_in_bench_reaches_outside_the_repository() -> None:
    for path in (ROOT / "bench").rglob("*.py"):
        text = path.read_text()
        assert "../shared" not in text and '"shared"' not in text, f"{path} refers to ../shared"


def test_phases_times_every_phase_of_a_real_run(tmp_path: Path) -> None:
    files = _corpus(tmp_path)
    parts = sorted(p for p in files if p.parent != tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "phases.py"), *map(str, parts)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    words = {w for p in parts for w in p.read_text().split()}
    assert f"{len(words):,} distinct words" in done.stderr
    rows = {
        line.split("|")[1].strip(): float(line.split("|")[3])
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith(("| phase", "| ---"))
    }
    phases = [name for name in rows if name != "total"]
    assert phases[:5] == [
        "read",
        "map: user code",
        "map: combine",
        "map: combiner calls",
        "map: other",
    ]
    assert abs(sum(rows[name] for name in phases) - rows["total"]) < 0.05
    assert "together are" in done.stdout
