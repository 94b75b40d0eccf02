"""Where discodsl keeps things of its own on this machine.

Everything kept lives under one directory, :func:`cache_home`:
``$XDG_CACHE_HOME/discodsl``, else ``~/.cache/discodsl``. It holds the
built jobhomes (:mod:`discodsl.builder`), the registry of local runs
(:mod:`discodsl.runners.registry`, ``runs/``) and the cache of kept stages
(:mod:`discodsl.caching.store`, ``cache/``). The last two can each be moved
by an environment variable of their own (:func:`place`).

What a process only needs while it runs goes in a directory of its own in
the temporary directory, :func:`process_dir`, named after the process
(``discodsl-<kind>-<pid>-n<namespace>-<random>``: a local node's, an inline
run's, a cluster pre-flight's; the namespace is the PID namespace's, where
Linux has them). Whoever made one removes it when done with it; what a
killed process left behind is removed by the next one that makes such a
directory (:func:`remove_dead_dirs`), in the same PID namespace: containers
that share a temporary directory do not share their pids. No signal handler
is set for it: a library does not take over its program's signals. This module removes no
directory of a live process, and none it cannot tell the owner of; what removes one at exit
is made with :func:`in_this_process`, so that a forked child's exit leaves it be. At exit,
after the program's own hooks, what is left of this process's directories goes too (a run
that such a hook started came after the cleanups its first run registered).
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from discodsl.errors import SettingsError
from discodsl.worker.owners import marked, owner_ended, owner_mark, pid_namespace

TEMP_PREFIX = "discodsl-"
# The kinds of process directories: node (a local run's DISCO_DATA), inline, preflight.
Kind = Literal["node", "inline", "preflight"]
TEMP_KINDS: tuple[Kind, ...] = get_args(Kind)


def in_this_process(function: Callable[..., object], *args: Any) -> Callable[[], None]:
    """``function(*args)`` to call later (at exit, from a finalizer) in this process only: a
    child forked from it (a pre-fork server's worker, a daemon) inherits its atexit hooks
    and finalizers, and must not remove what its parent made, nor tell of its runs."""
    pid = os.getpid()

    def call() -> None:
        if os.getpid() == pid:
            function(*args)

    return call


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/discodsl`` (if absolute, as the XDG spec says), else
    ``~/.cache/discodsl``; SettingsError if this process has no home: HOME not set or
    empty, and no entry in the password database (a container's user: ``~`` stayed ``~``,
    and a directory of that name was made in the current one; an empty HOME made it
    the root)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        return Path(base, "discodsl")
    home = os.environ.get("HOME") or _passwd_home()
    if not home:
        said = "is empty" if "HOME" in os.environ else "is not set"
        raise SettingsError(
            "discodsl keeps its local runs' registry, its built jobhomes and the cache of "
            f"cache=True under ~/.cache/discodsl, and this process has no home directory (HOME "
            f"{said}, and the user has no entry in the password database): set HOME, or "
            "XDG_CACHE_HOME, to a directory this user can write (or DISCODSL_RUNS_DIR and "
            "DISCODSL_CACHE_DIR)"
        )
    return Path(os.path.abspath(home), ".cache", "discodsl")


def _passwd_home() -> str:
    """This user's home in the password database, "" if it has no entry there."""
    try:
        import pwd
    except ImportError:  # no password database on this system
        return ""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ""


def place(name: str, override: str) -> Path:
    """``$override`` if it is set (``~`` expanded, made absolute: a place must not move with
    the working directory), else ``name`` under :func:`cache_home`."""
    explicit = os.environ.get(override)
    return Path(explicit).expanduser().absolute() if explicit else cache_home() / name


# --------------------------------------------------------------------------
# Temporary directories of a process
# --------------------------------------------------------------------------


def process_dir(kind: Kind) -> str:
    """A new temporary directory of this process,
    ``discodsl-<kind>-<pid>-[n<pid namespace>-]<random>``,
    made after removing those that processes which have ended left behind. The caller
    removes it when done with it; what is left of it goes as the process ends."""
    check_umask()
    directory = tempfile.gettempdir()
    # Python looks for it once: removed since (a cleaner of /tmp, under a long-lived
    # notebook), it is made again, as it was when this process started.
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if _sweep_due(directory):
        remove_dead_dirs(directory)
    _removed_at_a_forked_end()
    _MADE_IN.add(directory)
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-{owner_mark()}", dir=directory)


def spread(directory: str) -> None:
    """Ask the file system to place each directory made in ``directory`` apart from the
    rest, as a tree of its own (ext4's FS_TOPDIR_FL, ``chattr +T``: a group of its inodes
    picked by the new directory's name). Without a journal, ext4 making a file scans past
    each inode of its directory's group freed in the last half minute, and runs that
    remove thousands of files shared a group with the runs that followed them: a file took
    0.3 to 0.6 ms of CPU to make here, 0.02 ms in a directory of a uniquely named one so
    placed. A hint: where the flag cannot be set (another file system), nothing."""
    if _FLAGS is None:
        return
    import fcntl  # Linux's alone (_FLAGS)

    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    get, set_ = _FLAGS
    try:
        (flags,) = struct.unpack("i", fcntl.ioctl(descriptor, get, struct.pack("i", 0)))
        fcntl.ioctl(descriptor, set_, struct.pack("i", flags | _TOPDIR))
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _flag_requests() -> tuple[int, int] | None:
    """Linux's FS_IOC_GETFLAGS and FS_IOC_SETFLAGS (``_IOR``/``_IOW('f', 1 or 2, long)``)
    where they are numbered as on x86 and ARM; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    if os.uname().machine not in ("x86_64", "aarch64", "arm64", "i686", "i386", "riscv64"):
        return None
    size = struct.calcsize("l") << 16
    return (2 << 30) | size | 0x6601, (1 << 30) | size | 0x6602


_TOPDIR = 0x00020000  # FS_TOPDIR_FL
_FLAGS = _flag_requests()


def _sweep_due(directory: str) -> bool:
    """Whether to remove now what ended processes left in ``directory``: at this process's
    first directory there, then at most every SWEEP_EVERY seconds (a sweep reads every
    process directory there, thousands where a program keeps thousands of results)."""
    now = time.monotonic()
    if now - _SWEPT.get(directory, -SWEEP_EVERY) < SWEEP_EVERY:
        return False
    _SWEPT[directory] = now
    return True


SWEEP_EVERY = 5.0
_SWEPT: dict[str, float] = {}  # when this process last swept each temporary directory
# A forked child's first run sweeps too (what ended since its parent's may be there).
os.register_at_fork(after_in_child=_SWEPT.clear)


def check_umask() -> None:
    """SettingsError if this process's umask takes away the owner's own rights (0277, say),
    but for root's, whose rights no mode takes: a run writes files and directories of its
    own and reads them back, which would fail far from the cause ("Permission denied" of a
    TMPDIR this user may write)."""
    if os.geteuid() == 0:  # root's rights do not depend on a file's mode
        return
    umask = _umask()
    if umask is not None and umask & 0o700:
        raise SettingsError(
            f"the umask is {umask:04o}, which takes away this user's own rights on the files "
            "and directories it makes, and discodsl's runs write files and directories of "
            "their own and read them back: set a umask that leaves the owner's rights "
            "(umask 022, or 077)"
        )


def _umask() -> int | None:
    """This process's umask, as Linux tells it (reading it elsewhere means setting it, which
    a thread's files could catch in between); None where it is not told."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def remove_dead_dirs(directory: str) -> None:
    """Remove this user's process directories in ``directory`` whose process has ended."""
    for name, pid, namespace in _process_dirs(directory):
        path = os.path.join(directory, name)
        if owner_ended(pid, namespace) and _mine(path):
            shutil.rmtree(path, ignore_errors=True)


def in_process_dir(path: str) -> bool:
    """Whether ``path`` lies in a process directory: of the temporary directory, or of
    the one there was when it was made (a local node stays where the process's first run
    made it, whatever the program sets ``tempfile.tempdir`` to since)."""
    return any(_owner(part) is not None for part in Path(os.path.abspath(path)).parts[:-1])


def _remove_own_dirs() -> None:
    """At exit, after every hook registered later (atexit is last in, first out; this one is
    registered as discodsl is imported): what was left for the end (:func:`at_the_end`),
    then what is left of this process's directories, such as those of a run that a
    program's own exit hook started, whose cleanups ran first, in each temporary directory
    it made one in (the program may have moved ``tempfile.tempdir`` since)."""
    _ENDED[0] = True
    for finish in list(_AT_THE_END):
        # Called by hand: Python's finalizers ran at exit before this (their hook came
        # later), and a finalizer called after them does nothing.
        detached = finish.detach()
        if detached is not None:
            _, function, args, kwargs = detached
            function(*args, **kwargs)
    here, me = pid_namespace(), os.getpid()
    for directory in {tempfile.gettempdir(), *_MADE_IN}:
        for name, pid, namespace in _process_dirs(directory):
            if pid == me and namespace in (None, here):
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


_MADE_IN: set[str] = set()  # the temporary directories this process made directories in
_ENDED = [False]  # whether its directories were removed at exit (hooks may run after)


def removed_at_exit() -> bool:
    """Whether this process's directories were removed at its end: an exit hook of the
    program's that runs after discodsl's (one registered before discodsl was imported)
    finds the files of the runs before gone."""
    return _ENDED[0]


_AT_THE_END: list[weakref.finalize[Any, Any]] = []
_AT_THE_END_KEPT = [16]  # how many were alive when it was last pruned (at least 16)


def at_the_end(finish: weakref.finalize[Any, Any]) -> None:
    """Call ``finish`` (a finalizer, which runs once) at exit after the program's own exit
    hooks, not before them as Python's finalizers run: such a hook may still read what it
    removes (a run's results)."""
    finish.atexit = False
    _AT_THE_END.append(finish)
    if len(_AT_THE_END) >= 2 * _AT_THE_END_KEPT[0]:  # those that ran let go of, now and then
        _AT_THE_END[:] = [other for other in _AT_THE_END if other.alive]
        _AT_THE_END_KEPT[0] = max(len(_AT_THE_END), 16)


atexit.register(_remove_own_dirs)
_FORKED_ENDS: set[int] = set()  # the multiprocessing children whose end removes them too


def _removed_at_a_forked_end() -> None:
    """In a multiprocessing child, which ends with os._exit when forked (its finalizers
    run, no atexit hook): its directories are removed by a finalizer too."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or multiprocessing.parent_process() is None:
        return
    if os.getpid() not in _FORKED_ENDS:
        _FORKED_ENDS.add(os.getpid())
        from multiprocessing import util

        util.Finalize(None, _remove_own_dirs, exitpriority=0)


def _process_dirs(directory: str) -> list[tuple[str, int, int | None]]:
    """(name, pid, PID namespace or None) of each process directory in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    owned = ((name, _owner(name)) for name in names)
    return [(name, *owner) for name, owner in owned if owner is not None]


def _owner(name: str) -> tuple[int, int | None] | None:
    """The pid and PID namespace in a process directory's name
    (``discodsl-<kind>-<pid>-n<namespace>-<random>``; no namespace in those of earlier
    versions, ``discodsl-<kind>-<pid>-<random>``), if it is one."""
    kind, _, rest = name.removeprefix(TEMP_PREFIX).partition("-")
    if not (name.startswith(TEMP_PREFIX) and kind in TEMP_KINDS):
        return None
    return marked(rest)


def _mine(path: str) -> bool:
    try:
        return os.lstat(path).st_uid == os.getuid()
    except OSError:
        return False
