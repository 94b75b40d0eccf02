"""This user's local runs on disk, so that another shell can watch them: the local registry.

Each local run (``mode="local"``) has an entry while its process runs it: a
directory named after the run (``wordcount@5f1:6a3b2:1c0d``) in
:func:`runs_dir` (``$DISCODSL_RUNS_DIR``, else
``$XDG_CACHE_HOME/discodsl/runs``, else ``~/.cache/discodsl/runs``) holding

- ``run.json``: name, job, the stages of its pipeline, status (``active``,
  ``ready``, ``dead``), pid and host of the process that runs it, start and
  end times, counters; replaced whole, never half written;
- ``events``: the run's events in a Disco master's rawevents format, one
  ``["time","host","message"]`` JSON line each, oldest first, written as
  they happen;
- ``kill``, when someone asked to kill the run: the owning process looks
  for it every :data:`KILL_POLL` seconds and then kills the run.

Cleaned up at each listing and, once a minute at most (for all processes:
``.cleaned``'s time says when), when a process registers a run: an active entry whose
process has ended (killed before it could say so) is recorded dead, with the
reason, as a finished one (reading it does the same); a finished one is kept
for :data:`KEEP_SECONDS` (a day), :data:`KEEP_COUNT` at most.
The run's results are not here: they live in its process's node directory
and go with it.

It runs nothing: :mod:`discodsl.runners.local` registers its runs, and the
command line (``jobs``, ``status``, ``events``, ``kill`` without a master, or
with ``--local``) reads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from discodsl import places
from discodsl.errors import JobError
from discodsl.jobstatus import STAGE_SCHEDULED, TASK_ASSIGNED, TASK_DONE, TASK_ERROR, Event
from discodsl.worker import owners

if TYPE_CHECKING:
    from collections.abc import Sequence

    from discodsl.runners.handle import Run


__all__ = ["LocalRun", "clean", "find", "list_runs", "register", "request_kill", "runs_dir"]

log = logging.getLogger(__name__)

RUNS_ENV = "DISCODSL_RUNS_DIR"
KEEP_SECONDS = 24 * 3600
KEEP_COUNT = 200
KILL_POLL = 0.25
# An entry directory without its run.json (being created) is left alone this long.
YOUNG = 60.0
# A process cleans up at most this often when it registers runs (seconds): a full
# registry takes a few milliseconds to look through.
CLEAN_EVERY = 60.0
# Touched in the registry's directory by the process that last cleaned it (see _due).
CLEANED = ".cleaned"
_cleaned = {"at": -CLEAN_EVERY}
HOST = socket.gethostname()


def runs_dir() -> Path:
    """Where this user's local runs are registered (see the module docstring)."""
    return places.place("runs", RUNS_ENV)


# --------------------------------------------------------------------------
# The owning process's side
# --------------------------------------------------------------------------


