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
a fix, and returns 1 (2 for usage errors). Anything else is a bug and keeps
its traceback, but for a reader of stdout that left early (``| head``): that
ends the command quietly, with the status of a process killed by SIGPIPE.

While ``run`` runs a job, what stage code prints goes to stderr, so that
stdout holds the records alone. The standard streams and ``-o FILE`` are
:mod:`discodsl.stdio`'s; records as lines of text, :mod:`discodsl.recordtext`'s.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from discodsl import builder, jobpack, places, recordtext, sources, stdio
from discodsl.caching import store
from discodsl.client import Master
from discodsl.ddfs import check_name, resolve_inputs
from discodsl.errors import (
    DiscoDSLError,
    JobActive,
    JobDead,
    JobError,
    JobpackRefused,
    NoSuchJob,
    SettingsError,
    TagNotFound,
    TaskFailed,
    Unreachable,
)
from discodsl.jobstatus import command_line, still_active, wait_limit
from discodsl.model import Job
from discodsl.options import Mode, validate_options
from discodsl.runners import cluster, registry
from discodsl.runners.cluster import Cluster
from discodsl.settings import configured_master

__all__ = ["build_parser", "import_job", "main"]

Command = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status (0 ok, 1 error, 2 usage, 130 Ctrl-C, 143
    SIGTERM, 129 SIGHUP, 141 stdout's reader left)."""
    stdio.prepare_streams()
    _import_from_here()
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # told by the command's own parser: its usage, not every command's
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}{_disco_flags(extra)}")
        if getattr(args, "mode", None) and getattr(args, "master", None):
            parser.error(f"--{args.mode} and --master: choose where the job runs")
        if _json_wanted(args) and args.command in _WRITES_BYTES:
            args.parser.error(f"--json: {_WRITES_BYTES[args.command]}")
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    command: Command = args.command
    try:
        _check_stdout(args)
        with _terminated_as_interrupted():
            status = command(args)
            stdio.flush_stdout()  # now, so that a reader that left is seen here, not at exit
        return status
    except DiscoDSLError as exc:
        _report(exc, args)
        return 1
    except BrokenPipeError:
        return stdio.reader_left()
    except KeyboardInterrupt as exc:
        from discodsl.runners.handle import forget_unfinished

        forget_unfinished()  # what a stopped run goes on as has been said, for this command
        return 128 + int(exc.args[0] if isinstance(exc, _Terminated) else signal.SIGINT)


def _check_stdout(args: argparse.Namespace) -> None:
    """A JobError if the command writes to stdout and it is closed (``>&-``): its output
    would go nowhere, and it would say 0 (``submit`` would make a job and name it to no one)."""
    if sys.stdout is None and getattr(args, "output", None) is None:
        raise JobError(
            "standard output is closed: redirect it (> FILE, or > /dev/null to drop what the "
            "command prints)" + (", or give -o FILE" if "output" in args else "")
        )


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
    previous = {signum: signal.signal(signum, terminated) for signum in ended}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    print(f"discodsl: error: {message}", file=sys.stderr)
    hint = _hint(exc, args)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


#: Hints that depend on the error's type only.
_HINTS: dict[type[DiscoDSLError], str] = {
    JobpackRefused: "look inside the jobpack with `discodsl jobpack show FILE`",
    NoSuchJob: "list the master's jobs with `discodsl jobs`",
    TagNotFound: "list the tags with `discodsl ddfs ls`",
}


def _hint(exc: DiscoDSLError, args: argparse.Namespace) -> str:
    """What to try next, for the errors whose message alone does not say it: by their
    type (and, for a failed task, where the run was)."""
    if isinstance(exc, TaskFailed):
        return _task_hint(exc, getattr(args, "where", "cluster"), getattr(args, "master", None))
    if isinstance(exc, Unreachable):
        master = getattr(args, "master", None) or configured_master() or ""
        if exc.who and "master" not in exc.who:  # a node, a URL's server: the error names it
            return ""
        where = f" (now {master})" if master else ""
        return f"is the master running? set it with --master URL or DISCO_MASTER{where}"
    found = [hint for kind, hint in _HINTS.items() if isinstance(exc, kind)]
    master = getattr(args, "master", None)
    if found and master:  # the command named must reach the master this one did
        return found[0].replace("`discodsl ", f"`discodsl --master {master} ")
    return found[0] if found else ""


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


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------


# Flags of Disco's own `disco run`, and what to write here instead.
DISCO_FLAGS = {
    "--name": "the job is named after its function (MODULE:JOB); the Python API takes prefix=",
    "--profile": "profile a stage in one process: python -m cProfile -m discodsl run --inline",
    "--save": "set save_results=True on the job (@job(save_results=True))",
}
DISCO_FLAGS["-n"] = DISCO_FLAGS["--name"]


