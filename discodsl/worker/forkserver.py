"""The fork server (zygote) the local runner starts once per job: a worker per task, forked.

The local master starts the jobhome's ``worker`` launcher as it starts any
worker, with :data:`ENV` naming the jobfile and a Unix socket as standard
input. The zygote loads the runtime and the job once (what the interpreter
and the unpickling print is kept, and forwarded by every task as a worker
would forward its own), then forks a child per request. A child is a worker
in all but its start: its own session, the two pipe ends the master sent it
as protocol fds, :func:`~discodsl.worker.runtime.serve` for one task (WORKER
with its own pid, TASK, INPUT..., OUTPUT, DONE), its own output capture and
hang-up watch. It is forked before any task ran, so module state, params and
init hooks are a fresh worker's.

Requests and answers on the socket, one datagram each (SOCK_SEQPACKET):

- ``F <token>`` with two fds (the child's protocol input, its protocol
  output): fork; answered ``P <token> <pid>``, or ``E <token> <why>``.
- ``K <pid>``: SIGKILL that child's process group (what it started too).
- ``X <pid> <code>`` (sent unasked): a child ended; ``<code>`` as
  :meth:`subprocess.Popen.returncode` (negative: the signal).

End of input (the master closed its end, or died) kills every child's group
and ends the zygote. A child's crash is only an ``X``: the zygote lives on.
Not here: the master's end (:mod:`discodsl.runners.forkserver`); on a Disco
node nothing of this runs (the node starts a worker per task itself).
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn, cast

from discodsl.worker import FORKSERVER_ENV as ENV
from discodsl.worker import runtime
from discodsl.worker.capture import flush_standard_streams, read_early_output
from discodsl.worker.owners import children

# prctl(2): the signal a process gets when its parent ends; becoming the parent of what a
# child's descendants leave behind when they end (Linux 3.4).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    """Load the job named by :data:`ENV`, then fork a child per request until input ends."""
    jobfile = os.environ.pop(ENV)
    control = _control_socket()
    with _dying_with_master(control.fileno()):
        preloaded = runtime.preload(jobfile)
    early = _early_output()
    sys.breakpointhook = runtime._no_debugger
    gc.freeze()  # a child's collections then skip (and do not copy) the zygote's objects
    return Zygote(control, early, preloaded).serve()


def _control_socket() -> socket.socket:
    """Standard input (the master's socket) as a private socket; /dev/null in its place, and
    the launcher's protocol fd 3 closed: children must not hold the master's ends."""
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    with contextlib.suppress(OSError):
        os.close(3)
    return control


def _early_output() -> str:
    """What the interpreter and the job's loading printed (to the launcher's file), now
    that both are done; fds 1 and 2 then point at /dev/null (each child captures its own)."""
    flush_standard_streams()
    early = read_early_output(f".worker-{os.getpid()}.out")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    return early


@contextlib.contextmanager
def _dying_with_master(fd: int) -> Iterator[None]:
    """While loading the job (stage modules may take their time): end at once if the
    master's end of ``fd`` closes, as a worker does. No thread is left at the fork."""
    stop_read, stop_write = os.pipe()
    watch = threading.Thread(target=_exit_on_hangup, args=(fd, stop_read), daemon=True)
    watch.start()
    try:
        yield
    finally:
        os.write(stop_write, b"x")
        watch.join()
        os.close(stop_read)
        os.close(stop_write)


