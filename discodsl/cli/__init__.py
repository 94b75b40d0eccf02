"""The ``discodsl`` command line (also ``python -m discodsl``).

Each subcommand is a thin shell over a public function: ``run`` over
:meth:`discodsl.Job.run`, ``jobpack`` over :func:`discodsl.builder.build_jobpack`
and :func:`discodsl.jobpack.describe`, the job commands over
:class:`discodsl.client.Master` and :mod:`discodsl.runners.cluster` (with
``nodeinfo``, ``config``, ``stageresults`` and ``jobdict`` as Disco's own CLI
has them), ``ddfs`` over :class:`discodsl.ddfs.DDFS`. Job-name arguments accept ``@`` (the newest
job) and ``@?TEXT`` (the newest whose name contains TEXT), as Disco's CLI does.
``jobs``, ``status``, ``events`` and ``kill`` read this machine's local runs
(:mod:`discodsl.runners.registry`) with ``--local``, or when no master is
configured; ``kill`` asks the process that runs one to kill it.
Options may come before or after positionals. ``run`` and ``results`` print
records as escaped TSV or tagged JSON lines (:data:`recordtext.OUTPUT_FORMATS`).

:func:`main` catches :class:`~discodsl.errors.DiscoDSLError` only: it prints
``discodsl: error: <message>`` on one line, a ``hint:`` line where there is
a fix, and returns 1 (2 for usage errors; 124 for a ``wait --timeout`` that gave up on
a job that runs on, as timeout(1) exits). Anything else is a bug and keeps
its traceback, but for a reader of stdout that left early (``| head``): that
ends the command quietly, with the status of a process killed by SIGPIPE.

While ``run`` runs a job, what stage code prints goes to stderr, so that
stdout holds the records alone. The standard streams and ``-o FILE`` are
:mod:`discodsl.stdio`'s; records as lines of text, :mod:`discodsl.recordtext`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from discodsl import interrupts, stdio
from discodsl.cli.common import Command, json_wanted
from discodsl.cli.parser import build_parser, disco_flags, misplaced
from discodsl.cli.running import cmd_jobpack_build, import_job
from discodsl.cli.storage import cmd_ddfs_cat
from discodsl.errors import (
    DiscoDSLError,
    JobActive,
    JobError,
    JobpackRefused,
    NoSuchJob,
    SettingWarning,
    TagNotFound,
    TaskFailed,
    Unreachable,
)
from discodsl.jobstatus import command_line
from discodsl.settings import configured_master

__all__ = ["build_parser", "import_job", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status (0 ok, 1 error, 2 usage, 124 ``wait`` gave up
    while the job runs on, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 stdout's reader left)."""
    stdio.prepare_streams()
    _import_from_here()
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # told by the command's own parser: its usage, not every command's
            why = misplaced(args.parser, extra) or disco_flags(extra)
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}{why}")
        if json_wanted(args) and args.command in _WRITES_BYTES:
            args.parser.error(f"--json: {_WRITES_BYTES[args.command]}")
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    command: Command = args.command
    stdio.QUIET[0] = getattr(args, "quiet", False)
    try:
        _check_stdout(args)
        with _terminated_as_interrupted(), _setting_warnings_told():
            status = command(args)
            stdio.flush_stdout()  # now, so that a reader that left is seen here, not at exit
        return status
    except DiscoDSLError as exc:
        _report(exc, args)
        # 124: a wait (of `wait`, or of `run` on a cluster) gave up while the job runs on
        return 124 if isinstance(exc, JobActive) and exc.timed_out else 1
    except BrokenPipeError:
        return stdio.reader_left()
    except KeyboardInterrupt as exc:
        from discodsl.runners.handle import forget_unfinished

        forget_unfinished()  # what a stopped run goes on as has been said, for this command
        return 128 + int(exc.args[0] if isinstance(exc, _Terminated) else signal.SIGINT)
    finally:
        stdio.QUIET[0] = False  # for what the program goes on to do, if it called main()


def _check_stdout(args: argparse.Namespace) -> None:
    """A JobError if the command writes to stdout and it is closed (``>&-``): its output
    would go nowhere, and it would say 0 (``submit`` would make a job and name it to no one)."""
    if sys.stdout is None and getattr(args, "output", None) is None:
        raise JobError(
            "standard output is closed: redirect it (> FILE, or > /dev/null to drop what the "
            "command prints)" + (", or give -o FILE" if "output" in args else "")
        )


@contextlib.contextmanager
def _setting_warnings_told() -> Iterator[None]:
    """While in the block, a misspelt setting is told as ``discodsl: warning: ...`` (not at
    the console script's line, which is no help), and not at all with ``--quiet``; other
    warnings (a stage's) as Python shows them."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, SettingWarning):
                shown(message, category, filename, lineno, file, line)
            elif "in the environment" in str(message):  # its line, the console script's
                stdio.notice(f"discodsl: warning: {message}")
            else:  # a settings file's line
                stdio.notice(f"discodsl: warning: {filename}:{lineno}: {message}")

        warnings.showwarning = show
        yield


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI runner, systemd stopping the command) or SIGHUP (its
    terminal closed), its number the argument: the command ends as Ctrl-C ends it, workers
    killed and files removed (Python's default left them, and a cluster job ran on without a
    word)."""


