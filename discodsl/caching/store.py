"""The cache's place on disk: one directory per kept stage, found by its key.

Where: ``$DISCODSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/discodsl/cache``, else
``~/.cache/discodsl/cache``. Each kept stage of a run (see
:mod:`discodsl.caching.keys` for what its key holds) is a directory named
by its key, holding

- ``entry.json``: the job, the run it came from, the stage (name, index,
  how many stages the job has), the runner (``inline``, ``local``, or the
  master's URL for a cluster), when it was kept and last used, its size,
  the counters its tasks reported, and its outputs as
  ``[label, size, [url or file name, ...]]``;
- the record files of a local or inline run's outputs, copied (hard-linked
  where the file system allows) out of the run's temporary directory. A
  cluster run keeps no files here: its entries name the job, whose stage
  results stay on the master until it is purged.

An entry is written in a directory of its own and renamed into place, so a
reader sees all of it or none; a damaged entry is dropped when read. A run
that reuses an entry reads links to its files made for it (:func:`hold`, in a
``.held-PID-*`` directory beside the entries), so evicting or clearing the
entry meanwhile takes nothing from that run or its results; the links go
when the run's results do, and those of a process that died go with the next
trim or clear.

Size limit and eviction: ``$DISCODSL_CACHE_SIZE`` (bytes, or with a ``K``,
``M`` or ``G`` suffix; default 2G). After each entry is kept, the entries
used least recently go until the total is within the limit; an entry
larger than the limit on its own is not kept. A limit of 0 keeps nothing, not
even a cluster run's entries (0 bytes here). ``discodsl cache ls`` lists the
entries, ``discodsl cache clear`` removes them (:func:`clear`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from discodsl import places
from discodsl.errors import SettingsError
from discodsl.worker import owners
from discodsl.worker.errors import DataError
from discodsl.worker.records import check_hunks

__all__ = [
    "Entry",
    "Held",
    "NotCleared",
    "NotKept",
    "cache_dir",
    "clear",
    "entries",
    "hold",
    "intact",
    "keep",
    "limit",
    "load",
    "load_intact",
    "touch",
]

DIR_ENV = "DISCODSL_CACHE_DIR"
SIZE_ENV = "DISCODSL_CACHE_SIZE"
DEFAULT_LIMIT = 2 * 1024**3
FORMAT = 1
ENTRY = "entry.json"
HELD = ".held-"  # then the holding process's mark (owners.owner_mark), and a unique part
NEW = ".new-"  # an entry being written: then the writing process's mark, a unique part
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

Output = tuple[int, int, list[str]]  # (label, size, replica URLs or file names in the entry)


class NotKept(Exception):
    """A stage could not be kept: it is bigger than the limit, or the cache cannot be written
    (``everywhere``: no stage of the run will be, so it is said once)."""

    def __init__(self, why: str, everywhere: bool = False) -> None:
        super().__init__(why)
        self.everywhere = everywhere


@dataclass
class Entry:
    """One kept stage of one run; ``outputs`` as stored (file names relative to ``path``)."""

    key: str
    job: str
    run: str
    stage: str
    index: int
    stages: int
    where: str  # "inline", "local", or the master's URL
    outputs: list[Output] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    size: int = 0
    created: float = 0.0
    used: float = 0.0
    path: Path = Path()

    @property
    def last(self) -> bool:
        """Whether this is the job's last stage: its outputs are the run's results."""
        return self.index == self.stages - 1

    def urls(self) -> list[Output]:
        """The outputs with each kept file as a ``file://`` URL."""
        return [
            (label, size, [self._url(name) for name in names])
            for label, size, names in self.outputs
        ]

    def _url(self, name: str) -> str:
        return name if "://" in name else (self.path / name).as_uri()

    def files(self) -> list[Path]:
        return [
            self.path / name for _, _, names in self.outputs for name in names if "://" not in name
        ]


def cache_dir() -> Path:
    """Where the cache lives (see the module docstring)."""
    return places.place("cache", DIR_ENV)


