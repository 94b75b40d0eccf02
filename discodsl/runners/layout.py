"""Where a job lives on a (local or test) node, laid out as Disco 0.5.4 lays it out.

``DISCO_DATA/<host>/<hh>/<jobname>`` is the job home, ``<hh>`` the first byte
of md5(jobname) in hex; a file there is served as
``disco://<host>/disco/<host>/<hh>/<jobname>/<path>``, and an index file as
``dir://<host>/disco/...`` (spec sections 1, 4 and 5). The URL forms
themselves are :mod:`discodsl.worker.urls`'.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cached_property

from discodsl import places
from discodsl.errors import SettingsError
from discodsl.worker import urls
from discodsl.worker.opening import Node

# This process's local node's name in the URLs of its runs' files: not "localhost", which a
# Disco node may be called, so a cluster's disco://localhost/... results are never taken for
# this node's files.
LOCAL_HOST = "discodsl-local"


def job_name(prefix: str, now: float | None = None) -> str:
    """``<prefix>@<a>:<b>:<c>``: Erlang's now() as megaseconds, seconds, microseconds in hex,
    and as now() never the same twice in this process (two jobs named in one microsecond,
    or after the clock stepped back, shared a job home)."""
    micros = int((time.time() if now is None else now) * 1_000_000)
    with _NAMED_LOCK:
        micros = _NAMED[0] = max(micros, _NAMED[0] + 1)
    seconds, micro = divmod(micros, 1_000_000)
    mega, sec = divmod(seconds, 1_000_000)
    return f"{prefix}@{mega:x}:{sec:x}:{micro:x}"


_NAMED = [0]  # the microseconds of the last name given
_NAMED_LOCK = threading.Lock()


def hexhash(jobname: str) -> str:
    """The two hex digits Disco puts between the host and the job name."""
    return hashlib.md5(jobname.encode()).hexdigest()[:2]


@dataclass(frozen=True)
class JobLayout:
    """The paths and URLs of one job on one node."""

    disco_data: str
    host: str
    jobname: str

    @cached_property
    def relative(self) -> str:
        """``<host>/<hh>/<jobname>``: the job home below DISCO_DATA."""
        return f"{self.host}/{hexhash(self.jobname)}/{self.jobname}"

    @property
    def home(self) -> str:
        """The job home directory."""
        return os.path.join(self.disco_data, self.relative)

    @property
    def jobfile(self) -> str:
        """Where the whole jobpack is written."""
        return os.path.join(self.home, "jobfile")

    def url(self, path: str, scheme: str = "disco") -> str:
        """The URL of ``path`` (relative to the job home) as the node serves it."""
        return urls.job_url(self.host, self.relative, path, scheme)

    def new_index(self, stage: str, taskid: int) -> str:
        """Where a task's index of its outputs goes, relative to the job home:
        ``.disco/<stage>-<taskid>-<microseconds>.results``, as a Disco node names it."""
        return f"{_INDEXES}/{stage}-{taskid}-{time.time_ns() // 1000}.results"

    def indexes(self, stage: str) -> list[str]:
        """The indexes :meth:`new_index` named for ``stage``'s tasks, in task order."""
        try:
            names = os.listdir(os.path.join(self.home, _INDEXES))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            parts = name.removesuffix(".results").rsplit("-", 2)
            ours = name.endswith(".results") and len(parts) == 3 and parts[0] == stage
            if ours and parts[1].isdigit():
                found.append((int(parts[1]), f"{_INDEXES}/{name}"))
        return [path for _, path in sorted(found)]


_INDEXES = ".disco"  # the job home's directory of task indexes


def this_node() -> Node:
    """This process's local node, as a client reads the files of its runs."""
    return Node(host=LOCAL_HOST, disco_data=os.path.join(node_root(), "data"))


def node_root() -> str:
    """This process's local node: one DISCO_DATA for all its jobs, so results chain.

    A process directory (``discodsl-node-<pid>-n<namespace>-<random>``, see
    :func:`discodsl.places.process_dir`), removed as the process ends: a process
    killed before its exit hooks ran leaves it behind, and the next run removes it.
    Made once, whatever threads ask at once for the first; a signal handler that runs a job
    while its thread makes it gets the one either makes first, as that thread does.
    """
    places.check_umask()  # each run: a umask set since the node was made
    if not _NODE:
        _check_text(tempfile.gettempdir())
        with _NODE_MADE:  # reentrant: a handler's run would wait for its own thread
            made = None if _NODE else places.process_dir("node")
            if made is not None and not _NODE:
                _NODE.append(made)
    return _NODE[0]


def _check_text(directory: str) -> None:
    """Refuse a temporary directory whose name is not UTF-8 (a byte decoded by escape)."""
    try:
        directory.encode("utf-8")
    except UnicodeEncodeError:
        raise SettingsError(
            f"the temporary directory {directory!r} (TMPDIR) is not UTF-8 text, and the local "
            "runner tells its workers their files' paths in JSON, as a Disco master does, "
            "which holds only text: point TMPDIR at a directory whose name is UTF-8"
        ) from None


_NODE: list[str] = []  # this process's node, once made
_NODE_MADE = threading.RLock()


def _forget_node() -> None:
    """In a child forked from a process that ran jobs: a node of its own if it runs some
    (and a lock no thread of its parent holds)."""
    global _NODE_MADE
    _NODE_MADE = threading.RLock()
    _NODE.clear()


os.register_at_fork(after_in_child=_forget_node)
