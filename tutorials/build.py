"""Build the tutorial notebooks from their sources: ``python tutorials/build.py [--check] [NN]``.

Each tutorial is a Python file in jupytext's "percent" format, ``NN-name.py``:
a ``# %%`` line starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines are commented with ``# ``, and ``tags=["assert-top-words"]`` after
either names the cell for ``tests/test_tutorials.py``. Edit those files (an
editor, ruff and jupytext all read them), then run this script: it writes
``NN-name.ipynb`` next to each, executed top to bottom in a fresh python3
kernel, so that a reader on a code host sees the outputs. Cell ids come from
the cells' contents, so inserting or editing a cell changes that cell's id
only. Tutorial 5 runs against the test Disco master of
``tests/disco_master.py``, started here; progress bars are off, so that
rebuilding changes only outputs that really vary (paths, job names, times).

``--check`` builds nothing: it lists the notebooks whose cells (sources,
types, tags, ids) differ from their ``.py`` and exits 1 if there are any.
This module holds no tutorial text and does not check any output: the tests do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NEEDS_MASTER = {"05-on-a-disco-cluster"}
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
MARKER = re.compile(r"# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?")
HEADER = re.compile(r"\A# ---\n(?:#.*\n)*?# ---\n")


# -- reading a percent-format source ----------------------------------------------------------


def sources(directory: Path = HERE) -> list[Path]:
    """The tutorials' sources in ``directory``: ``NN-*.py``, in order."""
    return sorted(directory.glob("[0-9][0-9]-*.py"))


def read(path: Path) -> NotebookNode:
    """The unexecuted notebook that the percent-format file ``path`` describes."""
    text = HEADER.sub("", path.read_text())
    nb = new_notebook(cells=list(cells(text, path)), metadata={
        "kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"},
    })
    for each, cell_id in zip(nb.cells, cell_ids(nb.cells), strict=True):
        each.id = cell_id
    nbformat.validate(nb)
    return nb


def cells(text: str, path: Path) -> Iterator[NotebookNode]:
    """The cells of ``text``: each ``# %%`` line and the lines up to the next one."""
    marker, body = None, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            if marker is not None:
                yield cell(marker, body, path)
            marker, body = _marker(line, f"{path.name}:{number}"), []
        elif marker is not None:
            body.append(line)
        elif line.strip():
            raise ValueError(f"{path.name}:{number}: text before the first cell; "
                             "start the file with a '# %%' or '# %% [markdown]' line")
    if marker is not None:
        yield cell(marker, body, path)


def _marker(line: str, where: str) -> re.Match[str]:
    match = MARKER.fullmatch(line)
    if match is None:
        raise ValueError(f"{where}: {line!r} is not a cell marker this script reads; write "
                         "'# %%', '# %% [markdown]', optionally followed by ' tags=[\"name\"]'")
    return match


def cell(marker: re.Match[str], body: list[str], path: Path) -> NotebookNode:
    """One cell: its marker's kind and tags, its lines without the blank ones at the end."""
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    if marker["markdown"]:
        new = new_markdown_cell("\n".join(_uncomment(line, path) for line in body))
    else:
        new = new_code_cell("\n".join(body))
    if marker["tags"]:
        new.metadata["tags"] = json.loads(marker["tags"])
    return new


def _uncomment(line: str, path: Path) -> str:
    if line == "#" or line.startswith("# "):
        return line[2:]
    raise ValueError(f"{path.name}: markdown line {line!r} is not commented; "
                     "start every line of a markdown cell with '# ' (or '#' alone when blank)")


def cell_ids(notebook_cells: list[NotebookNode]) -> list[str]:
    """Ids from each cell's type and source, and its place among identical cells."""
    seen: dict[str, int] = {}
    ids = []
    for each in notebook_cells:
        content = f"{each.cell_type}\n{each.source}"
        seen[content] = seen.get(content, -1) + 1
        digest = hashlib.sha256(f"{seen[content]}\n{content}".encode()).hexdigest()
        ids.append(digest[:12])
    return ids


# -- comparing with the committed notebooks ----------------------------------------------------


def outline(nb: NotebookNode) -> list[tuple[str, str, str, list[str]]]:
    """What a notebook's source decides: each cell's id, type, source and tags (not outputs)."""
    return [
        (cell.id, cell.cell_type, cell.source, list(cell.metadata.get("tags", [])))
        for cell in nb.cells
    ]


def stale(directory: Path = HERE) -> list[str]:
    """The notebooks in ``directory`` missing, or unlike their ``.py`` source, or without one."""
    found = []
    for path in sources(directory):
        notebook = path.with_suffix(".ipynb")
        if not notebook.exists() or outline(read(path)) != outline(
            nbformat.read(notebook, as_version=4)
        ):
            found.append(notebook.name)
    orphans = {p.stem for p in directory.glob("*.ipynb")} - {p.stem for p in sources(directory)}
    return found + sorted(f"{stem}.ipynb" for stem in orphans)


# -- executing -------------------------------------------------------------------------------


def execute(nb: NotebookNode, env: Mapping[str, str]) -> NotebookNode:
    """Run every cell of ``nb`` in a fresh kernel in ``tutorials/``; stop at the first error."""
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute(env=dict(env))
    return nb


def kernel_env() -> dict[str, str]:
    """This environment without Disco settings (as in the tests) and without progress bars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCO_", "DDFS_"))}
    env.update(DISCO_SETTINGS_FILE=os.devnull, TQDM_DISABLE="1")
    return env


@contextmanager
def running_master() -> Iterator[dict[str, str]]:
    """The test master running (failure limit 1, as the tests set it); its settings."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after PYTHONPATH: a build may use another checkout's code
    from tests.disco_master import DiscoMaster
    from tests.disco_state import FAST, Clock

    with tempfile.TemporaryDirectory(prefix="discodsl-master-") as root, DiscoMaster(
        Path(root), clock=Clock(scale=FAST)
    ) as master:
        master.jobs.save_setting("max_failure_rate", 1)
        yield {"DISCO_MASTER": master.url, "DISCO_PORT": str(master.port)}


def build(path: Path) -> Path:
    """Execute the tutorial ``path`` (its ``.py``) and write its ``.ipynb``; that path."""
    nb, env = read(path), kernel_env()
    if path.stem in NEEDS_MASTER:
        with running_master() as settings:
            execute(nb, {**env, **settings})
    else:
        execute(nb, env)
    notebook = path.with_suffix(".ipynb")
    nbformat.write(nb, notebook)
    return notebook


def main(args: list[str]) -> int:
    """Build the tutorials named by number (all by default), or ``--check`` them."""
    if "--check" in args:
        found = stale()
        for name in found:
            print(f"{name} is stale: run `python tutorials/build.py {name[:2]}`")
        if not found:
            print(f"every notebook matches its source ({len(sources())} tutorials)")
        return 1 if found else 0
    wanted = [path for path in sources() if not args or path.name[:2] in args]
    if not wanted:
        print(f"no tutorial numbered {' or '.join(args)}: the tutorials are "
              + ", ".join(path.name[:2] for path in sources()), file=sys.stderr)
        return 2
    for path in wanted:
        print(build(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
