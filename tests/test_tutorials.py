"""The tutorials, run top to bottom by a real Jupyter kernel, and the numbers they promise.

Each notebook test executes one notebook of ``tutorials/`` with nbclient, in
the tutorials directory as Jupyter would, then checks the outputs of the
cells that ``tutorials/build.py`` tags ``assert-...``. A probe cell appended
to every notebook checks that the kernel imported this repository's
discodsl, and the tutorials directory must be left as it was found.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"

PROBE = """\
import json, sys, discodsl
print(json.dumps({"discodsl": discodsl.__file__, "python": sys.executable}))"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def load(path: Path) -> ModuleType:
    """Import a tutorials/ script by path (they are not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ran:
    """An executed notebook: the outputs of its tagged cells."""

    def __init__(self, nb: nbformat.NotebookNode):
        self.cells = {tag: cell for cell in nb.cells for tag in cell.metadata.get("tags", [])}

    def _outputs(self, tag: str) -> list[Any]:
        assert tag in self.cells, f"no cell tagged {tag!r}"
        return list(self.cells[tag].get("outputs", []))

    def stream(self, tag: str, name: str = "stdout") -> str:
        """What the cell printed to ``name``, colours removed."""
        text = "".join(o["text"] for o in self._outputs(tag)
                       if o["output_type"] == "stream" and o["name"] == name)
        return ANSI.sub("", text)

    def value(self, tag: str) -> Any:
        """The cell's displayed result (its last expression), as a Python literal."""
        results = [o for o in self._outputs(tag) if o["output_type"] == "execute_result"]
        assert results, f"cell {tag!r} displays no result"
        return ast.literal_eval(results[-1]["data"]["text/plain"])


def listing() -> list[str]:
    return sorted(
        str(p.relative_to(TUTORIALS)) for p in TUTORIALS.rglob("*")
        if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts
    )


