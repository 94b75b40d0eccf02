"""A run you can hold: what ``Job.submit()`` returns at once, while the job runs.

:class:`Run` is one run of a job on any runner: its ``status`` (``"active"``,
``"ready"``, ``"dead"``), :meth:`Run.wait` for its
:class:`~discodsl.results.Results` (raising what ``Job.run()`` raises),
:meth:`Run.results` without waiting, :meth:`Run.events` as a Disco master
words them, :meth:`Run.kill` and its ``counters``. A Run given as
``inputs=`` of another ``submit()`` makes that run wait for it: a chain,
whose later runs fail naming the first failure. :class:`EventLog` words a
runner's events as a Disco 0.5.4 master does (disco-reference rawevents), for
the runs no master words (inline, local).

Where a run's work happens is the runner template's business
(:meth:`discodsl.runners.base.Runner.submit`: a thread of this process, or
the calling thread inline); the on-disk registry that lets another process
watch a local run is :mod:`discodsl.runners.registry`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from textwrap import shorten
from types import TracebackType
from typing import TYPE_CHECKING, Any

from discodsl import interrupts
from discodsl.errors import InputRunFailed, JobActive, JobDead, JobError
from discodsl.jobstatus import Event, command_line, wait_limit
from discodsl.runners.progress import final
from discodsl.runners.threads import in_this_context
from discodsl.stdio import warn
from discodsl.worker.messages import EVENT_TEXT_LIMIT

if TYPE_CHECKING:
    from discodsl.indexes import Listed
    from discodsl.results import Results

__all__ = ["Event", "EventLog", "Run", "upstream_runs"]


# How often a chained run that waits for its inputs looks whether it was killed (seconds).
KILL_CHECK = 0.1
# Seconds into the stop that Ctrl-C begins that a signal is held for it (a second Ctrl-C, a
# SIGTERM sent twice); past them, one cuts the stop short.
STOP_GRACE = 2.0
# How long wait() lets a run interrupted by Ctrl-C clean up before re-raising (seconds).
CLEANUP_WAIT = 30.0
# How long the waiting thread sleeps at a time: a signal taken by another thread (the
# kernel may give a process's SIGINT to any) runs its handler when the main thread wakes.
AWAKE = 0.1


class Run:
    """One run of a job, started by ``job.submit(inputs, ...)``; ``run()`` is ``submit().wait()``.

    ``jobname`` is the run's name once its master named it (local and
    cluster: ``<prefix>@<time>``; inline: the job's name), ``job`` the
    job's, ``mode`` the runner's. A run ends with the process that
    submitted it (cluster jobs run on; the process names, as it ends, each run
    it ends); wait for it before that process ends.
    It holds its ``inputs`` until it ends, so earlier results among them keep
    their files while its tasks read them, whoever else drops them.
    """

    def __init__(self, job: str, mode: str, inputs: Any = None):
        self.job, self.mode, self.jobname = job, mode, job
        self._pid = os.getpid()  # the process the run goes on in (a fork's copy does not)
        self.log = EventLog()
        self._ended = threading.Event()
        self._killed = threading.Event()
        self._outcome: Results | BaseException | None = None
        self._told: object = None  # the outcome a wait() or results() gave last
        self._heard = False  # its failure was given (wait(), results()) or seen (status)
        self._traceback: TracebackType | None = None
        self._counters: Mapping[str, int] = {}
        self._master = ""  # the URL of the master it runs on (a cluster run's)
        self._kill: Callable[[], None] | None = None
        self._interrupt: Callable[[], None] | None = None
        self._events: Callable[[], list[Event]] | None = None
        self._resume: Callable[[], Results] | None = None
        self._interrupts = 0  # Ctrl-Cs that stopped a wait() (and a cluster job's watch)
        self._stop_told = False  # Ctrl-C stopped it, and said how it goes on
        self._at_exit = False  # the program's end stopped it (a local run)
        # Reentrant: a signal handler may call status or kill() while its thread is inside.
        self._resuming = threading.RLock()
        self._on_end: list[Callable[[Run], None]] = []
        self._chained: weakref.WeakSet[Run] = weakref.WeakSet()  # the runs that wait for it
        # Taken to start the run's end (its holds let go, its callbacks called) or to add
        # to them: a hold or callback comes before that end, or is seen to come after it.
        self._end_lock = threading.Lock()
        # Its outcome is there: status and results() say it, from its end's start (its
        # callbacks see it); wait() returns once the end is over (_ended).
        self._ending = False
        # Held until the run ends: results and runs among them keep their files meanwhile,
        # even results closed meanwhile (their files go once no run reads them).
        self._inputs = inputs
        self._releases: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    # -- what users call ----------------------------------------------------------------

    @property
    def status(self) -> str:
        """``"active"`` until the run ends, then ``"ready"`` or ``"dead"``; ``"dead"`` from
        the moment it is killed. As :meth:`results` finds it: ready, its results are there."""
        self._check_process()
        self._watch_again()
        if not self._ending or isinstance(self._outcome, JobActive):
            # JobActive: the master's job outlived our watch (cluster timeout=, Ctrl-C)
            return "dead" if self._killed.is_set() else "active"
        if isinstance(self._outcome, BaseException):
            # Heard of, once it has ended: its end's own callbacks (the registry's) read it before.
            self._heard = self._heard or self._ended.is_set()
            return "dead"
        return "ready"

    @property
    def counters(self) -> dict[str, int]:
        """The counters of the run's successful tasks so far (all of them once it is ready)."""
        return dict(self._counters)

    def wait(self, timeout: float | None = None) -> Results:
        """The run's results once it is ready; what ``run()`` raises if it died
        (:class:`~discodsl.errors.TaskFailed` ..., :class:`~discodsl.errors.JobDead` when
        killed); :class:`~discodsl.errors.JobActive` if it is still active after ``timeout``
        seconds (it runs on). Ctrl-C here kills a local run (a cluster job runs on, unless
        ``kill_on_interrupt``) and re-raises KeyboardInterrupt."""
        timeout = wait_limit(timeout)
        self._check_process()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._timed_out_unsaid():  # the run's own timeout=: as run() would raise it
                return self._result()
            self._stop_told = False  # waited for again: the program's end tells what it ends
            self._watch_again()
            interrupts = self._interrupts
            try:
                ended = _wait_awake(self._ended, _left(deadline))
            except KeyboardInterrupt:
                self._on_interrupt(ctrl_c=True)
                raise
            if ended and self._timed_out_unsaid():
                return self._result()
            # Another thread's Ctrl-C stopped the watch, not this wait: the job runs on.
            if not (ended and self._watch_stopped() and self._interrupts != interrupts):
                break
        if not ended:
            raise JobActive(
                f"job {self.jobname!r} is still active after {timeout:g} seconds: it keeps "
                "running; wait() again (timeout=None: as long as it takes), or kill() it",
                jobname=self.jobname,
                timed_out=True,
            )
        return self._result()

    def results(self) -> Results:
        """The results of a run that is ready, at once; its error if it died (JobDead from
        the moment it is killed); :class:`~discodsl.errors.JobActive` while it is active."""
        self._check_process()
        self._watch_again()
        if not self._ending and self._killed.is_set():
            raise self._killed_error()
        if not self._ending:
            raise JobActive(
                f"job {self.jobname!r} is still active, so it has no results yet: wait() for them",
                jobname=self.jobname,
            )
        return self._result()

    def events(self) -> list[Event]:
        """The run's events, oldest first: ``[(time, host, message), ...]`` as Disco's
        ``rawevents`` gives them (a cluster job's come from its master)."""
        if self._events is not None:
            return self._events()
        return self.log.events()

    def kill(self) -> None:
        """Stop the run: its workers are killed (its job, on a cluster) and ``wait()`` raises
        :class:`~discodsl.errors.JobDead`. A run that has ended stays as it is; one whose
        watch stopped while its job ran on (Ctrl-C in wait(), a cluster's ``timeout=``) has
        not ended: its job is killed. A kill that fails (a master that refused it, or could
        not be reached) raises, and leaves the run as it was."""
        self._check_process()
        with self._resuming:
            stopped = self._watch_stopped()
            if self._ended.is_set() and not stopped:
                return
            before = self._outcome, self._traceback
            self._killed.set()
            if stopped:
                self._outcome, self._traceback = self._killed_error(), None
        if self._kill is None:
            return
        try:
            self._kill()
        except BaseException:  # not killed (a master that refused, or cannot be reached):
            with self._resuming:  # the run goes on as it was
                self._killed.clear()
                if stopped:
                    self._outcome, self._traceback = before
            raise

    def ended(self, timeout: float | None = 0) -> bool:
        """Whether the run has ended, after waiting up to ``timeout`` seconds for it (None:
        as long as it takes)."""
        return _wait_awake(self._ended, wait_limit(timeout))

    @property
    def cache_key(self) -> str | None:
        """Its results' cache key, once it is ready (see :class:`~discodsl.results.Results`)."""
        if self.status != "ready":
            return None
        return self.results().cache_key

    @property
    def carried(self) -> tuple[type, ...]:
        """The classes its results' records may hold, once it is ready (see Results)."""
        return self.results().carried if self.status == "ready" else ()

    def record_urls(self, listed: Listed | None = None) -> list[list[str]]:
        """The record files of the run's results (waiting for them): inputs for another job
        (see :meth:`Results.record_urls`)."""
        return self.wait().record_urls(listed)

    def listed_urls(self, listed: Listed | None = None) -> list[list[str]]:
        """The record files of the run's results (waiting for them) as their master lists
        them: see :meth:`Results.listed_urls`."""
        return self.wait().listed_urls(listed)

    def __reduce__(self) -> Any:
        raise TypeError(
            f"the run {self.jobname!r} cannot be pickled: it stands for a job this process "
            "started and watches; pass its records (list(run.wait())), or its results as "
            "inputs of another job in this process"
        )

    def __repr__(self) -> str:
        if self._pid != os.getpid() and not self._ended.is_set():  # a fork's copy: status
            state = f"active in process {self._pid}"  # would raise, and a repr must not
        else:
            state = self.status
        return f"<Run of {self.job!r} ({self.mode}): {self.jobname}, {state}>"

    # -- what runners call --------------------------------------------------------------

    def submitted(
        self,
        jobname: str,
        *,
        counters: Mapping[str, int],
        kill: Callable[[], None],
        interrupt: Callable[[], None] | None = None,
        events: Callable[[], list[Event]] | None = None,
        resume: Callable[[], Results] | None = None,
        host: str = "localhost",
        master: str = "",
    ) -> None:
        """The runner has named the run and can stop it: ``kill`` stops it, ``interrupt``
        is what Ctrl-C in wait() does (default: kill), ``events`` reads its master's events
        (default: this run's :class:`EventLog`); ``counters`` is summed as it runs.
        ``resume`` watches the run again, if its watch can stop while it runs on (a
        cluster's job), to its end; ``master`` is the URL of the master it runs on."""
        self.jobname, self._counters, self._master = jobname, counters, master
        self._kill, self._interrupt, self._events = kill, interrupt, events
        self._resume = resume
        self.log.host = host
        self.log.add("master", "New job initialized!")
        self.log.add("master", f'Created job "{jobname}"')
        if self._killed.is_set():
            kill()

    def on_end(self, callback: Callable[[Run], None]) -> None:
        """Call ``callback(run)`` when the run ends, before wait() returns (now, in this
        thread, if it is ending or has ended)."""
        with self._end_lock:
            if not self._ending:
                self._on_end.append(callback)
                return
        callback(self)

    def start(self, work: Callable[[], Results], background: bool) -> None:
        """Run ``work`` (which returns the results or raises) in a thread of its own, or
        now in this one; its outcome is what wait() gives."""
        self._releases = [results.hold() for results in _results_among(self._inputs)]
        for upstream in upstream_runs(self._inputs):  # held from their end, before any wait()
            upstream.on_end(self._hold_results_of)
            upstream._chained.add(self)
        if not background:
            self._settle(work)
            return
        self._in_background(work)

    def _in_background(self, work: Callable[[], Results]) -> None:
        """Run ``work`` in a thread of the run's own, named at the program's end if it goes
        on then. The thread runs in a copy of the submitter's context, as do those it starts
        (:mod:`.threads`): a notebook puts a cell's output by a context variable,
        and what the run shows goes to the cell that submitted it, not the one running."""
        self._thread = threading.Thread(
            target=in_this_context(self._settle),
            args=(work,),
            name=f"discodsl run of {self.job}",
            daemon=True,
        )
        _watch_for_exit(self)
        self._thread.start()

    def await_inputs(
        self, upstream: list[Run], timeout: float | None = None, since: float = 0.0
    ) -> None:
        """Wait for the runs this one reads (kill() ends the wait); a JobError naming the
        first of them that did not end ready, or whose master was lost, or that was still
        running ``timeout`` seconds after ``since`` (a ``time.monotonic()``: this run's
        submission), this run's own ``timeout=``. One whose watch stopped while its job
        runs on (a cluster's ``timeout=``) is waited for on: its ``timeout=`` bounds its
        own wait."""
        deadline = None if timeout is None else since + timeout
        for run in upstream:
            status = "active"
            while status == "active":  # a watch that stopped (timeout=) is watched again
                while not run.ended(KILL_CHECK):
                    if self._killed.is_set():
                        raise self._killed_error()
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _input_late(self, run, deadline - since)
                if run._lost():  # before status, which would watch it again
                    raise _input_failed(self, run)
                status = run.status
            if status != "ready":
                raise _input_failed(self, run)
        if deadline is not None and upstream and time.monotonic() >= deadline:
            raise _input_late(self, upstream[-1], deadline - since, ended=True)

    def __del__(self) -> None:
        """A failure nobody heard of, the run's handle gone (as asyncio tells of a task's)."""
        with contextlib.suppress(Exception):  # the interpreter's end may have taken warn
            self._tell_unheard("its handle was dropped")

    # -- inside -------------------------------------------------------------------------

    def _tell_unheard(self, when: str) -> None:
        """Say the run failed, if nobody asked (wait(), results(), status) and neither it
        nor a run it waited for was killed (Ctrl-C stopped a chain); once."""
        outcome = self._outcome
        if self._heard or self._killed.is_set() or self._pid != os.getpid():
            return
        if isinstance(outcome, Exception) and not _killed_on_the_way(outcome):
            self._heard = True
            what = " ".join(f"{type(outcome).__name__}: {outcome}".split())
            warn(
                f"discodsl: the {self.mode} run {self.jobname!r} did not end ready, and nothing "
                f"asked how it ended ({when}): {shorten(what, _UNHEARD)}; wait() for a run, or "
                "read its status, to know how it ended"
            )

    def _awaited_by_another(self, stopping: set[Run]) -> bool:
        """Whether a run not ended, other than those ``stopping``, waits for this one (a
        Ctrl-C that stops them spares it)."""
        return any(other not in stopping and not other.ended() for other in list(self._chained))

    def _lost(self) -> bool:
        """Whether the run's watch ended on a master that stopped answering: its job's end
        cannot be seen (watched again, it is lost again at once)."""
        return isinstance(self._outcome, JobActive) and self._outcome.lost

    def _check_process(self) -> None:
        """A JobError in a forked copy of the process that submitted a run still going: it
        goes on there alone, and nothing here would ever end it."""
        if self._pid == os.getpid() or self._ended.is_set():
            return
        raise JobError(
            f"run {self.jobname!r} was submitted by process {self._pid}; this is process "
            f"{os.getpid()}, a fork of it, where the run does not go on: wait for it (or kill "
            "it) in the process that submitted it, or submit the job here"
        )

    def _watch_again(self) -> None:
        """A run whose watch stopped while its job ran on (Ctrl-C in wait(), a cluster's
        ``timeout=``): watch it again, in the background, so that wait() and status follow
        it to its end (they stayed "active" for good)."""
        if not self._watch_stopped():  # the usual case, asked of every status: no lock
            return
        with self._resuming:
            if not self._watch_stopped() or self._resume is None or self._killed.is_set():
                return
            with self._end_lock:  # first: status never sees an end without its outcome
                self._ending = False
            self._ended.clear()
            self._outcome = None
            self._in_background(self._resume)

    def _hold_results_of(self, upstream: Run) -> None:
        """Hold the results of a run among this one's inputs, now that it has ended, until
        this one ends (if it has not: killed while it waited, it reads nothing)."""
        outcome = upstream._outcome
        if outcome is None or isinstance(outcome, BaseException):
            return
        with self._end_lock:
            if not self._ending:
                self._releases.append(outcome.hold())

    def _timed_out_unsaid(self) -> bool:
        """Whether the run's watch ended at its own ``timeout=`` (JobActive), and no wait()
        or results() has said so yet."""
        outcome = self._outcome
        unsaid = self._watch_stopped() and outcome is not self._told
        return unsaid and getattr(outcome, "timed_out", False) is True

    def _watch_stopped(self) -> bool:
        """Whether the run's watch ended while its job ran on (its outcome is JobActive)."""
        return self._ended.is_set() and isinstance(self._outcome, JobActive)

    def _settle(self, work: Callable[[], Results]) -> None:
        try:
            results = work()
        except BaseException as exc:
            self._end(exc)
            if not isinstance(exc, Exception) and self._thread is None:
                raise  # Ctrl-C in a run in the caller's thread (inline) is the caller's
        else:
            self._end(results)

    def _end(self, outcome: Results | BaseException) -> None:
        if self._killed.is_set() and isinstance(outcome, JobDead):
            outcome.killed = True  # a cluster's JobDead, in the master's words
        elif self._killed.is_set():
            outcome = self._killed_error()  # even results that came as it was killed
        if isinstance(outcome, BaseException):
            self._traceback = outcome.__traceback__
        self._outcome, self._inputs = outcome, None
        with self._end_lock:
            self._ending = True
            releases, callbacks = self._releases, list(self._on_end)
            self._releases = []
        try:
            for release in releases:
                release()
            self.log.end("dead" if isinstance(outcome, BaseException) else "ready", self._reason())
            for callback in callbacks:
                callback(self)
        finally:  # whatever failed there (it is raised), wait() has the outcome
            self._ended.set()

    def _reason(self) -> str:
        """A failed chain's reason, for the events (a task's failure is already in them);
        a local run's that the program's end stopped."""
        outcome = self._outcome
        if isinstance(outcome, InputRunFailed):
            return " ".join(str(outcome).split())
        if self._at_exit:
            return "the program that ran it ended before it did, which stopped it"
        return ""

    def _result(self) -> Results:
        outcome = self._told = self._outcome
        self._heard = True
        if isinstance(outcome, BaseException):
            raise outcome.with_traceback(self._traceback)
        assert outcome is not None
        return outcome

    def _killed_error(self) -> JobDead:
        if self._at_exit:
            return JobDead(
                f"job {self.jobname!r} was stopped as the program ended (discodsl's exit hook "
                "stops the local runs still going, after the hooks registered after discodsl "
                "was imported): wait() for it before the program ends, or register that "
                "hook after importing discodsl",
                jobname=self.jobname,
                killed=True,
            )
        return JobDead(
            f"job {self.jobname!r} was killed (by kill(), Ctrl-C or `discodsl kill`) before "
            "it ended: submit it again for its results",
            jobname=self.jobname,
            killed=True,
        )

    def _on_interrupt(self, ctrl_c: bool = False) -> None:
        """Ctrl-C in wait(), or an exception of a signal handler in run(): the runner's
        reaction (default: kill), then let it clean up. The program's signals are held
        for its first STOP_GRACE seconds, and handled once it is done (a handler cut the
        stop short, and the run went on); Ctrl-C again then asks for the stop under way: it
        raises nothing more. Later, a stop that seems stuck (a master slow to kill) is cut
        short by them as before."""
        try:
            with interrupts.held(ctrl_c, grace=STOP_GRACE):
                self._stop_on_interrupt()
        except KeyboardInterrupt:
            if not ctrl_c:
                raise

    def _stop_on_interrupt(self, stopping: set[Run] | None = None) -> None:
        """Stop the run as Ctrl-C does, and (not submitted yet) the runs it waits for that
        no run but those ``stopping`` with it waits for, each once."""
        stopping = set() if stopping is None else stopping
        stopping.add(self)
        self._interrupts += 1  # first: another wait() woken by its end knows it for this
        self._stop_told = True  # the program's end does not tell it again
        if self._kill is None:  # not submitted: waiting for its input runs, which it reaches
            for upstream in upstream_runs(self._inputs):
                if upstream in stopping or upstream.ended():
                    continue
                if not upstream._awaited_by_another(stopping):
                    upstream._stop_on_interrupt(stopping)
        (self._interrupt or self.kill)()
        if self._thread is not None:
            self._thread.join(CLEANUP_WAIT)


