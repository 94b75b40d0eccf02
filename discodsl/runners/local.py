"""The embedded default: the job's real jobpack run by worker processes on this machine.

The local runner is a master: it builds the same jobpack a Disco master
would get and hands it to :class:`~discodsl.runners.node.NodeMaster`,
which starts the jobhome's ``worker`` for each task over real pipes (forked
from a zygote per job: :mod:`discodsl.runners.forkserver`; a process per
task with ``DISCODSL_NO_FORKSERVER=1``). It opens no network port. Its
files live in a temporary directory removed when the results are closed or
garbage-collected, or, if this process is killed, by the next run of any
mode (:func:`discodsl.places.process_dir`).
``timeout=`` bounds a run (its workers are killed).

Each run has a node master of its own, run in the thread of its
:class:`~discodsl.runners.handle.Run` (runs side by side share the cores),
and an entry in the local run registry (:mod:`discodsl.runners.registry`)
that other processes read; ``kill()`` stops its workers. A run's stages'
outputs stay with its results until they are closed (``results.stage(name)``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from discodsl import builder, shipping, sources
from discodsl.errors import PicklingError, SettingsError, TaskFailed
from discodsl.results import Results, check_stage
from discodsl.runners import forkserver, registry
from discodsl.runners.base import Counters, EventHandler, JobFiles, Plan, Runner, fan_out
from discodsl.runners.failures import task_failed, worker_died
from discodsl.runners.grouping import DirOutput, Output
from discodsl.runners.layout import LOCAL_HOST, JobLayout, node_root
from discodsl.runners.node import Attempt, JobFailed, JobTimedOut, NodeMaster
from discodsl.runners.progress import Progress, final
from discodsl.runners.threads import check_threads_start
from discodsl.worker import PATH_ENV, capture
from discodsl.worker import urls as urlforms
from discodsl.worker.errors import LOAD_FAILURE, MISSING_HERE
from discodsl.worker.inputs import read_index
from discodsl.worker.opening import Node

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from discodsl.caching.reuse import Keeper
    from discodsl.jobpack import JobPack
    from discodsl.options import JobOptions
    from discodsl.runners.handle import Run


class LocalRunner(Runner):
    """Runs a job's jobpack through local worker processes, one per core."""

    mode = "local"

    def __init__(self, master: str | None = None):
        self.master = master

    def _tasks(self, plan: Plan, inputs: list[list[str]]) -> list[list[str]]:
        """The inputs of the first stage's tasks: big local text files cut into about a range
        per worker (:func:`sources.split_large`) when the first stage is a map of lines alone.
        Not for one that sees each input whole, as Disco gives it to a task: a reader (a CSV
        header, fixed-size records, whole files), init or done hooks (run once per task), a
        @stage (called once per task, with all of it)."""
        first = plan.spec.stages[0]
        if first.kind != "map" or first.reader or first.init or first.done:
            return inputs
        # An earlier job's result file goes whole: its task checks it is the one listed.
        return sources.split_large(inputs, _workers(plan.options), whole=plan.spec.listed)

    def _adapt(self, options: JobOptions) -> JobOptions:
        """The options as given; a DISCODSL_PYTHON of the job's env= (which the workers'
        launcher reads, here) that names nothing to run is refused now, by its name, and
        an empty one is none: the workers run this program's Python, as without it."""
        named = options.env.get("DISCODSL_PYTHON")
        if named:
            _named_python(named, "in the job's env=")
        elif named is not None:
            env = {k: v for k, v in options.env.items() if k != "DISCODSL_PYTHON"}
            return options.model_copy(update={"env": env})
        return options

    def _launch(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """Build the jobpack, submit it to a node master of the run's own (sharing this
        process's node directory), register the run; the work that runs it."""
        check_threads_start(f"job {plan.job.name!r} cannot run on the local runner now")
        workers = _workers(plan.options)
        # A resumed run reads record files, labelled.
        urls = plan.inputs if plan.resume is not None else self._tasks(plan, plan.inputs)
        # No separate pre-flight: the job's zygote (or, without the fork server, each
        # worker) loads the stages in a fresh interpreter, reports a failure as a FATAL
        # with LOAD_FAILURE, and _failed diagnoses it then.
        pack = builder.pack_job(
            plan.spec, plan.options, urls, preflight=False, resume=plan.resume, local=True
        )
        counters, progress = plan.counters(), Progress(plan.job.name, enabled=plan.options.progress)
        keeper = _Keep(plan.keeper(self.mode), counters)
        on_event = fan_out(counters, _with_reasons(progress, plan.options), run.log, keeper)
        master = _master(plan.options, workers, on_event, started=plan.submitted)
        layout = _submit(master, pack)
        keeper.submitted(layout.jobname, Node(host=master.host, disco_data=master.disco_data))
        run.submitted(layout.jobname, counters=counters.totals, kill=master.cancel, host=LOCAL_HOST)
        registry.register(run, [stage for stage, _, _ in pack.jobdict["pipeline"]])
        return functools.partial(_finish, master, layout, plan, counters, progress)


def _workers(options: JobOptions) -> int:
    return options.workers or os.cpu_count() or 1


def _submit(master: NodeMaster, pack: JobPack) -> JobLayout:
    """The submitted job's layout; a job name taken by a run submitted in the same
    microsecond (runs in threads) is followed by a fresh one."""
    for _ in range(9):
        with contextlib.suppress(FileExistsError):
            return master.submit(pack)
    return master.submit(pack)


def _finish(
    master: NodeMaster, layout: JobLayout, plan: Plan, counters: Counters, progress: Progress
) -> Results:
    """Run a submitted job to its end: its results, which remove its files when closed."""
    with JobFiles(layout.home) as files, contextlib.closing(progress):
        results = _run_submitted(master, layout, plan)
    node = Node(host=master.host, disco_data=master.disco_data)
    return Results(
        layout.jobname,
        results,
        node=node,
        mode="local",
        counters=counters.totals,
        cleanup=files.remove,
        stages=functools.partial(_stage_urls, layout, plan),
    )


def _stage_urls(layout: JobLayout, plan: Plan, stage: str) -> list[list[str]]:
    """The outputs of a stage of a finished run: the index files its tasks' outputs are
    listed in, as the node master wrote them (see JobLayout.new_index)."""
    check_stage(plan.spec, stage)
    return [[layout.url(path, scheme="dir")] for path in layout.indexes(stage)]


class _Keep:
    """Keeps each stage of a local run in the cache as the node master finishes it."""

    def __init__(self, keeper: Keeper | None, counters: Counters):
        self.keeper, self.counters, self.node = keeper, counters, Node()

    def submitted(self, jobname: str, node: Node) -> None:
        """The run's name, and the node whose files its stages' outputs are."""
        self.node = node
        if self.keeper is not None:
            self.keeper.run = jobname

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind != "stage_done" or self.keeper is None:
            return
        kept: list[tuple[int, int, list[str]]] = []
        paths: list[list[str | None]] = []
        for label, size, url in _listed(facts["outputs"], self.node):
            kept.append((label, size, [url]))
            paths.append([self._path(url)])
        self.keeper.keep(str(facts["stage"]), kept, paths, self.counters.totals)

    def _path(self, url: str) -> str | None:
        node = self.node
        return urlforms.file_path(urlforms.readable_here(url, node.host, 0, node.disco_data))


def _listed(outputs: list[Output], node: Node) -> list[tuple[int, int, str]]:
    """Every file of a stage's outputs, with its label and size (index files read)."""
    found: list[tuple[int, int, str]] = []
    for output in outputs:
        if isinstance(output, DirOutput):
            found.extend((label, size, url) for label, url, size in read_index(output.url, node))
        else:
            found.extend((output.label, output.size, url) for url in output.urls[:1])
    return found


def _master(
    options: JobOptions, workers: int, on_event: EventHandler, started: float | None = None
) -> NodeMaster:
    return NodeMaster(
        disco_data=os.path.join(node_root(), "data"),
        host=LOCAL_HOST,
        master_url="",  # no master: this_task().master says so, as inline
        workers=workers,
        max_failures=options.max_failures,
        environ=_worker_environ(),
        on_event=on_event,
        timeout=options.timeout,
        started=started,
        fork_server=forkserver.wanted(),
        claim_name=registry.claim,
    )


def _run_submitted(master: NodeMaster, layout: JobLayout, plan: Plan) -> list[list[str]]:
    """The job's results; a failed job's error, its workers stopped on any other exception."""
    try:
        return master.run_submitted(layout)
    except JobFailed as exc:
        error = _failed(plan, layout.jobname, exc)
        raise error from error.__cause__  # the worker's traceback, not the JobFailed
    except BaseException:
        master.cancel()
        raise


def _failed(plan: Plan, jobname: str, exc: JobFailed) -> Exception:
    """The error to raise for a failed job (the run ``jobname``, as the registry knows it):
    what the pre-flight says if the stages did not load in the worker, else the failed task
    with the worker's traceback as its cause."""
    load_failed = exc.outcome.fatal and LOAD_FAILURE in exc.outcome.text
    if load_failed and MISSING_HERE in exc.outcome.text:
        try:
            shipping.preflight(plan.spec, shipping.pickle_job(plan.spec))
        except PicklingError as diagnosis:
            return diagnosis
    if isinstance(exc, JobTimedOut):
        return _timed_out(jobname, exc)
    why = f"job {jobname!r} failed in task {exc.stage}:{exc.taskid}"
    if exc.attempts > 1:  # past max_failures, unless a fatal failure ended the retries
        limit = "" if exc.outcome.fatal else f" (max_failures={exc.attempts - 1})"
        why += f" after {exc.attempts} attempts{limit}"
    error = _attempt_error(exc.outcome, exc.stage, exc.taskid, why, _python(plan.options))
    error.jobname = jobname
    return error


def _attempt_error(outcome: Attempt, stage: str, taskid: int, why: str, python: str) -> TaskFailed:
    """The error of a failed attempt at task ``stage:taskid``: how its worker died (on
    ``python``), or what its worker reported."""
    if outcome.exit_code is not None:
        return worker_died(
            outcome.exit_code,
            stage=stage,
            taskid=taskid,
            inputs=outcome.inputs,
            why=why,
            start_up=outcome.start_up if outcome.said_nothing else None,
            cut_off=outcome.cut_off,
            python=python,
        )
    return task_failed(outcome.text, stage=stage, taskid=taskid, why=why)


def _python(options: JobOptions) -> str:
    """The Python the job's workers run."""
    return options.env.get("DISCODSL_PYTHON") or _workers_python()


def _with_reasons(handler: EventHandler, options: JobOptions) -> EventHandler:
    """``handler``, given each failure the task is tried again after with its reason (as a
    cluster's run tells it, whatever progress= says: a job that passes on a retry would
    hide that its input or disk is flaky)."""
    python = _python(options)

    def handle(kind: str, facts: Mapping[str, Any]) -> None:
        outcome = facts.get("outcome")
        if kind == "task_failed" and isinstance(outcome, Attempt) and not final(facts):
            said = str(_attempt_error(outcome, facts["stage"], facts["taskid"], "", python))
            facts = {**facts, "reason": said.removeprefix(": ")}
        handler(kind, facts)

    return handle


def _timed_out(jobname: str, exc: JobTimedOut) -> TaskFailed:
    tasks = ", ".join(f"{stage}:{taskid}" for stage, taskid in exc.running)
    return TaskFailed(
        f"job {jobname!r} ran past timeout={exc.timeout:g} seconds with task(s) {tasks} still "
        "running: its workers were killed and its files removed; make the stage finish "
        "sooner, or raise timeout= (None: no limit)",
        stage=exc.stage,
        taskid=exc.taskid,
        jobname=jobname,
    )


def _worker_environ() -> dict[str, Any]:
    """What local workers need: this interpreter, this process's import path (see
    _worker_path), and how big a MSG this master keeps."""
    path = _worker_path()
    # -S: no site module (its .pth processing costs every worker start-up); this
    # process's import path, site-packages included, comes through PATH_ENV, which
    # a worker puts after the standard library's (not PYTHONPATH, which would come first).
    return {
        "DISCODSL_PYTHON": _workers_python(),
        "DISCODSL_PYTHON_FLAGS": "-S",
        "PYTHONPATH": "",
        PATH_ENV: _path_value(path),
        # This master shows any MSG whole (a Disco master, only its first 8 KB).
        capture.MESSAGE_ENV: str(capture.LOCAL_MESSAGE),
        capture.PACE_ENV: "0",  # nor does it limit their rate
    }


def _workers_python() -> str:
    """The Python local workers run: ``DISCODSL_PYTHON`` of this program's environment, else
    this one (``sys.executable``), unless that is missing or a web server's binary (a server
    embedding Python, mod_wsgi's or uWSGI's, has its own there): then the one a venv's was
    made from, or ``python3.X`` on the PATH, as a node finds one ("" if none: the worker's
    launcher looks, and says what it found). Workers import what this process does, from
    its import path, whichever it is."""
    named = os.environ.get("DISCODSL_PYTHON", "")
    if named:
        return _named_python(named)
    base = getattr(sys, "_base_executable", "")  # a venv's own Python
    for here in (sys.executable, base):
        if here and os.access(here, os.X_OK) and not _HOST_NAME.fullmatch(os.path.basename(here)):
            return here
    return shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}") or ""


