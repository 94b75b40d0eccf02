"""The command line's parser: every subcommand, its options and help, and the flags of
Disco's own ``disco run`` named with what to write instead.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from discodsl import recordtext
from discodsl.caching import store
from discodsl.cli.jobs import (
    cmd_config,
    cmd_events,
    cmd_jobdict,
    cmd_jobs,
    cmd_kill,
    cmd_nodeinfo,
    cmd_purge,
    cmd_results,
    cmd_settings,
    cmd_stageresults,
    cmd_status,
    cmd_submit,
    cmd_wait,
)
from discodsl.cli.running import cmd_jobpack_build, cmd_jobpack_show, cmd_run
from discodsl.cli.storage import (
    cmd_cache_clear,
    cmd_cache_ls,
    cmd_ddfs_blobs,
    cmd_ddfs_cat,
    cmd_ddfs_ls,
    cmd_ddfs_push,
    cmd_ddfs_rm,
    cmd_ddfs_xcat,
)
from discodsl.options import MAX_PARTITIONS, MAX_TIMEOUT
from discodsl.worker.errors import digits_unlimited

# Flags of Disco's own `disco run`, and what to write here instead.
DISCO_FLAGS = {
    "--name": "the job is named after its function (MODULE:JOB); the Python API takes prefix=",
    "--profile": "profile a stage in one process: python -m cProfile -m discodsl run --inline",
    "--save": "set save_results=True on the job (@job(save_results=True))",
}
DISCO_FLAGS["-n"] = DISCO_FLAGS["--name"]


def disco_flags(extra: list[str]) -> str:
    """`` (Disco's --flag: what to write)`` for the first of ``extra`` that is Disco's."""
    for given in extra:
        flag = given.partition("=")[0]
        if flag in DISCO_FLAGS:
            return f" (Disco's {flag}: {DISCO_FLAGS[flag]})"
    return ""


def dashed_file(given: Iterable[str]) -> str:
    """`` (-x.txt is read as an option: ...)`` for the first of ``given`` that starts with a
    dash and names a file or directory here."""
    for arg in given:
        if arg.startswith("-") and arg != "-" and os.path.exists(arg):
            return f" ({arg} is read as an option: write ./{arg}, or put -- before the inputs)"
    return ""


def misplaced(command: argparse.ArgumentParser, extra: list[str]) -> str:
    """`` (--inline is an option of discodsl run: put it after run)`` for the first of
    ``extra`` that ``command`` takes: left over, it was given before the command's name."""
    options = {flag for action in command._actions for flag in action.option_strings}
    for given in extra:
        flag = given.partition("=")[0]
        if flag in options:
            name = command.prog.removeprefix("discodsl ")
            return f" ({flag} is an option of {command.prog}: put it after {name})"
    return ""


def close_option(command: argparse.ArgumentParser, extra: list[str]) -> str:
    """`` (did you mean --partitions?)`` for the first of ``extra`` that is an option
    ``command`` does not take, misspelt from one it does."""
    options = [flag for action in command._actions for flag in action.option_strings]
    for given in extra:
        flag = given.partition("=")[0]
        if flag.startswith("--"):
            close = difflib.get_close_matches(flag, options, n=1, cutoff=0.85)
            if close:
                return f" ({flag}: did you mean {close[0]}?)"
    return ""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes options after positionals: ``run JOB --inline IN``.

    Plain argparse gives ``nargs="*"`` inputs the (empty) run of positionals
    before the first option and rejects the rest. A parser without
    subcommands parses intermixed instead; one with subcommands cannot
    (argparse refuses), and does not need to.
    """

    _intermixing = False
    _given: Sequence[str] = ()  # the arguments parsed, for error()

    def error(self, message: str) -> NoReturn:
        """argparse's usage error, with what to write for an input named like an option, and
        the name meant for a misspelt option or command."""
        if "is read as an option" not in message:
            message += dashed_file(self._given) or self._meant(message)
        super().error(message)

    def _meant(self, message: str) -> str:
        """`` (did you mean run?)`` for a command misspelt; for an option of this parser
        misspelt before what argparse refused (whose value it took for a positional: the
        command, a job), the option meant, or the command that takes it."""
        choice = re.search(r"invalid choice: '([^']*)'", message)
        for given in self._given:
            if choice is not None and given == choice[1]:
                break
            if given.startswith("--") and given.partition("=")[0] not in self._flags():
                known = message.startswith("unrecognized")  # it names the option itself
                return close_option(self, [given]) or self._elsewhere(given, known)
        if choice is None:
            return ""
        close = difflib.get_close_matches(choice[1], self._commands(), n=1)
        return f" (did you mean {close[0]}?)" if close else ""

    def _commands(self) -> list[str]:
        return [name for action in self._actions if action.choices for name in action.choices]

    def _elsewhere(self, given: str, named: bool) -> str:
        """`` (--x is an option of discodsl run: put it after run)`` for an option one of
        this parser's commands takes; else that it is no option here (unless the message
        has ``named`` it so)."""
        flag = given.partition("=")[0]
        for action in self._actions:
            for name, command in dict(action.choices or {}).items():
                if isinstance(command, argparse.ArgumentParser) and flag in {
                    f for a in command._actions for f in a.option_strings
                }:
                    return f" ({flag} is an option of {command.prog}: put it after {name})"
        return "" if named else f" ({flag} is no option here)"

    def _flags(self) -> set[str]:
        return {flag for action in self._actions for flag in action.option_strings}

    def parse_known_args(  # type: ignore[override]  # one signature for typeshed's overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = sys.argv[1:] if args is None else list(args)
        self._given = given
        if self._intermixing or self._subparsers is not None or "--" in given:
            # argparse's intermixed parsing loses an operand like -x after "--"
            return super().parse_known_args(given, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls us back (3.10-3.12)
        try:
            return self.parse_known_intermixed_args(given, namespace)
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
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no notices on stderr (results served from the cache, inputs pushed or sent "
        "as file:// URLs): errors only, for cron",
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
    run.add_argument("--timeout", type=_job_seconds, metavar="SECONDS", help=TIMEOUT_HELP)
    run.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        help="reuse an earlier identical run's results, or resume after its finished stages "
        "(default: the job's own option)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar per stage on stderr (default: the job's own option, whose "
        "default draws them on a terminal only)",
    )
    run.add_argument("-o", "--output", metavar="FILE", help="write the records here")
    run.set_defaults(command=cmd_run)


JOB_HELP = "the job: MODULE (importable, or a .py file) and the name of the @job in it"


def _add_job_changes(parser: argparse.ArgumentParser) -> None:
    """The options that change a job's own (partitions, params, pushing its local inputs),
    for run and jobpack build."""
    parser.add_argument("--partitions", type=_partition_count, metavar="N", help=PARTITIONS_HELP)
    parser.add_argument(
        "--push-inputs",
        action=argparse.BooleanOptionalAction,
        help="upload local input files to DDFS first (cluster; default: the job's own option)",
    )
    parser.add_argument(
        "-P",
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help=PARAM_HELP,
    )


PARTITIONS_HELP = "reduce partitions; 0 for none (as Disco's partitions=0: partitions=None)"


def _partition_count(text: str) -> int:
    """``--partitions``'s argument: an integer of 0 or more (a usage error otherwise)."""
    try:
        given = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= given <= MAX_PARTITIONS:
        raise argparse.ArgumentTypeError(
            f"{given}: give a number of partitions from 1 to {MAX_PARTITIONS:,}, e.g. "
            "--partitions 4, or --partitions 0 for no partitioning"
        )
    return given


