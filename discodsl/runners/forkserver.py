"""The local master's end of a job's fork server: a worker per task, forked instead of started.

A new interpreter per task (start-up, imports, unpickling the job) costs
tens of milliseconds; :class:`ForkServer` starts the jobhome's ``worker``
launcher once per job as a zygote (:mod:`discodsl.worker.forkserver`) and
asks it for a child per task, sending the two pipe ends the child speaks the
worker protocol over. What it gives back, a :class:`ForkedWorker`, is used
as a started worker's :class:`subprocess.Popen` is (``pid``, ``stdin``,
``stdout``, ``poll``, ``wait``), so the conversation with it is the same. A
zygote that dies is started again (its children still running are killed:
their tasks are retried as dead workers are); after :data:`MAX_STARTS`
zygotes the job's remaining tasks get plain workers. Spares, children
forked ahead of need (WORKER sent, waiting for their task), are kept here
too, so a task rarely waits for a fork.

:func:`wanted` says whether to use one: not where ``os.fork`` or Unix
SOCK_SEQPACKET sockets are missing, nor with ``DISCODSL_NO_FORKSERVER=1``.
Not here: the spare workers of the plain path (:mod:`discodsl.runners.node`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from discodsl.errors import SettingsError

# Zygotes a job may start (the first and its replacements) before it gives up on them.
MAX_STARTS = 3
# Seconds to wait for a zygote told to end to kill its children and end; for one that never
# spoke (stuck at start-up: it forked no child), to end.
END_WAIT = 10.0
SILENT_END_WAIT = 0.5
# Set to 1 to start a worker process per task, as before the fork server.
DISABLE_ENV = "DISCODSL_NO_FORKSERVER"


class ForkFailed(OSError):
    """No child could be forked for a task (the zygote is gone, or fork failed)."""


def wanted() -> bool:
    """Whether the local runner should fork its workers from a zygote here."""
    if _disabled():
        return False
    return hasattr(os, "fork") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "AF_UNIX")


def _disabled() -> bool:
    """Whether DISABLE_ENV says yes; a SettingsError naming it if it says neither."""
    given = os.environ.get(DISABLE_ENV, "")
    if given.strip().lower() in _NO:
        return False
    if given.strip().lower() in _YES:
        return True
    raise SettingsError(
        f"{DISABLE_ENV}={given!r} says neither yes nor no: set it to 1 to start a worker "
        "process per task, or unset it (or 0) to fork them from a process that loaded the job"
    )


_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


# Starts the zygote with this socket as its standard input.
Starter = Callable[[socket.socket], "subprocess.Popen[bytes]"]


class ForkServer:
    """A job's zygote, started on first use and again if it dies (up to MAX_STARTS)."""

    def __init__(self, start: Starter):
        self._start = start
        self._lock = threading.Lock()
        self._zygote: _Zygote | None = None
        self._starts = 0
        self._closed = False
        self._ending = threading.Lock()

    def fork(self, cancelled: threading.Event, spares: int = 0) -> ForkedWorker:
        """A forked worker for one task, and ``spares`` more forked ahead for the tasks
        that follow (their start-up overlaps the work); ForkFailed if none can be had."""
        return self._running().fork(cancelled, spares)

    def _running(self) -> _Zygote:
        with self._lock:
            if self._zygote is not None and not self._zygote.gone:
                return self._zygote
            if self._zygote is not None:
                self._zygote.end()  # it died: reaped, its socket closed
                self._zygote = None
            if self._closed or self._starts >= MAX_STARTS:
                raise ForkFailed("the fork server is closed or kept dying")
            self._starts += 1
            try:
                self._zygote = _Zygote.start(self._start)
            except OSError as exc:
                raise ForkFailed(f"cannot start the fork server: {exc}") from exc
            return self._zygote

    @property
    def usable(self) -> bool:
        """False once the job has given up on zygotes (closed, or MAX_STARTS died)."""
        with self._lock:
            live = self._zygote is not None and not self._zygote.gone
            return not self._closed and (live or self._starts < MAX_STARTS)

    def close(self) -> None:
        """End the zygote and (it kills them) its children; wait for it, bounded."""
        with self._ending:  # a second close (the run ends as it is cancelled) waits too
            with self._lock:
                self._closed = True
                zygote, self._zygote = self._zygote, None
            if zygote is not None:
                zygote.end()


