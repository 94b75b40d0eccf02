"""The tutorials, run top to bottom by a real Jupyter kernel, and the numbers they promise.

Each notebook test executes one tutorial of ``tutorials/`` with nbclient, in
the tutorials directory as Jupyter would, then checks the outputs of the
cells its source (``NN-name.py``, percent format) tags ``assert-...``. The
notebook run is the one ``tutorials/build.py`` reads from that source, not the
committed ``.ipynb``; the committed ones must match their sources cell for
cell (outputs aside). A probe cell appended
to every notebook checks that the kernel imported this repository's
discodsl, and the tutorials directory must be left as it was found.
Tutorial 5 runs against the test Disco master of ``tests/disco_master.py``,
which its kernel finds through ``DISCO_MASTER``, as a reader's would.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell

from tests.disco_master import DiscoMaster

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


BUILD = load(TUTORIALS / "build.py")


class Ran:
    """An executed notebook: the outputs of its tagged cells."""

    def __init__(self, nb: nbformat.NotebookNode):
        self.cells = {tag: cell for cell in nb.cells for tag in cell.metadata.get("tags", [])}

    def _outputs(self, tag: str) -> list[Any]:
        assert tag in self.cells, f"no cell tagged {tag!r}"
        return list(self.cells[tag].get("outputs", []))

    def stream(self, tag: str, name: str = "stdout") -> str:
        """What the cell printed to ``name``, colours removed."""
        text = "".join(
            o["text"]
            for o in self._outputs(tag)
            if o["output_type"] == "stream" and o["name"] == name
        )
        return ANSI.sub("", text)

    def value(self, tag: str) -> Any:
        """The cell's displayed result (its last expression), as a Python literal."""
        results = [o for o in self._outputs(tag) if o["output_type"] == "execute_result"]
        assert results, f"cell {tag!r} displays no result"
        return ast.literal_eval(results[-1]["data"]["text/plain"])


def listing() -> list[str]:
    return sorted(
        str(p.relative_to(TUTORIALS))
        for p in TUTORIALS.rglob("*")
        if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts
    )


def execute(name: str) -> Ran:
    """Run ``tutorials/<name>.py`` in a fresh python3 kernel as Run All would; fail on an error."""
    nb = BUILD.read(TUTORIALS / f"{name}.py")
    nb.cells.append(new_code_cell(PROBE, metadata={"tags": ["probe"]}))
    before = listing()
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()
    ran = Ran(nb)
    probe = json.loads(ran.stream("probe"))
    assert Path(probe["discodsl"]).resolve() == ROOT / "discodsl" / "__init__.py", probe
    assert listing() == before, "the notebook left files in tutorials/"
    return ran


# -- the generated files ------------------------------------------------------------------------


def test_the_check_says_every_notebook_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert BUILD.main(["--check"]) == 0
    assert capsys.readouterr().out == "every notebook matches its source (8 tutorials)\n"


def test_notebooks_match_their_sources() -> None:
    assert BUILD.stale() == [], "run `python tutorials/build.py NN` for each stale notebook"
    assert len(BUILD.sources()) == 8
    for path in BUILD.sources():
        nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
        nbformat.validate(nb)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is not None for cell in code), f"{path.stem} unexecuted"
        assert not [o for c in code for o in c.outputs if o["output_type"] == "error"]


def copy_tutorials(to: Path) -> None:
    for path in [*TUTORIALS.glob("[0-9][0-9]-*.py"), *TUTORIALS.glob("*.ipynb")]:
        (to / path.name).write_bytes(path.read_bytes())


def test_a_notebook_unlike_its_source_is_stale(tmp_path: Path) -> None:
    copy_tutorials(tmp_path)
    source = tmp_path / "02-stages-and-pipelines.py"
    source.write_text(source.read_text().replace("# ## Groupings", "# ## Groups", 1))
    (tmp_path / "07-new.py").write_text("# %%\nprint(7)\n")
    (tmp_path / "01-first-job.py").rename(tmp_path / "01-renamed.py")
    assert BUILD.stale(tmp_path) == [
        "01-renamed.ipynb",
        "02-stages-and-pipelines.ipynb",
        "07-new.ipynb",
        "01-first-job.ipynb",
    ]


