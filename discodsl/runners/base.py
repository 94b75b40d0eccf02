"""The runner template: what every runner does around its own work, done once, here.

:class:`Runner` is the template the three runners (inline, local, cluster)
fill in: ``submit()`` calls :meth:`Runner.prepare`, which validates the options
once, builds the :class:`~discodsl.worker.spec.JobSpec` once and resolves the
inputs to replica lists once (:func:`discodsl.sources.resolve`) into a
:class:`Plan`; then the runner's own ``_launch(plan, run)`` names and submits
the run and gives back the work that finishes it, which the
:class:`~discodsl.runners.handle.Run` does in a thread of its own (local,
cluster) or at once (inline: :attr:`Runner.background`). ``run()`` is
``submit().wait()``. Inputs that are runs (a chain) are waited for in the
new run's thread, and only then resolved. With ``cache=True`` the plan also
holds the run's stage keys and what an earlier identical run left to reuse
(:mod:`discodsl.caching`): all of it serves the run at once
(:meth:`Runner._serve`), some of it makes the runner resume after it.
:class:`JobFiles` holds a run's temporary files (removed at once when the run
fails, else by the results' cleanup); :class:`Counters` sums the counters
stage code reports, fed by the same events as the progress bar.

What it does not hold: choosing a runner (:func:`discodsl.runners.choose`),
showing progress (:mod:`discodsl.runners.progress`), or any runner's own work.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import TYPE_CHECKING, Any

from discodsl import sources
from discodsl.errors import JobActive, JobError, SettingsError
from discodsl.options import validate_options
from discodsl.runners.layout import LOCAL_HOST, this_node
from discodsl.stdio import notice
from discodsl.worker import urls
from discodsl.worker.counters import decode as decode_counts
from discodsl.worker.errors import BadURL
from discodsl.worker.jobfile import HTTP_TIMEOUT_MAX, TIMEOUT_ENV, timeout_seconds
from discodsl.worker.opening import Node

if TYPE_CHECKING:
    from discodsl.caching.reuse import Checkpoint, Keeper
    from discodsl.caching.store import Entry, Output
    from discodsl.indexes import Form, Listed
    from discodsl.model import Inputs, Job
    from discodsl.options import JobOptions
    from discodsl.results import Results
    from discodsl.runners.handle import Run
    from discodsl.settings import DiscoSettings
    from discodsl.worker.spec import JobSpec

# Indexes of indexes expanded, at most: deeper is a loop of indexes (each lists the next).
_INDEX_DEPTH = 8

# A handler of a run's events: ("stage", {stage, tasks}), ("task_done", {stage[, taskid]}),
# ("task_failed", {stage, taskid, failures, ...}), ("task_retry", ...),
# ("msg", {stage, taskid, text}), ("stage_done", {stage, outputs}: a local node's stage ended),
# ("timed_out", {timeout}: a local run passed its timeout=, its workers are being killed).
EventHandler = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Plan:
    """One run, prepared once: the checked options, the job's spec, its inputs' replica
    lists; with ``cache=True``, its stages' keys, what it reuses (``resume``) and when it
    looked for that (``looked``: what other runs keep since then, it does not replace);
    when it was submitted (``submitted``, a ``time.monotonic()``: its ``timeout=`` counts
    from then, its wait for its input runs included)."""

    job: Job
    options: JobOptions
    spec: JobSpec
    inputs: list[list[str]]
    keys: tuple[str, ...] = ()
    resume: Checkpoint | None = None
    looked: float = 0.0
    submitted: float = field(default_factory=time.monotonic)

    def time_left(self) -> float | None:
        """The seconds of its ``timeout=`` left to the run now (None: no timeout)."""
        timeout = self.options.timeout
        return None if timeout is None else timeout - (time.monotonic() - self.submitted)

    @property
    def cache_key(self) -> str | None:
        """The key of the run's last stage (None without ``cache``): its results' identity."""
        return self.keys[-1] if self.keys else None

    @property
    def start(self) -> int:
        """The index of the first stage this run runs (0 unless it resumes)."""
        return 0 if self.resume is None else self.resume.start

    def counters(self) -> Counters:
        """The run's counters, starting from those of the stages it reuses."""
        counters = Counters()
        if self.resume is not None:
            counters.add(self.resume.counters)
        return counters

    def keeper(self, where: str) -> Keeper | None:
        """What keeps this run's stages as they finish, if it caches."""
        if not self.keys:
            return None
        from discodsl.caching.reuse import Keeper

        names = [stage.name for stage in self.spec.stages]
        keys = list(self.keys)
        return Keeper(self.job.name, names, keys, where, started=self.looked, run=self.spec.name)

    def reused(self, stage: str) -> list[list[str]] | None:
        """The kept outputs of a stage this run reuses, as replica lists; None for a stage it
        runs (or one whose outputs are gone)."""
        return None if self.resume is None else self.resume.stage_urls(stage)


