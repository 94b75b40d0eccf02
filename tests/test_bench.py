"""The benchmarks stand on their own: a deterministic corpus, and nothing from outside the repo."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The seed-7 corpus, made once for the module (the tests only read it)."""
    return _corpus(tmp_path_factory.mktemp("corpus"))


def test_the_parts_are_the_one_file_cut_at_line_starts(corpus: list[Path]) -> None:
    files = corpus
    whole = max(files, key=lambda p: p.stat().st_size)
    parts = sorted(p for p in files if p != whole)
    assert len(parts) == 3
    assert b"".join(p.read_bytes() for p in parts) == whole.read_bytes()
    assert all(p.read_bytes().endswith(b"\n") for p in parts)
    assert 150_000 < whole.stat().st_size <= 200_000


def test_the_same_seed_gives_the_same_bytes(corpus: list[Path], tmp_path: Path) -> None:
    first = corpus
    again = _corpus(tmp_path / "b")
    other = _corpus(tmp_path / "c", seed="8")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]


def test_nothing_a_user_clones_reaches_outside_the_repository() -> None:
    # A user who clones the repository has no ../shared: the README, bench/, the tutorials,
    # the package and the tests' own data all stand without it.
    places = [ROOT / "README.md", ROOT / "bench", ROOT / "tutorials", ROOT / "discodsl"]
    places += [ROOT / "tests" / "conftest.py", ROOT / "tests" / "disco-reference"]
    paths = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))]
    texts = [p for p in paths if p.suffix in (".py", ".md", ".ipynb", ".json", ".sh")]
    assert len(texts) > 50
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and '"shared"' not in text, f"{path} refers to ../shared"
        assert "shared/disco-reference" not in text, f"{path} refers to ../shared"


def test_phases_times_every_phase_of_a_real_run(corpus: list[Path]) -> None:
    whole = max(corpus, key=lambda p: p.stat().st_size)
    parts = sorted(p for p in corpus if p != whole)
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


def _peer_counts(script: str, parts: list[Path], out: Path, *flags: str) -> dict[str, int]:
    peer = str(ROOT / "bench" / "peers" / script)
    subprocess.run(
        [sys.executable, peer, *flags, "-o", str(out), *map(str, parts)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pairs = (line.split("\t") for line in out.read_text().splitlines())
    counts = {word: int(count) for word, count in pairs}
    assert len(counts) == len(out.read_text().splitlines()), f"{script} printed a word twice"
    return counts


def test_every_plain_python_peer_counts_what_the_corpus_holds(
    corpus: list[Path], tmp_path: Path
) -> None:
    whole = max(corpus, key=lambda p: p.stat().st_size)
    parts = sorted(p for p in corpus if p != whole)
    expected: dict[str, int] = {}
    for part in parts:
        for word in part.read_text().split():
            expected[word] = expected.get(word, 0) + 1
    for script in ("plain_counter.py", "mp_counter.py", "mp_pairs.py", "mp_shuffle.py"):
        assert _peer_counts(script, parts, tmp_path / script) == expected, script
    calls = _peer_counts("mp_shuffle.py", parts, tmp_path / "calls", "--calls")
    assert calls == expected


def _shuffle_peer() -> Any:
    sys.path.insert(0, str(ROOT / "bench" / "peers"))
    try:
        import mp_shuffle
    finally:
        sys.path.remove(str(ROOT / "bench" / "peers"))
    return mp_shuffle


def test_the_shuffle_peer_with_calls_calls_the_reduce_as_a_combining_job_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer = _shuffle_peer()
    seen: list[tuple[str, list[int]]] = []

    def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        listed = list(counts)
        seen.append((word, listed))
        yield word, sum(listed)

    monkeypatch.setattr(peer, "total", total)
    # Map-side: a key counted more than once goes through the reduce, a lone one as it is.
    assert list(peer.combined({"a": 3, "b": 1})) == [("a", 3), ("b", 1)]
    assert seen == [("a", [1, 1, 1])]
    # Reduce-side: every key's values, listed in the order read, keys in order.
    seen.clear()
    records = [("b", 2), ("a", 1), ("b", 5)]
    assert list(peer.reduced(records)) == [("a", 1), ("b", 7)]
    assert seen == [("a", [1]), ("b", [2, 5])]


def test_the_shuffle_peer_writes_disco_record_files(tmp_path: Path) -> None:
    mp_shuffle = _shuffle_peer()
    from discodsl.worker.records import read_records

    records = [(f"word{i}", i) for i in range(100_000)]  # several hunks of 1 MiB
    path = tmp_path / "records"
    size = mp_shuffle.write_records(str(path), records)
    with open(path, "rb") as handle:
        assert list(read_records(handle, "file://" + str(path))) == records
    assert list(mp_shuffle.read_records(str(path))) == records
    assert size == path.stat().st_size > 2 * mp_shuffle.HUNK
    assert [p.name for p in tmp_path.iterdir()] == ["records"]  # the .partial renamed


def test_the_shuffle_peer_counts_tiny_inputs_whose_partitions_are_mostly_empty(
    tmp_path: Path,
) -> None:
    lines = ["a b a", "", "c", "d d d d e", "a"]  # one file holds nothing at all
    parts = []
    for i, line in enumerate(lines):
        parts.append(tmp_path / f"line-{i}.txt")
        parts[-1].write_text(line + "\n" if line else "")
    counts = _peer_counts("mp_shuffle.py", parts, tmp_path / "out")
    assert counts == {"a": 3, "b": 1, "c": 1, "d": 4, "e": 1}


SCRIPTS = sorted(
    p
    for p in [*(ROOT / "bench").glob("*.py"), *(ROOT / "bench" / "peers").glob("*.py")]
    if not p.name.startswith("_")
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_says_its_usage(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