def test_a_tag_makes_its_notebook_stale(tmp_path: Path) -> None:
    copy_tutorials(tmp_path)
    source = tmp_path / "01-first-job.py"
    source.write_text(source.read_text().replace(' tags=["assert-totals"]', "", 1))
    assert BUILD.stale(tmp_path) == ["01-first-job.ipynb"]


def test_inserting_a_cell_changes_no_other_id(tmp_path: Path) -> None:
    text = (TUTORIALS / "01-first-job.py").read_text()
    before = [cell.id for cell in BUILD.read(TUTORIALS / "01-first-job.py").cells]
    at = text.index("# %% [markdown]\n# ## Some text to count")
    changed = tmp_path / "01-first-job.py"
    changed.write_text(f"{text[:at]}# %%\nprint(1)\n\n# %% [markdown]\n# same\n\n{text[at:]}")
    after = [cell.id for cell in BUILD.read(changed).cells]
    assert len(after) == len(before) + 2
    assert after[:2] == before[:2] and after[4:] == before[2:]
    assert len(set(after)) == len(after)


def test_cells_are_read_as_jupytext_writes_them(tmp_path: Path) -> None:
    source = tmp_path / "01-x.py"
    source.write_text(
        "# ---\n# jupyter:\n#   kernelspec:\n#     name: python3\n# ---\n\n"
        "# %% [markdown]\n# # Title\n#\n#   indented\n\n"
        '# %% tags=["assert-a", "other"]\n\nx = 1\n\n\ndef f():\n    return x\n\n\n'
        "# %%\nprint(2)  # %% inside a line\n"
    )
    nb = BUILD.read(source)
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells] == [
        ("markdown", "# Title\n\n  indented", None),
        ("code", "x = 1\n\n\ndef f():\n    return x", ["assert-a", "other"]),
        ("code", "print(2)  # %% inside a line", None),
    ]


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("# %% A title\nx = 1\n", "01-x.py:1: '# %% A title' is not a cell marker"),
        ("x = 1\n# %%\n", "01-x.py:1: text before the first cell"),
        ("# %% [markdown]\n# fine\nnot commented\n", "markdown line 'not commented'"),
    ],
)
def test_what_the_reader_refuses(tmp_path: Path, text: str, refused: str) -> None:
    source = tmp_path / "01-x.py"
    source.write_text(text)
    with pytest.raises(ValueError, match=re.escape(refused)):
        BUILD.read(source)


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
    ran = execute("01-first-job")
    assert ran.stream("assert-totals") == "26 distinct words, 58 words in all\n"
    assert ran.value("assert-top-words") == [("the", 15), ("rain", 6), ("river", 4)]
    assert ran.value("assert-matches-counter") is True
    assert ran.stream("assert-unit-tests") == "3 tests passed\n"


def test_02_stages_and_pipelines() -> None:
    ran = execute("02-stages-and-pipelines")
    assert ran.stream("assert-top3").splitlines() == [
        "1. honey      4,944.60",
        "2. cheese     4,140.00",
        "3. figs       3,288.60",
    ]
    # split: one task per file; group_label: one per partition; group_all: one
    assert ran.value("assert-task-counts") == {
        "parse tasks": 4,
        "revenue tasks": 2,
        "top3 tasks": 1,
    }
    counters, same = ran.stream("assert-partitions").splitlines()
    assert ast.literal_eval(counters) == {"parse tasks": 4, "revenue tasks": 4, "top3 tasks": 1}
    assert same == "same top 3: True"
    assert "has two stages named 'parse'" in ran.stream("assert-pipeline-rule")


def test_03_fast_and_correct() -> None:
    ran = execute("03-fast-and-correct")
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
    ran = execute("04-when-things-go-wrong")
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
    assert "(not retried: an exception from stage code fails the job" in failed.splitlines()[0]
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


