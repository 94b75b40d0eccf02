"""Where a command's ``-o FILE`` goes: a file written whole or not at all, or the stream
its name stands for.

- ``-`` (standard output), ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and
  ``/proc/self/fd/N`` name a descriptor of this process: it is written to as it
  is open, so a shell's ``>>`` keeps appending and a pipe works (opening the name
  anew would truncate a file, and cannot open a pipe).
- Another device, or a FIFO, is written to as it is.
- A file, or a name with nothing there yet, is written to a temporary file of this
  process's own beside it (named after this machine and process), renamed over it
  when whole: a failure leaves it as it was, and two commands writing one name at
  once never mix their output (the last to finish wins). What a killed process left
  goes when the name is written next. An existing file keeps its permissions; it is
  replaced, so a hard link to it keeps the old contents.

OSErrors are the caller's to report.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from discodsl.worker.owners import ended, owner_mark

__all__ = ["descriptor", "written"]

_DESCRIPTOR = re.compile(r"/dev/(stdout|stderr|fd/(\d+))|/proc/self/fd/(\d+)")
_STANDARD = {"stdout": 1, "stderr": 2}


def descriptor(name: str) -> int | None:
    """The descriptor of this process ``name`` stands for, if it names one (``-`` is
    standard output, as a command's ``-`` input is standard input)."""
    if name == "-":
        return 1
    found = _DESCRIPTOR.fullmatch(name)
    if found is None:
        return None
    number = found[2] or found[3]
    return int(number) if number else _STANDARD[found[1]]


@contextlib.contextmanager
def written(name: str, *, binary: bool = False) -> Iterator[IO[Any]]:
    """``name`` open for writing (text in UTF-8, or ``binary``), as the module says."""
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    number = descriptor(name)
    if number is not None:
        with os.fdopen(os.dup(number), mode, encoding=encoding) as stream:
            yield stream
        return
    final = os.path.realpath(name)
    if os.path.exists(final) and not os.path.isfile(final):
        with open(final, mode, encoding=encoding) as stream:
            yield stream
        return
    directory, base = os.path.split(final)
    # The name's start only: a name of up to 255 bytes, the most a file system takes, leaves
    # no room for more beside it.
    prefix = f".{os.fsdecode(os.fsencode(base)[:_KEPT_OF_NAME])}.{_HOST}."
    _sweep(directory, prefix)
    handle, partial = tempfile.mkstemp(
        dir=directory, prefix=prefix + owner_mark(), suffix=".partial"
    )
    try:
        os.fchmod(handle, _mode_for(final))
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
        os.replace(partial, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)  # what a failure left; gone once renamed


_KEPT_OF_NAME = 64  # bytes of the file's name in its temporary one's
# This machine's name in a temporary file's: a directory other machines share (NFS) holds
# theirs, whose processes cannot be told ended from here.
_HOST = os.fsdecode(os.fsencode(socket.gethostname().replace("/", "_"))[:_KEPT_OF_NAME])


def _sweep(directory: str, prefix: str) -> None:
    """Remove the temporary files that processes of this machine which have ended (killed
    before their rename) left writing the name that ``prefix`` begins with."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        rest = name[len(prefix) :] if name.startswith(prefix) else ""
        # Its own: the mark, mkstemp's letters and the suffix, nothing more (not those of
        # another name that starts alike: stats.HOST.2024-12-07.tsv's, when writing stats).
        if _OWN_REST.fullmatch(rest) and ended(rest):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


_OWN_REST = re.compile(r"[0-9]+-(?:n[0-9]+-)?[a-z0-9_]{8}\.partial")


def _mode_for(path: str) -> int:
    """The permissions ``path`` has, or those a new file gets (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask
