"""A job's results: iterate ``(key, value)`` records, or pass them as inputs of another job.

Lazy: iterating streams the record files (from local disk, or over HTTP from
a cluster) through the worker runtime's own readers; nothing is loaded whole.
``results.stage(name)`` gives any stage's outputs of the same run as results
of their own (the runner says where they are); waiting for results is the
:class:`~discodsl.runners.handle.Run`'s business, not this module's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import importlib
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from discodsl import indexes, interrupts, places
from discodsl.errors import JobError, NoSuchJob, SettingsError
from discodsl.indexes import Listed
from discodsl.jobstatus import command_line
from discodsl.worker.errors import DataError, MalformedRecord, a_type
from discodsl.worker.inputs import Cursor, iter_input
from discodsl.worker.opening import Node
from discodsl.worker.spec import JobSpec, function_stage_name
from discodsl.worker.urls import is_index


def _import_pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError(
            "Results.to_pandas() needs pandas, which is not installed here: "
            "pip install 'discodsl[pandas]' (or iterate the results, or use to_dict())"
        ) from exc


def _expanded(pandas: Any, values: list[Any]) -> Any:
    """A DataFrame of ``values`` spread into columns: all dicts, all instances of one
    NamedTuple or dataclass (by their fields), or all tuples/lists."""
    if not values:  # nothing to spread: a value column, as without expand
        return pandas.DataFrame({"value": []})
    values = _as_fields(values)
    if all(isinstance(v, dict) for v in values):
        return pandas.DataFrame.from_records(values).rename(columns=_keyed_apart(values))
    if all(isinstance(v, (tuple, list)) for v in values):
        width = max((len(v) for v in values), default=0)
        columns = [f"value_{i}" for i in range(width)]
        padded = [[*v, *[None] * (width - len(v))] for v in values]  # shorter rows: missing
        return pandas.DataFrame(padded, columns=columns)
    kinds = ", ".join(sorted({type(v).__name__ for v in values}))
    raise ValueError(
        "to_pandas(expand=True) spreads values that are all dicts, all of one NamedTuple or "
        f"dataclass, or all tuples or lists; these values are of types {kinds}: call "
        "to_pandas() without expand"
    )


def _keyed_apart(values: list[dict[Any, Any]]) -> dict[str, str]:
    """The column of a field named ``key`` renamed ``value_key``, apart from the records'
    key column ({} if no value has one); ValueError if that name is a field's too."""
    if not any("key" in v for v in values):
        return {}
    if any("value_key" in v for v in values):
        raise ValueError(
            "to_pandas(expand=True): the values have fields named 'key' and 'value_key', "
            "and the key column is the records' key: rename one of them, or call to_pandas() "
            "without expand"
        )
    return {"key": "value_key"}


def _as_fields(values: list[Any]) -> list[Any]:
    """``values`` as dicts of their fields if all are of one NamedTuple or dataclass (as
    pandas spreads them), else as they are."""
    kinds = {type(v) for v in values}
    if len(kinds) != 1:
        return values
    kind = kinds.pop()
    fields = getattr(kind, "_fields", None) if issubclass(kind, tuple) else None
    if fields is None and dataclasses.is_dataclass(kind):
        fields = tuple(field.name for field in dataclasses.fields(kind))
    if fields is None:
        return values
    return [{name: getattr(v, name) for name in fields} for v in values]


def _needs_a_class(jobname: str, exc: MalformedRecord) -> MalformedRecord:
    """The error for results whose records need a class this process cannot import (the
    reader's ``exc``, whose advice is for a job reading them)."""
    fix = (
        "a class of the script that ran the job (__main__) is that script's own: define it "
        "in this program too, as it was and under the same name, or in a module that both "
        "import"
        if "__main__" in exc.needed
        else "run this program where the class's module imports (its directory, or that "
        "directory on PYTHONPATH)"
    )
    fix = _held_under_another_name(exc.needed) or fix
    error = MalformedRecord(
        f"the records of {jobname!r} need a class this process cannot import ({exc.needed}): {fix}",
        url=exc.url,
        span=exc.span,
    )
    error.needed = exc.needed
    return error


