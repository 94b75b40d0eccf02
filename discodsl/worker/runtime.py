"""The worker's main loop: the only code that touches the protocol's file descriptors.

A Disco node (or the local runner) starts the jobhome's ``worker`` launcher,
which runs ``python -m discodsl.worker --protocol-fd 3``. The loop is the
contract of spec section 4: WORKER, TASK and the first INPUT (in one write), load
the job from jobdata, INPUT again until ``done``, run the stage, OUTPUT per file and
DONE (in one write); a failure becomes ERROR (the task is retried) or FATAL (the job
is killed). The master never
answers DONE, ERROR or FATAL: it kills the worker, so afterwards we wait for
end of input and exit then. PING is never sent. A thread watches the input:
when the master's end closes (it died, however), the worker and what stage
code started end at once. A fork server's child (:mod:`discodsl.worker.forkserver`)
runs the same loop, :func:`serve`, on the job its zygote loaded; the zygote
is its watch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import select
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar, cast

from discodsl.worker import CUT_OFF, counters, current, forks, messages, report, shipped_classes
from discodsl.worker.capture import Capture, Pacer, read_early_output
from discodsl.worker.declared import NodeJob
from discodsl.worker.errors import (
    CLIENT_NEEDED,
    LOAD_FAILURE,
    MISSING_HERE,
    RemoteProtocolError,
    retryable,
)
from discodsl.worker.execute import run_task
from discodsl.worker.inputs import Cursor, Listed, iter_input
from discodsl.worker.jobfile import read_jobdata, read_jobenvs
from discodsl.worker.opening import Node
from discodsl.worker.replies import InputReply, Ok, Reply, TaskInfo
from discodsl.worker.sides import WorkerSide
from discodsl.worker.spec import JobSpec, python_tag, split_jobdata
from discodsl.worker.task import TaskSetup, WrittenFile

if TYPE_CHECKING:
    from discodsl.worker.readers import Reader


class FatalJobError(Exception):
    """The job cannot run on this node at all: retrying would not help (sent as FATAL)."""


_R = TypeVar("_R", bound=Reply)
# The most requests sent ahead of their replies. A master answers each as it reads it, and
# one that blocks writing answers we are not reading (a pipe holds 64 KB) stops reading
# what we write: this many frames, and their answers, fit a pipe many times over.
SEND_AHEAD = 64
Final = messages.Done | messages.Error | messages.Fatal
# The exit status of a worker whose master went away before its task ended (a Disco node
# reports it as "Worker crashed! (exit code: 1)"; 0 would read as a success).
MASTER_GONE = 1


class Channel:
    """The worker's end of the protocol over two fds: requests and their replies, under a
    lock. Several requests go in one write when nothing in them waits on a reply (the
    protocol lets a worker send ahead; replies come in order): WORKER with TASK and the
    first INPUT, a task's OUTPUTs with its DONE. A task waits for its master once, not
    three times."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.side = WorkerSide()
        self.lock = threading.Lock()
        self.pacer = Pacer()
        self.awaited = ""  # the request whose reply is being read
        self.ended = False  # the task's last frame (DONE, ERROR or FATAL) is sent
        self.ends = _identities(read_fd, write_fd)  # what the fds are, to see them replaced

    def request(self, message: messages.Request, answer: type[_R]) -> _R:
        """Send a message that owes a reply and return the reply, an ``answer``."""
        (reply,) = self.requests([message], answer)
        return reply

    def requests(self, batch: Sequence[messages.Request], answer: type[_R]) -> list[_R]:
        """Send messages that owe replies, SEND_AHEAD to a write, and return their replies,
        each an ``answer``."""
        replies: list[_R] = []
        for start in range(0, len(batch), SEND_AHEAD):
            asked = [(message, answer) for message in batch[start : start + SEND_AHEAD]]
            replies.extend(cast("list[_R]", self.exchange(asked)))
        return replies

    def exchange(self, asked: Sequence[tuple[messages.Request, type[Any]]]) -> list[Reply]:
        """Send messages that owe replies, in one write, and return their replies, each of
        the type given with its message."""
        with self.lock:
            self._write(b"".join(self.side.send(message) for message, _ in asked))
            replies = []
            for message, answer in asked:
                self.awaited = message.NAME
                reply = self._read_reply()
                if not isinstance(reply, answer):
                    raise RemoteProtocolError(
                        f"{reply.NAME} reply to {message.NAME}: this worker only handles "
                        f"{answer.NAME}"
                    )
                replies.append(reply)
            return replies

    def final(self, message: Final, ahead: Sequence[messages.Request] = ()) -> None:
        """Send DONE, ERROR or FATAL, after ``ahead`` (OUTPUTs) in the same write: no
        reply comes to the final message, and the master, which answers the others first,
        is the judge of them (it fails the task over a bad one, as a Disco master does).
        All but the last SEND_AHEAD of ``ahead`` go first, with their replies read (a reply
        that is not OK makes the final message an ERROR saying so)."""
        last = max(0, len(ahead) - SEND_AHEAD)
        try:
            self.requests(ahead[:last], Ok)
        except RemoteProtocolError as exc:
            ahead, last, message = (), 0, messages.Error(str(exc))
        with self.lock:
            self._write(b"".join(self.side.send(m) for m in (*ahead[last:], message)))
            self.ended = True

    def exit_status_at_hangup(self) -> int:
        """The exit status for a worker whose master closed its end: 0 once the task's last
        frame is sent, else MASTER_GONE. A master may close as soon as it reads DONE, while
        the main thread, which wrote it, holds the lock to mark the task ended: wait for
        that (bounded: a master gone makes any write or read under the lock fail at once).
        """
        if self.lock.acquire(timeout=5):
            self.lock.release()
        return 0 if self.ended else MASTER_GONE

    def _write(self, data: bytes) -> None:
        forks.check("write to", "the worker protocol")
        if _identities(self.read_fd, self.write_fd) != self.ends:  # dup2 over them: cut off
            raise OSError(errno.EBADF, "the worker protocol's descriptors were replaced")
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def _read_reply(self) -> Reply:
        while (reply := self.side.next_event()) is None:
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:  # the master went away: nobody to work for, and no success
                raise SystemExit(MASTER_GONE)
            self.side.receive_data(chunk)
        return reply