class _Entry:
    """The entry a process writes for one of its runs."""

    def __init__(self, path: Path, facts: dict[str, Any]):
        self.path, self.facts = path, facts
        self._events: IO[str] = open(path / "events", "a", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()
        self.cut = False  # an event could not be written: the log stops short

    @classmethod
    def create(cls, directory: Path, run: Run, stages: Sequence[str]) -> _Entry:
        path = directory / run.jobname
        path.mkdir(parents=True, exist_ok=True)  # claimed as the run was named (claim)
        facts = {
            "name": run.jobname,
            "job": run.job,
            "stages": list(stages),
            "mode": run.mode,
            "status": "active",
            "pid": os.getpid(),
            "pid_started": owners.started(),  # with the pid, this very process
            "pid_namespace": owners.pid_namespace(),
            "host": HOST,
            "started": time.time(),
        }
        _write_json(path / "run.json", facts)
        return cls(path, facts)

    def add(self, event: Event) -> None:
        """Append ``event``; once that fails (a full disk), the entry's events stop there,
        said once: the run keeps them in memory, and goes on."""
        with self._lock:
            if self._events.closed:
                return
            try:
                self._events.write(json.dumps(list(event), separators=(",", ":")) + "\n")
                self._events.flush()
            except OSError as exc:
                log.warning(
                    "discodsl: events of local run %s no longer written to %s: %s",
                    self.facts["name"],
                    self.path / "events",
                    exc,
                )
                self.cut = True
                with contextlib.suppress(OSError):
                    self._events.close()
                    (self.path / EVENTS_CUT).touch()  # for other shells, while it runs

    def finish(self, run: Run) -> None:
        with self._lock:
            self._events.close()
        facts = {**self.facts, "status": run.status, "ended": time.time()}
        if self.cut:
            facts["events_cut"] = True
        try:  # the counters apart: every cleanup and listing reads each run.json
            _write_json(self.path / COUNTERS, run.counters)
            _write_json(self.path / "run.json", facts)
        except OSError as exc:  # other shells will take the run for dead once this one ends
            log.warning(
                "discodsl: the end (%s) of local run %s not written to %s: %s",
                run.status,
                self.facts["name"],
                self.path / "run.json",
                exc,
            )

    def kill_requested(self) -> bool:
        return (self.path / "kill").exists()


def claim(jobname: str) -> bool:
    """Whether no run of this user's, in any process, is named ``jobname``: its entry is
    made now if so, for :func:`register` to fill. Names increase within a process only, so
    another may name a run in the same microsecond. A registry that cannot be written
    refuses no name (the run then goes unregistered, as register says)."""
    try:
        (runs_dir() / jobname).mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError:
        pass
    return True


def register(run: Run, stages: Sequence[str]) -> None:
    """Give a local run (of the pipeline ``stages``) its entry: its events go to the file
    as they come, its end to run.json, and a kill request found there kills it. A registry
    that cannot be written (a read-only home) costs the run nothing but its entry."""
    directory = runs_dir()
    if time.monotonic() - _cleaned["at"] >= CLEAN_EVERY and _due(directory / CLEANED):
        _cleaned["at"] = time.monotonic()
        clean(directory)
    try:
        entry = _Entry.create(directory, run, stages)
    except OSError as exc:
        log.warning("discodsl: local run %s not registered in %s: %s", run.jobname, directory, exc)
        return
    run.log.attach(entry.add)
    ended = threading.Event()
    run.on_end(entry.finish)
    run.on_end(lambda _: ended.set())
    threading.Thread(
        target=_watch,
        args=(weakref.ref(run), ended, entry),
        name=f"discodsl kill watch {run.jobname}",
        daemon=True,
    ).start()


def _due(stamp: Path) -> bool:
    """Whether no process has cleaned the registry in the last CLEAN_EVERY seconds (it
    reads every entry's run.json: tens of milliseconds of a short run's start); if none
    has, the stamp says this one does now."""
    try:
        if time.time() - stamp.stat().st_mtime < CLEAN_EVERY:
            return False
    except OSError:
        pass  # none yet, or unreadable: clean
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return True


def _watch(run: weakref.ref[Run], ended: threading.Event, entry: _Entry) -> None:
    """Kill ``run`` when its entry asks for it, until the run ends (``ended``). The run is
    held weakly: results no one else holds are removed when dropped, not at this thread's
    next look, which may come in the middle of a next run that reads them."""
    while not ended.wait(KILL_POLL):
        if entry.kill_requested():
            going = run()
            if going is not None:
                going.kill()
            return


def _write_json(path: Path, facts: dict[str, Any]) -> None:
    """``facts`` written whole to ``path``: a reader sees the old file or the new one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".run-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(facts, out)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------
# Readers: the command line
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalRun:
    """A registered local run, as read back from its entry."""

    path: Path
    facts: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.facts["name"])

    @property
    def status(self) -> str:
        """As recorded; ``dead`` for an active run whose process has ended."""
        status = str(self.facts.get("status", "dead"))
        return "dead" if status == "active" and not _alive(self.facts) else status

    @property
    def reason(self) -> str:
        """Why it is dead, when it is known (its process ended first); else ""."""
        return str(self.facts.get("reason", ""))

    @property
    def started(self) -> float:
        return float(self.facts.get("started", 0))

    @property
    def pid(self) -> int:
        return int(self.facts.get("pid", 0))

    def counters(self) -> dict[str, Any]:
        """The counters of the run's successful tasks, as it ended ({} while it runs, or
        if they cannot be read); an entry of an older discodsl's kept them in run.json."""
        try:
            found = json.loads((self.path / COUNTERS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = self.facts.get("counters", {})
        return found if isinstance(found, dict) else {}

    def read_events(self, offset: int = 0) -> tuple[list[Event], int]:
        """The events from byte ``offset`` (whole lines only) and the offset after them."""
        try:
            with open(self.path / "events", "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]
        lines = [line for line in complete.splitlines() if line.strip()]
        return [_event(line, self.path / "events") for line in lines], offset + len(complete)

    @property
    def events_cut(self) -> bool:
        """Whether its event log stops short (an event could not be written: a full disk,
        ``ulimit -f``), so that its counts of tasks may be."""
        return bool(self.facts.get("events_cut")) or (self.path / EVENTS_CUT).exists()

    def pipeline(self) -> list[list[Any]]:
        """Its tasks per stage, every stage of its pipeline listed (see :func:`pipeline`)."""
        events, _ = self.read_events()
        stages = [str(stage) for stage in self.facts.get("stages", [])]
        return pipeline(events, stages, ended=self.status != "active")

    def reread(self) -> LocalRun:
        """The entry as it is now (``self`` if it has gone); a run whose process ended
        while it was active is recorded dead (:func:`_bury`)."""
        facts = _read_facts(self.path)
        if facts is not None and facts.get("status") == "active" and not _alive(facts):
            facts = _bury(self.path, facts)
        return LocalRun(self.path, facts) if facts is not None else self


def list_runs(directory: Path | None = None) -> list[LocalRun]:
    """The registered local runs, newest first (after a cleanup)."""
    directory = runs_dir() if directory is None else directory
    clean(directory)
    runs = [LocalRun(path, facts) for path, facts in _entries(directory)]
    return sorted(runs, key=lambda run: run.started, reverse=True)


def registered(name: str) -> bool:
    """Whether a local run named ``name`` is registered on this machine."""
    return bool(name) and any(run.name == name for run in list_runs())


def damaged_entries(directory: Path | None = None) -> list[Path]:
    """The entries whose run.json is there but damaged (an edit, a disk error): no listing
    holds their runs."""
    directory = runs_dir() if directory is None else directory
    try:
        paths = sorted(p for p in directory.iterdir() if (p / "run.json").is_file())
    except OSError:
        return []
    return [path for path in paths if _read_facts(path) is None]


def find(text: str, directory: Path | None = None) -> LocalRun:
    """The run named ``text``; ``@`` the newest, ``@?TEXT`` the newest whose name holds TEXT."""
    runs = list_runs(directory)
    if text == "@" or text.startswith("@?"):
        found = [run for run in runs if text[2:] in run.name]
    else:
        found = [run for run in runs if run.name == text]
    if not found:
        where = directory or runs_dir()
        entry = Path(where, text, "run.json")
        if entry.parent.parent == Path(where) and entry.is_file():
            raise JobError(
                f"the entry of local run {text!r} is damaged ({entry} is not a run's JSON): "
                f"its run cannot be watched; remove {entry.parent}"
            )
        named = f"whose name contains {text[2:]!r}" if text.startswith("@?") else f"named {text!r}"
        raise JobError(
            f"no local run {named} is registered in {where}: list them with "
            "`discodsl jobs --local` (a finished run's entry is kept for a day)"
        )
    return found[0]


def request_kill(run: LocalRun) -> None:
    """Ask the process that runs ``run`` to kill it."""
    (run.path / "kill").touch()


def pipeline(
    events: list[Event], stages: Sequence[str] = (), *, ended: bool = False
) -> list[list[Any]]:
    """Per stage, from the events: ``[stage, pending, waiting, running, done, failed]`` as
    a master's jobinfo has it, each of ``stages`` listed (then any other the events name).

    A task waits from its stage's "scheduled" until it is "assigned" to a host, runs
    until it is done or fails (a failed one waits for its retry); once the run has
    ended (``ended``, or its last event says so) nothing runs, as a Disco master
    counts a dead job's.
    """
    rows: dict[str, list[Any]] = {stage: [stage, 0, 0, 0, 0, 0] for stage in stages}
    for _, _, message in events:
        if found := STAGE_SCHEDULED.fullmatch(message):
            rows[found[1]] = [found[1], 0, int(found[2]), 0, 0, 0]
        elif found := TASK_ASSIGNED.fullmatch(message):
            _count(rows, found[1], (2, -1), (3, +1))
        elif found := TASK_DONE.fullmatch(message):
            _count(rows, found[1], (3, -1), (4, +1))
        elif found := TASK_ERROR.fullmatch(message):
            _count(rows, found[2], (3, -1), (2, +1), (5, +1))
    if ended or _ended(events):
        for row in rows.values():
            row[2], row[3] = row[2] + row[3], 0
    return list(rows.values())


def _count(rows: dict[str, list[Any]], stage: str, *changes: tuple[int, int]) -> None:
    """Move the counts of ``stage``'s row by ``(column, step)``."""
    row = rows.get(stage)
    if row is not None:
        for column, step in changes:
            row[column] = max(0, row[column] + step)


def _ended(events: list[Event]) -> bool:
    """Whether the events end with the run's last word (as ``EventLog.end`` words it)."""
    return bool(events) and events[-1][2].startswith(("READY:", "WARN: Job killed"))


# --------------------------------------------------------------------------
# Cleanup
# --------------------------------------------------------------------------


def clean(directory: Path) -> None:
    """Remove the entries of runs whose process ended while they ran, the finished ones
    older than KEEP_SECONDS, and all but the newest KEEP_COUNT finished ones."""
    now = time.time()
    finished: list[tuple[float, Path]] = []
    for path, facts in _entries(directory, now):
        if facts.get("status") == "active":
            if _alive(facts):
                continue
            facts = _bury(path, facts, now)
        ended = float(facts.get("ended", facts.get("started", 0)))
        if ended < now - KEEP_SECONDS:
            _remove(path)
        else:
            finished.append((ended, path))
    for _, path in sorted(finished, reverse=True)[KEEP_COUNT:]:
        _remove(path)


def _bury(path: Path, facts: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """An active run whose process ended (killed, it could not say so): recorded dead,
    with the reason, and its events ended as a killed run's are, with it; its facts now.
    Kept as long as other finished runs."""
    reason = f"the process that ran it (pid {facts.get('pid')}) ended before it did"
    buried = {**facts, "status": "dead", "ended": now or time.time(), "reason": reason}
    with contextlib.suppress(OSError):
        if not _ended(LocalRun(path, facts).read_events()[0]):
            stamp = time.strftime("%Y/%m/%d %H:%M:%S")
            with open(path / "events", "a", encoding="utf-8") as events:
                for message in (f"ERROR: {reason}", "WARN: Job killed"):
                    line = json.dumps([stamp, "master", message], separators=(",", ":"))
                    events.write(line + "\n")
        _write_json(path / "run.json", buried)
    return buried


def _entries(directory: Path, now: float | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """(path, run.json) of each entry; an entry that lost its run.json is removed once it
    is not young (its writer may be creating it)."""
    try:
        paths = [p for p in directory.iterdir() if p.is_dir()]
    except OSError:
        return []
    found = []
    for path in paths:
        facts = _read_facts(path)
        if facts is not None:
            found.append((path, facts))
        elif now is not None and _age(path, now) > YOUNG and _an_entry_of_ours(path):
            _remove(path)
    return found


def _an_entry_of_ours(path: Path) -> bool:
    """Whether ``path``, with no run.json, is an entry all the same: named as a run is, and
    holding only what an entry holds. Anything else is not this registry's to remove (the
    directory may be the user's, with their own files beside the runs)."""
    if "@" not in path.name:
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(name in _ENTRY_FILES or name.startswith(".run-") for name in names)


# What an entry holds besides run.json (and its .run-*.json while it is replaced).
_ENTRY_FILES = frozenset({"events", "kill", "counters.json", "events-cut"})
# The file of an entry that holds its run's counters (a run of many counter names).
COUNTERS = "counters.json"
# Made in an entry whose event log could not be written on: its counts may be short.
EVENTS_CUT = "events-cut"


def _event(line: bytes, path: Path) -> Event:
    """One line of an entry's events; a damaged one (a disk error, an edit) as an event
    saying so, not an exception that hides the rest."""
    try:
        stamp, host, message = json.loads(line)
    except (ValueError, TypeError):  # not UTF-8, not JSON, not a triple
        return ("", "", f"discodsl: a damaged line of {path} was skipped: {line[:80]!r}")
    return str(stamp), str(host), str(message)


def _read_facts(path: Path) -> dict[str, Any] | None:
    """An entry's run.json; None if there is none, or it is damaged (not a run's JSON, or
    times and pid that are not numbers: an edit, a disk error)."""
    try:
        facts = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or "name" not in facts:
        return None
    numbers = [facts.get(name, 0) for name in ("started", "ended", "pid")]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        return None
    return facts


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _alive(facts: dict[str, Any]) -> bool:
    """Whether the process that runs an entry's run still runs (on another host: assumed;
    in another PID namespace on this one: until that namespace has no process left)."""
    if facts.get("host") != HOST:
        return True
    namespace = facts.get("pid_namespace", owners.pid_namespace())
    if namespace != owners.pid_namespace():  # a container's on this host: its pid is not ours
        return not (isinstance(namespace, int) and owners.namespace_gone(namespace))
    pid = facts.get("pid")
    if not (type(pid) is int and 0 < pid <= owners.PID_MAX):
        return True  # a pid we cannot read: leave it be
    if not owners.running(pid):
        return False
    recorded = facts.get("pid_started")  # none in an entry of an older discodsl
    return type(recorded) is not int or owners.started(pid) in (recorded, None)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