def _held_under_another_name(needed: str) -> str:
    """The fix when the class a record names is this script's, held under another name
    than the one it was made with (``Point = namedtuple("Pt", ...)``), where pickle finds
    it; "" if it is not."""
    missing = re.search(r"Can't get attribute '(\w+)' on <module '__main__'", needed)
    main = sys.modules.get("__main__")
    if missing is None or main is None:
        return ""
    name = missing.group(1)
    held = [k for k, v in vars(main).items() if isinstance(v, type) and v.__qualname__ == name]
    if not held:
        return ""
    return (
        f"this script holds the class made as {name!r} under the name {held[0]!r}, and pickle "
        f"finds a class by the name it was made with: make it as {held[0]!r} (e.g. "
        f"{held[0]} = namedtuple({held[0]!r}, ...)) and run the job again"
    )


def _main_classes() -> tuple[type, ...]:
    """The classes the program's script defines, which a job that wrote records in another
    process (or an earlier run of the script) may have named: carried to the next job, as a
    run's results carry those of its own job (those that pickle: a record's class does)."""
    main = sys.modules.get("__main__")
    found = vars(main).values() if main is not None else ()
    defined = (v for v in found if isinstance(v, type) and v.__module__ == "__main__")
    from discodsl.shipping import pickles

    return tuple(kind for kind in defined if pickles(kind))


def _check_name(given: Any, takes: str, run: str) -> None:
    """JobError, saying ``takes`` and what was given, unless ``given`` is a name (text);
    ``run`` says what to do with a Run or its Results."""
    from discodsl.runners.handle import Run

    if isinstance(given, str) and given:
        return
    if isinstance(given, (Run, Results)):
        said = f"{a_type(given)}: {run}"
    else:
        said = repr(given) if isinstance(given, str) or given is None else a_type(given)
    raise JobError(f"{takes}, not {said}")


def check_stage(spec: JobSpec, stage: str) -> None:
    """JobError unless ``stage`` names a stage of the job ``spec`` describes."""
    check_stage_name(spec.name, [s.name for s in spec.stages], stage)


def check_stage_name(
    job: str, names: list[str], stage: str, asking: Callable[[str], str] | None = None
) -> None:
    """JobError unless ``stage`` is one of ``names``, the stages of ``job`` (the example
    asks for its first as ``asking`` writes it, ``results.stage(NAME)`` by default)."""
    if stage not in names:
        ask = asking or (lambda name: f"results.stage({name!r})")
        example = f"; write e.g. {ask(names[0])}" if names else ""
        raise JobError(
            f"job {job!r} has no stage {stage!r}: its stages are {', '.join(names)}{example}"
        )


def _stage_name(stage: str | Any) -> str:
    """The name a stage is asked for by: itself, or a stage's (a declared stage is named
    so); a TypeError for anything else."""
    name = stage if isinstance(stage, str) else getattr(stage, "spec", None)
    name = getattr(name, "name", name)
    if not isinstance(name, str):
        raise TypeError(
            f"results.stage() takes a stage's name or the stage, not {type(stage).__name__}: "
            "write e.g. results.stage('words'), or results.stage(words)"
        )
    return function_stage_name(name) if name else name  # its function's: zählen, zahlen


def _local(jobname: str) -> str:
    """What to add to the error for ``jobname`` asked of a master when it names a local
    run of this machine; else ""."""
    from discodsl.runners import registry

    if not registry.registered(jobname):
        return ""
    return (
        f"; {jobname!r} is a local run of this machine, whose results went to the process "
        "that ran it (and its files with them): keep a run's results in that process, or "
        "run it with cache=True to have them served again"
    )