class _Zygote:
    """One zygote process, the thread reading what it says, and the children it forked
    ahead of need (spares: started, WORKER sent, waiting for their task)."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket):
        self.process, self.control = process, control
        self.changed = threading.Condition()
        self.pipes: dict[int, tuple[int, int]] = {}  # fork token: our ends, until answered
        self.started: dict[int, ForkedWorker | str] = {}  # fork token: the child, or why not
        self.spare_tokens: set[int] = set()  # forks asked for ahead of need
        self.spares: list[ForkedWorker] = []
        self.codes: dict[int, int] = {}  # a child that ended: its exit code
        self.children: set[int] = set()  # children that have not ended
        self.forgotten: set[int] = set()  # children whose end nobody will ask about
        self.gone = False
        self.spoke = False  # it answered a request: it may have children to end
        self.ending = False  # we closed our end: the zygote kills its children itself
        self.send_lock = threading.Lock()
        self.tokens = itertools.count()
        self.reader = threading.Thread(target=self._read, name="fork-server", daemon=True)
        self.reader.start()

    @classmethod
    def start(cls, starter: Starter) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = starter(theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            return cls(process, ours)
        except RuntimeError as exc:  # "can't start new thread": the program is at its limit
            ours.close()  # the zygote's end of input: it ends
            raise ForkFailed(f"cannot watch the fork server: {exc}") from exc

    def fork(self, cancelled: threading.Event, spares: int) -> ForkedWorker:
        """A child for a task: a spare if one is alive, else forked now; then ask for
        spares to have ``spares`` ready (or coming) for the tasks that follow."""
        worker = self._take_spare()
        if worker is None:
            worker = self._wait_started(self._ask(spare=False), cancelled)
        with self.changed:
            missing = spares - len(self.spares) - len(self.spare_tokens)
        for _ in range(missing):
            self._ask(spare=True)
        return worker

    def _take_spare(self) -> ForkedWorker | None:
        while True:
            with self.changed:
                if not self.spares:
                    return None
                worker = self.spares.pop(0)
                if worker.pid not in self.codes:
                    return worker
            worker.stop()  # it died waiting: dropped

    def _ask(self, spare: bool) -> int:
        """Ask for a child speaking the protocol over two new pipes; the request's token."""
        child_in, to_child = os.pipe()
        try:
            from_child, child_out = os.pipe()
        except OSError:  # at the descriptor limit: the first pipe goes back
            os.close(child_in)
            os.close(to_child)
            raise
        token = next(self.tokens)
        with self.changed:
            self.pipes[token] = (to_child, from_child)
            if spare:
                self.spare_tokens.add(token)
        try:
            self._send(f"F {token}", [child_in, child_out])
        except ForkFailed:
            self._answered(token, "the fork server is gone")
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        return token

    def _send(self, text: str, fds: list[int] | None = None) -> None:
        try:
            with self.send_lock:
                # No SIGPIPE if the zygote is gone, whatever the program made of SIGPIPE.
                socket.send_fds(self.control, [text.encode()], fds or [], socket.MSG_NOSIGNAL)
        except OSError as exc:
            raise ForkFailed(f"the fork server is gone: {exc}") from exc

    def _wait_started(self, token: int, cancelled: threading.Event) -> ForkedWorker:
        with self.changed:
            while token not in self.started:
                if self.gone:
                    raise ForkFailed("the fork server ended")
                if cancelled.is_set():
                    self.spare_tokens.add(token)  # answered later: then dropped
                    raise ForkFailed("cancelled")
                self.changed.wait(0.25)
            answer = self.started.pop(token)
        if isinstance(answer, str):
            raise ForkFailed(answer)
        return answer

    def kill(self, pid: int, forget: bool) -> None:
        """SIGKILL a child's process group (by the zygote, which has not reaped it); with
        ``forget``, nobody will wait for it."""
        if forget:
            with self.changed:
                if self.codes.pop(pid, None) is None:
                    self.forgotten.add(pid)
        with contextlib.suppress(ForkFailed):  # the zygote is gone: it killed it
            self._send(f"K {pid}")

    def code(self, pid: int, block: bool) -> int | None:
        """A child's exit code once it ended (``block``: wait for that); a child of a
        zygote that is gone was killed (see :meth:`_lost`)."""
        with self.changed:
            while block and pid not in self.codes and not self.gone:
                self.changed.wait()
            if block and pid not in self.codes:
                return -signal.SIGKILL
            return self.codes.get(pid)

    def _read(self) -> None:
        while True:
            try:
                data = self.control.recv(256)
            except OSError:
                data = b""
            if not data:
                break
            self._note(data.decode().split(" ", 2))
        self._lost()

    def _note(self, words: list[str]) -> None:
        self.spoke = True
        if words[0] == "P":
            self._answered(int(words[1]), int(words[2]))
        elif words[0] == "E":
            self._answered(int(words[1]), " ".join(words[2:]))
        elif words[0] == "X":
            with self.changed:
                self._ended(int(words[1]), int(words[2]))
                self.changed.notify_all()

    def _answered(self, token: int, answer: int | str) -> None:
        """A fork request was answered: a pid (the child, its pipes ours), or why not."""
        with self.changed:
            pipes = self.pipes.pop(token, None)
            if pipes is None:  # answered already: the zygote ended as the request was sent
                return
            to_child, from_child = pipes
            if isinstance(answer, int):
                self.children.add(answer)
                worker = ForkedWorker.over(self, answer, to_child, from_child)
            else:
                os.close(to_child)
                os.close(from_child)
            spare = token in self.spare_tokens
            self.spare_tokens.discard(token)
            if spare and isinstance(answer, int):
                self.spares.append(worker)
            elif not spare:
                self.started[token] = worker if isinstance(answer, int) else answer
            self.changed.notify_all()

    def _ended(self, pid: int, code: int) -> None:
        self.children.discard(pid)
        if pid in self.forgotten:
            self.forgotten.discard(pid)
        else:
            self.codes[pid] = code

    def _lost(self) -> None:
        """The zygote ended: children it can no longer reap or kill are killed here, and
        count as killed (their tasks are retried); unanswered requests fail."""
        with self.changed:
            self.gone = True
            for pid in list(self.children):
                if not self.ending:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                self._ended(pid, -signal.SIGKILL)
            self.changed.notify_all()
        for token in list(self.pipes):
            self._answered(token, "the fork server ended")

    def end(self) -> None:
        """Close our end: the zygote kills its children and ends; wait, then kill it."""
        with self.changed:
            self.ending = True
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)
        self.reader.join()
        self.control.close()
        for spare in self.spares:
            spare.stop()
        try:
            self.process.wait(END_WAIT if self.spoke else SILENT_END_WAIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class ForkedWorker:
    """A child of the zygote, used as a started worker's Popen is."""

    def __init__(self, zygote: _Zygote, pid: int, stdin: IO[bytes], stdout: IO[bytes]):
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout

    @classmethod
    def over(cls, zygote: _Zygote, pid: int, to_child: int, from_child: int) -> ForkedWorker:
        """The child ``pid`` speaking over our ends of its pipes (closed by :meth:`stop`)."""
        stdin = open(to_child, "wb")  # noqa: SIM115 - open until the task ends
        return cls(zygote, pid, stdin, open(from_child, "rb"))

    def poll(self) -> int | None:
        """The exit code if the child has ended, else None."""
        return self.zygote.code(self.pid, block=False)

    def wait(self) -> int:
        """Wait for the child to end; its exit code (negative: the signal)."""
        code = self.zygote.code(self.pid, block=True)
        assert code is not None
        return code

    def kill(self) -> None:
        """Kill it and what it started, now (the job is cancelled): whoever talks to it
        sees its end, and then stops it."""
        self.zygote.kill(self.pid, forget=False)

    def stop(self) -> None:
        """Kill it and what it started and close its pipes, as Disco does at a task's end;
        by whoever talked to it, once done."""
        self.zygote.kill(self.pid, forget=True)
        with contextlib.suppress(OSError):
            self.stdin.close()
        self.stdout.close()
