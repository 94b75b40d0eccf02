"""What the command line's commands share: the master they talk to, the local runs, and
printing a reply as text or as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discodsl import stdio
from discodsl.errors import (
    JobError,
    SettingsError,
)
from discodsl.runners import registry
from discodsl.settings import configured_master

if TYPE_CHECKING:  # a master's client (requests, pydantic) is imported when one is asked
    from discodsl.runners.cluster import Cluster

Command = Callable[[argparse.Namespace], int]


def json_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def tell(args: argparse.Namespace, text: str, data: Any) -> None:
    """``data`` as JSON with --json, else ``text``."""
    print_rows(args, data, [text])


def tell_line(args: argparse.Namespace, text: str, data: Any) -> None:
    """``data`` as a JSON line with --json, else ``text``: for commands that say a line
    per job they are given (``kill A B``)."""
    stdio.say(json.dumps(data) if json_wanted(args) else text)


def print_rows(args: argparse.Namespace, data: Any, lines: Iterable[str]) -> None:
    """``data`` as JSON with --json, else ``lines``, one per line."""
    if json_wanted(args):
        stdio.say(json.dumps(data, indent=2))
        return
    for line in lines:
        stdio.say(line)


def cluster_for(args: argparse.Namespace, why: str = "") -> Cluster:
    """The master and DDFS the command talks to; SettingsError if no master is configured
    (saying ``why`` the command needs one, where not all its uses do)."""
    master = getattr(args, "master", None)
    if configured_master(master) is None:
        raise no_master(why)
    from discodsl.runners.cluster import Cluster

    return Cluster.connect(master)


def no_master(also: str = "") -> SettingsError:
    return SettingsError(
        "no Disco master is configured: set DISCO_MASTER (in the environment, or in "
        f"~/.disco or DISCO_SETTINGS_FILE), or pass --master URL{also}"
    )


def local_runs(args: argparse.Namespace) -> bool:
    """Whether a job command reads this machine's local runs: ``--local``, or no master
    configured (the local run registry, :mod:`discodsl.runners.registry`)."""
    if getattr(args, "local", False):
        return True
    return configured_master(getattr(args, "master", None)) is None


def registered_runs(args: argparse.Namespace) -> list[registry.LocalRun]:
    """The local runs; without --local and with none, the missing master is the error."""
    runs = registry.list_runs()
    for path in registry.damaged_entries():
        stdio.notice(
            f"discodsl: the entry {path} is damaged (its run.json is not a run's JSON), so "
            f"its run is left out: remove {path}"
        )
    if not runs and not getattr(args, "local", False):
        raise no_master(f"; no local run is registered in {registry.runs_dir()} either")
    return runs


def local_run(args: argparse.Namespace) -> registry.LocalRun:
    """The local run ``args.job`` names (``@``, ``@?TEXT``, or its name)."""
    registered_runs(args)
    return registry.find(args.job)


def known_job(conn: Cluster, text: str) -> str:
    """:func:`job_name`, checked to be a job the master knows (NoSuchJob if not): a Disco
    master answers kill and purge of any name with "ok"."""
    name = job_name(conn, text)
    conn.master.jobinfo(name)
    return name


def job_name(conn: Cluster, text: str) -> str:
    """``@`` is the newest job, ``@?TEXT`` the newest whose name contains TEXT."""
    from discodsl.runners.cluster import job_named

    return job_named(conn, text)


def read_file(name: str) -> bytes:
    if name == "-":
        if sys.stdin is None:
            raise JobError("standard input is closed: give the jobpack's FILE instead of -")
        return sys.stdin.buffer.read()
    if not name:  # Path("") is the working directory
        raise JobError("'' names no file: give the jobpack's FILE, or - for standard input")
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise JobError(f"cannot read {name}: {exc.strerror or exc}") from exc


def check_output(name: str | None) -> None:
    """:func:`stdio.check_writable`, with a name the file system refuses (over 255 bytes)
    said as a JobError, not an OSError's traceback."""
    try:
        stdio.check_writable(name)
    except OSError as exc:
        fix = ": give a shorter name" if exc.errno == errno.ENAMETOOLONG else ""
        raise JobError(f"cannot write {name}: {exc.strerror or exc}{fix}") from None