def execute(name: str) -> Ran:
    """Run ``tutorials/<name>`` in a fresh python3 kernel, as Run All would; fail on any error."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    nb.cells.append(new_code_cell(PROBE, metadata={"tags": ["probe"]}))
    before = listing()
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()
    ran = Ran(nb)
    probe = json.loads(ran.stream("probe"))
    assert Path(probe["discodsl"]).resolve() == ROOT / "discodsl" / "__init__.py", probe
    assert listing() == before, "the notebook left files in tutorials/"
    return ran


# -- the generated files ------------------------------------------------------------------------


def test_notebooks_are_built_by_build_py(tmp_path: Path) -> None:
    build = load(TUTORIALS / "build.py")
    written = build.build(tmp_path)
    names = sorted(path.name for path in written)
    assert names == sorted(path.name for path in TUTORIALS.glob("*.ipynb"))
    assert not any(name.startswith("05") for name in names)  # kept for the cluster tutorial
    for path in written:
        committed = TUTORIALS / path.name
        assert committed.read_text() == path.read_text(), (
            f"{path.name} is stale: run `python tutorials/build.py`"
        )
        nb = nbformat.read(committed, as_version=4)
        nbformat.validate(nb)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_make_logs_is_deterministic_and_plants_its_facts(tmp_path: Path) -> None:
    make_logs = load(TUTORIALS / "data" / "make_logs.py")
    first = make_logs.make_logs(tmp_path / "a", files=2, lines=2000)
    second = make_logs.make_logs(tmp_path / "b", files=2, lines=2000)
    for name in ("web-1.log", "web-2.log"):
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
        assert data.count(b"\n") == 2000
    assert {k: v for k, v in first.items() if k != "files"} == {
        k: v for k, v in second.items() if k != "files"
    }
    assert first["malformed"] == 2 * make_logs.MALFORMED_PER_FILE
    assert first["top_url"] == make_logs.TOP_URL
    assert first["worst_hours"] == [make_logs.WORST_HOUR, make_logs.SECOND_WORST_HOUR]
    assert sum(first["requests_per_hour"].values()) == 2 * 2000 - first["malformed"]


# -- the notebooks ------------------------------------------------------------------------------


def test_01_first_job() -> None:
    ran = execute("01-first-job.ipynb")
    assert ran.stream("assert-totals") == "26 distinct words, 58 words in all\n"
    assert ran.value("assert-top-words") == [("the", 15), ("rain", 6), ("river", 4)]
    assert ran.value("assert-matches-counter") is True
    assert ran.stream("assert-unit-tests") == "3 tests passed\n"


def test_02_stages_and_pipelines() -> None:
    ran = execute("02-stages-and-pipelines.ipynb")
    assert ran.stream("assert-top3").splitlines() == [
        "1. honey      4,944.60",
        "2. cheese     4,140.00",
        "3. figs       3,288.60",
    ]
    # split: one task per file; group_label: one per partition; group_all: one
    assert ran.value("assert-task-counts") == {
        "parse tasks": 4, "revenue tasks": 2, "top3 tasks": 1,
    }
    counters, same = ran.stream("assert-partitions").splitlines()
    assert ast.literal_eval(counters) == {"parse tasks": 4, "revenue tasks": 4, "top3 tasks": 1}
    assert same == "same top 3: True"
    assert "starts with the reduce 'revenue'" in ran.stream("assert-pipeline-rule")


def test_03_fast_and_correct() -> None:
    ran = execute("03-fast-and-correct.ipynb")
    corpus = ran.stream("assert-combiner-equal")
    assert corpus.startswith("same counts: True\n")
    assert corpus.rstrip().endswith(" 576000 words")  # 4 files x 12,000 lines x 12 words
    assert ran.stream("assert-mean-combiner") == "same means as plain Python: True\n"
    assert ran.stream("assert-partitioner").splitlines() == [
        "range partitioner, sorted as a whole: True",
        "hash partitioner, sorted as a whole:  False",
        "same counts: True",
    ]
    assert ran.stream("assert-unsorted") == "same counts: True\n"
    assert ran.stream("assert-params").splitlines() == [
        "min_len=6: counter right: True words right: True",
        "min_len=10: counter right: True words right: True",
    ]
    assert ran.stream("assert-closure-partial").splitlines() == [
        "closure gives the same as params: True",
        "partial gives the same as params: True",
    ]


def test_04_when_things_go_wrong() -> None:
    ran = execute("04-when-things-go-wrong.ipynb")
    declared = ran.stream("assert-declaration")
    assert "JobError: reduce 'add_up' takes (counts) but a reduce is called with" in declared
    assert "SettingsError: job option partitions=0 is invalid" in declared

    failed = ran.stream("assert-task-failed")
    fields = dict(re.findall(r"^(stage|input|record|exc_type): +(.*)$", failed, re.M))
    assert fields["stage"] == "parse_age"
    assert fields["input"].startswith("file://") and fields["input"].endswith("/people-2.csv")
    assert fields["record"] == "2"
    assert fields["exc_type"] == "ValueError"
    assert "invalid literal for int() with base 10: 'forty'" in failed.splitlines()[0]
    assert ran.value("assert-bad-line") == "carol,forty"
    remote = ran.stream("assert-remote-traceback")
    assert "in parse_age" in remote
    assert "ValueError: invalid literal for int() with base 10: 'forty'" in remote

    assert ran.stream("assert-inline").splitlines() == [
        "ValueError: invalid literal for int() with base 10: 'forty'",
        'raised in parse_age(): yield "age", int(age)',
    ]
    debugger = ran.stream("assert-post-mortem")
    assert "'carol,forty'" in debugger and "'forty'" in debugger
    assert ran.stream("assert-breakpoint").splitlines() == [
        "stopped at: [('parse_age_checked', 'carol,forty')]",
        "mean age of the others: {'age': 37.375}",
    ]
    pickling = ran.stream("assert-pickling")
    assert pickling.startswith("stage 'parse_counting' cannot be shipped to the workers")
    assert "closure variable 'lock'" in pickling
    assert ran.stream("assert-pickling-fixed").splitlines() == [
        "mean age: {'age': 37.375}",
        "counters: {'bad ages': 1, 'lines': 9}",
    ]
    missing = ran.stream("assert-missing-input")
    assert "people-9.csv" in missing and "matches no file" in missing


def test_06_access_logs(tmp_path: Path) -> None:
    make_logs = load(TUTORIALS / "data" / "make_logs.py")
    facts = make_logs.make_logs(tmp_path, files=4, lines=3000)  # what the notebook generates
    ran = execute("06-access-logs.ipynb")

    malformed = 4 * make_logs.MALFORMED_PER_FILE
    assert ran.stream("assert-malformed") == f"malformed lines: {malformed}\n"

    top = ran.stream("assert-top-urls").splitlines()
    assert len(top) == 5
    hits, url = top[0].split()
    assert url == make_logs.TOP_URL
    assert int(hits.replace(",", "")) == facts["hits"][make_logs.TOP_URL]

    hours = {}
    for line in ran.stream("assert-hours").splitlines():
        hour, requests, errors = re.match(r"2024-03-14 (\d\d):00 +(\d+) requests +(\d+) errors",
                                          line).groups()
        hours[int(hour)] = (int(requests), int(errors))
    assert hours == {h: (facts["requests_per_hour"][h], facts["errors_per_hour"][h])
                     for h in range(24)}

    ranking = ran.stream("assert-ranking").splitlines()
    assert ranking[0].startswith(f"1. 2024-03-14 {make_logs.WORST_HOUR:02d}:00")
    assert ranking[1].startswith(f"2. 2024-03-14 {make_logs.SECOND_WORST_HOUR:02d}:00")
    verdicts = [line.split()[-1] for line in ran.stream("assert-answer-key").splitlines()]
    assert verdicts == ["ok"] * 4