def _killed_on_the_way(error: BaseException | None) -> bool:
    """Whether ``error`` is a watch Ctrl-C stopped or its master lost (JobActive, not of a
    ``timeout=``), or a kill's, or what one of them caused (a chained run's InputRunFailed)."""
    while error is not None:
        if isinstance(error, JobActive) and not error.timed_out:
            return True
        if isinstance(error, JobDead) and error.killed:
            return True
        error = error.__cause__
    return False


def _input_late(run: Run, upstream: Run, timeout: float, ended: bool = False) -> InputRunFailed:
    """The error of a run whose ``timeout=`` passed while it waited for an input run (or
    as that run ``ended``: none of it is left for this one, which is not submitted)."""
    what = (
        "ended as it passed"
        if ended
        else "was still running (it runs on: wait() for it, or kill() it)"
    )
    return InputRunFailed(
        f"job {run.job!r} did not run within timeout={timeout:g} seconds: its input run "
        f"{upstream.jobname!r} ({upstream.mode}) {what}; a timeout= counts from submit(), "
        "the wait for that run included: raise it, or submit this job once that run is ready"
    )


def _input_failed(run: Run, upstream: Run) -> InputRunFailed:
    """The error of a run whose input run did not end ready (or was lost): it names that
    run's failure."""
    lost = upstream._outcome
    try:
        if upstream._lost() and isinstance(lost, BaseException):
            raise lost
        upstream.results()
    except BaseException as exc:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        error = InputRunFailed(
            f"job {run.job!r} did not run: its input run {upstream.jobname!r} "
            f"({upstream.mode}) failed: {why}"
        )
        error.__cause__ = exc
        return error
    raise AssertionError("an input run that is not ready has an error")  # pragma: no cover