def _disco_flags(extra: list[str]) -> str:
    """`` (Disco's --flag: what to write)`` for the first of ``extra`` that is Disco's."""
    for given in extra:
        flag = given.partition("=")[0]
        if flag in DISCO_FLAGS:
            return f" (Disco's {flag}: {DISCO_FLAGS[flag]})"
    return ""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes options after positionals: ``run JOB --inline IN``.

    Plain argparse gives ``nargs="*"`` inputs the (empty) run of positionals
    before the first option and rejects the rest. A parser without
    subcommands parses intermixed instead; one with subcommands cannot
    (argparse refuses), and does not need to.
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]  # one signature for typeshed's overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls us back (3.10-3.12)
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _version() -> str:
    import discodsl

    return discodsl.__version__


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand; ``args.command`` is the function to call."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--master",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the Disco master (default: DISCO_MASTER, or the settings file)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output: JSON (run, results and events: JSON lines; "
        "not for jobpack build and ddfs cat, which write bytes)",
    )
    parser = _Parser(
        prog="discodsl",
        parents=[common],
        description="Run discodsl jobs here or on a Disco 0.5.4 cluster, and manage them.",
    )
    parser.add_argument(
        "--version", action="version", version=f"discodsl {_version()} (for Disco 0.5.4)"
    )
    sub = parser.add_subparsers(metavar="COMMAND", required=True)
    _add_run(sub, common)
    _add_jobpack(sub, common)
    _add_job_commands(sub, common)
    _add_ddfs(sub, common)
    _add_cache(sub, common)
    _name_parsers(parser)
    return parser


def _name_parsers(parser: argparse.ArgumentParser) -> None:
    """Set ``args.parser`` to the parser of the command given (the innermost one)."""
    parser.set_defaults(parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _name_parsers(command)


def _job_spec(text: str) -> str:
    module, sep, name = text.rpartition(":")  # a file's path may hold ':', a job's name not
    if not (module and sep and name.isidentifier()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODULE:JOB: write e.g. mypackage.jobs:wordcount or jobs.py:wordcount"
        )
    return text


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run a job and print its records",
        description="Run a job over inputs and print its records (options go anywhere).",
        epilog=recordtext.OUTPUT_FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("job", type=_job_spec, metavar="MODULE:JOB", help=JOB_HELP)
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="paths, globs or URLs")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--inline",
        dest="mode",
        action="store_const",
        const="inline",
        help="run in this process (for debugging)",
    )
    where.add_argument(
        "--local",
        dest="mode",
        action="store_const",
        const="local",
        help="run worker processes on this machine",
    )
    _add_job_changes(run)
    run.add_argument(
        "--push-inputs",
        action="store_true",
        help="upload local input files to DDFS first (cluster)",
    )
    run.add_argument(
        "--cache",
        action="store_true",
        help="reuse an earlier identical run's results, or resume after its finished stages",
    )
    run.add_argument("-o", "--output", metavar="FILE", help="write the records here")
    run.set_defaults(command=cmd_run)


JOB_HELP = "the job: MODULE (importable, or a .py file) and the name of the @job in it"


def _add_job_changes(parser: argparse.ArgumentParser) -> None:
    """The options that change a job's own (partitions, params), for run and jobpack build."""
    parser.add_argument("--partitions", type=_partition_count, metavar="N", help=PARTITIONS_HELP)
    parser.add_argument(
        "-P",
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help=PARAM_HELP,
    )


def _add_jobpack(sub: Any, common: argparse.ArgumentParser) -> None:
    pack = sub.add_parser(
        "jobpack",
        parents=[common],
        help="build or show a jobpack file",
        description="Build a job's jobpack, or show what one holds.",
    )
    packs = pack.add_subparsers(metavar="ACTION", required=True)
    build = packs.add_parser("build", parents=[common], help="write a job's jobpack to a file")
    build.add_argument("job", type=_job_spec, metavar="MODULE:JOB", help=JOB_HELP)
    build.add_argument(
        "inputs", nargs="*", default=[], metavar="INPUT", help="paths, globs or URLs"
    )
    build.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="where to write the jobpack"
    )
    _add_job_changes(build)
    build.set_defaults(command=cmd_jobpack_build)
    show = packs.add_parser("show", parents=[common], help="describe a jobpack file as JSON")
    show.add_argument("file", metavar="FILE")
    show.set_defaults(command=cmd_jobpack_show)