def _named_python(named: str, where: str = "in this program's environment") -> str:
    """The Python ``DISCODSL_PYTHON`` names (set ``where``), as an absolute path (the workers
    start in their job's directory); a SettingsError naming it if it names none this
    machine can run."""
    found = named if os.path.isabs(named) else shutil.which(named)
    if found and os.path.isfile(found) and os.access(found, os.X_OK):
        return os.path.abspath(found)
    raise SettingsError(
        f"DISCODSL_PYTHON={named!r}, {where}, names no program this machine can run (an "
        f"absolute path, or a name on the PATH): point it at Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}, or unset it to run local workers on "
        "this program's Python"
    )


# The programs that embed Python and leave their own file in sys.executable: a web
# server's (Apache's mod_wsgi, uWSGI, nginx unit); any other file is taken for a Python.
_HOST_NAME = re.compile(r"(httpd|apache2?|uwsgi|unitd|nginx)(-[\w.]+)?", re.IGNORECASE)


# Linux refuses an environment string longer than 128 KiB (MAX_ARG_STRLEN, E2BIG): an
# import path longer than this (a pex's, Bazel's) goes in a file, named after an "@".
PATH_IN_ENV_MAX = 64 * 1024


def _path_value(path: list[str]) -> str:
    """PATH_ENV's value for the import path ``path`` (absolute entries): the entries as a
    JSON list (an entry may hold the path separator, ``2026-12-06T10:00``), or ``@FILE``
    naming a file of this process's node that holds that list."""
    listed = json.dumps(path)  # ASCII: a name's undecodable bytes as \udcXX escapes
    if len(listed) <= PATH_IN_ENV_MAX:
        return listed
    handle, name = tempfile.mkstemp(prefix="import-path-", dir=node_root())
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write(listed)
    return "@" + name