class Runner:
    """The template: ``submit()`` prepares the run once, then starts what ``_launch`` gives."""

    #: The runner's name, as ``mode=`` says it.
    mode = ""
    #: The master a run here resolves ``tag://`` inputs through (None: the configured one).
    master: str | None = None
    #: Whether ``submit()`` returns while the job runs (in a thread of this process);
    #: else it runs the job first (inline: breakpoint() and Ctrl-C work as in any code).
    background = True

    def run(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Results:
        """Run ``job`` over ``inputs`` with its options changed by ``overrides``: the
        results, or what the run raised. An exception of the program's own signal handler
        (a SIGALRM deadline, SIGTERM's ``sys.exit``) leaving the wait ends the run, which
        no one else holds, as Ctrl-C ends it."""
        run = self.submit(job, inputs, overrides)
        try:
            return run.wait()
        except (KeyboardInterrupt, JobActive):  # handled, or the wait of a run that goes on
            raise
        except BaseException:
            if not run.ended():  # else its own end: a TaskFailed, a JobDead
                run._on_interrupt()
            raise

    def submit(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Run:
        """Start ``job`` over ``inputs``; its :class:`~discodsl.runners.handle.Run`.

        Runs among ``inputs`` are waited for in the new run's thread, and a
        failed one fails it; options are checked here all the same.
        """
        from discodsl.runners.handle import Run, upstream_runs

        inputs = sources.once(inputs)
        upstream = upstream_runs(inputs)
        if upstream:
            inputs = sources.pinned(inputs)
            self._check_pinned(sources.replica_lists(inputs))
        run = Run(job.name, self.mode, inputs)
        if not upstream:
            run.start(self._begin(self.prepare(job, inputs, overrides), run), self.background)
            return run
        options = self._options(job, overrides)
        spec = self._frozen(job.spec(options)) if self.background else None
        submitted = time.monotonic()

        def chained() -> Results:
            run.await_inputs(upstream, options.timeout, submitted)
            plan = self._plan(job, options, inputs, spec, submitted)
            return self._begin(plan, run)()

        run.start(chained, self.background)
        return run

    @staticmethod
    def _frozen(spec: JobSpec) -> JobSpec:
        """``spec`` as it ships now: a run waiting for its inputs ships its stages' code
        and globals as they were when it was submitted, not when they are ready."""
        from discodsl import shipping

        return shipping.frozen(spec)

    def prepare(self, job: Job, inputs: Inputs, overrides: Mapping[str, Any]) -> Plan:
        """The run's plan: options validated, spec built, inputs resolved, once each."""
        return self._plan(job, self._options(job, overrides), inputs)

    def _options(self, job: Job, overrides: Mapping[str, Any]) -> JobOptions:
        options = self._adapt(validate_options(job.options, **overrides))
        if self.mode != "cluster":  # a cluster run's settings check it as the client's
            _check_http_timeout(options)
        return options

    def _plan(
        self,
        job: Job,
        options: JobOptions,
        inputs: Inputs,
        spec: JobSpec | None = None,
        submitted: float | None = None,
    ) -> Plan:
        listed: Listed = {}
        resolved = sources.resolve_each(inputs, self._master_url(), listed)
        each = [(item, self._here(local_files(found, listed), listed)) for item, found in resolved]
        given = [urls for _, found in each for urls in found]
        spec = _carrying(spec or job.spec(options), [item for item, _ in each])
        plan = Plan(job, options, _listing(spec, listed, given), given)
        if submitted is not None:
            plan = replace(plan, submitted=submitted)
        return self._look_up(plan, each) if options.cache else plan

    def _look_up(self, plan: Plan, each: list[tuple[Any, list[list[str]]]]) -> Plan:
        """The plan with its stage keys, and what an earlier identical run left to reuse.
        The results of a cached run stand in the key as that run's last key, whether they
        were served or made; other inputs by what they resolve to."""
        from discodsl.caching import keys, reuse, store

        store.limit()  # a bad $DISCODSL_CACHE_SIZE is said now, not once a stage is done
        stages = plan.spec.stages
        where = self._where()
        inputs: list[list[str]] = []
        for item, found in each:
            run_key = getattr(item, "cache_key", None)
            inputs.extend([[f"run:{run_key}"]] if run_key else self._identified(found))
        inputs = self._tasks(plan, inputs)  # a per-task stage writes what its tasks read
        try:
            stage_keys = keys.stage_keys(plan.job.name, plan.options, stages, inputs, where)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
            what = "params" if _unkeyable_params(plan.options) else "stages"
            notice(
                f"discodsl: job {plan.job.name!r} runs without the cache: its {what} cannot "
                f"be pickled to key them ({type(exc).__name__}: {exc})"
            )
            return plan
        looked = time.time()
        resume = reuse.look_up(stage_keys, [s.name for s in stages], self._reusable)
        spec = plan.spec if resume is None else _kept_listing(plan.spec, resume)
        return replace(plan, spec=spec, keys=tuple(stage_keys), resume=resume, looked=looked)

    def _begin(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """What finishes the run: the runner's own work, or the cached results at once."""
        if plan.resume is not None:
            notice(plan.resume.notice(plan.job.name))
            if plan.resume.complete:
                return functools.partial(_finished, self._serve(plan, run), plan)
        return functools.partial(_finished, self._launch(plan, run), plan)

    def _serve(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """A run whose every stage is cached: named after the run it came from, it ends
        with that run's results."""
        assert plan.resume is not None
        entry = plan.resume.entry
        run.submitted(entry.run, counters=plan.resume.counters, kill=lambda: None)
        run.log.add("master", f"Results of run {entry.run} reused from the cache")
        return functools.partial(self._served, plan)

    # -- what a runner may change for the cache --------------------------------------------

    def _where(self) -> str:
        """Where this runner's runs run, as cache entries say it."""
        return self.mode

    def _check_pinned(self, inputs: list[list[str]]) -> None:
        """Refuse now what a chained run's inputs, resolved at its submit(), need that is
        not there: for a run on this machine, a master to resolve their tags through."""
        sources.check_tags_here(inputs, self.master)

    def _here(self, inputs: list[list[str]], listed: Listed) -> list[list[str]]:
        """The inputs as this runner's workers read them: an earlier run's ``dir://``
        indexes expanded into their files (into ``listed`` too), and, for a run on this
        machine, a cluster's ``disco://`` files read over HTTP at ``DISCO_PORT`` and tags
        resolved to their blobs through ``master`` or the configured master (the cluster
        runner leaves both to its master and nodes), once, for the key and the run."""
        expanded = self._disco_files_here(self._expanded_whole(inputs, listed), listed)
        resolved = sources.resolve_tags_here(expanded, self.master)
        if resolved is expanded:
            return resolved
        # A tag's entries may be indexes too (an earlier job's results, tagged).
        return self._disco_files_here(self._expanded_whole(resolved, listed), listed)

    def _expanded_whole(self, inputs: list[list[str]], listed: Listed) -> list[list[str]]:
        """``inputs`` with their indexes expanded into the files they list, as listed, and
        those that list indexes expanded again (as a master's client reads them)."""
        for _ in range(_INDEX_DEPTH):
            expanded = self._expanded(inputs, lambda url, node: url, listed)
            if expanded is inputs:
                return inputs
            inputs = expanded
        looped = next((url for replicas in inputs for url in replicas if urls.is_index(url)), "")
        if not looped:  # the last expansion reached the files
            return inputs
        raise JobError(
            f"input index {looped} is still an index after {_INDEX_DEPTH} indexes of indexes: "
            "indexes that list each other in a loop, or nested deeper than a job's results "
            "are: give the indexes of the results themselves"
        )

    def _disco_files_here(self, inputs: list[list[str]], listed: Listed) -> list[list[str]]:
        """``inputs`` with each ``disco://HOST/...`` replica as a worker here reads it: a
        file of this process's local node, or HOST's over HTTP at the configured port (a
        worker's own node knows no other), in ``listed`` too."""
        if not any(url.startswith("disco://") for replicas in inputs for url in replicas):
            return inputs
        from discodsl.indexes import readable_here

        node_of = functools.cache(self._index_node)

        def here(url: str) -> str:
            host, path = urls.split_host(urls.split(url)[1])
            if not (url.startswith("disco://") and host and path):
                return url  # not a disco:// file: the worker says what is wrong with it
            if not path.startswith(("disco/", "ddfs/")):  # as a node refuses it, at once
                raise BadURL(
                    f"{url}: a disco:// path must start with disco/ or ddfs/ (a node's "
                    f"directories), not {path!r}: check the URL",
                    url=url,
                )
            node = node_of(host)
            return urls.proxy_url(readable_here(url, node), node.proxy)

        files = [[here(url) for url in replicas] for replicas in inputs]
        for given, file in zip(chain(*inputs), chain(*files), strict=True):
            if given in listed:
                listed[file] = listed[given]
        return files

    def _expanded(self, inputs: list[list[str]], form: Form, listed: Listed) -> list[list[str]]:
        """``inputs`` with their ``dir://`` indexes expanded (see discodsl.indexes), the
        files they list put in ``listed``."""
        if not any(urls.is_index(url) for replicas in inputs for url in replicas):
            return inputs
        from discodsl import indexes

        self._check_local_indexes(inputs)
        # Each host's node once (reading the settings), however many indexes it has.
        return indexes.expand(inputs, functools.cache(self._index_node), form, listed)

    def _master_url(self) -> str | None:
        """The master this runner's runs know, whose results are given as it lists their
        files (``disco://``, read by a node at its own port, here as ``_here`` reads them)."""
        from discodsl.settings import configured_master

        try:
            return configured_master(self.master)
        except SettingsError:  # said where the master is used
            return None

    def _index_node(self, host: str) -> Node:
        return index_node(host, self.master)

    def _check_local_indexes(self, inputs: list[list[str]]) -> None:
        """A JobError for an index of this process's local runs that is gone (its results
        were closed), saying so rather than which file could not be opened."""
        for url in (url for replicas in inputs for url in replicas if urls.is_index(url)):
            here = _on_this_node(url)
            if here is not None and not os.path.exists(here):
                raise sources.gone(url, another_process=True)

    def _tasks(self, plan: Plan, inputs: list[list[str]]) -> list[list[str]]:
        """The inputs of the first stage's tasks: one per input (Disco's way)."""
        return inputs

    def _identified(self, inputs: list[list[str]]) -> list[list[str]]:
        """The inputs as the cache key takes them (the cluster resolves tags first)."""
        return inputs

    def _reusable(self, entry: Entry) -> list[Output] | None:
        """A kept stage's outputs, if this runner kept them here: its files."""
        return entry.urls() if entry.where == self._where() else None

    def _served(self, plan: Plan) -> Results:
        """The results of a run every stage of which is cached: the kept files."""
        from discodsl.results import Results

        assert plan.resume is not None
        return Results(
            plan.resume.entry.run,
            [urls for _, _, urls in plan.resume.inputs],
            node=Node(),
            mode=self.mode,
            counters=plan.resume.counters,
            cleanup=plan.resume.release,
            stages=functools.partial(reused_stage, plan),
            sizes={url: size for url, (size, _) in _kept_files(plan.resume).items()},
        )

    def _adapt(self, options: JobOptions) -> JobOptions:
        """The runner's own checks and changes of valid options (none here)."""
        return options

    def _launch(self, plan: Plan, run: Run) -> Callable[[], Results]:
        """Name and submit the run (``run.submitted(...)``); the work that finishes it
        (waits for it, reads its results), which ``run`` does in its thread."""
        raise NotImplementedError


def _check_http_timeout(options: JobOptions) -> None:
    """A SettingsError for a DISCODSL_HTTP_TIMEOUT in this process's environment that is no
    timeout, unless ``env=`` sets the workers' own: the workers of a local or inline run read
    it there, and took one that is none for the default (60 s a stall, without a word)."""
    value = os.environ.get(TIMEOUT_ENV)  # empty: unset, as for every setting
    if not value or TIMEOUT_ENV in options.env or timeout_seconds(value) is not None:
        return
    from discodsl.errors import SettingsError

    raise SettingsError(
        f"{TIMEOUT_ENV}={value!r} is not a timeout: set {TIMEOUT_ENV} to a number of seconds "
        f"greater than 0, at most {HTTP_TIMEOUT_MAX:.0f} (the value came from the environment, "
        "where a run's workers read it), or unset it"
    )


def local_files(inputs: list[list[str]], listed: Listed) -> list[list[str]]:
    """``inputs`` with the files of this process's local runs, as their indexes list them
    (``disco://discodsl-local/...``, a host no other machine knows), as ``file://`` URLs,
    which every runner takes as the local files they are (a cluster's pushes them or
    sends them so), in ``listed`` too; a JobError for one that is gone."""
    prefix = f"disco://{LOCAL_HOST}/"
    if not any(url.startswith(prefix) for replicas in inputs for url in replicas):
        return inputs
    return [
        [_local_file(url, listed) if url.startswith(prefix) else url for url in replicas]
        for replicas in inputs
    ]


def _local_file(url: str, listed: Listed) -> str:
    """The ``file://`` URL of a ``disco://discodsl-local/PATH`` file of this process's
    local node, in ``listed`` as ``url`` is; a JobError if it is not there."""
    path = _on_this_node(url)
    if path is None:
        return url  # reading it says what is wrong with it
    if not os.path.isfile(path):
        raise sources.gone(url, another_process=True)
    file = urls.file_url(path)
    if url in listed:
        listed[file] = listed[url]
    return file


def _on_this_node(url: str) -> str | None:
    """Where the file or index ``url`` names is, if it is one of this process's local
    node (host ``discodsl-local``) with a path a node takes; else None."""
    host, path = urls.split_host(urls.split(url)[1])
    if host != LOCAL_HOST:
        return None
    node = this_node()
    try:
        return urls.node_path(path, {"disco": node.disco_data, "ddfs": node.ddfs_data})
    except ValueError:
        return None


def index_node(host: str, master: str | None) -> Node:
    """The node an index of ``host`` is read through: this process's local node for its
    own runs, else ``host`` over HTTP at the ``DISCO_PORT`` of ``master``'s settings."""
    from discodsl.settings import load_settings

    if host == LOCAL_HOST:
        return this_node()
    return client_node(load_settings(DISCO_MASTER=master))


def client_node(settings: DiscoSettings) -> Node:
    """How this machine reads a cluster's files (results, indexes, kept stages) over HTTP:
    at the settings' ``DISCO_PORT``, within ``DISCODSL_HTTP_TIMEOUT``, through
    ``DISCO_PROXY`` when one is set (as Disco's own client reads them)."""
    return Node(
        host="",
        disco_port=settings.DISCO_PORT,
        timeout=settings.DISCODSL_HTTP_TIMEOUT,
        proxy=settings.DISCO_PROXY,
    )


def _finished(work: Callable[[], Results], plan: Plan) -> Results:
    """The results ``work`` gives, knowing their cache key, the stages reused and the
    classes shipped by value that their records may hold."""
    results = work()
    results.cache_key = plan.cache_key
    results.reused = plan.reused
    from discodsl import shipping

    results.carrying = functools.partial(shipping.carried, plan.spec)
    return results


def _kept_listing(spec: JobSpec, resume: Checkpoint) -> JobSpec:
    """``spec`` telling its tasks the sizes of the kept files of the stage it resumes after
    (a file of another size is not the one its task wrote)."""
    return _listing(spec, _kept_files(resume), [list(urls) for _, _, urls in resume.inputs])


def _kept_files(resume: Checkpoint) -> Listed:
    """The files of the stage a run resumes after (not the indexes a cluster's may be),
    with their sizes, and the cache entry that gave them."""
    job, stage = resume.entry.job, resume.entry.stage
    said = (
        f"the cache entry of job {job!r}'s stage {stage!r} (`discodsl cache clear --job "
        f"{job}` drops it)"
    )
    return {
        url: (size, said)
        for _, size, replicas in resume.inputs
        for url in replicas
        if size and not urls.is_index(url)
    }


def _listing(spec: JobSpec, listed: Listed, inputs: list[list[str]]) -> JobSpec:
    """``spec`` telling its tasks the sizes their indexes gave the files among ``inputs``."""
    if not listed:
        return spec
    from discodsl import indexes

    return indexes.listing(spec, listed, inputs)


def _carrying(spec: JobSpec, inputs: list[Any]) -> JobSpec:
    """``spec``, shipping the classes that the records of the results among ``inputs``
    may hold (their jobs shipped them by value): its workers must name them to read those.
    Of a class defined again since (a notebook cell run again), the one its module holds
    now goes, which the job's stages name: a worker gives one class its name."""
    carried = {cls: None for item in inputs for cls in getattr(item, "carried", ())}
    if not carried:
        return spec
    from discodsl import shipping

    given = replace(spec, carried=tuple(carried))
    kept = set(shipping.carried(given))
    return replace(spec, carried=tuple(cls for cls in carried if cls in kept))


def reused_stage(plan: Plan, stage: str) -> list[list[str]]:
    """The outputs of stage ``stage`` of a run served from the cache (every stage is one
    it skipped)."""
    from discodsl.results import check_stage

    check_stage(plan.spec, stage)
    found = plan.reused(stage)
    assert found is not None
    return found


class JobFiles:
    """A run's temporary directories: removed when the ``with`` block ends by an exception
    (the run failed), else kept until :meth:`remove` (the results' cleanup)."""

    def __init__(self, *paths: str):
        self.paths = list(paths)

    def remove(self) -> None:
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.remove()


class Counters:
    """The counters stage code reported, summed from a run's events.

    A task's counts (``msg`` lines starting with the counter prefix) are held
    until the task succeeds (``task_done`` naming its ``taskid``, or
    :meth:`succeeded`) and dropped when an attempt fails (``task_failed``).
    """

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.by_stage: dict[str, dict[str, int]] = {}
        self._pending: dict[tuple[str, int], dict[str, int]] = {}

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "msg":
            self._message(facts)
        elif kind == "task_done" and "taskid" in facts:
            self.succeeded(str(facts["stage"]), int(facts["taskid"]))
        elif kind == "task_failed":
            self._pending.pop((str(facts["stage"]), int(facts["taskid"])), None)

    def clear(self) -> None:
        """Forget every count (to sum a job's events again from its first)."""
        self.totals.clear()
        self.by_stage.clear()
        self._pending.clear()

    def succeeded(self, stage: str, taskid: int) -> None:
        """Task ``stage:taskid`` is done: its counts join the job's."""
        self.add(self._pending.pop((stage, taskid), {}), stage)

    def add(self, counts: Mapping[str, int], stage: str = "") -> None:
        """Add a successful task's ``counts`` (of stage ``stage``) to the job's."""
        of_stage = self.by_stage.setdefault(stage, {})
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value
            of_stage[name] = of_stage.get(name, 0) + value

    def _message(self, facts: Mapping[str, Any]) -> None:
        counts = decode_counts(str(facts.get("text", "")))
        if counts:
            task = (str(facts.get("stage", "")), int(facts.get("taskid", -1)))
            pending = self._pending.setdefault(task, {})
            for name, value in counts.items():
                pending[name] = pending.get(name, 0) + value


def fan_out(*handlers: EventHandler) -> EventHandler:
    """One event handler calling each of ``handlers`` in turn (e.g. counters, then progress),
    one event at a time: a local run's tasks report from threads of their own, and a count
    added or a line printed by two at once could be lost or mixed."""
    lock = threading.RLock()  # a handler that reports an event itself does not deadlock

    def handle(kind: str, facts: Mapping[str, Any]) -> None:
        with lock:
            for handler in handlers:
                handler(kind, facts)

    return handle


def _unkeyable_params(options: JobOptions) -> bool:
    """Whether the job's params are what cannot be pickled to key it (params nested
    deeper than pickle goes), rather than its stages."""
    from discodsl.caching import keys

    try:
        keys._options(options)
    except Exception:
        return True
    return False