def _add_job_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "POST a jobpack, print the job name"
    submit = sub.add_parser("submit", parents=[common], help=text, description=text)
    submit.add_argument(
        "file", metavar="FILE", nargs="?", default="-", help="the jobpack (default: stdin)"
    )
    submit.set_defaults(command=cmd_submit)
    text = "list the master's jobs (or local runs)"
    jobs = sub.add_parser("jobs", parents=[common], help=text, description=text)
    jobs.set_defaults(command=cmd_jobs)
    _add_local(jobs)
    for name, command, text in [
        ("status", cmd_status, "a job's status and stage progress"),
        ("events", cmd_events, "a job's events, oldest first"),
        ("wait", cmd_wait, "wait for a job to end"),
        ("results", cmd_results, "print a finished job's records (formats as for run)"),
        ("kill", cmd_kill, "stop a job"),
        ("purge", cmd_purge, "delete a job and its data"),
    ]:
        parser = sub.add_parser(name, parents=[common], help=text, description=text)
        parser.add_argument("job", metavar="JOB", help="job name, @ (newest) or @?TEXT")
        parser.set_defaults(command=command)
        _add_local(parser)
        if name == "events":
            parser.add_argument(
                "-f",
                "--follow",
                action="store_true",
                help="keep printing new events until the job ends",
            )
        if name == "wait":
            parser.add_argument(
                "--timeout",
                type=_seconds,
                metavar="SECONDS",
                help="give up after SECONDS (exit 1; the job keeps running)",
            )
        if name == "results":
            parser.add_argument("-o", "--output", metavar="FILE", help="write the records here")
            parser.epilog = recordtext.OUTPUT_FORMATS
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _add_cluster_facts(sub, common)


def _add_local(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="store_true",
        help="this machine's local runs (the default when no master is configured)",
    )


def _add_cluster_facts(sub: Any, common: argparse.ArgumentParser) -> None:
    """What Disco's own CLI shows besides jobs: nodes, the node table, stage results, jobdicts."""
    for name, command, text in [
        ("nodeinfo", cmd_nodeinfo, "the master's nodes: host, then its facts as JSON"),
        ("config", cmd_config, "the master's node table: host pattern, worker slots"),
    ]:
        sub.add_parser(name, parents=[common], help=text, description=text).set_defaults(
            command=command
        )
    text = "a finished stage's results, one replica list per line"
    stage = sub.add_parser("stageresults", parents=[common], help=text, description=text)
    stage.add_argument("job", metavar="JOB", help="job name, @ (newest) or @?TEXT")
    stage.add_argument("-S", "--stage", required=True, help="the stage's name")
    stage.set_defaults(command=cmd_stageresults)
    text = "the jobdict a job was submitted with, as JSON"
    jobdict = sub.add_parser("jobdict", parents=[common], help=text, description=text)
    jobdict.add_argument("job", metavar="JOB", help="job name, @ (newest) or @?TEXT")
    jobdict.set_defaults(command=cmd_jobdict)


def _add_ddfs(sub: Any, common: argparse.ArgumentParser) -> None:
    ddfs = sub.add_parser(
        "ddfs",
        parents=[common],
        help="DDFS tags and blobs",
        description="List, upload, read and delete DDFS tags.",
    )
    actions = ddfs.add_subparsers(metavar="ACTION", required=True)
    ls = actions.add_parser("ls", parents=[common], help="list tags")
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.set_defaults(command=cmd_ddfs_ls)
    push = actions.add_parser("push", parents=[common], help="upload files as a tag's blobs")
    push.add_argument("tag", metavar="TAG")
    push.add_argument("files", nargs="+", metavar="FILE")
    push.set_defaults(command=cmd_ddfs_push)
    cat = actions.add_parser("cat", parents=[common], help="print a tag's blobs or a URL")
    cat.add_argument("target", metavar="TAG_OR_URL")
    cat.set_defaults(command=cmd_ddfs_cat)
    rm = actions.add_parser("rm", parents=[common], help="delete a tag")
    rm.add_argument("tag", metavar="TAG")
    rm.set_defaults(command=cmd_ddfs_rm)


def _add_cache(sub: Any, common: argparse.ArgumentParser) -> None:
    cache = sub.add_parser(
        "cache",
        parents=[common],
        help="the stages kept by runs with cache=True",
        description=f"List or remove the stages kept by runs with cache=True (in "
        f"${store.DIR_ENV}, else ~/.cache/discodsl/cache; at most ${store.SIZE_ENV} bytes, "
        "default 2G, the least recently used evicted first).",
    )
    actions = cache.add_subparsers(metavar="ACTION", required=True)
    ls = actions.add_parser("ls", parents=[common], help="list the kept stages, newest use first")
    ls.add_argument("--job", metavar="NAME", help="only this job's")
    ls.set_defaults(command=cmd_cache_ls)
    clear = actions.add_parser(
        "clear",
        parents=[common],
        help="remove kept stages (a cluster run's jobs stay on the master: `discodsl purge`)",
    )
    clear.add_argument("--job", metavar="NAME", help="only this job's")
    clear.set_defaults(command=cmd_cache_clear)


