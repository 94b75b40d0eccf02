"""The cluster runner: a job's jobpack submitted to a Disco 0.5.4 master, watched, its results read.

:class:`ClusterRunner` is what ``job.run(mode="cluster")`` uses. The steps
are public for the command line: :meth:`Cluster.connect` (settings, the
master and its DDFS), :func:`cluster_inputs` (``tag://`` inputs resolved to
blobs, local files pushed to DDFS or sent as ``file://`` URLs),
:func:`wait_for` (progress from jobinfo and the job's events; a dead job
becomes the failing task's :class:`~discodsl.errors.TaskFailed`),
:func:`results_of` and :func:`latest_job`. A :class:`~discodsl.runners.handle.Run`
submits in the caller's thread and watches in its own; its ``kill()`` and
``events()`` and its results' ``stage(name)`` ask the master anew.

Results are read lazily over HTTP: ``dir://HOST/...`` and ``disco://HOST/...``
at ``http://HOST:<DISCO_PORT>/...`` (through ``DISCO_PROXY`` when one is set); a
save_results tag is resolved to its blobs first. Requests to the master and DDFS go
through :mod:`discodsl.client` and :mod:`discodsl.ddfs`; result files and indexes are
read by the worker's own readers (:mod:`discodsl.worker.inputs`), with the settings'
timeout and proxy (:func:`~discodsl.runners.base.client_node`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from discodsl import builder, indexes
from discodsl.client import ANSWER_S, Master
from discodsl.client import Event as MasterEvent
from discodsl.ddfs import DDFS, check_name, resolve_inputs
from discodsl.errors import (
    ClientError,
    DataError,
    JobActive,
    JobDead,
    NoSuchJob,
    TagNotFound,
    TaskFailed,
)
from discodsl.indexes import Listed
from discodsl.jobstatus import STAGE_SCHEDULED, TASK_DONE, TASK_ERROR, TASK_MSG, command_line
from discodsl.results import Results, check_stage_name
from discodsl.runners.base import Counters, Plan, Runner, client_node, index_node
from discodsl.runners.failures import task_failed, worker_died
from discodsl.runners.progress import Progress, StageBars
from discodsl.runners.threads import check_threads_start
from discodsl.settings import DiscoSettings, load_settings
from discodsl.stdio import notice, warn
from discodsl.worker import urls
from discodsl.worker.inputs import read_index
from discodsl.worker.opening import Node
from discodsl.worker.report import MARKER

if TYPE_CHECKING:
    from discodsl.caching.store import Entry, Output
    from discodsl.options import JobOptions
    from discodsl.runners.handle import Run
    from discodsl.worker.spec import JobSpec, StageSpec

__all__ = [
    "Cluster",
    "ClusterRunner",
    "cluster_inputs",
    "ends_log",
    "latest_job",
    "read_to_end",
    "results_of",
    "wait_for",
]

#: How long one get_results call may block (ms): short, so progress stays fresh and a
#: save_results job, whose end the master does not announce, is seen soon (spec section 5).
POLL_MS = 1000
#: How long a job's last events may take to reach its event log once it is ready or dead
#: (s). The master writes a job's events every 2 s, and at once when the job ends, except
#: when a save_results job ends or a job is killed (job_event.erl, disco_server.erl): until
#: then its last tasks' counts, DONE and error lines are unread.
EVENTS_PATIENCE_S = 10.0
# Seconds a read of jobinfo for the progress bars may take, retries included.
PROGRESS_READ_S = 2.0

_CRASH = re.compile(r"Worker crashed! \(exit code: (-?\d+)\)")
# The master's last event of a job that succeeded, and of one that died (failed or killed).
_READY_EVENT, _KILLED_EVENT = "READY: ", "WARN: Job killed"
_RETRY_EVENT = re.compile(
    r"Task (\S+):(\d+) failed on .*?, (\d+)\w* failures so far\.(?: Sleeping (\d+) seconds)?"
)
# A node that could not open a file:// input (the worker's DataError says "URL: cannot open").
_FILE_URL = re.compile(r"(file://[^\s;:,'\"]+): cannot open ")


@dataclass
class Cluster:
    """One Disco master and its DDFS, as the settings name them; close it when done."""

    settings: DiscoSettings
    master: Master
    ddfs: DDFS

    @classmethod
    def connect(cls, master: str | None = None) -> Cluster:
        """Clients for ``master`` (else ``DISCO_MASTER`` and the other settings); no I/O yet."""
        settings = load_settings(DISCO_MASTER=master)
        return cls(settings, Master.from_settings(settings), DDFS.from_settings(settings))

    @property
    def url(self) -> str:
        return self.master.url

    def close(self) -> None:
        self.master.close()
        self.ddfs.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ClusterRunner(Runner):
    """Runs a job on a Disco master: inputs to the cluster, build, submit, watch, results."""

    mode = "cluster"

    def __init__(self, master: str | None = None):
        self.master = master
        self._url: str | None = None

    def _launch(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """Submit the job (in the caller's thread: a refused jobpack raises from submit());
        the work that watches it to its end, in the run's thread."""
        # Reading the master's answers and watching the job take threads: none starting
        # once the jobpack went left the job running unseen (a bare RuntimeError).
        check_threads_start(f"job {plan.job.name!r} cannot be sent to the cluster now")
        cluster = Cluster.connect(self.master)
        timeout = plan.time_left()  # from the run's submit(): the submission counts
        started = plan.submitted
        doing = ["submitting"]  # what _submit does: a Ctrl-C before the sending sent nothing
        try:
            jobname, inputs = _submit(
                cluster, plan, None if timeout is None else timeout + ANSWER_S, doing
            )
        except KeyboardInterrupt:
            cluster.close()
            warn(_submit_interrupted(plan.spec.name, cluster.url, doing[0]))
            raise
        except BaseException:
            cluster.close()
            raise
        counters, stop, settings = plan.counters(), threading.Event(), cluster.settings
        keep = _Keep(plan, cluster.url, jobname, counters)
        first = _split_tasks(plan, inputs)
        shown = Shown()  # what the run's watches showed of what its stages printed
        again = (settings, jobname, plan, counters, stop, keep, first, shown)
        run.submitted(
            jobname,
            counters=counters.totals,
            kill=functools.partial(_kill, settings, jobname),
            interrupt=functools.partial(_stop, settings, jobname, plan.options, stop),
            events=functools.partial(_events, settings, jobname),
            resume=functools.partial(_rewatch, *again),
            master=cluster.url,
        )
        watch = functools.partial(_watch, cluster, jobname, plan, counters, stop, keep, first)
        return functools.partial(watch, started=started, shown=shown)

    # -- the cache: a cluster run's stages are its job's stage results on the master ------

    def _where(self) -> str:
        """The master's URL, as the settings name it (read once per runner)."""
        if self._url is None:
            self._url = Cluster.connect(self.master).url
        return self._url

    def _check_pinned(self, inputs: list[list[str]]) -> None:
        """Nothing: the cluster's master resolves tags."""

    def _here(self, inputs: list[list[str]], listed: Listed) -> list[list[str]]:
        """The inputs with earlier runs' ``dir://`` indexes expanded into their files (as
        ``disco://`` URLs, which nodes read locally where they can: into ``listed`` too);
        tags go to the master's client as they are (cluster_inputs)."""
        return self._expanded(inputs, _as_listed, listed)

    def _identified(self, inputs: list[list[str]]) -> list[list[str]]:
        """Tags resolved to their blobs: a tag that changes gives another key."""
        if not any(urls.is_tag(url) for replicas in inputs for url in replicas):
            return inputs
        with Cluster.connect(self.master) as cluster:
            return resolve_inputs(inputs, cluster.ddfs)

    def _reusable(self, entry: Entry) -> list[Output] | None:
        """A kept stage's outputs while the master still has them (a dead job's finished
        stages too, until it is purged), each file with its label. A last stage's also
        need the job's results there: a save_results job's tag may have been deleted."""
        if entry.where != self._where():
            return None
        with Cluster.connect(self.master) as cluster:
            try:
                if entry.last:
                    resolve_inputs(cluster.master.results_of(entry.run), cluster.ddfs)
                found = cluster.master.stageresults(entry.run, entry.stage)
                return _labelled(found, client_node(cluster.settings))
            except (ClientError, DataError):
                return None

    def _served(self, plan: Plan) -> Results:
        assert plan.resume is not None
        with Cluster.connect(self.master) as cluster:
            found = results_of(cluster, plan.resume.entry.run)
        found.counters = plan.resume.counters
        return found


def _labelled(found: list[list[str]], node: Node) -> list[Output]:
    """A stage's results as labelled outputs: each ``dir://`` index read for its files."""
    outputs: list[Output] = []
    for replicas in found:
        if replicas and urls.is_index(replicas[0]):
            outputs.extend(
                (label, size, [url]) for label, url, size in read_index(replicas[0], node)
            )
        else:
            outputs.append((0, 0, list(replicas)))
    return outputs


class _Keep:
    """Keeps a cluster run's stages in the cache: entries naming the job (its stage results
    stay on the master), written at submission so that a run that dies can be resumed,
    and again at the end with the counters of the stages that finished."""

    def __init__(self, plan: Plan, where: str, jobname: str, counters: Counters):
        self.keeper, self.counters = plan.keeper(where), counters
        self.names = [stage.name for stage in plan.spec.stages[plan.start :]]
        self.reused = plan.resume.counters if plan.resume is not None else {}
        if self.keeper is not None:
            self.keeper.run = jobname
            self.done()

    def done(self) -> None:
        """Keep (again) the entries of the stages run, each with the counters up to it.
        The master says which of them finished when they are looked up."""
        if self.keeper is None:
            return
        running = dict(self.reused)
        for name in self.names:
            for counter, value in self.counters.by_stage.get(name, {}).items():
                running[counter] = running.get(counter, 0) + value
            self.keeper.keep(name, [], [], running)


def _submit(
    cluster: Cluster, plan: Plan, within: float | None, doing: list[str]
) -> tuple[str, list[list[str]]]:
    """Inputs to the cluster, the jobpack built and submitted (``within`` seconds, if given:
    the run's ``timeout=``); the master's name for the job, and the inputs it was given. A
    resumed run's inputs are the stage results it reuses, on the cluster already. ``doing``
    says what it is doing (``pushing``, ``building``, ``submitting``)."""
    options, spec, inputs = plan.options, plan.spec, []
    if plan.resume is None:
        listed: Listed = dict(spec.listed)  # a file pushed is checked first
        doing[0] = "pushing" if options.push_inputs else "building"
        inputs = cluster_inputs(
            cluster, plan.inputs, push=options.push_inputs, name=spec.name, listed=listed
        )
        spec = indexes.listing(spec, listed, inputs)
    doing[0] = "building"
    data = builder.build_jobpack(plan.job, options, inputs, spec=spec, resume=plan.resume)
    _warn_concurrent(cluster, spec)
    doing[0] = "submitting"
    return cluster.master.submit(data, within=within, timeout=options.timeout), inputs


def _warn_concurrent(cluster: Cluster, spec: JobSpec) -> None:
    """Warn of a ``concurrent`` stage with as many tasks as the cluster has worker slots:
    started while the stage before it runs, they may hold every slot waiting for its
    tasks, which then never get one, and the job waits for good (a real 0.5.4 master)."""
    stages = [stage for stage in spec.stages[1:] if stage.concurrent]
    if not stages:
        return
    try:
        nodes = cluster.master.nodeinfo()
    except ClientError:
        return  # the submission says what is wrong with the master
    slots = sum(int(node.get("max_workers") or 0) for node in nodes.values())
    for stage in stages:
        tasks = _tasks_of(stage, spec.partitions, len(nodes))
        if tasks >= slots:
            warn(
                f"discodsl: stage {stage.name!r} is concurrent=True with {tasks} tasks, and "
                f"the cluster has {slots} worker slots: its tasks may take them all waiting "
                "for the stage before it, whose tasks then never run, and the job waits for "
                "good; drop concurrent=True, or use fewer partitions than slots"
            )


def _tasks_of(stage: StageSpec, partitions: int | None, nodes: int) -> int:
    """How many tasks the master makes of ``stage`` (a split stage: one a label, at least)."""
    labels = max(partitions or 1, 1)
    return {"group_all": 1, "group_node": nodes, "group_node_label": nodes * labels}.get(
        stage.grouping, labels
    )


def _submit_interrupted(prefix: str, master: str, doing: str = "submitting") -> str:
    """What to say of a submission Ctrl-C stopped: the master may have made the job, whose
    name never came back (nothing can kill it from here); before the jobpack went (``doing``
    its inputs' pushing, or its building), that no job was."""
    if doing == "pushing":
        return (
            f"discodsl: Ctrl-C while pushing the inputs of job {prefix!r} to DDFS: no job was "
            "submitted (a blob half pushed is left to DDFS's garbage collection)"
        )
    if doing == "building":
        return (
            f"discodsl: Ctrl-C while building the jobpack of job {prefix!r}: no job was submitted"
        )
    return (
        f"discodsl: Ctrl-C while submitting job {prefix!r}: the master at {master} may have "
        f"started it; list its jobs with `{command_line('jobs', master)}` and stop a "
        f"{prefix}@... one with `{command_line('kill NAME', master)}`"
    )


def _split_tasks(plan: Plan, inputs: list[list[str]]) -> tuple[str, list[list[str]]] | None:
    """The first stage's name and its tasks' inputs, when the master makes a task of each:
    a ``split`` stage over data URLs (it puts a ``dir://`` input's labels first, one task
    each); None otherwise. Task 0 reads the last input: the master's list of them is built
    backwards (``job_coordinator:preprocess_inputs`` at 0.5.4)."""
    first = plan.spec.stages[0]
    if first.grouping != "split" or any(urls.is_index(u) for reps in inputs for u in reps):
        return None
    return first.name, inputs[::-1]


def _watch(
    cluster: Cluster,
    jobname: str,
    plan: Plan,
    counters: Counters,
    stop: threading.Event,
    keep: _Keep,
    first: tuple[str, list[list[str]]] | None = None,
    again: bool = False,
    started: float | None = None,
    shown: Shown | None = None,
) -> Results:
    """Watch the job to its end: its results, or its error (JobActive when the watch
    stopped first: Ctrl-C in wait(), or ``timeout=`` from ``started``, unless ``again``);
    what its stages print is shown once across the run's watches (``shown``)."""
    options = plan.options
    try:
        with cluster:
            return wait_for(
                cluster,
                jobname,
                timeout=None if again else options.timeout,
                started=started,
                progress=options.progress,
                kill_on_interrupt=options.kill_on_interrupt,
                counters=counters,
                stop=stop,
                first=first,
                submitted=True,
                shown=shown,
                max_failures=options.max_failures,
            )
    finally:
        keep.done()


def _rewatch(
    settings: DiscoSettings,
    jobname: str,
    plan: Plan,
    counters: Counters,
    stop: threading.Event,
    keep: _Keep,
    first: tuple[str, list[list[str]]] | None,
    shown: Shown,
) -> Results:
    """Watch again a job whose watch stopped while it ran on (Ctrl-C in wait(), or its
    ``timeout=``), from its first event (what its stages printed shown once): wait() and
    status then follow it to its end."""
    stop.clear()
    counters.clear()
    cluster = _connect(settings)
    return _watch(cluster, jobname, plan, counters, stop, keep, first, again=True, shown=shown)


def _connect(settings: DiscoSettings) -> Cluster:
    """A new connection to the cluster ``settings`` name (one per thread that needs one)."""
    return Cluster(settings, Master.from_settings(settings), DDFS.from_settings(settings))


def _kill(settings: DiscoSettings, jobname: str) -> None:
    with _connect(settings) as cluster:
        cluster.master.kill(jobname)


def _events(settings: DiscoSettings, jobname: str) -> list[MasterEvent]:
    with _connect(settings) as cluster:
        return cluster.master.rawevents(jobname)[0]


def _stop(
    settings: DiscoSettings, jobname: str, options: JobOptions, stop: threading.Event
) -> None:
    """Ctrl-C while waiting: stop watching; kill the job only with ``kill_on_interrupt``."""
    stop.set()
    with _connect(settings) as cluster:
        _interrupted(cluster, jobname, options.kill_on_interrupt)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def cluster_inputs(
    cluster: Cluster,
    inputs: list[list[str]],
    *,
    push: bool = False,
    name: str = "job",
    listed: Listed | None = None,
) -> list[list[str]]:
    """Replica lists a node can read: tags resolved to blobs, local files pushed (those in
    ``listed``, earlier jobs' results, checked first) or noticed, indexes expanded into
    their files (put in ``listed`` with their sizes).

    Without ``push``, local files go as ``file://`` URLs, which every node
    must see at the same path; a one-line notice on stderr says so. With
    ``push``, they are uploaded to DDFS under tag ``discodsl:inputs:<name>@<time>``,
    which a notice names (it stays until deleted).
    """
    local = [i for i, replicas in enumerate(inputs) if local_file(replicas)]
    if local and push:
        tag = f"discodsl:inputs:{name}@{int(time.time() * 1000):x}"
        files = [local_file(inputs[i]) or "" for i in local]
        for index, path in zip(local, files, strict=True):
            _check_pushed(path, inputs[index], listed or {})
        blobs = cluster.ddfs.push(tag, files)
        notice(
            f"discodsl: pushed {len(files)} local input file(s) to DDFS tag {tag}, which "
            f"stays until deleted: `{command_line(f'ddfs rm {tag}', cluster.url)}`"
        )
        inputs = list(inputs)
        for index, replicas in zip(local, blobs, strict=True):
            inputs[index] = replicas
    elif local:
        notice(
            f"discodsl: {len(local)} local input file(s) go to the cluster as file:// URLs, "
            "so every node must see them at the same path (a shared file system); "
            "push_inputs=True (--push-inputs) uploads them to DDFS instead"
        )
    return indexes_expanded(resolve_inputs(inputs, cluster.ddfs), cluster.url, listed)


def _check_pushed(path: str, replicas: list[str], listed: Listed) -> None:
    """A DataError if ``path``, the local file of ``replicas`` to push, is an earlier job's
    result file (in ``listed``) that is not of the size listed: its blob would carry no
    size for the job's task to check."""
    said = next((listed[url] for url in replicas if url in listed), None)
    if said is None:
        return
    size = os.path.getsize(path)
    if size != said[0]:
        raise DataError(
            f"{urls.file_url(path)} is {size} bytes, where {said[1]} says {said[0]}: the file "
            "changed, or was cut short, since its task wrote it (not pushed): run the job that "
            "wrote it again",
            url=urls.file_url(path),
        )


def indexes_expanded(
    inputs: list[list[str]], master: str, listed: Listed | None = None
) -> list[list[str]]:
    """``inputs`` with each ``dir://`` index (an earlier job's results, given or in a tag)
    replaced by the files it lists, all labels, as Disco's client expands them: a master
    takes an index for one data input, and its task reads the files of label 0 alone."""
    if not any(urls.is_index(url) for replicas in inputs for url in replicas):
        return inputs
    node_of = functools.cache(lambda host: index_node(host, master))
    return indexes.expand(inputs, node_of, _as_listed, listed)


def local_file(replicas: list[str]) -> str | None:
    """The local path of the first ``file://`` replica that can be uploaded whole and is
    here, or None; one not here is another's to read (a replica list fails over past it
    to a URL of another kind), unless every replica is such a file (then the push says the
    first is missing)."""
    paths = [path for url in replicas if (path := urls.file_path(url)) is not None]
    here = [path for path in paths if os.path.isfile(path)]
    if here:
        return here[0]
    return paths[0] if paths and len(paths) == len(replicas) else None


# --------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------


def wait_for(
    cluster: Cluster,
    jobname: str,
    *,
    timeout: float | None = None,
    progress: bool | None = None,
    kill_on_interrupt: bool = False,
    counters: Counters | None = None,
    stop: threading.Event | None = None,
    first: tuple[str, list[list[str]]] | None = None,
    submitted: bool = False,
    started: float | None = None,
    replay: bool = True,
    shown: Shown | None = None,
    max_failures: int | None = None,
) -> Results:
    """Wait for a job, showing its progress and summing its ``counters``; its results.
    What its stages printed before the wait began is shown only with ``replay``, and not
    what an earlier watch of the run showed (``shown``).

    A dead job raises the failing task's :class:`TaskFailed` (the worker's
    traceback as ``__cause__``), or :class:`JobDead` when no task failed
    (killed). Still active after ``timeout`` seconds (from ``started``, if given: a run's
    submission), or when ``stop`` is
    set: JobActive, the job keeps running; so is a master that stopped answering the
    wait of a job this process ``submitted``, or one that answered it once (a master never
    reached for a job of another's is the error it was). Ctrl-C says how to kill the job,
    or kills it with ``kill_on_interrupt``, and re-raises KeyboardInterrupt. A task that
    fails more than ``max_failures`` times (if given) has the job killed, and raises its
    TaskFailed; each failure is told as the events show it.
    """
    counters = Counters() if counters is None else counters
    progress_bar = Progress(jobname, enabled=progress)
    watcher = _Watcher(cluster.master, jobname, progress_bar, counters)
    watcher.stop, watcher.replay = stop, replay
    watcher.shown = Shown() if shown is None else shown
    watcher.max_failures, watcher.first = max_failures, first
    start = time.monotonic() if started is None else started  # the timeout counts from it
    watcher.deadline = None if timeout is None else start + timeout
    try:
        urls = cluster.master.wait(
            jobname, poll_ms=POLL_MS, timeout_s=timeout, on_poll=watcher, started=start
        )
        watcher.settle()
    except JobDead as dead:
        watcher.settle(dead=True)
        ready = _ready_after_all(cluster, jobname, watcher.events)
        if ready is None:
            error = _job_failed(jobname, watcher.events, dead, first, cluster.url)
            raise error from (error.__cause__ or dead)
        urls = ready
    except KeyboardInterrupt:
        _interrupted(cluster, jobname, kill_on_interrupt)
        raise
    except NoSuchJob as exc:
        tell_saved(cluster, jobname, exc)
        raise
    except JobActive:
        raise
    except ClientError as exc:
        if not (watcher.answered or submitted):  # never reached for a job of another's
            raise
        raise _lost(cluster, jobname, exc) from exc
    finally:
        progress_bar.close()
    return _results(cluster, jobname, urls, counters.totals)


def _ready_after_all(
    cluster: Cluster, jobname: str, events: list[MasterEvent]
) -> list[list[str]] | None:
    """The results of a job the master said was dead whose log ends READY with no task
    error, if asked again it says ready: a 0.5.4 master answers dead between its job
    coordinator's end and its ready event's arrival (seen once); None if it is dead."""
    if not events or not events[-1][2].startswith(_READY_EVENT) or _failing_task(events):
        return None
    for pause in READY_AGAIN_PAUSES:
        time.sleep(pause)
        try:
            status, urls = cluster.master.results([jobname]).get(jobname, ("dead", []))
        except ClientError:
            return None
        if status == "ready":
            return urls
    return None


# Seconds before each time a job said dead whose log ends READY is asked again.
READY_AGAIN_PAUSES = (0.0, 0.2, 0.5, 1.0)


def _lost(cluster: Cluster, jobname: str, exc: ClientError) -> JobActive:
    """The error for a watch an answer or the network ended (the job was submitted and
    may run on): JobActive, so that the run stays active and wait() follows it again."""
    wait, kill = (command_line(f"{verb} {jobname}", cluster.url) for verb in ("wait", "kill"))
    return JobActive(
        f"lost track of job {jobname!r} on {cluster.url} while waiting for it ({exc}): it "
        "was submitted and may run on there: wait() for its run again (after run(), "
        f"Results.of_job({jobname!r}, master={cluster.url!r}) waits for it and reads its "
        f"results), or `{wait}`; stop it with `{kill}`",
        jobname=jobname,
        lost=True,
    )


def _interrupted(cluster: Cluster, jobname: str, kill: bool) -> None:
    if kill:
        cluster.master.kill(jobname)
        notice(f"discodsl: killed job {jobname} on {cluster.url}")
    else:
        warn(
            f"discodsl: job {jobname} still runs on {cluster.url}; "
            f"stop it with `{command_line(f'kill {jobname}', cluster.url)}`"
        )


@dataclass
class Shown:
    """How many of a job's first events had what its stages printed shown: by a run's
    watches (a second watch shows what the first did not), or before a wait began."""

    events: int = 0


class _Watcher:
    """Called after each get_results poll: feeds a Progress and the run's Counters from the
    job's new events (stages scheduled, tasks done, MSG lines, retries), and the stage bars
    from jobinfo's per-stage task counts too (the events lag up to 2 s)."""

    def __init__(
        self, master: Master, jobname: str, progress: Progress, counters: Counters | None = None
    ):
        self.master, self.jobname, self.progress = master, jobname, progress
        self.counters = Counters() if counters is None else counters
        self.events: list[MasterEvent] = []
        self.offset = 0
        self.bars = StageBars(progress)
        self.events_done: dict[str, int] = {}  # tasks done per stage, by the events
        self.stop: threading.Event | None = None  # set: stop waiting (Ctrl-C in Run.wait)
        self.ended = False  # the log's last event was read: every event before it was too
        self.missed = False  # a read of the events or jobinfo failed (said once)
        self.answered = False  # the master answered a poll of this wait
        self.deadline: float | None = None  # the wait's timeout=, when its reads must end
        self.replay = True  # show what stages printed before the first read of the events
        self.read = False  # the events were read once
        self.shown = Shown()  # the events whose printed lines were shown (by any watch)
        self.counted = 0  # the events read
        self.max_failures: int | None = None  # a task failing more: the job is killed
        self.enforcing = True  # while the job runs (not once it ended)
        self.first: tuple[str, list[list[str]]] | None = None  # the first stage's inputs

    def __call__(self, status: str, elapsed: float) -> None:
        self.answered = True
        if self.stop is not None and self.stop.is_set() and status == "active":
            kill = command_line(f"kill {self.jobname}", self.master.url)
            raise JobActive(
                f"stopped waiting for job {self.jobname!r}, which still runs on "
                f"{self.master.url}: stop it with `{kill}`",
                jobname=self.jobname,
            )
        try:
            if status not in ("ready", "dead"):  # an ended job's: settle reads them to the end
                self.catch_up(self._left())
            if self.progress.enabled and status in ("active", "ready"):
                within = min(self._left(), PROGRESS_READ_S)  # the bars only: not worth more
                self._counts(self.master.jobinfo(self.jobname, within)["pipeline"])
        except NoSuchJob:
            raise
        except ClientError as exc:  # they only feed the counters and the bar: read them later
            if not self.missed:
                notice(
                    f"discodsl: could not read the events or progress of job "
                    f"{self.jobname!r} ({exc}); reading them again at the next poll: its "
                    "progress and counters may lag"
                )
            self.missed = True

    def _left(self) -> float:
        """How long a read of the events or the progress may take, retries included: what
        is left of the wait's timeout=; without one, EVENTS_PATIENCE_S or one whole attempt
        (DISCODSL_HTTP_TIMEOUT), the longer (they only feed the counters and the bars: a
        master slow to serve them must not hold the wait for the client's whole retry
        schedule, nor past its timeout, and one slow but answering is read)."""
        if self.deadline is None:
            return self._one_read()
        return max(0.0, self.deadline - time.monotonic())

    def _one_read(self) -> float:
        return max(EVENTS_PATIENCE_S, self.master.timeout)

    def catch_up(self, within: float | None = None) -> None:
        """Read the events added since the last call (within that many seconds)."""
        new, self.offset = self.master.rawevents(self.jobname, self.offset, within)
        self.events.extend(new)
        if not (self.replay or self.read):  # they were printed before: not shown again
            self.shown.events = max(self.shown.events, len(new))
        self.read = True
        for _, _, message in new:
            self.counted += 1
            fresh = self.counted > self.shown.events
            self.shown.events = max(self.shown.events, self.counted)
            self._event(message, fresh)

    def settle(self, dead: bool = False) -> None:
        """After the poll that found the job ready (or ``dead``): read its events up to the
        last (see read_to_end). A ready job's whose end did not come: say its counters may
        miss counts."""
        self.enforcing = False
        patience = min(self._left(), EVENTS_PATIENCE_S)
        # A read at least a whole attempt long without timeout=, a second with one: a job
        # ready just before its timeout= still has its counters read.
        least = self._one_read() if self.deadline is None else ANSWER_S
        if not self.ended:
            read_to_end(self._read_on, patience, least)
        if not dead:
            self.bars.end()
        if not self.ended and not dead and not self.read:
            notice(
                f"discodsl: job {self.jobname} is ready, but the master did not answer the "
                f"reads of its event log (for {max(patience, least):.3g} s): its counters "
                "are missing (its results are whole)"
            )
        elif not self.ended and not dead:
            notice(
                f"discodsl: job {self.jobname} is ready, but its end did not show in the "
                f"master's event log (read for {max(patience, least):.3g} s): its counters "
                "may miss counts of its last tasks"
            )

    def _read_on(self, within: float) -> bool:
        """Read the new events (within that many seconds); whether to stop: the log's end
        was read, or the job was purged meanwhile (then what was read is all there is)."""
        try:
            self.catch_up(within)
        except NoSuchJob:
            return True
        except ClientError:
            return False  # read again after the next pause
        return self.ended

    def _event(self, message: str, shown: bool = True) -> None:
        """Count an event, and show it (what a stage printed only if ``shown``)."""
        if ends_log(message):
            self.ended = True
        elif match := TASK_MSG.fullmatch(message):
            stage, taskid, text = match.groups()
            facts = {"stage": stage, "taskid": int(taskid), "text": text}
            self.counters("msg", facts)
            if shown:
                self.progress("msg", facts)
        elif match := STAGE_SCHEDULED.match(message):
            self.bars.counts(match.group(1), int(match.group(2)), 0)
        elif match := TASK_DONE.match(message):
            stage = match.group(1)
            self.counters.succeeded(stage, int(match.group(2)))
            self.events_done[stage] = self.events_done.get(stage, 0) + 1
            self.bars.counts(stage, 0, self.events_done[stage])
        elif match := _RETRY_EVENT.match(message):
            stage, taskid, failures, pause = match.groups()
            self._retried((stage, int(taskid)), int(failures), shown, pause)

    def _retried(
        self, task: tuple[str, int], failures: int, shown: bool, pause: str | None = None
    ) -> None:
        """A task failed, and the master will try it again: say why (if not said before),
        and kill the job once the task failed more than the run's max_failures allow (a
        master retries it up to its max_failure_rate, 100 by default: with its pauses, an
        hour and three quarters)."""
        facts: dict[str, Any] = {"stage": task[0], "taskid": task[1], "failures": failures}
        if pause is not None:
            facts["pause"] = int(pause)
        so_far = self.events[: self.counted]  # not the next attempt's, read with this one
        found = _failing_task(so_far, task)
        if found is not None and shown and self.enforcing:  # not a job that ended: its error
            said = str(_task_error(so_far, found, "", self.first))
            facts["reason"] = said.removeprefix(": ")
        limit = self.max_failures
        past = limit is not None and failures > limit and self.enforcing
        if past:
            facts["limit"] = limit
        self._tell("task_failed", facts)
        if past:
            raise self._past_limit(task, found, failures)

    def _past_limit(
        self, task: tuple[str, int], found: tuple[str, int, str] | None, failures: int
    ) -> TaskFailed:
        """The error of a task that failed more than max_failures allow, its job killed."""
        why = (
            f"job {self.jobname!r} failed in task {task[0]}:{task[1]} after {failures} "
            f"attempt{'s' if failures > 1 else ''} (max_failures={self.max_failures})"
        )
        error = (
            _task_error(self.events[: self.counted], found, why, self.first)
            if found is not None
            else TaskFailed(why, stage=task[0], taskid=task[1])
        )
        try:
            self.master.kill(self.jobname)
            killed = (
                "; discodsl killed the job on the master, which would have tried the task "
                "again up to its max_failure_rate"
            )
        except ClientError as exc:
            kill = command_line(f"kill {self.jobname}", self.master.url)
            killed = f"; discodsl could not kill the job on the master ({exc}): `{kill}`"
        error.jobname = self.jobname
        error.args = (f"{error}{killed}",)
        return error

    def _tell(self, kind: str, facts: Mapping[str, Any]) -> None:
        """An event both the counters and the progress bar take."""
        self.counters(kind, facts)
        self.progress(kind, facts)

    def _counts(self, pipeline: list[Any]) -> None:
        """jobinfo rows ``[stage, pending, waiting, running, done, failed]`` (-1 possible;
        waiting = tasks - (running + done), pending among them), in the pipeline's order."""
        rows = [
            (str(r[0]), sum(max(0, n) for n in r[2:5]), r[4])
            for r in pipeline
            if isinstance(r, list) and len(r) == 6 and all(_count(n) for n in r[1:])
        ]
        self.bars.pipeline([stage for stage, _, _ in rows])
        for stage, tasks, done in rows:
            self.bars.counts(stage, tasks, done)


def _count(value: Any) -> bool:
    """Whether a jobinfo row's ``value`` is a task count (an int; -1 is possible)."""
    return isinstance(value, int) and not isinstance(value, bool)


def read_to_end(
    read: Callable[[float], bool], within: float = EVENTS_PATIENCE_S, least: float = 0.0
) -> None:
    """Once a job has ended, call ``read`` (it reads the job's new events within the seconds
    it is given, ``least`` at least, and says whether to stop, e.g. on the log's last
    event, see ends_log) at once, then after growing pauses until it says so, for up to
    EVENTS_PATIENCE_S, or ``within`` seconds if fewer: the master writes a job's last
    events up to 2 s after the job ends."""
    deadline = time.monotonic() + min(within, EVENTS_PATIENCE_S)
    pause = 0.05
    while not read(max(least, deadline - time.monotonic())):  # at once, then after pauses
        if time.monotonic() + pause >= deadline:
            return
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


def ends_log(message: str) -> bool:
    """Whether ``message`` is the last event of a job's log: READY, or "WARN: Job killed"."""
    return message.startswith(_READY_EVENT) or message == _KILLED_EVENT


def _job_failed(
    jobname: str,
    events: list[MasterEvent],
    dead: JobDead,
    first: tuple[str, list[list[str]]] | None = None,
    master_url: str = "",
) -> TaskFailed | JobDead:
    """The error for a dead job (of the master at ``master_url``): its failing task's, or
    JobDead when no task failed; a worker that died in a task of ``first`` (a stage, its
    tasks' inputs) names its input."""
    found = _failing_task(events)
    if found is None:
        return JobDead(
            f"job {jobname!r} is dead without a task error: it was killed, or purged (all "
            f"its events: `{command_line(f'events {jobname}', master_url)}`); its last events: "
            f"{_last_events(events) or 'none'}",
            jobname=jobname,
            events=dead.events,
        )
    stage, taskid, _ = found
    error = _task_error(events, found, f"job {jobname!r} failed in task {stage}:{taskid}", first)
    error.jobname = jobname
    error.args = (f"{error}; the master's last events: {_last_events(events)}",)
    return error


def _task_error(
    events: list[MasterEvent],
    found: tuple[str, int, str],
    why: str,
    first: tuple[str, list[list[str]]] | None = None,
) -> TaskFailed:
    """The error of the task ``found`` (its stage, its id and its last error's text), as
    the events tell it: the worker's report, or how its worker died."""
    stage, taskid, text = found
    code = None if MARKER in text else _exit_code(events, stage, taskid)
    if code is None:
        error = task_failed(text, stage=stage, taskid=taskid, why=why)
    else:
        read = first[1][taskid] if first and first[0] == stage and taskid < len(first[1]) else []
        error = worker_died(code, stage=stage, taskid=taskid, inputs=tuple(read[:1]), why=why)
    error.args = (f"{error}{_file_hint(text)}",)
    return error


def _failing_task(
    events: list[MasterEvent], task: tuple[str, int] | None = None
) -> tuple[str, int, str] | None:
    """(stage, taskid, text) of the last failure of ``task`` (else of the task the master
    last named failing: the one that killed the job, not one an error retried before),
    from the errors of its last attempt, its worker's own report preferred."""
    task = task or _last_failing(events)
    if task is None:
        return None
    attempts: list[list[tuple[str, ...]]] = [[]]
    for _, _, message in events:
        if (m := _RETRY_EVENT.match(message)) and (m.group(1), int(m.group(2))) == task:
            attempts.append([])  # the errors after it are the next attempt's
        elif (m := TASK_ERROR.fullmatch(message)) and (m.group(2), int(m.group(3))) == task:
            attempts[-1].append(m.groups())
    found = next((attempt for attempt in reversed(attempts) if attempt), [])
    reports = [f for f in found if MARKER in f[3]]
    if not (reports or found):
        return None
    _, stage, taskid, text = (reports or found)[-1]
    return stage, int(taskid), text


_FAILING = re.compile(r"(?:WARNING|FATAL|ERROR): \[(\S+):(\d+)\] ")


def _last_failing(events: list[MasterEvent]) -> tuple[str, int] | None:
    """The task the master last named in an error (its last words on a dead job's)."""
    for _, _, message in reversed(events):
        if match := _FAILING.match(message):
            return match.group(1), int(match.group(2))
    return None


def _exit_code(events: list[MasterEvent], stage: str, taskid: int) -> int | None:
    """The exit code the node last gave for task ``stage:taskid``'s worker dying, if any."""
    codes = [
        int(m.group(1))
        for _, _, message in events
        if message.startswith(f"WARNING: [{stage}:{taskid}] Worker crashed!")
        and (m := _CRASH.search(message))
    ]
    return codes[-1] if codes else None


def _file_hint(text: str) -> str:
    """What to do when a node could not read a local file sent as a ``file://`` URL."""
    match = _FILE_URL.search(text)
    if "DataError" not in text or match is None:
        return ""
    return (
        f"; a node could not read {match.group(1)}: local files reach the cluster as file:// "
        "URLs, so every node must see them at that path: pass push_inputs=True "
        "(--push-inputs) to upload them to DDFS, or put them on a shared file system"
    )


def _last_events(events: list[MasterEvent], count: int = 3) -> str:
    """The master's last words on the job (task errors and MSG lines left out), on one line."""
    lines = [
        message.splitlines()[0][:160]
        for _, _, message in events
        if message and not (TASK_ERROR.fullmatch(message) or TASK_MSG.fullmatch(message))
    ]
    return " | ".join(lines[-count:])


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def results_of(cluster: Cluster, jobname: str) -> Results:
    """The results of a job that is ready; the error its status means if it is not (yet).
    A job said dead whose log ends READY is asked again (see _ready_after_all)."""
    try:
        urls = cluster.master.results_of(jobname)
    except NoSuchJob as exc:
        tell_saved(cluster, jobname, exc)
        raise
    except JobDead:
        ready = _ready_after_all(cluster, jobname, cluster.master.events(jobname, num=5)[::-1])
        if ready is None:
            raise
        urls = ready
    return _results(cluster, jobname, urls, {})


def _results(
    cluster: Cluster, jobname: str, urls: list[list[str]], counters: dict[str, int]
) -> Results:
    """Results read over HTTP; a save_results ``tag://`` becomes the tag's blobs (a
    TagNotFound saying so if that tag was deleted)."""
    try:
        expanded = resolve_inputs(urls, cluster.ddfs)
    except TagNotFound as exc:
        if exc.tag != saved_tag(jobname):
            raise
        raise TagNotFound(
            f"job {jobname!r} is ready, but the results it saved (DDFS tag {exc.tag}) were "
            "deleted: run the job again to have them",
            tag=exc.tag,
        ) from exc
    node = client_node(cluster.settings)
    stages = functools.partial(_stage_urls, cluster.settings, jobname)
    return Results(
        jobname,
        expanded,
        node=node,
        mode="cluster",
        counters=counters,
        stages=stages,
        master=cluster.url,
    )


def results_in(cluster: Cluster, tag_or_url: str) -> Results:
    """The records of a DDFS tag's blobs (``NAME`` or ``tag://NAME``, a save_results job's
    ``disco:results:JOB`` say), or of one record file's URL, as results read over HTTP."""
    if "://" not in tag_or_url:
        tag_or_url = f"tag://{check_name(tag_or_url)}"
    blobs = resolve_inputs([tag_or_url], cluster.ddfs)
    name = tag_or_url.removeprefix("tag://")
    node = client_node(cluster.settings)
    return Results(name, blobs, node=node, mode="cluster", master=cluster.url)


def saved_tag(jobname: str) -> str:
    """The DDFS tag a ``save_results`` job's results are in, as its master names it."""
    return f"disco:results:{jobname}"


def _stage_urls(settings: DiscoSettings, jobname: str, stage: str) -> list[list[str]]:
    """A finished stage's outputs, as the master gives them (``get_stageresults``); a
    JobError naming the job's stages if it has none of that name."""
    with _connect(settings) as cluster:
        return resolve_inputs(stage_results(cluster.master, jobname, stage), cluster.ddfs)


def stage_results(
    master: Master, jobname: str, stage: str, asking: Callable[[str], str] | None = None
) -> list[list[str]]:
    """A finished stage's outputs, as the master gives them; a JobError naming the job's
    stages (and how to ask for one: ``asking``) if it has none of that name."""
    try:
        return master.stageresults(jobname, stage)
    except ClientError:
        with contextlib.suppress(ClientError):  # the job is gone: its error stands
            pipeline = master.jobinfo(jobname)["pipeline"]
            check_stage_name(jobname, [str(row[0]) for row in pipeline], stage, asking)
        raise


def tell_saved(cluster: Cluster, jobname: str, unknown: NoSuchJob) -> None:
    """Add to ``unknown`` (the master knows no job ``jobname``) where that job's results are
    if it saved them (``save_results=True``): DDFS keeps their tag after the job is purged."""
    tag = saved_tag(jobname)
    with contextlib.suppress(ClientError):  # then the error is what it was
        if tag not in cluster.ddfs.list_tags(tag):
            return
        unknown.args = (
            f"{unknown.args[0]}; its saved results are in DDFS: inputs=['tag://{tag}'] reads "
            f"them, as a job's inputs, Results.of_tag({tag!r}) in Python, and "
            f"`{command_line(f'ddfs xcat {tag}', cluster.url)}` prints them "
            f"(`{command_line(f'ddfs rm {tag}', cluster.url)}` removes them)",
            *unknown.args[1:],
        )


def job_named(cluster: Cluster, text: str) -> str:
    """The job ``text`` names: ``@`` the newest job, ``@?TEXT`` the newest whose name
    contains TEXT (as Disco's command line takes them), else ``text`` itself."""
    if text == "@":
        return latest_job(cluster)
    if text.startswith("@?"):
        return latest_job(cluster, text[2:])
    return text


def latest_job(cluster: Cluster, contains: str = "") -> str:
    """The newest job's name (whose name contains ``contains``): Disco's ``@`` and ``@?text``."""
    for _, _, name in cluster.master.joblist():
        if contains in name:
            return name
    which = f" whose name contains {contains!r}" if contains else ""
    raise NoSuchJob(f"the master at {cluster.url} has no job{which}", jobname=contains)


def _as_listed(url: str, node: Node) -> str:
    """A file an index lists, as a cluster job gets it: as listed, but a file of this
    machine's local node as a ``file://`` URL."""
    return indexes.readable_here(url, node) if node.disco_data else url
