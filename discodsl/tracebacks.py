"""A worker's traceback made to read as if the user's code had run in the user's own process.

Code shipped by value (functions from ``__main__``, a notebook, or a module
the nodes cannot import) reaches a node without its source file: the node
may name the file but cannot print its lines, and cloudpickle itself names
every such file ``<dynamic-code>``. :mod:`discodsl.shipping` records each
code object it pickles here, with :func:`remember` (nested functions,
lambdas and comprehensions included); :func:`restore` then rewrites a
worker's traceback text: a ``<dynamic-code>`` frame gets its real file (by
function name and line range; left as it is when two files match), and a
frame of shipped code without a source line gets it from :mod:`linecache`,
formatted as :mod:`traceback` does (so notebook cells, which IPython
registers there, show too).

What this process has not shipped, it leaves alone: a cluster job watched
from another process (``discodsl wait JOB``) keeps the worker's frames as
they are. This module is client side; the worker never imports it.
"""

from __future__ import annotations

import linecache
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import CodeType

from discodsl.worker.errors import notebook_cells

__all__ = ["DYNAMIC", "Code", "remember", "restore", "shipped"]

#: The file name cloudpickle gives every code object it ships by value.
DYNAMIC = "<dynamic-code>"

#: A frame's first line as :mod:`traceback` prints it; ``margin`` is an exception group's ``|``.
_FRAME = re.compile(
    r'(?P<margin>[ |]*?)  File "(?P<file>[^"\n]*)", line (?P<line>\d+), in (?P<name>.+)'
)
_SHIPPED: set[Code] = set()
_LOCK = threading.RLock()  # reentrant: a signal handler may run a job while it is held


@dataclass(frozen=True)
class Code:
    """One shipped code object: its real file, its name and the lines it spans."""

    filename: str
    name: str
    first: int
    last: int


def remember(code: CodeType) -> None:
    """Record ``code`` as shipped by this process (its nested code objects are pickled, and
    so remembered, on their own)."""
    lines = [line for _, _, line in code.co_lines() if line is not None]
    entry = Code(code.co_filename, code.co_name, code.co_firstlineno, max([*lines, 0]))
    with _LOCK:
        _SHIPPED.add(entry)


def shipped() -> list[Code]:
    """Every code object this process has shipped so far."""
    with _LOCK:
        return list(_SHIPPED)


def restore(text: str, codes: Iterable[Code] | None = None) -> str:
    """``text`` (a worker's traceback) with shipped frames named and given their source line.

    ``codes`` defaults to what this process shipped (:func:`shipped`).
    """
    known = shipped() if codes is None else list(codes)
    lines = text.split("\n")
    out: list[str] = []
    for index, line in enumerate(lines):
        match = _FRAME.fullmatch(line)
        if match is None or not known:
            out.append(line)
        else:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            out.extend(_frame(match, known, _is_source(following, match["margin"])))
    return "\n".join(out)


def cells_named(text: str) -> str:
    """``text`` (a worker's error, its traceback) with the files of a notebook's cells named
    as IPython names them (``cell In[3]``), in a process that runs IPython's shell."""
    for filename, count in notebook_cells().items():
        text = text.replace(f'File "{filename}"', f'File "cell In[{count}]"')
        text = text.replace(f"({os.path.basename(filename)}, line", f"(cell In[{count}], line")
    return text


def _is_source(line: str, margin: str) -> bool:
    """Whether ``line``, after a frame, is that frame's source line (the worker could read it)."""
    return line.startswith(margin + "    ") and _FRAME.fullmatch(line) is None


def _frame(match: re.Match[str], codes: list[Code], has_source: bool) -> list[str]:
    """The frame's line, its real file named, then its source line if the worker printed none."""
    margin, name, number = match["margin"], match["name"], int(match["line"])
    filename = _filename(match["file"], name, number, codes)
    if filename is None:
        return [match.group(0)]
    head = f'{margin}  File "{filename}", line {number}, in {name}'
    source = "" if has_source else _source(filename, number)
    return [head, f"{margin}    {source}"] if source else [head]


def _filename(file: str, name: str, number: int, codes: list[Code]) -> str | None:
    """The real file of a frame of shipped code; None if it is not shipped code, or ambiguous."""
    found = {
        code.filename
        for code in codes
        if code.name == name
        and code.first <= number <= code.last
        and file in (DYNAMIC, code.filename)
    }
    return found.pop() if len(found) == 1 else None


def _source(filename: str, number: int) -> str:
    """Line ``number`` of ``filename``, stripped as :mod:`traceback` prints it; "" if unknown."""
    linecache.checkcache(filename)
    return linecache.getline(filename, number).strip()