# --------------------------------------------------------------------------
# Running and building jobs
# --------------------------------------------------------------------------


def import_job(text: str) -> Job:
    """The :class:`Job` named ``MODULE:JOB`` (a dotted module, or a path to a ``.py`` file).
    The module's directory joins ``sys.path`` (local workers get it too), unless that fails."""
    module_name, _, name = text.rpartition(":")
    path: Path | None = None
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise JobError(f"{text}: there is no file {path}: give the path of a .py file")
        if "." in path.stem:  # imported by its name, it would be a module in a package
            raise JobError(
                f"{text}: {path.name} is imported by its name, in which a dot names a package: "
                f"rename it without the dot (e.g. {path.stem.replace('.', '_')}.py)"
            )
        module_name, where = path.stem, str(path.parent)
    else:
        try:
            where = os.getcwd()
        except FileNotFoundError:
            raise JobError(
                f"{text}: the working directory was removed, so no module can be imported "
                "from it: cd to an existing directory, or give the job's file, FILE.py:JOB"
            ) from None
    added = where not in sys.path
    if added:
        sys.path.insert(0, where)
    try:
        return _job_in(module_name, name, path)
    except JobError:
        if added:  # its files must not shadow others' modules, here or in workers
            with contextlib.suppress(ValueError):
                sys.path.remove(where)
        raise


def _job_in(module_name: str, name: str, path: Path | None) -> Job:
    """The job ``name`` of module ``module_name`` (which must be the file ``path``, if given)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _import_failed(exc, module_name, name, path) from exc
    except Exception as exc:  # the module's own code failed (SyntaxError included)
        raise JobError(f"importing {module_name!r} failed: {_where_raised(exc)}") from exc
    except SystemExit as exc:  # sys.exit(), or its own argparse, at import
        raise JobError(
            f"importing {module_name!r} exited (code {exc.code!r}): a module the command "
            "line imports must not run its program when imported: put that under `if "
            '__name__ == "__main__":`'
        ) from None
    loaded = getattr(module, "__file__", None)
    if path is not None and (loaded is None or Path(loaded).resolve() != path):
        raise JobError(
            f"{path} is named like the module {module_name!r}, which Python took from "
            f"{loaded or 'its own modules'}: rename the file (e.g. {module_name}_job.py)"
        )
    found = getattr(module, name, None)
    if not isinstance(found, Job):
        raise JobError(
            f"{module_name}.{name} is {'missing' if found is None else type(found).__name__}, "
            "not a job: name a function decorated with @job"
        )
    return found


def _import_failed(exc: ImportError, module_name: str, name: str, path: Path | None) -> JobError:
    """What to do when the job's module, ``module_name`` (the file ``path``), or one it
    imports, is not found."""
    if path is not None and "relative import" in str(exc):
        return JobError(
            f"{path} makes relative imports, which need its package: name it as a "
            f"module instead, from the directory above the package "
            f"({path.parent.name}.{module_name}:{name})"
        )
    if exc.name and exc.name != module_name and not module_name.startswith(exc.name + "."):
        return JobError(
            f"importing {module_name!r} failed: it imports {exc.name!r}, which is not "
            f"installed ({exc}): install it"
        )
    return JobError(
        f"cannot import {module_name!r} ({exc}): run discodsl from the directory that holds "
        "it, or give the path of the .py file"
    )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _where_raised(exc: Exception) -> str:
    """``exc`` in a line, with the file and line of the code that raised it."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    # The user's line that led to it: discodsl's own (a refused option) would not help, nor
    # generated code's ("<string>": a dataclass's __init__).
    theirs = [f for f in frames if not f.filename.startswith((_PACKAGE_DIR, "<"))]
    last = (theirs or frames)[-1:]
    where = f" ({last[0].filename}, line {last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def cmd_run(args: argparse.Namespace) -> int:
    master = getattr(args, "master", None)
    # The default of discodsl.runners.choose, decided here so that the hint fits.
    default = "cluster" if configured_master(master) else "local"
    args.where = mode = cast("Mode", args.mode or default)
    options: dict[str, Any] = {"push_inputs": args.push_inputs, "cache": args.cache}
    if args.partitions is not None:
        options["partitions"] = _partitions(args.partitions)
    stdio.check_writable(args.output)  # before the run: its records would be lost after it
    with stdio.stdout_to_stderr():  # the job module's and its stages' prints: not records
        job = import_job(args.job)
        options.update(_params_given(job, args.param))
        results = job.run(args.inputs, mode=mode, master=master, **options)
    with stdio.output(args.output) as out:
        recordtext.write_records(results, out, as_json=_json_wanted(args))
    return 0