def _results_among(inputs: Any) -> list[Results]:
    """The results among ``inputs`` (results, or a list holding some): what a run holds."""
    from discodsl.results import Results

    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return [item for item in items if isinstance(item, Results)]


def upstream_runs(inputs: Any) -> list[Run]:
    """The runs among ``inputs`` (a Run, or a list holding some): what a run waits for."""
    if isinstance(inputs, Run):
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        return [item for item in inputs if isinstance(item, Run)]
    return []


# Characters of an unheard failure's message told as its handle goes.
_UNHEARD = 400
# Seconds the program's end waits for a local run it stopped to end (its workers killed).
STOP_WAIT = 10.0
# Runs working in threads of their own, which end with the program: named at its end if active.
_BACKGROUND: weakref.WeakSet[Run] = weakref.WeakSet()
_EXIT_HOOK = threading.RLock()  # reentrant: a signal handler may run a job meanwhile


def _watch_for_exit(run: Run) -> None:
    with _EXIT_HOOK:
        _BACKGROUND.add(run)


# A forked child's runs are its own: its parent's, going on in threads the child does not
# have, are not for it to name at its end.
os.register_at_fork(after_in_child=_BACKGROUND.clear)


def forget_unfinished() -> None:
    """Name none of the runs going now at the program's end (the command line, stopped by
    Ctrl-C, has said what goes on: its advice to wait() is a program's)."""
    with _EXIT_HOOK:
        _BACKGROUND.clear()