def _worker_path() -> list[str]:
    """This process's import path as a local worker imports through it, whose working
    directory is its job home: ``""`` (the working directory, as the REPL, ``python -c``
    and notebooks have it) and relative entries (``sys.path.append("src")``) made the
    directories they are now, then the directories the user's modules loaded so far came
    from (through such an entry before an ``os.chdir``)."""
    try:
        here = os.getcwd()
    except FileNotFoundError:  # the working directory was removed: nothing is found there
        here = ""
    path = [os.path.normpath(os.path.join(here, entry)) for entry in sys.path]
    path += _import_roots()
    # A file may be an entry too: a zip (a zipapp's, PYTHONPATH=libs.zip).
    return [e for e in dict.fromkeys(path) if os.path.isabs(e) and os.path.exists(e)]


def _import_roots() -> list[str]:
    """The directories the modules of the user's own in ``sys.modules`` were imported from
    (a package's parent, for a package's modules). Installed ones are told by their path
    alone, without resolving links: one taken for the user's adds a directory, no more."""
    roots = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or name == "__main__" or file.startswith(shipping.INSTALLED):
            continue
        root = os.path.dirname(os.path.abspath(file))
        depth = name.count(".") + int(os.path.basename(file).startswith("__init__."))
        for _ in range(depth):
            root = os.path.dirname(root)
        roots.append(root)
    return roots