PARTITIONS_HELP = "reduce partitions; 0 for none (as Disco's partitions=0: partitions=None)"


def _partition_count(text: str) -> int:
    """``--partitions``'s argument: an integer of 0 or more (a usage error otherwise)."""
    try:
        given = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if given < 0:
        raise argparse.ArgumentTypeError(
            f"{given}: give a number of partitions of 1 or more, e.g. --partitions 4, or "
            "--partitions 0 for no partitioning"
        )
    return given


def _seconds(text: str) -> float:
    """``--timeout``'s argument: seconds, 0 or more (a usage error otherwise)."""
    try:
        given = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not given >= 0:
        raise argparse.ArgumentTypeError(
            f"{text}: give the seconds to wait as a number of 0 or more, or leave --timeout out "
            "to wait as long as it takes"
        )
    return given


def _partitions(given: int) -> int | None:
    """``--partitions N`` as the job option: 0 is no partitioning, as in Disco (the Python
    API says None, which a command line cannot)."""
    return None if given == 0 else given


PARAM_HELP = (
    "set params[NAME] of the job's params (a dict, or None) to VALUE, read as a Python "
    "literal if it is one, else as text (repeatable; as `disco run -P NAME VALUE`)"
)


def _param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as ``(NAME, value)``: a Python literal, else the text."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE, e.g. -P pattern=error")
    return name, ast.literal_eval(value) if recordtext.reads_as_literal(value) else value