class Results:
    """The results of one run of a job."""

    def __init__(
        self,
        jobname: str,
        urls: list[list[str]],
        *,
        node: Node,
        mode: str,
        counters: dict[str, int] | None = None,
        cleanup: Callable[[], None] | None = None,
        stages: Callable[[str], list[list[str]]] | None = None,
        master: str | None = None,
        sizes: dict[str, int] | None = None,
    ):
        self.jobname = jobname
        self.urls = urls
        # The sizes of the run's files that no index lists (an inline run's), which reading
        # them checks, as an index's are.
        self.sizes = sizes or {}
        self.node = node
        self.mode = mode
        self.master = master  # a cluster run's master: where its files stay
        self.counters = dict(counters or {})
        # Not in a child forked from this process: the files are its parent's.
        self._remove = places.in_this_process(cleanup) if cleanup else None
        self._finalizer = (
            weakref.finalize(self, interrupts.kept_for_the_program(self._remove))
            if self._remove
            else None
        )
        if self._finalizer is not None:
            # At exit after the program's exit hooks, which may read them, not before.
            places.at_the_end(self._finalizer)
        self.closed = False
        self._held = 0  # runs reading these results now: close() leaves them the files
        self._lock = threading.Lock()
        self.stage_name: str | None = None  # set on the results of one stage (stage())
        self._stages = stages  # a stage's name -> its outputs' replica lists
        self._run: Results | None = None  # a stage's: the run's results, holding the files
        # With cache=True: the key of the run's last stage (as an input of a cached run,
        # these results stand for it: discodsl.caching.keys), and the outputs of the
        # stages it reused from the cache, which its runner does not hold.
        self.cache_key: str | None = None
        self.reused: Callable[[str], list[list[str]] | None] = lambda stage: None
        # What gives ``carried``, asked only when these results are another job's inputs.
        self.carrying: Callable[[], tuple[type, ...]] = tuple

    @classmethod
    def of_job(
        cls, jobname: str, *, master: str | None = None, timeout: float | None = None
    ) -> Results:
        """The results of the job ``jobname`` (``@``: the newest, ``@?TEXT``: the newest
        whose name holds TEXT) on a Disco master (``master``, else the one configured), once
        it is ready: a program that submitted it and ended, or another
        one, reads them so (and passes them to the next job). Waits up to ``timeout``
        seconds (None: as long as it takes), raising what ``wait()`` raises: JobActive,
        TaskFailed or JobDead for a job that failed, NoSuchJob for a name the master does
        not know."""
        from discodsl.runners.cluster import Cluster, job_named, wait_for
        from discodsl.settings import configured_master

        _check_name(
            jobname,
            "Results.of_job() takes a job's name (@: the newest job; @?TEXT: the newest "
            "whose name holds TEXT)",
            "a run's results are run.wait() (pass them as another job's inputs as they are); "
            "of_job() reads a cluster job's in another program, by its name (run.jobname)",
        )
        if configured_master(master) is None:
            raise SettingsError(
                f"no Disco master is configured to ask for job {jobname!r}: pass master=URL, "
                f"or set DISCO_MASTER (in the environment, or in ~/.disco){_local(jobname)}"
            )
        with Cluster.connect(master) as cluster:
            try:
                named = job_named(cluster, jobname)
                results = wait_for(cluster, named, timeout=timeout, progress=False, replay=False)
            except NoSuchJob as exc:
                exc.args = (f"{exc.args[0]}{_local(jobname)}", *exc.args[1:])
                raise
        results.carrying = _main_classes  # what its records may name: the program's own
        return results

    @classmethod
    def of_tag(cls, tag: str, *, master: str | None = None) -> Results:
        """The records of the DDFS tag ``tag`` (``NAME`` or ``tag://NAME``: a
        ``save_results`` job's ``disco:results:JOB``, which stays after the job is purged),
        its blobs record files, on a Disco master (``master``, else the one configured);
        TagNotFound if there is no such tag."""
        from discodsl.runners.cluster import Cluster, results_in
        from discodsl.settings import configured_master

        _check_name(
            tag,
            "Results.of_tag() takes a DDFS tag's name",
            "a run's results are run.wait(); a save_results job's are in the tag "
            "disco:results:JOB (f'disco:results:{run.jobname}')",
        )
        if configured_master(master) is None:
            raise SettingsError(
                f"no Disco master is configured to read DDFS tag {tag!r} from: pass "
                "master=URL, or set DISCO_MASTER (in the environment, or in ~/.disco)"
            )
        with Cluster.connect(master) as cluster:
            results = results_in(cluster, tag)
        results.carrying = _main_classes
        return results

    def stage(self, name: str | Any) -> Results:
        """The outputs of stage ``name`` (or of the stage itself: ``results.stage(words)``)
        of this finished run, as results of their own: any stage's, read as Disco's
        ``get_stageresults`` gives them (a map's partitioned, combined pairs; the last
        stage's are these results). They share these results' files: read them before
        these are closed."""
        name = _stage_name(name)
        self._check_open()  # gone at exit too: what lists a local run's stages went with them
        if self._stages is None:
            raise JobError(
                f"the results of {self.jobname!r} do not know their run's stages (they are "
                "a stage's already): ask the run's own results, run.results().stage(name)"
            )
        urls = self.reused(name)
        if urls is None:
            urls = self._stages(name)
        found = Results(
            self.jobname, urls, node=self.node, mode=self.mode, master=self.master, sizes=self.sizes
        )
        found.stage_name, found._run, found.carrying = name, self, self.carrying
        return found

    @functools.cached_property
    def carried(self) -> tuple[type, ...]:
        """The classes shipped by value with the run's job (and those its inputs carried):
        a job reading these records ships them too, so that its workers can name them."""
        return self.carrying()

    def __reduce__(self) -> Any:
        if self.mode == "cluster":
            command = command_line(f"results {self.jobname}", self.master or "URL")
            of = f"Results.of_job({self.jobname!r}, master={self.master or 'URL'!r})"
            of += f".stage({self.stage_name!r})" if self.stage_name else ""
            raise TypeError(
                f"the results of {self.jobname!r} cannot be pickled: they are this process's "
                "reading of the master's files, which stay there until the job is purged; "
                "pass the records themselves (e.g. list(results)), results.listed_urls() "
                f"(inputs for a job on that cluster), or the job's name, whose results {of} "
                f"or `{command}` read again"
            )
        raise TypeError(
            f"the results of {self.jobname!r} cannot be pickled: they stand for files this "
            "process removes when it is done with them; pass the records themselves (e.g. "
            "list(results)), or results.record_urls(), inputs for another job, while these "
            "are held"
        )

    def __copy__(self) -> Results:
        raise TypeError(
            f"the results of {self.jobname!r} cannot be copied: they stand for files, which "
            "each iteration reads again; iterate them twice, or copy their records "
            "(list(results))"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Results:
        return self.__copy__()

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._check_open()
        listed = self._sized({})
        try:
            for replicas in self.urls:
                yield from iter_input(replicas, "all", self.node, Cursor(), listed=listed)
        except MalformedRecord as exc:
            if not exc.needed:  # the record's own advice is for a job reading them
                raise
            raise _needs_a_class(self.jobname, exc) from exc
        except DataError as exc:
            # Closed (or removed at exit) while being read: say that, not which file.
            closed = self._closed_error() or self._gone_at_exit()
            if closed is not None:
                raise closed from None
            if self.mode == "cluster" and exc.status == 404 and self._job_gone():
                raise JobError(  # a node's 404 on a purged job's files: they went with it
                    f"the results of {self.jobname!r} are gone: the master knows the job no "
                    f"more (it was purged), and its node answered 404 for {exc.url}: run the "
                    "job again"
                ) from exc
            if self.cache_key is not None and exc.args:  # re-running serves them again
                job = self.jobname.partition("@")[0]
                exc.args = (
                    f"{exc.args[0]}; these results are kept in the cache, which serves them to "
                    f"the job's next runs: remove them (`discodsl cache clear --job {job}`), "
                    "or run it with cache=False",
                    *exc.args[1:],
                )
            raise

    def _job_gone(self) -> bool:
        """Whether the master of these cluster results knows their job no more (asked only
        once a read of them found no file)."""
        from discodsl.client import Master
        from discodsl.errors import ClientError, NoSuchJob

        if self.master is None:
            return False
        try:
            with Master(self.master, retries=0) as master:
                master.jobinfo(self.jobname)
        except NoSuchJob:
            return True
        except ClientError:
            return False
        return False

    def record_urls(self, listed: Listed | None = None) -> list[list[str]]:
        """The record files of these results, each a replica list: inputs for another job.

        Files on this machine (a local run's) are given as ``file://`` URLs, so
        any runner here can read them, whichever runner wrote them. They last
        as long as these results: keep them referenced, and open, until the
        jobs reading the URLs have run (or pass the results themselves).
        Each goes into ``listed`` too, with the size its index gives.
        """
        node = self.node
        # Each as any runner here reads it, as Disco's own client reads results.
        return self._expanded(lambda url, _: indexes.readable_here(url, node), listed)

    def listed_urls(self, listed: Listed | None = None) -> list[list[str]]:
        """The record files of these results as their master lists them (a cluster's
        ``disco://HOST/...``, which its nodes read at their own port), each a replica list:
        the inputs a job on that cluster is given; each in ``listed`` too, with its size."""
        return self._expanded(lambda url, _: url, listed)

    def _expanded(self, form: indexes.Form, listed: Listed | None) -> list[list[str]]:
        # A run holding them reads them, closed or not, but for files removed before.
        if self._files_removed() or not self._held_by_a_run():
            self._check_open()
        node = self.node
        if listed is not None:
            self._sized(listed)
        return indexes.expand(self.urls, lambda host: node, form, listed)

    def _sized(self, listed: Listed) -> Listed:
        """``listed`` with the files of ``sizes`` among these results (their reading checks
        them)."""
        said = f"the {self.mode} run {self.jobname!r} that wrote it"
        for url in (url for replicas in self.urls for url in replicas if url in self.sizes):
            listed[url] = (self.sizes[url], said)
        return listed

    def _files_removed(self) -> bool:
        """Whether closing these results (or their run's) has removed their files."""
        owner = self._run or self  # a stage's files are its run's
        return owner._finalizer is not None and not owner._finalizer.alive

    def _gone_at_exit(self) -> JobError | None:
        """The error of reading these results once discodsl removed their files at the
        program's end (an exit hook that runs after its own reads them), else None."""
        if not (self._files_removed() and places.removed_at_exit()):
            return None
        return JobError(
            f"the results of {self.jobname!r} are gone: discodsl removed their files at the "
            "program's end, before this exit hook ran (a hook registered before discodsl was "
            "imported runs after discodsl's own): register it after `import discodsl`"
        )

    def _held_by_a_run(self) -> bool:
        owner = self._run or self  # a stage's files are its run's
        with owner._lock:
            return owner._held > 0

    def _check_open(self) -> None:
        """Raise what reading these results meets if they were closed, or their files
        removed at the program's end."""
        closed = self._closed_error() or self._gone_at_exit()
        if closed is not None:
            raise closed

    def _closed_error(self) -> JobError | None:
        """The error reading these results meets if they (or their run's) were closed."""
        if not (self.closed or (self._run is not None and self._run.closed)):
            return None
        if self.mode == "cluster":  # its files stay on the master until the job is purged
            command = command_line(f"results {self.jobname}", self.master or "URL")
            return JobError(
                f"the results of {self.jobname!r} were closed: read them before close() (or "
                "the end of their `with` block); the job's files stay on its master until it "
                f"is purged: `{command}` prints them"
            )
        return JobError(
            f"the results of {self.jobname!r} were closed, which removed their files: "
            "read them before close() (or the end of their `with` block), or run the "
            "job again"
        )

    def to_dict(self) -> dict[Any, Any]:
        """All records as a dict (a later value of a repeated key wins)."""
        return dict(self)

    def to_pandas(self, *, expand: bool = False) -> Any:
        """All records as a pandas DataFrame, one row per record, in the order read.

        Its columns are ``key`` and ``value``. With ``expand=True``, ``dict``
        values spread into one column per dict key (first seen first; missing
        ones NaN), values all of one NamedTuple or dataclass into one per field,
        and ``tuple`` or ``list`` values into ``value_0``, ``value_1``, ...; the
        ``key`` column comes first (a field named ``key`` is ``value_key``). Needs pandas
        (``pip install 'discodsl[pandas]'``); the records are read into memory.
        """
        pandas = _import_pandas()
        keys, values = [], []
        for key, value in self:
            keys.append(key)
            values.append(value)
        if not expand:
            return pandas.DataFrame({"key": keys, "value": values}, columns=["key", "value"])
        frame = _expanded(pandas, values)
        frame.insert(0, "key", keys)
        return frame

    def close(self) -> None:
        """Remove the files behind these results (a local run's; a cluster job's stay on the
        master until it is purged); iterating afterwards fails.
        Runs reading them (given them as inputs) keep the files until they end."""
        self.closed = True
        with self._lock:
            held = self._held
        if not held:
            self._remove_files()

    def hold(self) -> Callable[[], None]:
        """Keep the files while a run reads them, whoever closes these results meanwhile;
        the function that lets them go (files closed meanwhile go then)."""
        owner = self._run or self  # a stage's files are its run's
        with owner._lock:
            owner._held += 1
        return functools.partial(owner._release, [False])

    def _release(self, done: list[bool]) -> None:
        with self._lock:
            if done[0]:
                return
            done[0] = True
            self._held -= 1
            remove = self.closed and not self._held
        if remove:
            self._remove_files()

    def _remove_files(self) -> None:
        """Remove the files now, once: what a signal's handler raises meanwhile reaches the
        caller (the finalizer's handling of it is for the collector's call), the files gone."""
        if self._remove is None or self._finalizer is None or not self._finalizer.detach():
            return
        try:
            self._remove()
        except BaseException:
            with contextlib.suppress(Exception):
                self._remove()  # the rest of what the handler cut short
            raise

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        counters = f", counters {self.counters}" if self.counters else ""
        return (
            f"<Results of {self.jobname!r}{self._of_stage()} ({self.mode}): "
            f"{self._files()}{counters}>"
        )

    def _files(self) -> str:
        """How many files the results are, in words: a task's index lists its files, which
        are read only when asked for (no I/O in a repr)."""
        listed = sum(1 for replicas in self.urls if replicas and is_index(replicas[0]))
        files = f"{len(self.urls) - listed} result file(s)"
        if not listed:
            return files
        more = f" and {files}" if len(self.urls) > listed else ""
        return f"{listed} task index(es) of result files{more}"

    def _of_stage(self) -> str:
        return f" stage {self.stage_name!r}" if self.stage_name else ""

    def _repr_html_(self) -> str:
        counters = "".join(
            f"<li><code>{html.escape(k)}</code>: {v}</li>" for k, v in sorted(self.counters.items())
        )
        return (
            f"<b>Results of <code>{html.escape(self.jobname)}</code></b> ({self.mode}), "
            f"{self._files()}" + (f"<ul>{counters}</ul>" if counters else "")
        )