TIMEOUT_HELP = "the job's timeout= in seconds; 0 for none (as timeout=None: how --inline runs)"


def _job_seconds(text: str) -> float:
    """``run --timeout``'s argument: seconds of 0 (no limit) or more, a year at most."""
    advice = "the job may take, a year at most, e.g. --timeout 600, or --timeout 0 for no limit"
    seconds = _not_negative(text, advice)
    if seconds > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{text}: give the seconds {advice}")
    return seconds


def _seconds(text: str) -> float:
    """``wait --timeout``'s argument: seconds, 0 or more (a usage error otherwise)."""
    return _not_negative(
        text, "to wait as a number of 0 or more, or leave --timeout out to wait as long as it takes"
    )


def _not_negative(text: str, advice: str) -> float:
    """``text`` as seconds of 0 or more; a usage error giving ``advice`` otherwise."""
    given = _float(text)
    if not given >= 0:
        raise argparse.ArgumentTypeError(f"{text}: give the seconds {advice}")
    return given


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None


PARAM_HELP = (
    "set params[NAME] of the job's params (a dict, or None) to VALUE, read as a Python "
    "literal if it is one, else as text (repeatable; as `disco run -P NAME VALUE`)"
)


def _param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as ``(NAME, value)``: a Python literal, else the text."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE, e.g. -P pattern=error")
    with digits_unlimited():  # an int of 5,000 digits is an int, as one of 50 is
        return name, ast.literal_eval(value) if recordtext.reads_as_literal(value) else value


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
    build.add_argument("inputs", nargs="+", metavar="INPUT", help="paths, globs or URLs")
    build.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="where to write the jobpack"
    )
    _add_job_changes(build)
    build.set_defaults(command=cmd_jobpack_build)
    show = packs.add_parser("show", parents=[common], help="describe a jobpack file as JSON")
    show.add_argument("file", metavar="FILE")
    show.set_defaults(command=cmd_jobpack_show)


JOBS_HELP = "job names, @ (newest) or @?TEXT; the first that fails stops the rest"


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
        ("kill", cmd_kill, "stop jobs, one after another"),
        ("purge", cmd_purge, "make the master forget jobs (their nodes delete their data later)"),
    ]:
        parser = sub.add_parser(name, parents=[common], help=text, description=text)
        if name in ("kill", "purge"):  # several, as disco kill and disco purge take them
            parser.add_argument("job", metavar="JOB", nargs="+", help=JOBS_HELP)
        else:
            parser.add_argument("job", metavar="JOB", help="job name, @ (newest) or @?TEXT")
        parser.set_defaults(command=command)
        _add_local(parser)
        _add_own_options(name, parser)
    _add_cluster_facts(sub, common)


def _add_own_options(name: str, parser: argparse.ArgumentParser) -> None:
    """The options of the job command ``name`` that the others do not take."""
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
            help="give up after SECONDS (exit 124, as timeout(1) does; the job keeps running)",
        )
    if name == "results":
        parser.add_argument("-o", "--output", metavar="FILE", help="write the records here")
        parser.epilog = recordtext.OUTPUT_FORMATS
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


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
        (
            "settings",
            cmd_settings,
            "the master's settings: max_failure_rate (how often a task is retried), "
            "accept_new_jobs",
        ),
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
    blobs = actions.add_parser(
        "blobs", parents=[common], help="list a tag's blobs (their replicas on a line)"
    )
    blobs.add_argument("tag", metavar="TAG")
    blobs.set_defaults(command=cmd_ddfs_blobs)
    xcat = actions.add_parser(
        "xcat",
        parents=[common],
        help="print the records of a tag's blobs or a URL (record files, as a job saves them)",
        epilog=recordtext.OUTPUT_FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    xcat.add_argument("target", metavar="TAG_OR_URL")
    xcat.add_argument("-o", "--output", metavar="FILE", help="write the records here")
    xcat.set_defaults(command=cmd_ddfs_xcat)
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