def _params_given(job: Job, given: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``params=`` change ``-P NAME=VALUE`` makes: the job's dict with those keys set."""
    if not given:
        return {}
    params = job.options.params
    if params is not None and not isinstance(params, dict):
        raise JobError(
            f"-P sets keys of the job's params, but {job.name!r} has params of type "
            f"{type(params).__name__}: make them a dict, or leave -P out"
        )
    return {"params": {**(params or {}), **dict(given)}}


def cmd_jobpack_build(args: argparse.Namespace) -> int:
    job = import_job(args.job)
    changes = {} if args.partitions is None else {"partitions": _partitions(args.partitions)}
    changes.update(_params_given(job, args.param))
    options = validate_options(job.options, **changes)
    urls = sources.resolve(args.inputs)
    if any(u.startswith("tag://") for replicas in urls for u in replicas):
        with _cluster(args) as conn:
            urls = cluster.cluster_inputs(conn, urls, name=job.spec(options).name)
    data = builder.build_jobpack(job, options, urls)
    stdio.check_writable(args.output)
    with stdio.output(args.output, binary=True) as out:
        out.write(data)
    print(f"{args.output}: jobpack of {job.name!r}, {len(data)} bytes", file=sys.stderr)
    return 0


def cmd_jobpack_show(args: argparse.Namespace) -> int:
    pack = jobpack.check_contents(jobpack.decode(_read_file(args.file)))
    shown = {**jobpack.describe(pack), "jobdata_header": jobpack.jobdata_header(pack.jobdata)}
    stdio.say(json.dumps(shown, indent=2))
    return 0


# --------------------------------------------------------------------------
# Jobs on the master
# --------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        data = _read_file(args.file)
        jobpack.check_contents(jobpack.decode(data))  # a damaged one is said here, not on a node
        name = conn.master.submit(data)
    _say(args, name, {"name": name})
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    if _local_runs(args):
        jobs = [(int(r.started), r.status, r.name) for r in _registered(args)]
        return _print_jobs(args, jobs)
    with _cluster(args) as conn:
        jobs = conn.master.joblist()
    return _print_jobs(args, jobs)


def _print_jobs(args: argparse.Namespace, jobs: list[tuple[int, str, str]]) -> int:
    if _json_wanted(args):
        stdio.say(json.dumps([{"time": t, "status": s, "name": n} for t, s, n in jobs], indent=2))
        return 0
    for seconds, status, name in jobs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
        stdio.say(f"{status:<7} {when}  {name}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if _local_runs(args):
        name, info = _local_info(_local_run(args))
        return _print_status(args, name, info)
    with _cluster(args) as conn:
        name = _job_name(conn, args.job)
        info = conn.master.jobinfo(name)
    return _print_status(args, name, info)


def _local_info(run: registry.LocalRun) -> tuple[str, dict[str, Any]]:
    """A local run's status in jobinfo's shape, plus its pid, host and counters."""
    info = {
        "timestamp": time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(run.started)),
        "active": run.status,
        "pipeline": run.pipeline(),
        "owner": f"pid {run.pid} on {run.facts.get('host')}",
        "pid": run.pid,
        "counters": run.facts.get("counters", {}),
    }
    return run.name, info


def _print_status(args: argparse.Namespace, name: str, info: dict[str, Any]) -> int:
    if _json_wanted(args):
        stdio.say(json.dumps({"name": name, **info}, indent=2))
        return 0
    stdio.say(f"{name}: {info['active']} (started {info['timestamp']}, owner {info.get('owner')})")
    for row in info["pipeline"]:
        stage, _pending, waiting, running, done, failed = row
        # As a Disco master counts: waiting = tasks - (running + done); pending ones (no
        # free slot yet) are among the waiting.
        total = max(0, waiting) + max(0, running) + max(0, done)
        stdio.say(f"  {stage:<16} {done}/{total} done, {running} running, {failed} failed")
    if "results" in info:  # a local run's are in its process only
        stdio.say(f"  {len(info['results'])} result(s)")
    if info.get("counters"):
        stdio.say(f"  counters: {json.dumps(info['counters'], sort_keys=True)}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    if _local_runs(args):
        return _local_events(args, _local_run(args))
    with _cluster(args) as conn:
        return _cluster_events(args, conn.master, _job_name(conn, args.job))


def _cluster_events(args: argparse.Namespace, master: Master, name: str) -> int:
    """A cluster job's events; with --follow, until the log's last (READY, or "WARN: Job
    killed"), which the master writes up to 2 s after the job ends."""
    offset, ended = 0, False

    def read() -> bool:
        nonlocal offset, ended
        events, offset = master.rawevents(name, offset)
        for event in events:
            _print_event(event, _json_wanted(args))
            ended = ended or cluster.ends_log(event[2])
        return ended

    while True:
        # Blocks up to a second while the job runs: the pause between two reads.
        status = master.status(name, 1000 if args.follow else 0)[0]
        read()
        if not args.follow or ended or status not in ("active", "ready", "dead"):
            return 0
        if status != "active":
            cluster.read_to_end(read)
            return 0


def _local_events(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """A local run's events from its file; with --follow, until the run ends."""
    offset = 0
    while True:
        ended = run.reread().status != "active"  # before reading: no last event is missed
        events, offset = run.read_events(offset)
        for event in events:
            _print_event(event, _json_wanted(args))
        if not args.follow or ended:
            return 0
        time.sleep(registry.KILL_POLL)


def _print_event(event: tuple[str, str, str], as_json: bool) -> None:
    if as_json:
        stdio.say(json.dumps(list(event)), flush=True)
    else:  # a MSG of printed lines ends with their line end: no blank line after it
        stdio.say(" ".join(event).rstrip("\n"), flush=True)


def cmd_wait(args: argparse.Namespace) -> int:
    if _local_runs(args):
        return _wait_local(args, _local_run(args))
    with _cluster(args) as conn:
        name = _job_name(conn, args.job)
        results = cluster.wait_for(conn, name, timeout=args.timeout)
    files = len(results.urls)
    _say(args, f"{name}: ready, {files} result file(s)", {"name": name, "status": "ready"})
    return 0


def _wait_local(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """Wait for a local run (of another process) to end; JobDead if it did not end ready."""
    limit = wait_limit(args.timeout)
    started = time.monotonic()
    while (run := run.reread()).status == "active":
        elapsed = time.monotonic() - started
        if limit is not None and elapsed > limit:
            raise still_active(run.name, elapsed, limit)
        time.sleep(registry.KILL_POLL)
    if run.status != "ready":
        why = f": {run.reason}" if run.reason else ""
        raise JobDead(
            f"local run {run.name} ended {run.status}{why}: see what happened with "
            f"`discodsl events {run.name}`",
            jobname=run.name,
        )
    _say(args, f"{run.name}: ready", {"name": run.name, "status": "ready"})
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    if _local_runs(args):
        raise SettingsError(
            f"{_local_run(args).name} is a local run: its records went to the process that "
            "ran it, and its files are removed when it ends, so there is nothing to print; "
            "to keep records, run with -o FILE (or --cache, to keep its stages), or on a "
            "Disco master"
        )
    stdio.check_writable(args.output)
    with _cluster(args) as conn:
        results = cluster.results_of(conn, _job_name(conn, args.job))
    with stdio.output(args.output) as out:
        recordtext.write_records(results, out, as_json=_json_wanted(args))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    if _local_runs(args):
        return _kill_local(args, _local_run(args))
    with _cluster(args) as conn:
        name = _job_name(conn, args.job)
        status = conn.master.jobinfo(name)["active"]  # NoSuchJob: the master says ok to any
        if status == "active":
            conn.master.kill(name)
    _said_killed(args, name, status)
    return 0


def _said_killed(args: argparse.Namespace, name: str, status: str) -> None:
    """Say that ``name`` was killed, if it was ``active``, or that it was ``status`` already."""
    killed = status == "active"
    text = f"killed {name}" if killed else f"{name} is {status}: nothing to kill"
    _say(args, text, {"name": name, "killed": killed, "status": "dead" if killed else status})


#: How long `kill` waits for the process that runs a local run to kill it (seconds).
LOCAL_KILL_WAIT = 30.0


def _kill_local(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """Ask the process that runs a local run to kill it, and wait until it has."""
    if run.status != "active":
        _said_killed(args, run.name, run.status)
        return 0
    registry.request_kill(run)
    deadline = time.monotonic() + LOCAL_KILL_WAIT
    while run.reread().status == "active":
        if time.monotonic() > deadline:
            raise JobError(
                f"asked process {run.pid} to kill {run.name}, but the run is still active "
                f"after {LOCAL_KILL_WAIT:g} s: is that process stuck? `kill {run.pid}` ends "
                "it, its runs and their workers"
            )
        time.sleep(0.1)
    _said_killed(args, run.name, "active")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    if _local_runs(args):
        run = _local_run(args)
        if run.status == "active":
            raise JobActive(
                f"{run.name} is still running: stop it with `discodsl kill {run.name}`; its "
                "files are removed when it ends",
                jobname=run.name,
            )
        places.remove_dead_dirs(tempfile.gettempdir())  # what killed processes left
        text = (
            f"{run.name} is a local run: nothing left to purge (a failed run's files went when "
            "it ended, or now if its process was killed; a finished one's go when the process "
            "holding its results closes them or exits)"
        )
        _say(args, text, {"name": run.name, "purged": False})
        return 0
    with _cluster(args) as conn:
        name = _known_job(conn, args.job)
        conn.master.purge(name)
    _say(args, f"purged {name}", {"name": name, "purged": True})
    return 0


def cmd_nodeinfo(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        nodes = conn.master.nodeinfo()
    lines = (f"{host}\t{json.dumps(nodes[host], sort_keys=True)}" for host in sorted(nodes))
    _print_rows(args, nodes, lines)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        table = conn.master.config_table()
    _print_rows(args, table, (f"{host}\t{workers}" for host, workers in table))
    return 0


def cmd_stageresults(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        results = conn.master.stageresults(_job_name(conn, args.job), args.stage)
    _print_rows(args, results, ("\t".join(replicas) for replicas in results))
    return 0


def _say(args: argparse.Namespace, text: str, data: Any) -> None:
    """``data`` as JSON with --json, else ``text``."""
    _print_rows(args, data, [text])


def _print_rows(args: argparse.Namespace, data: Any, lines: Iterable[str]) -> None:
    """``data`` as JSON with --json, else ``lines``, one per line."""
    if _json_wanted(args):
        stdio.say(json.dumps(data, indent=2))
        return
    for line in lines:
        stdio.say(line)


def cmd_jobdict(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        data = conn.master.parameters(_job_name(conn, args.job))
    stdio.say(json.dumps(jobpack.describe(jobpack.decode(data))["jobdict"], indent=2))
    return 0


# --------------------------------------------------------------------------
# DDFS
# --------------------------------------------------------------------------


def cmd_ddfs_ls(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        tags = conn.ddfs.list_tags(args.prefix)
    _print_rows(args, tags, tags)
    return 0


def cmd_ddfs_push(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        blobs = conn.ddfs.push(args.tag, args.files)
    _print_rows(args, blobs, (replicas[0] for replicas in blobs))
    return 0


def cmd_ddfs_cat(args: argparse.Namespace) -> int:
    target: str = args.target
    with _cluster(args) as conn:
        tag_or_url = target if "://" in target else f"tag://{check_name(target)}"
        urls = [replicas[0] for replicas in resolve_inputs([tag_or_url], conn.ddfs)]
        sys.stdout.flush()
        binary = getattr(sys.stdout, "buffer", None)  # None in a notebook or a redirect
        for url in urls:
            for chunk in conn.ddfs.cat(url):
                with stdio.writing_stdout():  # the writes only: reading is the node's error
                    if binary is not None:
                        binary.write(chunk)
                    else:
                        sys.stdout.write(chunk.decode(errors="replace"))
        with stdio.writing_stdout():
            (binary or sys.stdout).flush()
    return 0


def cmd_ddfs_rm(args: argparse.Namespace) -> int:
    with _cluster(args) as conn:
        conn.ddfs.get_tag(args.tag)  # DDFS deletes a missing tag as "deleted": say it is not
        conn.ddfs.delete(args.tag)
    _say(args, f"deleted {args.tag}", {"deleted": args.tag})
    return 0


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------


def cmd_cache_ls(args: argparse.Namespace) -> int:
    kept = [entry for entry in store.entries() if args.job in (None, entry.job)]
    rows = [
        {
            "key": entry.key,
            "job": entry.job,
            "stage": entry.stage,
            "run": entry.run,
            "where": entry.where,
            "size": entry.size,
            "used": entry.used,
        }
        for entry in kept
    ]
    lines = [
        f"{_when(entry.used)}  {entry.key[:12]}  {_size(entry.size):>8}  {entry.where:<7}  "
        f"{entry.job}: stage {entry.index + 1}/{entry.stages} {entry.stage} of run {entry.run}"
        for entry in kept
    ]
    total = f"{len(kept)} stage(s), {_size(sum(entry.size for entry in kept))}"
    limit = _size(store.limit())
    _print_rows(args, rows, [*lines, f"{total} in {store.cache_dir()}, limit {limit}"])
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    removed = store.clear(args.job)
    total = sum(entry.size for entry in removed)
    note = ""
    if args.job is not None and not removed:
        note = f": no stage of job {args.job!r} is kept (see `discodsl cache ls`)"
    text = f"removed {len(removed)} stage(s), {_size(total)}, from {store.cache_dir()}{note}"
    data = {"removed": len(removed), "bytes": total, "cache": str(store.cache_dir())}
    _say(args, text, data)
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _size(size: int) -> str:
    value, unit = float(size), "B"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _cluster(args: argparse.Namespace) -> Cluster:
    """The master and DDFS the command talks to; SettingsError if no master is configured."""
    master = getattr(args, "master", None)
    if configured_master(master) is None:
        raise _no_master()
    return Cluster.connect(master)


def _no_master(also: str = "") -> SettingsError:
    return SettingsError(
        "no Disco master is configured: set DISCO_MASTER (in the environment, or in "
        f"~/.disco or DISCO_SETTINGS_FILE), or pass --master URL{also}"
    )


def _local_runs(args: argparse.Namespace) -> bool:
    """Whether a job command reads this machine's local runs: ``--local``, or no master
    configured (the local run registry, :mod:`discodsl.runners.registry`)."""
    if getattr(args, "local", False):
        return True
    return configured_master(getattr(args, "master", None)) is None


def _registered(args: argparse.Namespace) -> list[registry.LocalRun]:
    """The local runs; without --local and with none, the missing master is the error."""
    runs = registry.list_runs()
    if not runs and not getattr(args, "local", False):
        raise _no_master(f"; no local run is registered in {registry.runs_dir()} either")
    return runs


def _local_run(args: argparse.Namespace) -> registry.LocalRun:
    """The local run ``args.job`` names (``@``, ``@?TEXT``, or its name)."""
    _registered(args)
    return registry.find(args.job)


# The commands whose output is bytes, not a report: --json is refused, saying why.
_WRITES_BYTES: dict[Command, str] = {
    cmd_jobpack_build: "jobpack build writes a jobpack; `jobpack show FILE --json` describes one",
    cmd_ddfs_cat: "ddfs cat writes the blobs' bytes as they are",
}


def _json_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _known_job(conn: Cluster, text: str) -> str:
    """:func:`_job_name`, checked to be a job the master knows (NoSuchJob if not): a Disco
    master answers kill and purge of any name with "ok"."""
    name = _job_name(conn, text)
    conn.master.jobinfo(name)
    return name


def _job_name(conn: Cluster, text: str) -> str:
    """``@`` is the newest job, ``@?TEXT`` the newest whose name contains TEXT."""
    if text == "@":
        return cluster.latest_job(conn)
    if text.startswith("@?"):
        return cluster.latest_job(conn, text[2:])
    return text


def _read_file(name: str) -> bytes:
    if name == "-":
        if sys.stdin is None:
            raise JobError("standard input is closed: give the jobpack's FILE instead of -")
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise JobError(f"cannot read {name}: {exc.strerror or exc}") from exc