CLUSTER = "05-on-a-disco-cluster"
JOB_NAME = r"[0-9a-f]+:[0-9a-f]+:[0-9a-f]+"  # prefix@A:B:C, the master's clock in hex


def commands(text: str) -> dict[str, list[str]]:
    """What each ``$ discodsl ...`` line of the notebook's helper was followed by."""
    found: dict[str, list[str]] = {}
    command = ""
    for line in text.splitlines():
        if line.startswith("$ discodsl "):
            command = line[len("$ discodsl ") :]
            found[command] = []
        elif command:
            found[command].append(line)
    return found


def test_05_needs_a_master() -> None:
    """Without a master (conftest removes DISCO_MASTER), the first code cell stops Run All,
    saying so."""
    nb = BUILD.read(TUTORIALS / f"{CLUSTER}.py")
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    first, *rest = [cell for cell in nb.cells if cell.cell_type == "code"]
    [error] = [o for o in first.outputs if o["output_type"] == "error"]
    assert error["ename"] == "RuntimeError"
    assert error["evalue"].startswith("this lesson needs a Disco 0.5.4 master")
    assert "none is configured" in error["evalue"] and "~/.disco" in error["evalue"]
    assert "DISCO_MASTER=http://master:8989" in error["evalue"]
    assert all(not cell.get("outputs") for cell in rest)