def _identities(*fds: int) -> list[tuple[int, int]]:
    """Which files ``fds`` are open on (a stage that points them at /dev/null, as a
    daemonizing helper does, changes that; one that closes them makes this an OSError)."""
    return [(stat.st_dev, stat.st_ino) for stat in map(os.fstat, fds)]


def main(argv: list[str] | None = None) -> int:
    """Run one task; the process is then killed by the master (or exits at end of input)."""
    args = sys.argv[1:] if argv is None else argv
    protocol_out = int(args[args.index("--protocol-fd") + 1]) if "--protocol-fd" in args else None
    protocol_in, protocol_out = _private_fds(protocol_out)
    return serve(protocol_in, protocol_out, read_early_output(f".worker-{os.getpid()}.out"))


def serve(
    protocol_in: int,
    protocol_out: int,
    early: str = "",
    preloaded: Preloaded | None = None,
    watched: bool = False,
) -> int:
    """Run the one task offered over these fds: a worker's, or a fork server's child's.

    ``early`` is what the interpreter printed before (forwarded first),
    ``preloaded`` the job a fork server loaded before forking us; ``watched``:
    a fork server ends us when the master goes, so no thread of ours watches.
    """
    forks.own_task()
    _CUT_MARK[:] = [os.path.abspath(f".worker-{os.getpid()}.cut")]  # in the job home
    channel = Channel(protocol_in, protocol_out)
    _closed_in_forks(protocol_in, protocol_out)
    if not watched:
        _watch_master(channel)
    capture = Capture(early=early)
    sys.breakpointhook = _no_debugger
    try:
        started = _start(channel)
        if started is None:
            _wait_for_end(protocol_in)
            return 1
        capture.forward(lambda text: _message(channel, text))
        try:
            final, outputs = _work(channel, *started, preloaded)
        except SystemExit as stop:  # a stage's sys.exit() ends the worker: what it printed
            forks.check("end", "the task")  # in the task's own process only
            _ending(stop, capture)  # first, and the words it exits with, are sent
            raise
        _end_task(channel, capture, final, outputs)
    except (BrokenPipeError, ConnectionResetError):
        return MASTER_GONE  # nobody to report to
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
        return _cut_off()  # the stage closed the channel's descriptors (os.closerange)
    _wait_for_end(protocol_in)
    return 0


def _end_task(
    channel: Channel, capture: Capture, final: Final, outputs: Sequence[messages.Request]
) -> None:
    """Send what the task printed and counted, then its OUTPUTs and ``final`` message."""
    # A child stage code forked that came back here ends now, saying so while what it says
    # still reaches the task's output, and before it flushes or reads anything.
    forks.check("end", "the task")
    capture.close()
    counts = counters.take()
    if isinstance(final, messages.Done):  # a failed attempt's counts: dropped
        for text in counters.encode(counts, capture.message):
            _message(channel, text)
    channel.final(final, outputs)