def check_readable() -> None:
    """A SettingsError if the cache directory is something else (a file), or cannot be
    listed: a listing of it would say it is empty."""
    root = cache_dir()
    try:
        os.listdir(root)
    except FileNotFoundError:  # nothing kept yet
        return
    except OSError as exc:
        raise SettingsError(
            f"the cache directory {root} cannot be read: {exc.strerror}: point {DIR_ENV} at "
            "a directory this user can read and write"
        ) from None


def limit() -> int:
    """The cache's size limit in bytes, from ``$DISCODSL_CACHE_SIZE``."""
    text = os.environ.get(SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_LIMIT
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)i?B?", text, re.IGNORECASE)
    if match is None or ("." in match.group(1) and not match.group(2)):
        raise SettingsError(
            f"{SIZE_ENV}={text!r} is not a size: give bytes, or a number with K, M or G "
            f"(e.g. {SIZE_ENV}=500M or 1.5G; 0 keeps nothing)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def load(key: str, directory: Path | None = None) -> Entry | None:
    """The entry kept under ``key``, if there is a sound one (a damaged one is removed)."""
    path = (directory or cache_dir()) / key
    try:
        facts = json.loads((path / ENTRY).read_text(encoding="utf-8"))
        entry = _entry(facts, path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        _remove(path)
        return None
    if not _whole(entry):
        _remove(path)  # a file went missing or was cut short: the entry is no use
        return None
    return entry


def load_intact(key: str, directory: Path | None = None) -> Entry | None:
    """The entry kept under ``key`` for a run to reuse: sound, and every hunk of its files
    still holding its CRC (a damaged one is removed). Listing and trimming the cache use
    :func:`load`, which reads no file's contents."""
    entry = load(key, directory)
    if entry is not None and not intact(entry):
        _remove(entry.path)  # bit rot, or an edit of a hard-linked file: sizes unchanged
        return None
    return entry


def _whole(entry: Entry) -> bool:
    """Whether every file of ``entry`` is there, as big as when it was kept."""
    try:
        return sum(file.stat().st_size for file in entry.files()) == entry.size
    except OSError:
        return False


def intact(entry: Entry) -> bool:
    """Whether every hunk of every file of ``entry`` still has its CRC (a read of them all,
    which a hit costs before its records are read)."""
    for file in entry.files():
        try:
            with open(file, "rb") as stream:
                check_hunks(stream, str(file))
        except (OSError, DataError):
            return False
    return True


def _entry(facts: dict[str, Any], path: Path) -> Entry:
    if facts.pop("format", None) != FORMAT:
        raise ValueError("another format")
    outputs = [
        (int(label), int(size), [str(u) for u in names])
        for label, size, names in facts.pop("outputs")
    ]
    return Entry(**facts, outputs=outputs, path=path)


def _unwritable(root: Path, exc: OSError) -> NotKept:
    """Why nothing is kept: the cache directory cannot be written, and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NotKept(
            f"{root} is full: {exc}: free space there, set {SIZE_ENV} below the space it has, "
            f"or point {DIR_ENV} at a file system with room",
            everywhere=True,
        )
    if exc.errno == errno.ENOTDIR:
        return NotKept(
            f"{root} cannot be made: {exc}: a file stands where one of its directories goes: "
            f"remove it, or point {DIR_ENV} elsewhere",
            everywhere=True,
        )
    return NotKept(
        f"{root} cannot be written: {exc}: point {DIR_ENV} at a directory this user can write",
        everywhere=True,
    )


def keep(
    entry: Entry,
    sources: Sequence[Sequence[str | None]],
    directory: Path | None = None,
    started: float | None = None,
) -> Entry:
    """Keep ``entry``, copying the local files ``sources`` names (one list per output, a
    path or None for each of its URLs, kept as given); the kept entry. Evicts what the
    limit asks; NotKept saying why when the entry is bigger than the limit or cannot be
    written.

    An entry of the same key kept since ``started`` (when the run keeping this one looked
    for entries to reuse: a run beside it kept the same stage first, and other runs may be
    reading its files) stays, and this one is dropped; an older one (which that run saw
    and could not reuse, as a purged job's) is replaced.
    """
    root = directory or cache_dir()
    cap = limit()
    try:
        size = sum(os.path.getsize(path) for paths in sources for path in paths if path)
        if not cap:
            _empty(root)
            raise NotKept(f"{SIZE_ENV}=0 keeps nothing", everywhere=True)
        if size > cap:
            raise NotKept(f"{size} bytes, more than {SIZE_ENV}={cap}")
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f"{NEW}{owners.owner_mark()}"))
    except OSError as exc:
        raise _unwritable(root, exc) from exc
    try:
        kept = _write(entry, sources, staging, size)
        _publish(staging, root / entry.key, started)
    except OSError as exc:
        _remove(staging)
        raise _unwritable(root, exc) from exc
    kept.path = root / entry.key
    trim(cap, root)
    return kept


def _empty(root: Path) -> None:
    """Remove the entries kept before the limit went to 0 (those that can be removed)."""
    with contextlib.suppress(OSError):
        trim(0, root)


def _write(
    entry: Entry, sources: Sequence[Sequence[str | None]], staging: Path, size: int
) -> Entry:
    outputs: list[Output] = []
    number = 0
    for (label, out_size, urls), paths in zip(entry.outputs, sources, strict=True):
        names = []
        for url, path in zip(urls, paths, strict=True):
            if path is None:
                names.append(url)
                continue
            name = f"{number:05d}"
            _copy(path, staging / name)
            names.append(name)
            number += 1
        outputs.append((label, out_size, names))
    now = time.time()
    kept = Entry(**{**_facts(entry), "outputs": outputs, "size": size, "created": now, "used": now})
    (staging / ENTRY).write_text(json.dumps({"format": FORMAT, **_facts(kept)}), encoding="utf-8")
    return kept


def _facts(entry: Entry) -> dict[str, Any]:
    facts = asdict(entry)
    facts.pop("path")
    return facts


def _copy(source: str, target: Path) -> None:
    """A hard link where the file system allows (no bytes copied), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _publish(staging: Path, final: Path, started: float | None) -> None:
    """Rename ``staging`` to ``final``, unless a sound entry kept since ``started`` is
    there already (see :func:`keep`)."""
    there = load(final.name, final.parent)
    if there is not None and started is not None and there.created >= started:
        _remove(staging)
        return
    if there is not None:
        with contextlib.suppress(FileNotFoundError):
            _remove(final.rename(staging.with_name(f".old{staging.name}")))
    try:
        staging.rename(final)
    except OSError as exc:  # another run kept it since we looked: theirs stays
        if (
            exc.errno not in (errno.ENOTEMPTY, errno.EEXIST)
            or load(final.name, final.parent) is None
        ):
            raise
        _remove(staging)


class Held:
    """An entry as a run reads it (``entry``: its files the links :func:`hold` made, remote
    outputs as they were), until :meth:`release`, garbage collection or exit."""

    def __init__(self, entry: Entry, links: Path | None) -> None:
        self.entry = entry
        self._finalizer = (  # not in a forked child: the links are its parent's
            weakref.finalize(self, places.in_this_process(_remove, links)) if links else None
        )
        if self._finalizer is not None:  # at exit after the program's hooks, which may read
            places.at_the_end(self._finalizer)

    def release(self) -> None:
        """Remove the links (the entry, if still kept, stays)."""
        if self._finalizer is not None:
            self._finalizer()


def hold(entry: Entry) -> Held | None:
    """``entry``'s files linked (copied where links cannot be made) for one run to read
    whatever happens to the entry; None if a file went since it was loaded. Where no
    link or copy can be written, the entry's own files are read, as they are."""
    files = entry.files()
    if not files:
        return Held(entry, None)
    try:
        links = Path(tempfile.mkdtemp(dir=entry.path.parent, prefix=hold_prefix()))
    except OSError:
        return Held(entry, None)
    try:
        for file in files:
            _copy(str(file), links / file.name)
    except FileNotFoundError:
        _remove(links)
        return None
    except OSError:
        _remove(links)
        return Held(entry, None)
    return Held(Entry(**{**_facts(entry), "path": links}), links)


def hold_prefix() -> str:
    """How the links this process holds for a run begin their name."""
    return f"{HELD}{owners.owner_mark()}"


def _left_by_the_dead(name: str) -> bool:
    """Whether ``name``, in the cache's directory, holds links for a process that is gone,
    or an entry it was writing when it went (killed); never one of another PID namespace's
    (a container sharing the directory), whose pids mean nothing here."""
    prefix = next((p for p in (HELD, NEW) if name.startswith(p)), None)
    return prefix is not None and owners.ended(name.removeprefix(prefix))


def touch(entry: Entry) -> None:
    """Note that ``entry`` was used now (eviction goes by last use)."""
    entry.used = time.time()
    with contextlib.suppress(OSError):
        facts = {"format": FORMAT, **_facts(entry)}
        temporary = entry.path / f".{ENTRY}.{os.getpid()}.{threading.get_ident()}"
        temporary.write_text(json.dumps(facts), encoding="utf-8")
        os.replace(temporary, entry.path / ENTRY)


def entries(directory: Path | None = None) -> list[Entry]:
    """Every sound entry, the most recently used first."""
    root = directory or cache_dir()
    found = [entry for key in _keys(root) if (entry := load(key, root)) is not None]
    return sorted(found, key=lambda entry: entry.used, reverse=True)


def _keys(root: Path) -> Iterator[str]:
    try:
        names = os.listdir(root)
    except OSError:
        return
    yield from (name for name in names if not name.startswith("."))


def trim(cap: int, directory: Path | None = None) -> None:
    """Remove the least recently used entries until the cache holds ``cap`` bytes at most
    (every entry, when ``cap`` is 0), and what processes that died left (links they held,
    entries half written)."""
    root = directory or cache_dir()
    for name in os.listdir(root) if root.is_dir() else []:
        if _left_by_the_dead(name):
            _remove(root / name)
    kept = entries(directory)
    total = sum(entry.size for entry in kept)
    while kept and (total > cap or not cap):  # 0 keeps nothing, not even a 0-byte entry
        oldest = kept.pop()
        total -= oldest.size
        _remove(oldest.path)


def clear(job: str | None = None, directory: Path | None = None) -> list[Entry]:
    """Remove every entry (of ``job``, if given); the entries removed. NotCleared, once
    all that can go has gone, if something could not be removed."""
    root = directory or cache_dir()
    chosen = [entry for entry in entries(root) if job is None or entry.job == job]
    paths = [entry.path for entry in chosen]
    failed = {path: error for path in paths if (error := _delete(path)) is not None}
    if job is None:
        failed |= _sweep(root, tried=set(paths))
    removed = [entry for entry in chosen if entry.path not in failed]
    if failed:
        raise NotCleared(root, removed, failed)
    return removed


def _sweep(root: Path, tried: set[Path]) -> dict[Path, OSError]:
    """Remove the rest of the cache's own (half-written entries, links dead processes
    held; not links live runs hold) but for ``tried``; what could not be removed, and why."""
    failed = {}
    for name in os.listdir(root) if root.is_dir() else []:
        path = root / name
        if path not in tried and (
            _KEY.fullmatch(name) or name.startswith(NEW) or _left_by_the_dead(name)
        ):
            error = _delete(path)
            if error is not None:
                failed[path] = error
    return failed


class NotCleared(SettingsError):
    """:func:`clear` removed what it could (``removed``, the entries), and not ``failed``
    (each path with the error that kept it)."""

    def __init__(self, root: Path, removed: list[Entry], failed: dict[Path, OSError]) -> None:
        self.removed, self.failed = removed, failed
        shown = ", ".join(
            f"{path.name} ({_why(error)})" for path, error in list(failed.items())[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(
            f"could not remove {len(failed)} of the cache's entries in {root}: {shown}{more}. "
            "They may be another user's, or on a read-only mount: give this user write "
            "permission on them and on that directory, or remove them as a user who may; or "
            f"point {DIR_ENV} at a directory this user can write"
        )


def _why(error: OSError) -> str:
    return error.strerror or str(error)


# The name of an entry's directory: its key (see discodsl.caching.keys). Nothing else in the
# cache's directory is the cache's to clear (it may be a directory of the user's).
_KEY = re.compile(r"[0-9a-f]{40}")


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _delete(path: Path) -> OSError | None:
    """Remove ``path`` and all in it; the error that kept it there, if it is still there
    (what else could go, went)."""
    try:
        shutil.rmtree(path)
    except OSError as error:
        _remove(path)  # the rest of it
        return error if os.path.lexists(path) else None
    return None