def _ended_by_ctrl_c() -> bool:
    """Whether Ctrl-C ends the program: a KeyboardInterrupt it did not catch (Python keeps
    it in ``sys.last_value``; one it caught may have been handled, and its end be a normal
    one). Never in IPython's shell, where Ctrl-C stops a cell, not the session, and
    ``sys.last_value`` holds any cell's last error."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", None)
    if callable(shell) and shell() is not None:
        return False
    return isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)


def _end_unfinished() -> None:
    """At the program's end: name each run it ends (a cluster's job runs on, or, the program
    ended by Ctrl-C, is told as its Ctrl-C tells it: killed with ``kill_on_interrupt``); not
    one whose watch stopped already (Ctrl-C, ``timeout=``), which said how it goes on. A local
    one is killed, and its end awaited (bounded), so that its workers are gone before the
    process's directory is removed: a worker being started then would make a file in it
    after, and the directory would stay. A run that failed, and that nobody asked about, says
    so."""
    stopping = []
    interrupted = _ended_by_ctrl_c()
    for run in list(_BACKGROUND):
        run._tell_unheard("the program ended")
        if run._outcome is not None or run._killed.is_set() or run._stop_told:
            continue
        if run.mode == "cluster" and interrupted and run._interrupt is not None:
            run._interrupt()  # Ctrl-C ended the program: as its own would (kill_on_interrupt)
            continue
        if run.mode == "cluster" and run._kill is None:  # waiting for its input run
            warn(
                f"discodsl: the program ended before its cluster run of job {run.job!r} was "
                "submitted (it waited for its input run): it will not run; wait() for a "
                "run before the program ends"
            )
            continue
        status = command_line(f"status {run.jobname}", run._master)
        fate = (
            f"; its job goes on at the master (`{status}`)"
            if run.mode == "cluster"
            else ", which stopped it"
        )
        warn(
            f"discodsl: the program ended before its {run.mode} run {run.jobname!r} did"
            f"{fate}: wait() for a run before the program ends"
        )
        if run.mode == "local":
            stopping.append(run)
    for run in stopping:
        run._at_exit = True
        run.kill()
    for run in stopping:
        run.ended(STOP_WAIT)


# Registered as discodsl is imported, after places' removal of its directories (which it
# runs before: atexit runs the last first), and before the program's own hooks registered
# after its import, which run first: such a hook may wait for the runs it submitted.
atexit.register(_end_unfinished)


# What a run's events (in memory, and in the registry's file) keep of its tasks' output
# whole, in characters; past it, each MSG keeps its first EVENT_TEXT_LIMIT, as a Disco
# master's event log does of every one. (What is printed is shown in full as it comes.)
KEPT_OUTPUT = 32 * 1024 * 1024


class EventLog:
    """A run's events worded as a Disco 0.5.4 master words them, oldest first.

    Called with a runner's events (an
    :data:`~discodsl.runners.base.EventHandler`): ``stage``, ``msg``,
    ``task_done``, ``task_failed``, ``task_retry``; :meth:`end` adds the last
    word (``READY: Job done in ...`` or ``WARN: Job killed``). Each event is
    also handed to ``sink`` (the registry's events file), in order.
    """

    def __init__(self, host: str = "localhost"):
        self.host = host  # the node's name in task events
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._sink: Callable[[Event], None] | None = None
        self._started = time.monotonic()
        self._output = 0  # characters of the tasks' output kept so far

    def add(self, host: str, message: str) -> None:
        event = (time.strftime("%Y/%m/%d %H:%M:%S"), host, message)
        with self._lock:
            self._events.append(event)
            if self._sink is not None:
                self._sink(event)

    def attach(self, sink: Callable[[Event], None]) -> None:
        """Hand every event so far, and each one from now on, to ``sink``."""
        with self._lock:
            for event in self._events:
                sink(event)
            self._sink = sink

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "msg":
            facts = {**facts, "text": self._kept(str(facts["text"]))}
        for host, message in _worded(kind, facts, self.host):
            self.add(host, message)

    def _kept(self, text: str) -> str:
        """What the events keep of a task's output ``text``: all of it while the run's kept
        output is under KEPT_OUTPUT, then its start, as a Disco master's event log keeps."""
        with self._lock:
            self._output += len(text)
            if self._output <= KEPT_OUTPUT or len(text) <= EVENT_TEXT_LIMIT:
                return text
        return (
            f"{text[:EVENT_TEXT_LIMIT]} ... ({len(text) - EVENT_TEXT_LIMIT} characters not "
            f"kept: a run's events keep {KEPT_OUTPUT >> 20} MiB of its output whole)"
        )

    def end(self, status: str, reason: str = "") -> None:
        """The run ended ``status`` (``ready`` or ``dead``), for ``reason`` if one is given."""
        if reason:
            self.add("master", f"ERROR: {reason}")
        if status == "ready":
            self.add("master", f"READY: Job done in {duration(time.monotonic() - self._started)}")
        else:
            self.add("master", "WARN: Job killed")  # Disco's words for any job that dies


def _worded(kind: str, facts: Mapping[str, Any], host: str) -> list[tuple[str, str]]:
    """(host, message) for a runner's event, in the master's words; [] for the unworded."""
    task = f"{facts.get('stage')}:{facts.get('taskid')}"
    if kind == "stage" and int(facts["tasks"]):
        return [("master", f"Stage {facts['stage']} scheduled with {facts['tasks']} tasks")]
    if kind == "task_assigned":
        return [("master", f"{task} assigned to {host}")]
    if kind == "msg":
        return [(host, f"MSG: [{task}] {facts['text']}")]
    if kind == "task_done" and "taskid" in facts:
        return [(host, f"DONE: [{task}] Task finished")]
    if kind == "task_failed":
        return _failure(task, facts)
    if kind == "timed_out":
        return [
            (
                "master",
                f"ERROR: the run passed its timeout={facts['timeout']:g} seconds: its "
                "workers were killed",
            )
        ]
    if kind == "task_retry":
        pause = int(float(facts.get("pause", 0)) + 0.5)
        return [
            (
                "master",
                f'Task {task} failed on "{host}", {facts["failures"]}th failures so far. '
                f"Sleeping {pause} seconds before retrying.",
            )
        ]
    return []


def _failure(task: str, facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    text = str(facts.get("text", ""))
    if facts.get("fatal"):
        return [("master", f"FATAL: [{task}] {text}")]
    worded = [("master", f"WARNING: [{task}] {text}")]
    if final(facts):  # past max_failures
        worded.append(
            (
                "master",
                f"ERROR: [{task}] Task {task} failed {facts['failures']} times. "
                f"At most {facts['limit']} failures are allowed.",
            )
        )
    return worded


def duration(seconds: float) -> str:
    """``0:00:00.365``, as the master words how long something took."""
    millis = int(seconds * 1000)
    minutes, millis = divmod(millis, 60_000)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def _left(deadline: float | None) -> float | None:
    """The seconds to ``deadline`` (a ``time.monotonic()``), none below 0; None for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _wait_awake(event: threading.Event, timeout: float | None) -> bool:
    """``event.wait(timeout)`` in short sleeps, so that Ctrl-C interrupts it at once."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = AWAKE if deadline is None else min(AWAKE, deadline - time.monotonic())
        if event.wait(max(0.0, left)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