def _ending(stop: SystemExit, capture: Capture) -> None:
    """Send what a stage printed before its ``sys.exit()``, and the words it exits with as
    Python prints them (``sys.exit("config missing")``), rather than lose them with the
    capture's thread; a stage that closed the channel first has nothing sent, and its exit
    is as it made it (not an OSError of the send)."""
    if stop.code is not None and not isinstance(stop.code, int):
        print(stop.code, file=sys.stderr)
    with contextlib.suppress(OSError):
        capture.close()


def _closed_in_forks(*fds: int) -> None:
    """Close ``fds``, the protocol's, in a child stage code forks (multiprocessing's fork,
    os.fork): a master sees a worker end at end of file on its pipes, and a child that
    held them and outlived the worker hid its end (a Disco master waits for it for good).
    A child that runs a program closes them anyway (they are not inheritable)."""

    def close() -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=close)


def _start(channel: Channel) -> tuple[TaskInfo, InputReply] | None:
    """WORKER, TASK and INPUT: the task and its first inputs; None when a reply made no
    sense (FATAL, saying why, has been sent: a master that garbles these would garble the
    rest)."""
    try:
        _, task, inputs = channel.exchange(
            [
                (messages.Worker(os.getpid()), Ok),
                (messages.Task(), TaskInfo),
                (messages.Input(), InputReply),
            ]
        )
        return cast(TaskInfo, task), cast(InputReply, inputs)
    except (RemoteProtocolError, ValueError, KeyError, TypeError) as exc:
        channel.final(
            messages.Fatal(
                f"the master's reply to {channel.awaited} was not understood ({exc}): this "
                "worker speaks Disco's worker protocol 1.1, as a Disco 0.5.4 master does"
            )
        )
        return None