def test_05_on_a_disco_cluster(disco_master: DiscoMaster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment when it starts: the test master, which serves
    # its nodes' files on its own port (a real cluster's DISCO_PORT, 8989, is the default).
    monkeypatch.setenv("DISCO_MASTER", disco_master.url)
    monkeypatch.setenv("DISCO_PORT", str(disco_master.port))
    ran = execute(CLUSTER)
    url = disco_master.url

    assert ran.stream("assert-master") == f"Disco 0.5.4 at {url}; nodes: localhost\n"
    settings = ran.stream("assert-settings").splitlines()
    assert settings[0] == f"DISCO_MASTER:  {url}"
    assert settings[1].startswith(f"DISCO_PORT:    {disco_master.port} ")
    assert settings[3] == "a keyword wins: http://other:8989"

    local = ran.stream("assert-local").splitlines()
    assert local == [
        "26 distinct words, 58 words in all",
        "top 3: [('the', 15), ('rain', 6), ('river', 4)]",
    ]

    # the jobpack: what the master reads, and what the nodes unpack
    shown = ran.stream("assert-jobpack")
    assert "magic 0xd5c0, version 2, " in shown
    jobdict = dict(re.findall(r"^  (\w+): (.*)$", shown, re.M))
    assert json.loads(jobdict["pipeline"]) == [
        ["words", "split", False],
        ["total", "group_label", False],
    ]
    assert json.loads(jobdict["prefix"]) == "wordcount"
    inputs = [urls[0] for _, _, urls in json.loads(jobdict["inputs"])]
    assert [u.rsplit("/", 1)[-1] for u in inputs] == ["rain.txt", "river.txt", "sea.txt"]
    assert all(u.startswith("file:///") for u in inputs)
    assert re.search(r"^jobhome: \d+ files in cloudpickle, discodsl, worker$", shown, re.M)
    assert "jobpack of 'wordcount'" in ran.stream("assert-jobpack", "stderr")

    # DDFS: three files pushed to a tag, three blobs
    pushed = commands(ran.stream("assert-push"))
    [(push, blobs)] = [(c, out) for c, out in pushed.items() if c.startswith("ddfs push ")]
    assert push.startswith("ddfs push tutorial:rivers ")
    assert len(blobs) == 3 and all(b.startswith("disco://localhost/ddfs/vol0/blob/") for b in blobs)
    listed = pushed["--json ddfs ls tutorial:"]
    assert json.loads("\n".join(listed[:-1])) == ["tutorial:rivers"]
    assert listed[-1] == "tutorial:rivers holds 3 blobs"

    # the same job on the cluster: the same answer
    job, same, counters = ran.stream("assert-cluster").splitlines()
    assert re.fullmatch(rf"job: wordcount@{JOB_NAME}", job)
    name = job.split()[1]
    assert same == "same counts as the local runner: True"
    assert counters == "counters: {'lines': 6}"

    watched = commands(ran.stream("assert-events"))
    status = watched[f"status {name}"]
    assert status[0].startswith(f"{name}: ready (started ")
    assert re.match(r"  words +3/3 done, 0 running, 0 failed$", status[1])
    assert re.match(r"  total +2/2 done, 0 running, 0 failed$", status[2])
    events = watched[f"events {name}"]
    assert events[0].endswith("master New job initialized!")
    assert any(e.endswith("master Stage words scheduled with 3 tasks") for e in events)
    assert "READY: Job done in " in events[-1]

    assert ran.value("assert-results") == [("and", 3), ("clouds", 2), ("does", 2)]
    urls = ran.stream("assert-results").splitlines()
    assert len(urls) == 2 and all(u.startswith("dir://localhost/disco/localhost/") for u in urls)

    saved, top = ran.stream("assert-save-results").splitlines()
    assert re.fullmatch(rf"disco:results:wordcount@{JOB_NAME} holds 2 blobs", saved)
    assert top == "top 3 from the saved results: [('the', 15), ('rain', 6), ('river', 4)]"
    assert "[top3] status: ranking 26 words" in ran.stream("assert-save-results", "stderr")

    # local files: file:// URLs (with a notice), or pushed to DDFS
    notice = ran.stream("assert-local-paths", "stderr")
    assert "3 local input file(s) go to the cluster as file:// URLs" in notice
    assert "push_inputs=True (--push-inputs)" in notice
    paths = ran.stream("assert-local-paths").splitlines()
    assert paths[0] == "by path:  same counts: True"
    assert re.fullmatch(r" +inputs: file:///\S+/rain\.txt \.\.\.", paths[1])
    assert paths[2] == "pushed:   same counts: True"
    assert re.fullmatch(r" +inputs: disco://localhost/ddfs/vol0/blob/\S+ \.\.\.", paths[3])
    assert re.fullmatch(r" +new tag: discodsl:inputs:wordcount@[0-9a-f]+", paths[4])

    # the command line: a job's whole life
    cli_run = ran.stream("assert-cli-run").splitlines()
    assert cli_run[1:] == ["26 lines in counts.tsv", "and\t3", "clouds\t2", "does\t2"]

    life = commands(ran.stream("assert-cli-json"))
    [submitted] = life[next(c for c in life if c.startswith("submit "))]
    assert re.fullmatch(rf"wordcount@{JOB_NAME}", submitted)
    assert life[f"wait {submitted}"] == [f"{submitted}: ready, 2 result file(s)"]
    shown_status = life[f"--json status {submitted}"]
    assert shown_status[0].startswith("... (")  # the whole JSON, not shown
    assert ast.literal_eval(shown_status[1].removeprefix("status --json: ")) == {
        "name": submitted,
        "active": "ready",
        "pipeline": [["words", 0, 0, 0, 3, 0], ["total", 0, 0, 0, 2, 0]],
    }
    records = life[f"--json results {submitted}"]
    assert all(isinstance(json.loads(r), list) for r in records[:3])
    assert records[3:] == ["... (26 lines)", "26 records; the 'the': ['[\"the\", 15]']"]

    jobs = commands(ran.stream("assert-cli-jobs"))
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"ready +{when} +{re.escape(submitted)}", jobs["jobs"][0])
    newest = ast.literal_eval(jobs["--json jobs"][-1].removeprefix("--json: "))
    assert newest["name"] == submitted and newest["status"] == "ready"

    killed = commands(ran.stream("assert-cli-kill"))
    [slow] = killed[next(c for c in killed if c.startswith("submit "))]
    assert re.fullmatch(rf"slow_wordcount@{JOB_NAME}", slow)
    assert killed[f"kill {slow}"] == [f"killed {slow}"]
    statuses = [
        line.split()[1]
        for line in ran.stream("assert-cli-kill").splitlines()
        if line.startswith(f"{slow}: ")
    ]
    assert statuses == ["active", "dead"]

    purged = commands(ran.stream("assert-cli-purge"))
    assert purged[f"purge {submitted}"] == [f"purged {submitted}"]
    assert purged[f"status {submitted}"] == ["(exit status 1)"]
    [error] = ran.stream("assert-cli-purge", "stderr").splitlines()  # no hint saying it again
    assert error.startswith(f"discodsl: error: no job named '{submitted}' on the master at {url}")
    assert error.endswith(f"list jobs with `discodsl --master {url} jobs`")

    # errors: a failing task, an unreachable master
    failed = ran.stream("assert-task-failed")
    assert failed.startswith("the master allows 1 failure(s) per task\n")
    message = failed.splitlines()[1]
    assert re.match(rf"job 'mean_age@{JOB_NAME}' failed in task parse_age:0: ", message)
    assert "ValueError: invalid literal for int() with base 10: 'forty'" in message
    assert message.endswith("raise discodsl.Retry for a failure worth another try)")
    fields = dict(re.findall(r"^(stage|input|record|exc_type): +(.*)$", failed, re.M))
    assert fields == {
        "stage": "parse_age",
        "input": "raw://carol,forty",
        "record": "0",
        "exc_type": "ValueError",
    }
    # the cell's file (ipykernel's), and its line from the kernel's linecache
    assert re.search(r'File "[^"<]+", line 4, in parse_age\n    yield "age", int\(age\)\n', failed)
    assert "\nValueError: invalid literal for int() with base 10: 'forty'\n" in failed

    nowhere = "http://127.0.0.1:1"
    unreachable = ran.stream("assert-unreachable").splitlines()
    assert unreachable[0] == (
        f"Unreachable: could not reach the Disco master at {nowhere} (connection refused): "
        "is the master's URL right (master=, --master, DISCO_MASTER, or the settings file)? "
        "is it running? "
        f"`curl {nowhere}/disco/version` should print its version"
    )
    assert unreachable[1:] == [f"$ discodsl --master {nowhere} jobs", "(exit status 1)"]
    error, hint = ran.stream("assert-unreachable", "stderr").splitlines()
    assert error == "discodsl: error: " + unreachable[0].removeprefix("Unreachable: ")
    assert hint.startswith("hint: is the master running?") and nowhere in hint

    # the notebook leaves nothing behind on the cluster
    assert ran.stream("assert-cleanup") == "purged 8 jobs, deleted 3 tags\n"
    assert disco_master.jobs.jobs == {}
    assert disco_master.ddfs.list_tags() == []