@contextlib.contextmanager
def _terminated_as_interrupted() -> Iterator[None]:
    """While in the block, SIGTERM and SIGHUP raise _Terminated (in the main thread only:
    signal handlers can be set there alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    hangup = getattr(signal, "SIGHUP", None)  # a closed terminal or ssh session: the same
    ended = [signal.SIGTERM] + ([hangup] if hangup is not None else [])
    with interrupts.handling(terminated, *ended):
        yield


def _import_from_here() -> None:
    """The working directory on the import path, after the rest, as ``python -m discodsl``
    has it: records holding a class of a script here (``myjob.Rec``) read alike."""
    try:
        here = os.getcwd()
    except FileNotFoundError:  # removed: nothing can be imported from it
        return
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)


def _report(exc: DiscoDSLError, args: argparse.Namespace) -> None:
    message = re.sub(r"\s*\n\s*", " ", str(exc).strip())
    for api, ours in _IN_COMMAND_TERMS:
        message = message.replace(api, ours)
    print(f"discodsl: error: {message}", file=sys.stderr)
    for note in getattr(exc, "__notes__", ()):  # an inline run's: where stage code raised it
        print(re.sub(r"\s*\n\s*", " ", str(note).strip()), file=sys.stderr)
    hint = _hint(exc, args)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


#: What the library's messages say in the Python API's terms, as the command line says it.
_IN_COMMAND_TERMS = (
    ("pass master='http://HOST:8989'", "give --master http://HOST:8989"),
    ("pass master=URL", "give --master URL"),
    ("raise timeout= (None: no limit)", "raise --timeout (0: no limit)"),
)

#: Hints that depend on the error's type only: what to do, with which command.
_HINTS: dict[type[DiscoDSLError], tuple[str, str]] = {
    JobpackRefused: ("look inside the jobpack", "jobpack show FILE"),
    NoSuchJob: ("list the master's jobs", "jobs"),
    TagNotFound: ("list the tags", "ddfs ls"),
}


def _hint(exc: DiscoDSLError, args: argparse.Namespace) -> str:
    """What to try next, for the errors whose message alone does not say it: by their
    type (and, for a failed task, where the run was)."""
    if isinstance(exc, TaskFailed):
        where = getattr(args, "where", "cluster")
        hint = _task_hint(exc, where, getattr(args, "master", None))
        if getattr(args, "timed", False):  # --inline refuses a timeout: it must go
            hint = hint.replace("--inline", "--inline --timeout 0")
        return hint
    if isinstance(exc, Unreachable):
        master = getattr(args, "master", None) or configured_master() or ""
        if exc.who and "master" not in exc.who:  # a node, a URL's server: the error names it
            return ""
        where = f" (now {master})" if master else ""
        return f"is the master running? set it with --master URL or DISCO_MASTER{where}"
    if isinstance(exc, NoSuchJob) and hasattr(args, "local") and _registered(exc.jobname):
        return (
            f"a local run named {exc.jobname!r} is registered on this machine: add --local "
            "to ask for it (`discodsl jobs --local` lists them)"
        )
    found = [hint for kind, hint in _HINTS.items() if isinstance(exc, kind)]
    if not found or f"{found[0][1]}`" in str(exc):
        return ""  # none, or the message ends with that command already, for that master
    what, command = found[0]
    master = getattr(args, "master", None)  # the command named must reach this master
    return f"{what} with `discodsl {f'--master {master} ' if master else ''}{command}`"


def _registered(jobname: str) -> bool:
    """Whether a local run of this machine is named ``jobname`` (a master configured since
    it ran sends job commands there)."""
    from discodsl.runners import registry

    return registry.registered(jobname)


_INPUT_AT_FAULT = ("DataError", "MalformedRecord", "BadURL", "DamagedInput")


def _task_hint(exc: TaskFailed, where: str, master: str | None = None) -> str:
    """Where the failed task's traceback is: the master's events (of the master given with
    ``--master``, if one was), or a rerun here."""
    if where == "cluster":
        events = command_line(f"events {exc.jobname or '@'}", master or "")
        return f"see the worker's traceback with `{events}`"
    if exc.exc_type in _INPUT_AT_FAULT:  # the input, named, is at fault: no traceback helps
        return ""
    if where == "local" and exc.exc_type == "StageError":  # a check of what it made: no traceback
        return "rerun with --inline to debug the stage in this process (breakpoint() works)"
    if where == "local":
        return (
            "rerun with --inline to get the stage's traceback in this process "
            "and debug it there (breakpoint() works)"
        )
    return ""


# The commands whose output is bytes, not a report: --json is refused, saying why.
_WRITES_BYTES: dict[Command, str] = {
    cmd_jobpack_build: "jobpack build writes a jobpack; `jobpack show FILE --json` describes one",
    cmd_ddfs_cat: "ddfs cat writes the blobs' bytes as they are",
}