def _private_fds(protocol_out: int | None) -> tuple[int, int]:
    """Keep the protocol on private fds; user code gets /dev/null as stdin."""
    protocol_in = os.dup(0)
    if protocol_out is None:
        protocol_out = os.dup(1)
    # The launcher's fd 3 is inheritable: a program stage code ran with close_fds=False
    # held the master's pipe, and a Disco master waited for its end for good.
    os.set_inheritable(protocol_out, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return protocol_in, protocol_out


def _no_debugger(*args: Any, **kwargs: Any) -> None:
    """``breakpoint()`` in a worker: nobody can answer a debugger here, so say so."""
    raise RuntimeError(
        "breakpoint() was called in a worker process, where no one can answer the debugger: "
        "run the job with mode='inline' to debug it"
    )


def _message(channel: Channel, text: str) -> None:
    """Send a MSG, waiting first if the master's rate limit is near."""
    channel.pacer.wait()
    channel.request(messages.Msg(text), Ok)


def _work(
    channel: Channel, task: TaskInfo, inputs: InputReply, preloaded: Preloaded | None
) -> tuple[Final, list[messages.Output]]:
    """Run the task, its first ``inputs`` given; the final message (DONE, ERROR or FATAL)
    and the OUTPUTs to send before it (a DONE's)."""
    try:
        if preloaded is None:
            _set_environ(_jobenvs(task.jobfile))
            job = read_jobspec(task.jobfile)
        else:
            _set_environ(preloaded.jobenvs(task.jobfile))
            job = preloaded.load(task.jobfile)
        written = run(channel, task, job, inputs)
    except FatalJobError as exc:
        return messages.Fatal(str(exc)), []
    except Exception as exc:
        # As Disco's own worker: I/O, data and memory errors (and Retry) are worth
        # another try (ERROR); anything else is a bug that would fail again (FATAL).
        retry = retryable(exc)
        failure = report.describe(exc, stage=task.stage, taskid=task.taskid, retry=retry)
        text = report.encode(failure)
        return (messages.Error(text) if retry else messages.Fatal(text)), []
    return messages.Done(), [messages.Output(label, path, size) for label, path, size in written]


def _set_environ(jobenvs: dict[str, str]) -> None:
    """The task's environment: the job's ``env=``, less what told the launcher which Python
    to run (a Python the stage starts is its own: a discodsl program it runs would run its
    local workers on this one)."""
    os.environ.update(jobenvs)
    for name in _LAUNCHERS:
        os.environ.pop(name, None)


_LAUNCHERS = ("DISCODSL_PYTHON", "DISCODSL_PYTHON_FLAGS")


def _jobenvs(jobfile: str) -> dict[str, str]:
    """The job's ``env=`` as the jobpack holds it, for this process's environment (a master
    may have mangled what it set: see jobfile.read_jobenvs)."""
    try:
        return read_jobenvs(jobfile)
    except (OSError, ValueError) as exc:
        raise FatalJobError(f"cannot read the job's env from {jobfile}: {exc}") from exc


def read_jobspec(jobfile: str) -> JobSpec:
    """The JobSpec in the jobdata of the jobpack at ``jobfile``; FatalJobError if it cannot load."""
    try:
        header_fields, pickled = split_jobdata(read_jobdata(jobfile))
    except (OSError, ValueError) as exc:
        raise FatalJobError(f"cannot read the job from {jobfile}: {exc}") from exc
    _check_python(header_fields["python"])
    return _unpickle(pickled)


@dataclass(frozen=True)
class Preloaded:
    """A job loaded before its tasks came (by a fork server): its env and the JobSpec in
    ``jobfile``, or the exceptions reading them raised, raised again by each task as if
    it read them."""

    jobfile: str
    job: JobSpec | None = None
    error: Exception | None = None
    envs: dict[str, str] | Exception = field(default_factory=dict)

    def jobenvs(self, jobfile: str) -> dict[str, str]:
        """The job's ``env=`` in ``jobfile``: as preloaded if it is the file preloaded."""
        if jobfile != self.jobfile:
            return _jobenvs(jobfile)
        if isinstance(self.envs, Exception):
            raise self.envs
        return self.envs

    def load(self, jobfile: str) -> JobSpec:
        """The JobSpec in ``jobfile``: this one if it is the file preloaded, else read now."""
        if jobfile != self.jobfile:
            return read_jobspec(jobfile)
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self.job


def preload(jobfile: str) -> Preloaded:
    """Load the job in ``jobfile`` once, for the tasks a fork server will fork."""
    envs: dict[str, str] | Exception
    try:
        envs = _jobenvs(jobfile)
    except FatalJobError as exc:
        envs = exc
    try:
        return Preloaded(jobfile, job=read_jobspec(jobfile), envs=envs)
    except Exception as exc:
        return Preloaded(jobfile, error=exc, envs=envs)


def _check_python(wanted: str) -> None:
    here = python_tag((sys.version_info[0], sys.version_info[1]))
    if wanted != here:
        raise FatalJobError(
            f"this job needs Python {wanted} (the client's version) but the node runs "
            f"Python {here} ({sys.executable}): install python{wanted} on the nodes, or "
            f"submit from a Python {here} client"
        )


def _unpickle(pickled: bytes) -> JobSpec:
    import cloudpickle  # shipped in the job home

    try:
        job = cloudpickle.loads(pickled)
    except Exception as exc:
        raise FatalJobError(
            f"{LOAD_FAILURE} on this node ({type(exc).__name__}: {exc}); {_fix(exc)}"
        ) from exc
    if not isinstance(job, JobSpec):
        raise FatalJobError(f"jobdata holds a {type(job).__name__}, not a JobSpec: rebuild it")
    shipped_classes.adopt(job)
    return job


def _fix(exc: Exception) -> str:
    """What to do when the job's pickle does not load: a cut or damaged one is built again,
    else a module it names is missing here."""
    if isinstance(exc, (EOFError, pickle.UnpicklingError)):
        return "the job's data is cut short or damaged: build and submit the jobpack again"
    missing = getattr(exc, "name", None) or ""
    if isinstance(exc, ImportError) and missing == "discodsl":  # from discodsl import job
        return (
            f"a module the stages use imports {CLIENT_NEEDED} (a run's results, its errors, "
            "JobOptions), which stays with the program: a node has discodsl's declarations "
            "(@job, @map... leave their functions as they are), readers, count, status and "
            "the errors stage code raises (DataError, MalformedRecord, Retry, StageError) "
            "only; import the rest inside the functions that "
            "use it, or move the functions stages call out of that module"
        )
    if missing.startswith("discodsl.") and not missing.startswith("discodsl.worker"):
        return (
            f"a stage, or a module shipped with it by value, holds {CLIENT_NEEDED} (a job, a "
            "decorator, its results, a run), which stays with the program: a stage cannot run "
            "a job (chain jobs instead, passing one's results as the next one's inputs), and "
            "the functions stages call belong in modules that do not declare jobs"
        )
    if isinstance(exc, AttributeError) and isinstance(getattr(exc, "obj", None), NodeJob):
        return (
            "a module the stages use does more with a job at its top level than a node's "
            "job does (with_options() and calling it: see discodsl.worker.declared); do the "
            "rest where jobs are run"
        )
    if not isinstance(exc, (ImportError, AttributeError)):  # an object's own __setstate__
        return (
            "an object the stages hold (a global, a closure's value, params) raised as it was "
            "unpickled here: make it in an init hook (init(params) runs once per task) "
            "rather than holding it in the stages"
        )
    return (
        f"{MISSING_HERE}: install it on the nodes, or register it with "
        "cloudpickle.register_pickle_by_value"
    )


def run(channel: Channel, info: TaskInfo, job: JobSpec, first: InputReply) -> list[WrittenFile]:
    """Read the task's inputs through the protocol (``first``, the reply to its first
    INPUT, then as many more as it takes) and run its stage over them."""
    try:
        index, _ = job.stage(info.stage)
    except KeyError:
        raise FatalJobError(f"the job has no stage {info.stage!r}: rebuild the jobpack") from None
    node = Node(
        host=info.host,
        disco_port=info.disco_port,
        disco_data=info.disco_data,
        ddfs_data=info.ddfs_data,
    )
    current.in_a_worker()
    task = TaskSetup(
        job,
        index,
        taskid=info.taskid,
        label=info.group[0],
        workdir=os.getcwd(),
        jobname=info.jobname,
        host=info.host,
        master=info.master,
    )
    cursor = Cursor()
    inputs = _inputs(channel, first, node, cursor, task.stage.reader, job.listed)
    return run_task(task, chain.from_iterable(inputs), cursor)


def _inputs(
    channel: Channel,
    reply: InputReply,
    node: Node,
    cursor: Cursor,
    reader: Reader | None,
    listed: Listed,
) -> Iterator[Iterator[Any]]:
    """The records of each input of the task (input by input: no Python frame of ours per
    record), ``reply``'s first, then more asked for until the master says done, when the
    ones before are read."""
    seen: list[int] = []
    while True:
        for entry in reply.entries:
            seen.append(entry.input_id)
            urls = [url for _, url in entry.replicas]
            yield iter_input(urls, entry.label, node, cursor, reader, listed)
        if reply.flag == "done":
            return
        reply = channel.request(messages.Input(exclude=tuple(seen)), InputReply)


def _watch_master(channel: Channel) -> None:
    """End this worker, whatever it is doing, as soon as the master's end of the channel's
    input closes: with MASTER_GONE before the task's last frame, else 0.

    The master (a Disco node's port, or the local runner) holds the other end
    of our input: if it dies, by SIGKILL or otherwise, nothing would ever stop
    stage code that runs for ever. poll() with no events asked reports the
    hang-up and reads nothing, so replies stay for the main thread.
    """
    watch = threading.Thread(target=_end_on_hangup, args=(channel,), name="master-watch")
    watch.daemon = True
    watch.start()


def _end_on_hangup(channel: Channel) -> None:
    poller = select.poll()
    poller.register(channel.read_fd, 0)  # POLLHUP, POLLERR and POLLNVAL are always reported
    while not (events := poller.poll()):
        pass
    closed = events[0][1] & select.POLLNVAL  # not open: stage code closed it (closerange)
    status = _cut_off() if closed else channel.exit_status_at_hangup()
    _kill_own_children()
    os._exit(status)


def _cut_off() -> int:
    """CUT_OFF, the exit status of a worker whose channel stage code closed, said in a file
    of the job home beside the worker's start-up output (``.worker-<pid>.cut``) too: a
    stage's own sys.exit(76) is no such thing."""
    with contextlib.suppress(OSError, IndexError):
        open(_CUT_MARK[0], "wb").close()
    return CUT_OFF


_CUT_MARK: list[str] = []  # where _cut_off says so: named as the task starts, in its home


def _kill_own_children() -> None:
    """SIGKILL what stage code started: our process group's other members if we lead it
    (as the local runner starts us), else our children (never the node's group)."""
    me = os.getpid()
    leader = os.getpgrp() == me
    for pid, parent, group in _processes():
        if pid != me and (parent == me or (leader and group == me)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process /proc shows (none without /proc)."""
    try:
        names = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return
    for name in names:
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        yield int(name), int(fields[1]), int(fields[2])


def _wait_for_end(fd: int) -> None:
    """Block until the master kills us or closes our input; never spin."""
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:
        pass