def test_06_access_logs(tmp_path: Path) -> None:
    make_logs = load(TUTORIALS / "data" / "make_logs.py")
    facts = make_logs.make_logs(tmp_path, files=4, lines=3000)  # what the notebook generates
    ran = execute("06-access-logs")

    malformed = 4 * make_logs.MALFORMED_PER_FILE
    assert ran.stream("assert-malformed") == f"malformed lines: {malformed}\n"

    top = ran.stream("assert-top-urls").splitlines()
    assert len(top) == 5
    hits, url = top[0].split()
    assert url == make_logs.TOP_URL
    assert int(hits.replace(",", "")) == facts["hits"][make_logs.TOP_URL]

    hours = {}
    for line in ran.stream("assert-hours").splitlines():
        hour, requests, errors = re.match(
            r"2024-03-14 (\d\d):00 +(\d+) requests +(\d+) errors", line
        ).groups()
        hours[int(hour)] = (int(requests), int(errors))
    assert hours == {
        h: (facts["requests_per_hour"][h], facts["errors_per_hour"][h]) for h in range(24)
    }

    ranking = ran.stream("assert-ranking").splitlines()
    assert ranking[0].startswith(f"1. 2024-03-14 {make_logs.WORST_HOUR:02d}:00")
    assert ranking[1].startswith(f"2. 2024-03-14 {make_logs.SECOND_WORST_HOUR:02d}:00")
    verdicts = [line.split()[-1] for line in ran.stream("assert-answer-key").splitlines()]
    assert verdicts == ["ok"] * 4