def _exit_on_hangup(fd: int, stop: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP, POLLERR and POLLNVAL are always reported
    poller.register(stop, select.POLLIN)
    ready = dict(poller.poll())
    if stop not in ready:
        os._exit(0)


class Zygote:
    """The fork server's loop: requests from ``control``, children forked and reaped."""

    def __init__(self, control: socket.socket, early: str, preloaded: runtime.Preloaded):
        self.control, self.early, self.preloaded = control, early, preloaded
        self.children: set[int] = set()
        self.wake_read, self.wake_write = os.pipe()
        self.pid = os.getpid()
        prctl = _prctl()
        self.set_up_child: Callable[[], object] = lambda: None
        if prctl is not None:
            # What a task started in a session of its own (start_new_session=True) leaves
            # its worker's group. Each worker is the subreaper of what its task starts (a
            # daemon, forked twice, stays its task's while the task runs); the zygote, of
            # what a worker leaves as it ends, which it kills.
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            self.set_up_child = lambda: (
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL),
                prctl(PR_SET_CHILD_SUBREAPER, 1),
            )

    def serve(self) -> int:
        """Answer requests until the master's end closes; then kill every child, and end."""
        os.set_blocking(self.wake_write, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the poll
        signal.set_wakeup_fd(self.wake_write)
        poller = select.poll()  # no fd of its own for the children to inherit
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_read, select.POLLIN)
        while self._step(poller):
            pass
        self._end_children()
        return 0

    def _step(self, poller: select.poll) -> bool:
        """Handle what is ready; False when the master's end has closed."""
        for fd, _ in poller.poll():
            if fd == self.control.fileno():
                if not self._request():
                    return False
            else:
                os.read(self.wake_read, 512)
        self._reap()
        return True

    def _request(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 256, 2)
        except ConnectionError:
            return False
        if not data:
            return False
        verb, _, rest = data.decode().partition(" ")
        if verb == "F":
            self._fork(rest, fds)
        elif verb == "K":
            self._kill(int(rest))
        return True

    def _fork(self, token: str, fds: list[int]) -> None:
        if len(fds) != 2:
            _close_all(fds)
            self._send(f"E {token} the fork request came with {len(fds)} fds, not 2")
            return
        try:
            pid = os.fork()
        except OSError as exc:
            _close_all(fds)
            self._send(f"E {token} fork failed: {exc}")
            return
        if pid == 0:
            self._child(fds[0], fds[1])
        _close_all(fds)
        self.children.add(pid)
        self._send(f"P {token} {pid}")

    def _child(self, protocol_in: int, protocol_out: int) -> NoReturn:
        """Be a worker for one task, then end (never back into the zygote's loop)."""
        code = 1
        try:
            os.setsid()
            self.set_up_child()
            _reseed_numpy()
            if os.getppid() != self.pid:  # the zygote died before we could ask
                os._exit(1)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _close_all([self.control.detach(), self.wake_read, self.wake_write])
            protocol_out, protocol_in = _as_on_a_node((protocol_out, 3), (protocol_in, 4))
            code = runtime.serve(
                protocol_in, protocol_out, self.early, self.preloaded, watched=True
            )
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os._exit(code)

    def _kill(self, pid: int) -> None:
        """SIGKILL a child and its process group (unreaped, so the pid is still ours)."""
        if pid in self.children:
            _kill_group(pid)

    def _reap(self) -> None:
        """Report each child that ended, once what it started is killed: its process group,
        while its pid is still its own (a zombie's), and what it left to us. A process a
        task started may hold the task's pipes, and outlive it for good. What we adopted
        is reaped without a word."""
        while True:
            try:
                pid, status = _ended_child()
                if pid == 0:
                    return
                _kill_group(pid)
                if status is None:
                    pid, status = os.waitpid(pid, 0)
            except ChildProcessError:
                return
            if pid in self.children:
                self.children.discard(pid)
                self._send(f"X {pid} {os.waitstatus_to_exitcode(status)}")
                self._kill_adopted()

    def _kill_adopted(self) -> None:
        """SIGKILL (with its group) each child that is not a worker: one a task's worker
        left when it ended, which we adopted as its subreaper."""
        for pid in children():
            if pid not in self.children:
                _kill_group(pid)

    def _send(self, text: str) -> None:
        with contextlib.suppress(OSError):  # the master is gone: end of input comes next
            self.control.send(text.encode())

    def _end_children(self) -> None:
        """Kill every worker, then what each left us as it ended (adopted by then, as a
        process's children are before it can be reaped), and so on, until none is left."""
        for pid in self.children:
            _kill_group(pid)
        while True:
            self._kill_adopted()
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self.children.discard(pid)


def _prctl() -> Callable[[int, int], object] | None:
    """Linux's prctl(2), looked up once, in the zygote; None elsewhere, where the zygote's
    own end (it kills its children when the master goes) and the master's watch over the
    zygote are what ends its children, and what they start stays in their groups."""
    try:
        import ctypes

        return cast("Callable[[int, int], object]", ctypes.CDLL(None, use_errno=True).prctl)
    except (ImportError, OSError, AttributeError):
        return None


def _ended_child() -> tuple[int, int | None]:
    """A child that ended: its pid (0 if none has) and, if it was reaped here, its wait
    status. Not reaped where waitid can say (Linux): its pid stays its own until then,
    and a kill of its group reaches nobody else."""
    if not hasattr(os, "waitid"):
        return os.waitpid(-1, os.WNOHANG)
    ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return (0, None) if ended is None else (ended.si_pid, None)


def _kill_group(pid: int) -> None:
    """SIGKILL process group ``pid`` (a child leads its own), and the child if not yet leader."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _reseed_numpy() -> None:
    """numpy's global generator seeded afresh, as Python reseeds ``random`` after a fork: a
    Disco node imports numpy in each task's new interpreter, while a worker forked from
    the zygote that imported it drew the same numbers as every other task."""
    seed = getattr(sys.modules.get("numpy.random"), "seed", None)
    if seed is not None:
        with contextlib.suppress(Exception):  # a numpy of its own kind: left as it is
            seed()


def _as_on_a_node(*moves: tuple[int, int]) -> list[int]:
    """Each ``(fd, where)`` moved to ``where`` if that is free: the protocol's descriptors
    where a Disco node's worker has them (its launcher's fd 3 out, stdin's copy 4 in), so
    a stage that points fd 3 at /dev/null cuts its worker off here as it does there."""
    placed = []
    for fd, where in moves:
        if fd != where and not _open(where):
            os.dup2(fd, where, inheritable=False)
            os.close(fd)
            fd = where
        placed.append(fd)
    return placed


def _open(fd: int) -> bool:
    """Whether ``fd`` is an open descriptor of this process."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
