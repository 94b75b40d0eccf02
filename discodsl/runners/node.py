"""The master side of a Disco job, played on this machine: the local runner's engine.

:class:`NodeMaster` does with a jobpack what a Disco 0.5.4 master and its one
node do (spec sections 1-4): it takes the decoded
:class:`~discodsl.jobpack.JobPack` (never decoding it again), writes its
jobfile and unpacks the jobhome into the job home, groups
each stage's inputs into tasks, starts the jobhome's ``worker`` launcher for
each task (job home as working directory, jobenvs in the environment,
stdout and stderr merged) and answers it over real pipes with the master
side of the protocol codec, as the recordings show a real master answering.
With ``fork_server`` (the local runner's way) the launcher is started once
per job as a zygote that forks each task's worker
(:mod:`discodsl.runners.forkserver`); the conversation is the same. A job
runs ``workers`` tasks at once, fewer if its scheduler's ``max_cores`` says
so. Spares (started or forked ahead, as many) take the start-up off a
task's path.
Local outputs are indexed in ``.disco/*.results`` files and handed to the
next stage as ``dir://`` inputs. ERROR (and crashes) retry a task up to a
failure limit; FATAL and protocol violations fail the job at once. A run
longer than ``timeout`` seconds has every worker killed (:class:`JobTimedOut`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from discodsl import jobhome, jobpack, places
from discodsl.errors import JobError
from discodsl.runners.base import EventHandler
from discodsl.runners.forkserver import ForkedWorker, ForkFailed, ForkServer
from discodsl.runners.grouping import DataOutput, DirOutput, Output, TaskGroup, group_outputs
from discodsl.runners.layout import JobLayout, job_name
from discodsl.runners.threads import in_this_context
from discodsl.worker import CUT_OFF, FORKSERVER_ENV
from discodsl.worker.errors import RemoteProtocolError
from discodsl.worker.messages import Done, Error, Fatal, Input, InputErr, Msg, Request, Task
from discodsl.worker.messages import Output as OutputMessage
from discodsl.worker.owners import children
from discodsl.worker.replies import Fail, InputEntry, InputReply, Ok, Reply, TaskInfo
from discodsl.worker.sides import MasterSide

# A worker that has not said WORKER by then is failed, as Disco does.
FIRST_MESSAGE_TIMEOUT = 30.0
# A worker that died is reported with the last this many bytes it wrote.
LAST_WORDS = 100 * 1024
# ... and one that died before its first message, with the last this many it printed.
START_UP_WORDS = 2000

# Why a task failed whose worker could not be started at all (E2BIG).
_TOO_BIG = (
    "cannot start the worker: its environment (this process's, with the job's env=) is too "
    "big for a process to be started with (E2BIG, Linux's ARG_MAX): make env= smaller, and "
    "pass big values in params= instead"
)
# A worker: a process started from the launcher, or a child forked by a job's zygote.
Worker = subprocess.Popen[bytes] | ForkedWorker


@dataclass
class Attempt:
    """How one attempt at a task ended."""

    ok: bool
    outputs: list[tuple[int, str, int]] = field(default_factory=list)
    text: str = ""
    fatal: bool = False
    exit_code: int | None = None  # the worker died without a final message (<0: a signal)
    inputs: tuple[str, ...] = ()  # then: the task's inputs (first replica of each)
    # ... and before its first message when ``said_nothing``: with what it printed then
    said_nothing: bool = False
    start_up: str = ""
    cut_off: bool = False  # it closed its output and was alive: stopped by us, not by itself


class JobFailed(Exception):
    """A job failed on the local master; ``outcome`` is the failing attempt, ``stage`` its stage."""

    def __init__(self, message: str, stage: str, taskid: int, outcome: Attempt, attempts: int = 1):
        super().__init__(message)
        self.stage, self.taskid, self.outcome = stage, taskid, outcome
        self.attempts = attempts  # how many times the task ran, the failing attempt included


class JobTimedOut(JobFailed):
    """A job ran past its ``timeout``; ``running`` lists the (stage, taskid) still running."""

    def __init__(self, timeout: float, running: list[tuple[str, int]]):
        tasks = ", ".join(f"{stage}:{taskid}" for stage, taskid in running)
        super().__init__(
            f"the job ran past its timeout of {timeout:g} seconds; still running: {tasks}",
            *running[0],
            Attempt(False, text="timed out"),
        )
        self.timeout, self.running = timeout, running


@dataclass
class NodeMaster:
    """A Disco master and one node on this machine, running jobpacks through real workers."""

    disco_data: str
    host: str = "localhost"
    workers: int = 2
    max_failures: int = 3
    disco_port: int = 8989
    put_port: int = 8990
    master_url: str = "http://localhost:8989"
    environ: Mapping[str, str] = field(default_factory=dict)
    on_event: EventHandler | None = None
    # Seconds a run may take (counted from ``started``, a time.monotonic(), if given): past
    # them every worker is killed and JobTimedOut raised.
    timeout: float | None = None
    started: float | None = None
    # After a task's n-th failure (ERROR, a crash; never FATAL, never past
    # max_failures) the task waits retry_pause(n) seconds before it runs again:
    # 0 here, as the local runner wants; a Disco 0.5.4 master waits min(n, 60)
    # + 13.308 s (tests/disco_state.py). The wait is sleep(seconds, cancelled),
    # which must return as soon as `cancelled` is set (a killed job ends at
    # once); "task_retry" {stage, taskid, failures, pause} is emitted before it.
    retry_pause: Callable[[int], float] = lambda failures: 0.0
    sleep: Callable[[float, threading.Event], object] = lambda s, cancelled: cancelled.wait(s)
    # Fork each task's worker from a zygote the job's launcher started (the local runner's
    # way: runners/forkserver.py), instead of starting the launcher per task (a Disco node's).
    fork_server: bool = False
    # Whether a task whose stage closed its worker's channel fails at once (the local
    # runner's way: it would again) rather than being retried as any crash (a Disco node's).
    cut_off_fatal: bool = True
    # Whether a job name is free beyond DISCO_DATA, and taken if so: the local runner's
    # registry, shared by every process of the user, where another may have named a run
    # in the same microsecond.
    claim_name: Callable[[str], bool] = lambda name: True
    _submitted: dict[str, jobpack.JobPack] = field(default_factory=dict)  # by job home
    _spares: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _wanted: int = 0
    _running: set[Worker] = field(default_factory=set)
    _forks: ForkServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _active: dict[tuple[str, int], None] = field(default_factory=dict)  # tasks talking
    _late: list[tuple[str, int]] | None = None  # what was running when the timeout struck

    def submit(self, pack: jobpack.JobPack, data: bytes | None = None) -> JobLayout:
        """Accept a decoded jobpack: name the job, lay out its job home (removed again if
        that fails) with the jobfile the workers read: ``data``, the bytes the pack came
        as, else the pack encoded (and so checked) here."""
        layout = self._new_home(str(pack.jobdict["prefix"]))
        try:
            os.mkdir(os.path.join(layout.home, ".disco"))  # the tasks' indexes (_write_index)
            self._lay_out(layout, pack, jobpack.encode(pack) if data is None else data)
        except BaseException as exc:
            shutil.rmtree(layout.home, ignore_errors=True)
            if isinstance(exc, OSError):
                raise _not_laid_out(layout, exc) from exc
            raise
        self._submitted[layout.home] = pack
        return layout

    def _new_home(self, prefix: str) -> JobLayout:
        """A job named after ``prefix``, its home made, empty: a name whose home is there
        already (another process's on a shared DISCO_DATA), or that ``claim_name`` refuses,
        is passed over, never removed."""
        for _ in range(_NAMES_TRIED):
            layout = JobLayout(self.disco_data, self.host, job_name(prefix))
            if not self.claim_name(layout.jobname):
                taken = FileExistsError(errno.EEXIST, "a run of that name exists", layout.jobname)
                continue
            try:
                _make_home(layout.home)
            except FileExistsError as exc:
                taken = exc
                continue
            except OSError as exc:
                raise _not_laid_out(layout, exc) from exc
            return layout
        raise _not_laid_out(layout, taken)

    def _lay_out(self, layout: JobLayout, pack: jobpack.JobPack, data: bytes) -> None:
        """Write the jobfile and extract the job home into ``layout.home``."""
        with open(layout.jobfile, "wb") as handle:
            handle.write(data)
        jobhome.extract_jobhome(pack.jobhome, Path(layout.home))

    def run(self, pack: jobpack.JobPack) -> tuple[JobLayout, list[list[str]]]:
        """Run a jobpack to the end; its layout and results (replica lists of URLs)."""
        layout = self.submit(pack)
        return layout, self.run_submitted(layout)

    def run_submitted(self, layout: JobLayout) -> list[list[str]]:
        """Run a job submitted here (its pack as submitted, not read back); JobFailed if a
        task fails for good."""
        pack = self._submitted.pop(layout.home)
        outputs: list[Output] = [
            DataOutput(int(label), int(size), tuple(urls))
            for label, size, urls in pack.jobdict["inputs"]
        ]
        taskid = 0
        plans: list[TaskGroup] = [TaskGroup((0, ""), ())]  # the job's inputs: as one task's
        pipeline = pack.jobdict["pipeline"]
        timer = self._start_timer()
        self._start_fork_server(layout, pack)
        try:
            for number, (stage, grouping, _concurrent) in enumerate(pipeline, 1):
                plans = group_outputs(grouping, outputs, ran=bool(plans))
                self._emit("stage", {"stage": stage, "tasks": len(plans)})
                more = self._spares_ahead(pack) if number < len(pipeline) else 0
                self._wanted = len(plans) + more
                outputs = self._run_stage(layout, pack, stage, grouping, plans, taskid)
                self._emit("stage_done", {"stage": stage, "outputs": outputs})
                taskid += len(plans)
        except JobFailed as failed:
            if self._late is None or self.timeout is None:
                raise
            raise JobTimedOut(self.timeout, self._late or [(failed.stage, failed.taskid)]) from None
        finally:
            if timer is not None:
                timer.cancel()
            self._drop_spares()
            self._close_fork_server()
        return [_result_urls(output) for output in outputs]

    def _spares_ahead(self, pack: jobpack.JobPack) -> int:
        """Workers readied during a stage for the next one, whose tasks are not known yet:
        as many as run at once, but no more than this machine's cores (each spares a task
        its start, and more of them only take processes: ``workers=300`` forked 300)."""
        return min(self._slots(pack), os.cpu_count() or 1)

    def _slots(self, pack: jobpack.JobPack) -> int:
        """How many of the job's tasks run at once: a worker each, and no more than the
        ``max_cores`` of its scheduler (as a Disco master honours it; none: no limit)."""
        cores = pack.jobdict["scheduler"].get("max_cores")
        return max(1, min(self.workers, cores) if cores else self.workers)

    def _start_fork_server(self, layout: JobLayout, pack: jobpack.JobPack) -> None:
        """Have this job's workers forked from a zygote (started at the first task)."""
        if self.fork_server:
            self._forks = ForkServer(lambda control: self._spawn(layout, pack, control))

    def _close_fork_server(self) -> None:
        forks, self._forks = self._forks, None
        if forks is not None:
            forks.close()

    def _start_timer(self) -> threading.Timer | None:
        """Start the clock on ``timeout``, if any."""
        if self.timeout is None:
            return None
        spent = 0.0 if self.started is None else time.monotonic() - self.started
        timer = threading.Timer(max(self.timeout - spent, 0.0), self._expire)
        timer.daemon = True
        timer.start()
        return timer

    def _expire(self) -> None:
        """The timeout struck: note what was running, stop every worker."""
        with self._lock:
            self._late = sorted(self._active)
        self._emit("timed_out", {"timeout": self.timeout})
        self.cancel()

    def cancel(self) -> None:
        """Stop every running worker (Ctrl-C, or a fatal error elsewhere)."""
        self._cancelled.set()
        with self._lock:
            for process in list(self._running):
                # Killed only: its conversation, reading its pipes in another thread, sees it
                # end and then closes them (closed under a read, a number can be reused).
                _signal(process)
        self._drop_spares()
        if self._forks is not None:
            self._forks.close()

    def _drop_spares(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
        for process in spares:
            _kill(process)

    def _emit(self, kind: str, facts: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, facts)

    def _run_stage(
        self,
        layout: JobLayout,
        pack: jobpack.JobPack,
        stage: str,
        grouping: str,
        plans: list[TaskGroup],
        first_id: int,
    ) -> list[Output]:
        results: list[list[Output]] = [[] for _ in plans]
        tasks = [_StageTask(stage, grouping, first_id + i, plan) for i, plan in enumerate(plans)]

        def work(index: int, task: _StageTask) -> None:
            self._task_with_retries(layout, pack, task, results, index)

        _Slots(list(enumerate(tasks))).run(work, min(self._slots(pack), len(tasks)), self.cancel)
        return [output for outputs in results for output in outputs]

    def _task_with_retries(
        self,
        layout: JobLayout,
        pack: jobpack.JobPack,
        task: _StageTask,
        results: list[list[Output]],
        index: int,
    ) -> None:
        """Run a task until it is done; JobFailed when it fails fatally, more than
        max_failures times, or the job is cancelled (an attempt cut short by the
        cancellation is no failure). Emits task_assigned (each attempt), task_done,
        task_failed, task_retry."""
        failures = 0
        while True:
            self._stop_if_cancelled(task)
            self._emit("task_assigned", {"stage": task.stage, "taskid": task.taskid})
            outcome = self._attempt(layout, pack, task)
            if outcome.ok:
                results[index] = self._task_outputs(layout, task, outcome)
                self._emit("task_done", {"stage": task.stage, "taskid": task.taskid})
                return
            self._stop_if_cancelled(task)
            failures, limit = failures + 1, self.max_failures  # read at each failure, as Disco
            facts = {"stage": task.stage, "taskid": task.taskid, "failures": failures}
            self._emit(
                "task_failed",
                {**facts, "text": outcome.text, "fatal": outcome.fatal, "limit": limit}
                | {"outcome": outcome},
            )
            if outcome.fatal or failures > limit:
                message = _failure_message(task, failures, outcome, limit)
                raise JobFailed(message, task.stage, task.taskid, outcome, attempts=failures)
            pause = self.retry_pause(failures)
            self._emit("task_retry", {**facts, "pause": pause})
            if pause > 0:
                self.sleep(pause, self._cancelled)

    def _stop_if_cancelled(self, task: _StageTask) -> None:
        if self._cancelled.is_set():
            cancelled = Attempt(False, text="cancelled")
            raise JobFailed("the job was cancelled", task.stage, task.taskid, cancelled)

    def _attempt(self, layout: JobLayout, pack: jobpack.JobPack, task: _StageTask) -> Attempt:
        try:
            process = self._start_worker(layout, pack)
        except OSError as exc:
            if exc.errno == errno.E2BIG:  # every attempt would fail alike
                return Attempt(False, text=_TOO_BIG, fatal=True)
            fix = _FIXES[exc.errno] if exc.errno in _LIMITS else ""
            return Attempt(False, text=f"cannot start the worker: {exc}{fix}")
        with self._lock:
            self._running.add(process)
        try:
            return _Conversation(self, layout, task, process).run()
        finally:
            with self._lock:
                self._running.discard(process)
            _kill(process)

    def _start_worker(self, layout: JobLayout, pack: jobpack.JobPack) -> Worker:
        """A worker for a task: forked by the job's zygote if it has one that works, else
        started. Either way, spares are readied for the tasks that follow (as many as
        the job runs at once): a spare has done its start-up (a new interpreter's, or a
        forked child's) while other tasks ran, and waits for the TASK reply, which a master
        may delay: so a task costs its work, not a worker's start, whenever tasks keep
        coming.
        """
        slots = self._slots(pack)
        with self._lock:
            self._wanted -= 1
            spares = max(0, min(slots, self._wanted))
        forks = self._forks
        if forks is not None and forks.usable:
            try:
                return forks.fork(self._cancelled, spares)
            except ForkFailed:
                if self._cancelled.is_set():
                    raise
        return self._worker_process(layout, pack, spares)

    def _worker_process(
        self, layout: JobLayout, pack: jobpack.JobPack, spares: int
    ) -> subprocess.Popen[bytes]:
        """A started worker: a spare if one is ready, and new spares up to ``spares``."""
        with self._lock:
            spare = self._spares.pop() if self._spares else None
        process = spare if spare is not None and spare.poll() is None else None
        if spare is not None and process is None:
            _kill(spare)
        if process is None:
            process = self._spawn(layout, pack)
        with self._lock:
            missing = spares - len(self._spares)
        for _ in range(max(0, missing)):
            if self._cancelled.is_set():
                break
            new = self._spawn(layout, pack)
            with self._lock:
                self._spares.append(new)
        return process

    def _spawn(
        self, layout: JobLayout, pack: jobpack.JobPack, control: socket.socket | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the jobhome's worker as a Disco node does (cwd, jobenvs, stdout+stderr);
        with a ``control`` socket, as the job's zygote: the socket is its input."""
        env = {**os.environ, **self.environ, **pack.jobenvs}
        if control is not None:
            env[FORKSERVER_ENV] = layout.jobfile
        worker = os.path.join(layout.home, str(pack.jobdict["worker"]))
        options: dict[str, Any] = {
            "cwd": layout.home,
            "env": env,
            "stdin": subprocess.PIPE if control is None else control.fileno(),
            "stdout": subprocess.PIPE if control is None else subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
        }
        try:
            return popen([worker], **options)
        except PermissionError:
            if not _shell_script(worker):
                raise
            # A temporary directory mounted noexec (a hardened /tmp): the shell reads it.
            return popen(["/bin/sh", worker], **options)

    def _task_outputs(self, layout: JobLayout, task: _StageTask, outcome: Attempt) -> list[Output]:
        local = [(label, path, size) for label, path, size in outcome.outputs if "://" not in path]
        remote: list[Output] = [
            DataOutput(label, size, (path,))
            for label, path, size in outcome.outputs
            if "://" in path
        ]
        if not local:
            return remote
        return [self._write_index(layout, task, local), *remote]

    def _write_index(
        self, layout: JobLayout, task: _StageTask, local: list[tuple[int, str, int]]
    ) -> DirOutput:
        name = layout.new_index(task.stage, task.taskid)
        lines: list[str] = []
        sizes: dict[int, int] = {}
        for label, path, size in local:
            lines.append(f"{label} {layout.url(path)} {size}\n")
            sizes[label] = sizes.get(label, 0) + size
        # Written in place, as a Disco 0.5.4 node writes it (worker_runtime:local_output): it
        # is read only once the task is done. .disco/ is made with the job home.
        path = os.path.join(layout.home, name)
        try:
            with open(path, "w") as handle:
                handle.writelines(lines)
        except OSError as exc:
            raise JobError(
                f"could not write the index of task {task.stage}:{task.taskid}'s outputs, "
                f"{path} ({exc.strerror or exc}){_fix_of(exc)}"
            ) from exc
        return DirOutput(layout.url(name, scheme="dir"), tuple(sorted(sizes.items())))


@dataclass(frozen=True)
class _StageTask:
    """One task of a stage: its id in the job and its group of inputs."""

    stage: str
    grouping: str
    taskid: int
    plan: TaskGroup


class _Conversation:
    """One worker process, answered over its pipes until it is DONE or has failed."""

    def __init__(
        self,
        master: NodeMaster,
        layout: JobLayout,
        task: _StageTask,
        process: Worker,
    ):
        self.master, self.layout, self.task, self.process = master, layout, task, process
        self.side = MasterSide()
        self.outputs: list[tuple[int, str, int]] = []
        self.seen = bytearray()
        # Started with stdin and stdout as pipes (see NodeMaster._spawn).
        self.stdin = cast(IO[bytes], process.stdin)
        self.stdout = cast(IO[bytes], process.stdout)

    def run(self) -> Attempt:
        key = (self.task.stage, self.task.taskid)
        with self.master._lock:
            self.master._active[key] = None
        try:
            return self._talk()
        finally:
            with self.master._lock:
                self.master._active.pop(key, None)

    def _talk(self) -> Attempt:
        reader = self.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(reader, selectors.EVENT_READ)
            deadline = time.monotonic() + FIRST_MESSAGE_TIMEOUT
            while True:
                if self.master._cancelled.is_set():
                    return Attempt(False, text="cancelled")
                if not selector.select(timeout=0.25):
                    if _ended(self.process):  # what it started may hold its pipe open
                        return self._last_words(selector, reader)
                    if not self.side_started() and time.monotonic() > deadline:
                        return Attempt(False, text="Worker did not send its PID in 30 seconds")
                    continue
                chunk = os.read(reader, 1 << 16)
                if not chunk:
                    return self._died()
                outcome = self._receive(chunk)
                if outcome is not None:
                    return outcome

    def _last_words(self, selector: selectors.BaseSelector, reader: int) -> Attempt:
        """The outcome of a worker that ended with its output still open: what it wrote
        before it ended, read now, else its death."""
        while selector.select(timeout=0) and (chunk := os.read(reader, 1 << 16)):
            outcome = self._receive(chunk)
            if outcome is not None:
                return outcome
        return self._died()

    def side_started(self) -> bool:
        return bool(self.seen)

    def _receive(self, chunk: bytes) -> Attempt | None:
        """Act on the messages ``chunk`` completes; their replies go in one write (a worker
        sends ahead: WORKER, TASK and INPUT come together)."""
        self.seen += chunk
        del self.seen[: max(0, len(self.seen) - LAST_WORDS)]
        replies: list[bytes] = []
        try:
            self.side.receive_data(chunk)
            while (message := self.side.next_event()) is not None:
                outcome = self._handle(message, replies)
                if outcome is not None:
                    return outcome
        except RemoteProtocolError as exc:  # a LocalProtocolError is a bug here: it propagates
            return Attempt(False, text=str(exc), fatal=exc.fatal)
        finally:
            self._send(b"".join(replies))
        return None

    def _handle(self, message: Request, replies: list[bytes]) -> Attempt | None:
        """Act on a worker message (the side checked it, absolute OUTPUT paths included);
        its reply, if it is owed one, goes on ``replies``."""
        if isinstance(message, Done):
            return Attempt(True, outputs=self.outputs)
        if isinstance(message, (Error, Fatal)):
            return Attempt(False, text=message.text, fatal=isinstance(message, Fatal))
        if isinstance(message, OutputMessage):
            self.outputs.append((message.label, message.location, message.size))
        if isinstance(message, Msg):
            self.master._emit(
                "msg", {"stage": self.task.stage, "taskid": self.task.taskid, "text": message.text}
            )
        replies.append(self.side.send(self._reply(message)))
        return None

    def _reply(self, message: Request) -> Reply:
        """The answer to a message that is owed one."""
        if isinstance(message, Task):
            return self._task_info()
        if isinstance(message, Input):
            return self._inputs(message)
        if isinstance(message, InputErr):
            return Fail()
        return Ok()

    def _send(self, replies: bytes) -> None:
        if replies:
            with contextlib.suppress(BrokenPipeError):  # the worker is gone: its end says so
                write_without_sigpipe(self.stdin.fileno(), replies)

    def _task_info(self) -> TaskInfo:
        m, layout, task = self.master, self.layout, self.task
        return TaskInfo(
            taskid=task.taskid,
            master=m.master_url,
            disco_port=m.disco_port,
            put_port=m.put_port,
            ddfs_data=os.path.join(os.path.dirname(m.disco_data), "ddfs"),
            disco_data=m.disco_data,
            stage=task.stage,
            grouping=task.grouping,
            group=task.plan.group,
            jobfile=layout.jobfile,
            jobname=layout.jobname,
            host=m.host,
        )

    def _inputs(self, request: Input) -> InputReply:
        entries = [
            InputEntry(index, "ok", item.label, tuple(enumerate(item.urls)))
            for index, item in enumerate(self.task.plan.inputs)
        ]
        if request.exclude is not None:
            excluded = set(request.exclude)
            entries = [e for e in entries if e.input_id not in excluded]
        elif request.include is not None:
            known = {e.input_id: e for e in entries}
            entries = [known.get(i, InputEntry(i, "ok", 0, ())) for i in request.include]
        return InputReply("done", tuple(entries))

    def _died(self) -> Attempt:
        cut_off = _runs_on(self.process)  # its output closed while it ran on
        _signal(self.process)  # what it started, which may hold its pipes: killed first
        code = self.process.wait()
        closed = code == CUT_OFF and self._said_cut_off()  # not a stage's sys.exit(76)
        words = bytes(self.seen).decode(errors="replace")
        text = f"Worker crashed! (exit code: {code})\n"
        text += f"Worker died. Last words:\n{words}" if words else "Worker died without output"
        inputs = tuple(item.urls[0] for item in self.task.plan.inputs if item.urls)
        return Attempt(
            False,
            text=text,
            exit_code=code,
            inputs=inputs,
            said_nothing=not words,
            start_up="" if words else self._start_up_output(),
            cut_off=cut_off or closed,
            fatal=closed and self.master.cut_off_fatal,  # the stage would do it again
        )

    def _said_cut_off(self) -> bool:
        """Whether the worker said it ended for a channel stage code closed (and forget it)."""
        path = os.path.join(self.layout.home, f".worker-{self.process.pid}.cut")
        try:
            os.remove(path)
        except OSError:
            return False
        return True

    def _start_up_output(self) -> str:
        """The end of what a worker that said nothing printed as it started: the launcher
        sends its interpreter's output to ``.worker-<pid>.out`` in the job home, which the
        runtime forwards only once it runs (a forked worker's start was its zygote's)."""
        if isinstance(self.process, ForkedWorker):
            return ""
        path = os.path.join(self.layout.home, f".worker-{self.process.pid}.out")
        try:
            with open(path, "rb") as output:
                output.seek(max(0, os.path.getsize(path) - START_UP_WORDS))
                return output.read().decode(errors="replace").strip()
        except OSError:
            return ""


def _signal(process: Worker) -> None:
    """SIGKILL the worker and what it started (its process group, while the worker is not
    reaped: until then its pid and its group's are its own), and first its children, in
    sessions of their own too, as a Disco node's `pkill -9 -P`; its pipes stay open."""
    if isinstance(process, ForkedWorker):
        process.kill()
    elif process.returncode is None:
        for child in children(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _runs_on(process: Worker, seconds: float = 0.2) -> bool:
    """Whether the worker still runs ``seconds`` after its output closed: one that dies
    closes its descriptors a moment before it is dead."""
    deadline = time.monotonic() + seconds
    while _running_now(process):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.01)
    return False


def _running_now(process: Worker) -> bool:
    """Whether the worker runs (not dead, though not yet reaped: its zygote's report of its
    end comes later than its closed output)."""
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):  # gone, or no /proc
        return not _ended(process)
    return state not in (b"Z", b"X")


def _ended(process: Worker) -> bool:
    """Whether the worker has ended; a started one is not reaped (see _signal)."""
    if isinstance(process, ForkedWorker) or process.returncode is not None:
        return process.poll() is not None
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except AttributeError:  # no waitid (macOS): reaped, its group killed after as it can be
        return process.poll() is not None
    except ChildProcessError:  # reaped already
        return True


def _kill(process: Worker) -> None:
    """Kill the worker and its children and close its input, as Disco does at task end.
    Killed first: a write to a worker that stopped reading holds its input until then."""
    if isinstance(process, ForkedWorker):
        process.stop()
        return
    _signal(process)
    process.wait()
    with contextlib.suppress(OSError, ValueError):
        if process.stdin is not None:
            process.stdin.close()
    if process.stdout is not None:
        process.stdout.close()


def _result_urls(output: Output) -> list[str]:
    return [output.url] if isinstance(output, DirOutput) else list(output.urls)


def _started(threads: Iterable[threading.Thread], stage: str) -> list[threading.Thread]:
    """``threads``, started, as many as start: under a limit of memory or threads (``ulimit
    -v``: each takes its stack) the tasks of ``stage`` run on fewer; a JobError if none
    starts."""
    started: list[threading.Thread] = []
    for thread in threads:
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            if started:
                break
            raise JobError(
                f"could not start a thread to run the tasks of stage {stage!r} ({exc}): this "
                "process is at a limit of memory or threads (ulimit -v, ulimit -u); raise it, "
                "or run with mode='inline'"
            ) from exc
        started.append(thread)
    return started


class _Slots:
    """A stage's tasks, run on threads of its own (not a concurrent.futures pool, whose
    exit hook refuses work once the interpreter is ending: a job run from a thread the
    main thread left must run on), each taking tasks until none is left or one failed."""

    def __init__(self, tasks: list[tuple[int, _StageTask]]) -> None:
        self._tasks = tasks[::-1]
        self._lock = threading.Lock()
        self._failures: list[BaseException | None] = []

    def run(
        self, work: Callable[[int, _StageTask], None], count: int, stop: Callable[[], None]
    ) -> None:
        """``work(index, task)`` for every task, on ``count`` threads; ``stop()`` at the first
        failure (the running tasks' workers) or Ctrl-C; then raise the first failure."""

        def slot() -> None:
            while (taken := self._take()) is not None:
                try:
                    work(*taken)
                except BaseException as exc:
                    self._fail(exc)
                    stop()

        slots = (
            threading.Thread(
                target=in_this_context(slot), name=f"discodsl task slot {n}", daemon=True
            )
            for n in range(count)
        )
        threads = _started(slots, self._tasks[-1][1].stage if self._tasks else "")
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C: stop the workers, then wait for their threads
            self._fail(None)
            stop()
            for thread in threads:
                thread.join()
            raise
        if self._failures and self._failures[0] is not None:
            raise self._failures[0]

    def _take(self) -> tuple[int, _StageTask] | None:
        """The next task to run; None once all are taken, or since a failure."""
        with self._lock:
            if self._failures or not self._tasks:
                return None
            return self._tasks.pop()

    def _fail(self, exc: BaseException | None) -> None:
        with self._lock:
            self._failures.append(exc)


def _failure_message(task: _StageTask, failures: int, outcome: Attempt, limit: int) -> str:
    if outcome.fatal:
        return f"task {task.stage}:{task.taskid} failed fatally"
    return (
        f"task {task.stage}:{task.taskid} failed {failures} times. "
        f"At most {limit} failures are allowed."
    )


# How long a start waits for a launcher that is "Text file busy" (see popen).
BUSY_PATIENCE_S = 1.0


def write_without_sigpipe(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` (a pipe to a worker), unbuffered (nothing is left to flush
    again once the worker has gone), raising BrokenPipeError if it has, even where the
    program set SIGPIPE back to its default, which would end the program at once (Python
    ignores SIGPIPE; scripts that print into ``| head`` often restore it). SIGPIPE is held
    back in this thread for the write, and one it raised is dropped."""
    if signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN:
        _write_all(fd, data)
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        _write_all(fd, data)
    finally:
        if signal.SIGPIPE in signal.sigpending():
            signal.sigtimedwait({signal.SIGPIPE}, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_home(home: str) -> None:
    """Make a job's home, placed apart from earlier runs' (:func:`places.spread`: by its
    name, unique, and so its tasks' files); FileExistsError if it is there."""
    parent = os.path.dirname(home)
    os.makedirs(parent, exist_ok=True)
    places.spread(parent)
    os.mkdir(home)


def _shell_script(path: str) -> bool:
    """Whether ``path`` is a ``#!/bin/sh`` script (discodsl's launcher is)."""
    try:
        with open(path, "rb") as handle:
            return handle.readline().rstrip() == b"#!/bin/sh"
    except OSError:
        return False


def popen(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen``, tried again while the program is "Text file busy" (ETXTBSY), for up
    to BUSY_PATIENCE_S. A job writes its launcher just before starting it, and a process that
    another thread forks meanwhile (another run's worker start) holds the file open for
    writing until it execs: the kernel refuses to exec a file open for writing."""
    pause, waited = 0.002, 0.0
    while True:
        try:
            return subprocess.Popen(args, **options)
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or waited >= BUSY_PATIENCE_S:
                raise
        time.sleep(pause)
        waited += pause
        pause = min(2 * pause, 0.1)


_NAMES_TRIED = 1000  # names of a job passed over, their homes there already, at most


def _not_laid_out(layout: JobLayout, exc: OSError) -> JobError:
    """The error for a job home that could not be written (a full disk, a read-only one,
    no file descriptor left)."""
    return JobError(
        f"could not lay out job {layout.jobname!r} in {layout.home} "
        f"({exc.strerror or exc}){_fix_of(exc)}"
    )


# The limits a worker's start meets: what to do is said (any other error, as it is).
_LIMITS = (errno.EMFILE, errno.ENFILE, errno.EAGAIN)


def _fix_of(exc: OSError) -> str:
    """What to do about an error writing a job's files under TMPDIR, by its errno (a full
    disk, if none more telling)."""
    return _FIXES.get(exc.errno or 0, _FULL)


# Local runs keep their jobs' files under TMPDIR.
_FULL = ": free space there, or set TMPDIR to a directory with room"
_NOT_WRITABLE = ": set TMPDIR to a directory this program may write"
_FIXES = {
    errno.EMFILE: ": the program holds as many files open as it may (ulimit -n, "
    "resource.RLIMIT_NOFILE): close the files and connections it keeps open, or raise the "
    "limit (ulimit -n 4096)",
    errno.ENFILE: ": the system holds as many files open as it may: close some, or run fewer "
    "tasks at once (max_cores=)",
    errno.EFBIG: ": a file reached the size limit on files (ulimit -f): raise it",
    errno.ENAMETOOLONG: ": the job's paths under TMPDIR are too long: shorten TMPDIR",
    errno.EAGAIN: ": the user runs as many processes and threads as it may (ulimit -u, "
    "resource.RLIMIT_NPROC): raise the limit, or run fewer tasks at once (max_cores=)",
    errno.ENOENT: ": the run's directory was removed while the run went on (a cleaner of "
    "/tmp?): run it again, with TMPDIR set to a directory nothing cleans meanwhile",
    errno.EROFS: _NOT_WRITABLE,
    errno.EACCES: _NOT_WRITABLE,
    errno.EPERM: _NOT_WRITABLE,
}