def _orders() -> list[dict[str, Any]]:
    """The orders tutorial 7 writes, made here again to check its answers against."""
    customers, items = ["ana", "ben", "cy", "dee", "eli"], ["tea", "jam", "bread", "honey"]
    return [
        {
            "customer": customers[(n * 7 + part) % 5],
            "item": items[(n + part * 3) % 4],
            "quantity": (n * 5 + part) % 4 + 1,
        }
        for part in range(3)
        for n in range(100)
    ]


def test_07_runs_chains_and_readers() -> None:
    orders = _orders()
    items: Counter[str] = Counter()
    buyers: Counter[str] = Counter()
    for order in orders:
        items[order["item"]] += order["quantity"]
        buyers[order["customer"]] += order["quantity"]
    ran = execute("07-runs-chains-and-readers")

    status, records, events = ran.stream("assert-submit").splitlines()
    assert status == "status: ready"
    assert ast.literal_eval(records) == sorted(items.items())
    assert events.startswith("events: ") and "the last: READY: Job done in " in events

    best = max(buyers.items(), key=lambda kv: (kv[1], kv[0]))
    assert ran.stream("assert-chain").splitlines() == [
        f"best customer: [{best!r}]",
        "statuses: ready ready ready",
    ]
    pairs, same = ran.stream("assert-stage-results").splitlines()
    written = int(pairs.split()[4])
    assert 4 <= written <= 3 * 4 and pairs.endswith("for 300 orders")  # combined per task
    assert same == "same total: True"
    assert ran.stream("assert-reduce-only") == "same as the first run: True\n"
    table = [line.split() for line in ran.stream("assert-pandas").splitlines()]
    assert table == [["key", "value"]] + [[k, str(v)] for k, v in sorted(items.items())]


def test_08_caching_resuming_contracts() -> None:
    ran = execute("08-caching-resuming-contracts")
    assert ran.stream("assert-contract") == (
        "JobError: stage 'words' yields (str, int) but reduce 'longest' takes keys of type int: "
        "change longest's `count: int` to `count: str`, or make words yield int keys\n"
    )
    checked = ran.stream("assert-runtime-check")
    # inline mode shuffles inputs and tasks: whichever word comes first
    assert re.match(r"stage 'lengths' yielded \('\w+', '(\d+)'\): its value '\1' is a str", checked)
    assert "values must be int" in checked

    first, top = ran.stream("assert-first-run").splitlines()
    jobname = first.split("job ")[-1]
    assert ast.literal_eval(top) == [("the", 240), ("river", 120), ("falls", 80)]
    second, same = ran.stream("assert-cached-run").splitlines()
    assert second.endswith(f" s, job {jobname}") and same == "same records: True"
    notice = ran.stream("assert-cached-run", "stderr")
    assert notice.startswith(f"discodsl: cached results of job 'wordcount' from run {jobname} (")

    assert ran.stream("assert-fresh-runs").splitlines() == [
        "weight 1, first time:  served False",
        "weight 1, again:       served True",
        "weight 2:              served False",
        "weight 1, 3 partitions: served False",
        "weight 1, an input edited: served False",
    ]
    resumed = ran.stream("assert-resumed").splitlines()
    assert resumed[:2] == ["stages run: by_count, histogram", "same as a fresh run: True"]
    assert resumed[2:] == [
        "1 ['line', 'more', 'one']",
        "40 ['on', 'sea', 'to']",
        "80 ['and', 'falls', 'rain', 'runs']",
        "120 ['river']",
        "240 ['the']",
    ]
    said = ran.stream("assert-resumed", "stderr")
    assert "discodsl: resuming job 'counts_of_counts' after stage 'total': the outputs of " in said
    listed, cleared = ran.stream("assert-cache-ls").splitlines()
    assert listed.startswith("14 stage(s), ") and cleared.startswith("removed 8 stage(s), ")
