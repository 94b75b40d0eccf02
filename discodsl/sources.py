"""Turning what users pass as ``inputs=`` into the replica lists of a jobpack.

Paths, globs and directories become absolute ``file://`` URLs; URLs pass
through (``tag://`` ones are resolved by the cluster runner, and for a run
here by :func:`resolve_tags_here`); the results
of an earlier job become the record files they consist of; a list of URLs
inside the list is one input's replicas. :func:`split_large` cuts big local
files into line-aligned byte ranges (``file:///path#range=START-END``) so
every core gets work. The URL forms themselves are :mod:`discodsl.worker.urls`'.
"""

from __future__ import annotations

import glob
import math
import os
import re
import stat
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from discodsl import places
from discodsl.errors import JobError, SettingsError
from discodsl.options import MIB
from discodsl.worker import urls
from discodsl.worker.errors import brief
from discodsl.worker.opening import MAGIC_SIZE, compression_of
from discodsl.worker.records import is_record_file_prefix

if TYPE_CHECKING:
    from discodsl.indexes import Listed
    from discodsl.settings_model import DiscoSettings

# A local file is cut into ranges only when each range gets at least this much.
MIN_SPLIT = 16 * MIB


def resolve(inputs: Any) -> list[list[str]]:
    """Every input as a list of replica URLs, in order.

    ``None`` is refused (no inputs given); an empty list, as Disco takes it, and an
    earlier job's results with no records are valid inputs and give none.
    """
    return [replicas for _, resolved in resolve_each(inputs) for replicas in resolved]


def once(inputs: Any) -> Any:
    """``inputs`` as given, but one that can be read only once (a generator, an iterator) as
    a tuple of its items: a run looks into its inputs for the results and runs it holds and
    waits for, before they are resolved."""
    single = (str, bytes, bytearray, os.PathLike, Mapping, list, tuple)
    if isinstance(inputs, single) or hasattr(inputs, "record_urls"):
        return inputs
    return tuple(inputs) if isinstance(inputs, Iterable) else inputs


def pinned(inputs: Any) -> Any:
    """The inputs of a run that waits for others (a chain), their paths and globs resolved
    now, in the directory of its submit(), not of when its input runs end (the program may
    have moved since), and what is no input refused now; runs and results as given, to be
    resolved then."""
    if not isinstance(inputs, (list, tuple)):
        return inputs
    now: list[Any] = []
    for item in inputs:
        if hasattr(item, "record_urls") or hasattr(item, "wait"):  # results, runs: then
            if getattr(item, "closed", False) is True:
                item.record_urls()  # closed results: refused now, as they say
            now.append(item)
        else:  # what is no input (a dict, bytes) is refused now too
            now.extend(_resolve_one(item))
    return now


def replica_lists(inputs: Any) -> list[list[str]]:
    """The replica lists among inputs :func:`pinned` gave (not its runs and results)."""
    if not isinstance(inputs, (list, tuple)):
        return []
    return [item for item in inputs if isinstance(item, list)]


def resolve_each(
    inputs: Any, listed_from: str | None = None, listed: Listed | None = None
) -> list[tuple[Any, list[list[str]]]]:
    """Each input as given, with its replica lists (see :func:`resolve`); the results of a
    cluster run on the master ``listed_from`` as that master lists their files (a job on
    its cluster: its nodes read them so), others' as this machine reads them, each file
    put in ``listed`` with the size its index gave."""
    if inputs is None:
        raise SettingsError(
            "the job got no inputs (None, or none given): pass paths, globs, URLs or an "
            "earlier job's results, e.g. run(inputs=['data/*.txt']), or inputs=[] for none"
        )
    if isinstance(inputs, (str, os.PathLike)) or hasattr(inputs, "record_urls"):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        raise JobError(
            f"inputs={brief(inputs, 80)} is a {type(inputs).__name__}, whose keys alone would "
            "be read as inputs: pass a list of paths or URLs, e.g. inputs=list(d) or "
            "inputs=list(d.values())"
        )
    if isinstance(inputs, (bytes, bytearray)) or not isinstance(inputs, Iterable):
        raise JobError(
            f"inputs={brief(inputs, 80)} is a {type(inputs).__name__}: pass a path or URL as a "
            "str, a list of them, or an earlier job's results, e.g. inputs=['data/*.txt']"
        )
    return [(item, _resolve_one(item, listed_from, listed)) for item in inputs]


def _resolve_one(
    item: Any, listed_from: str | None = None, listed: Listed | None = None
) -> list[list[str]]:
    if _is_name(item):
        _refuse_nul(os.fspath(item))
    if hasattr(item, "record_urls"):
        of_master = getattr(item, "mode", None) == "cluster" and _master_of(item) == listed_from
        as_listed = listed_from is not None and of_master
        found = item.listed_urls(listed) if as_listed else item.record_urls(listed)
        return [list(replicas) for replicas in found]
    if isinstance(item, os.PathLike):
        return [[url] for url in _paths(os.fspath(item))]
    if isinstance(item, str):
        if "://" in item and not _a_path_of_no_scheme(item):
            return [[_still_there(_known_scheme(item))]]
        return [[url] for url in _paths(item)]
    if isinstance(item, (list, tuple)) and item and all(_is_name(u) for u in item):
        return [_replicas(item)]
    fix = (
        f" (decode it: {brief(item.decode(errors='replace'), 60)})"
        if isinstance(item, bytes)
        else ""
    )
    raise JobError(
        f"input {brief(item, 80)} is not a path, a URL, a list of replica URLs or an earlier "
        f"job's results{fix}: pass e.g. inputs=['data/*.txt']"
    )


def _master_of(item: Any) -> str | None:
    """The master of a cluster run's results (or of the run's, once ready)."""
    if hasattr(item, "wait") and not hasattr(item, "master"):  # a Run: its results'
        return getattr(item.wait(), "master", None)
    return getattr(item, "master", None)


def _a_path_of_no_scheme(item: str) -> bool:
    """Whether ``item``, which looks like a URL of a scheme no worker reads, is a path that
    exists (``backup://day1.txt``: the file day1.txt in a directory ``backup:``)."""
    return urls.split(item)[0] not in urls.SCHEMES and os.path.lexists(item)


def _is_name(item: Any) -> bool:
    """Whether ``item`` may be one replica of a list: a URL or a path."""
    return isinstance(item, (str, os.PathLike)) and isinstance(os.fspath(item), str)


def _replicas(items: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One input's replicas, as URLs: a path as a single path input is taken (``~``
    expanded, not a glob); one that is not here is its ``file://`` URL, for the worker to
    fail over past as it does past a ``file://`` replica, unless no replica is anything else."""
    replicas = [_replica(item) for item in items]
    if all(missing for _, missing in replicas):
        raise JobError(
            f"input {brief([os.fspath(item) for item in items], 120)}, a list of one input's "
            f"replicas, names no file here: check the paths (cwd: {_cwd()}); a replica list "
            "names one input's copies, not a glob"
        )
    return [url for url, _ in replicas]


def _refuse_nul(name: str) -> None:
    """A JobError for a path or URL that holds a NUL (a raw:// URL's data may)."""
    if "\0" in name and not ("://" in name and urls.split(name)[0] == "raw"):
        raise JobError(
            f"input {brief(name, 80)} holds a NUL character, which no path or URL can: split "
            "a NUL-separated list (find -print0) at them, e.g. inputs=text.split('\\0')"
        )


def _replica(item: str | os.PathLike[str]) -> tuple[str, bool]:
    """One replica of a list as a URL, and whether it is a path to no file here."""
    name = os.fspath(item)
    _refuse_nul(name)
    if "://" in name:
        return _still_there(_known_scheme(name)), False
    path = _expanded(name)
    if os.path.isfile(path):
        return urls.file_url(path), False
    if os.path.exists(path):
        raise _not_a_file(name)
    try:
        return urls.file_url(path), True
    except FileNotFoundError:  # relative, in a working directory since removed
        raise JobError(
            f"input {name!r}, a replica of a list of them, names no file (cwd: {_cwd()})"
        ) from None


def _known_scheme(url: str) -> str:
    """``url``, its scheme lowercased, if a worker can read that scheme (and a ``file://``
    URL's path and fragment); a JobError now rather than a failed task."""
    scheme, rest = urls.split(url)
    if scheme not in urls.SCHEMES:
        raise JobError(
            f"input {url!r} has the URL scheme {scheme!r}, which no Disco worker reads: "
            "use a path, file://, http(s)://, raw://, tag://, disco:// or dir:// (copy other "
            "data to a local file or push it to DDFS first)"
        )
    if scheme == "file":
        _check_file_url(url, rest)
    unsendable = next((c for c in rest if c <= " " or c >= "\x7f"), None)
    if scheme in ("http", "https") and unsendable is not None:
        raise JobError(
            f"input {url!r} holds {unsendable!r}, which an HTTP request cannot carry as it "
            "is: escape it (a space is %20: urllib.parse.quote(path) does it)"
        )
    if scheme in ("http", "https"):
        _check_host(url, scheme)
        _check_port(url, scheme)
    if scheme == "raw":
        try:
            size = len(rest.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise JobError(
                f"input {brief(url, 80)} holds {exc.object[exc.start : exc.end]!r}, which is "
                "not text UTF-8 can carry (a lone surrogate, as from decoding bytes with "
                "errors='surrogateescape'): a raw:// input is its UTF-8 bytes; pass valid "
                "text, or write the bytes to a file and give that"
            ) from None
        if size > RAW_MOST:
            raise JobError(
                f"input {brief(url, 60)} holds {size} bytes, more than the {RAW_MOST} a raw:// "
                "input may: it travels in the job's own messages (the jobpack, each task's), "
                "copied at each step; write the data to a file and give its path (or push it "
                "to DDFS)"
            )
    return (
        f"{scheme}://{rest}"  # DISCO://: a scheme is read whatever its case, as a worker reads it
    )


def _check_host(url: str, scheme: str) -> None:
    """A JobError for an HTTP URL that names no host (``http://``, ``https:///path``), or a
    bad one (``http://[::1``): no attempt of a task could read it."""
    import urllib.parse

    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError as exc:
        host, why = None, f" ({exc})"
    else:
        why = ""
    if not host:
        raise JobError(f"input {url!r} names no host{why}: write it as {scheme}://HOST[:PORT]/PATH")


def _check_port(url: str, scheme: str) -> None:
    """A JobError for an HTTP URL whose port is no port (``:99999``, ``:-1``, ``:x``)."""
    import urllib.parse

    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError as exc:
        raise JobError(
            f"input {url!r} names no port a server can listen on ({exc}): write it as "
            f"{scheme}://HOST[:PORT]/PATH, PORT from 1 to 65535"
        ) from None
    if port == 0:
        raise JobError(f"input {url!r} names port 0, which no server listens on: fix the URL")


# The most bytes a raw:// input holds. A worker's TASK message carries its inputs, and a
# Disco master takes a message of up to 100 MiB; a payload this big is better a file.
RAW_MOST = 16 * 1024 * 1024


def _check_file_url(url: str, rest: str) -> None:
    """A JobError for a ``file://`` URL no worker reads as meant: a relative path (each
    worker would read it from its own directory), or a fragment other than ``#range=``."""
    if not rest.startswith("/"):
        host, _, _ = rest.partition("/")
        what = (
            f"names the host {host!r}, which a file:// URL cannot (each node reads its own files)"
            if "/" in rest and host
            else "is a relative file:// URL, which each worker would read from its own directory"
        )
        raise JobError(
            f"input {url!r} {what}: pass the path itself, or file:///absolute/path (three "
            "slashes, no host)"
        )
    try:
        path, _ = urls.file_target(rest)
    except ValueError as exc:
        raise JobError(
            f"input {url!r}: {exc}; a # in a file's name is written %23 in a URL, or pass "
            "the path itself"
        ) from None
    if "\0" in path:  # a %00 in it
        raise JobError(
            f"input {url!r} names a path holding a NUL character (%00), which no file's can: "
            "fix the URL"
        )
    if os.path.exists(path) and not os.path.isfile(path):
        raise _not_a_file(url)


def _not_a_file(name: str) -> JobError:
    if os.path.islink(name) and not os.path.exists(name):
        return JobError(
            f"input {name!r} is a link to nothing (its target is gone, or links lead back "
            "to it): remove the link, or point it at a file"
        )
    return JobError(
        f"input {name!r} is not a regular file (a directory given as a URL, a pipe, a "
        "device, /dev/stdin): a task reads its input in a process of its own, maybe more "
        "than once; give a directory as a path, and write other data to a file first (e.g. "
        "cat > in.txt)"
    )


def _still_there(url: str) -> str:
    """``url``; a JobError now if it names a file of an earlier run here that is gone."""
    path = urls.file_path(url)
    if path is None or os.path.exists(path) or not places.in_process_dir(path):
        return url
    raise gone(url)


def gone(url: str, *, another_process: bool = False) -> JobError:
    """The error for input ``url``, a file (or index) of an earlier run here that is gone;
    or (``another_process``: a ``dir://`` index of a local run, which names no process) of
    a run that may be another process's."""
    other = (
        ", or the run is another process's (a local run's files are read only in the "
        "process that ran it: run the jobs that read them there, or on a cluster)"
        if another_process
        else ""
    )
    return JobError(
        f"input {url!r} is a file of an earlier run whose results were closed or "
        f"garbage-collected, which removed it{other}: keep those results referenced (and "
        "not closed) until the jobs that read them have run, or pass the results "
        "themselves as inputs (a run holds them while it runs)"
    )


def _paths(pattern: str) -> list[str]:
    """The files ``pattern`` names, each once: a path that exists as it is written
    (``[ab].txt`` too), else a glob's matches; a directory's files, recursively (``**``
    matches directories and the files in them, and a link names the file it points at)."""
    expanded = _expanded(pattern)
    literal = not glob.has_magic(expanded) or os.path.exists(expanded)
    matches = [expanded] if literal else sorted(_glob(expanded))
    files: list[str] = []
    for match in matches:
        files.extend(_files_under(match) if os.path.isdir(match) else [match])
    existing = _each_file_once(files)
    blocked = None if existing else _unlistable(expanded)
    if blocked is not None:
        raise _cannot_list(blocked)
    if not existing and literal and os.path.isdir(expanded):
        raise JobError(
            f"input {pattern!r} is a directory holding no files (those whose names start "
            "with a dot are skipped): put the input files in it, or name them"
        )
    if not existing and literal and os.path.exists(expanded):
        raise _not_a_file(pattern)
    if not existing and _JOB_NAME.fullmatch(pattern):
        raise JobError(
            f"input {pattern!r} matches no file, and reads as the name of a job: a local "
            "run's results go as its Results (or Run) in the program that ran it; a cluster "
            f"job's, as Results.of_job({pattern!r}, master=URL)"
        )
    if not existing:
        hint = "" if literal else " (read as a glob: a path that exists is taken as it is)"
        raise JobError(f"input {pattern!r} matches no file{hint}: check the path (cwd: {_cwd()})")
    return [urls.file_url(f) for f in existing]


# A Disco job's name: its prefix, then Erlang's now() in hex.
_JOB_NAME = re.compile(r"[A-Za-z0-9_]+@[0-9a-f]+:[0-9a-f]+:[0-9a-f]+")


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that a ``**`` does not go round a link
    loop (``sub/up -> ..``): glob followed it to the 40-link limit, through every way
    round, and a path at that depth named no file."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    at = parts.index("**")
    head = os.sep.join(parts[:at]) or (os.sep if at else "")
    bases = glob.glob(head) if glob.has_magic(head) else [head]
    return [
        match
        for base in bases
        if os.path.isdir(base or os.curdir)
        for directory, names in _below(base)
        for match in _reached(directory, names, parts[at + 1 :])
    ]


def _reached(directory: str, names: list[str], rest: list[str]) -> list[str]:
    """What ``**`` followed by the parts ``rest`` matches from one directory it reaches
    (``directory``, holding the files ``names``)."""
    if rest not in ([], [""]):
        return _glob(os.path.join(glob.escape(directory), os.sep.join(rest).lstrip(os.sep)))
    itself = [os.path.join(directory, "") if rest else directory] if directory else []
    return itself + ([] if rest else [os.path.join(directory, name) for name in names])


def _below(base: str) -> Iterator[tuple[str, list[str]]]:
    """``base`` and each directory below it, with the names of its other entries, as
    ``base/**`` matches them (see _walk; a pattern after the ``**`` still matches a link's
    name, from the directory that holds it). ``base`` itself is named ``base/`` (or ``""``)."""
    start = base or os.curdir
    for root, names in _walk(start):
        yield os.path.join(base, root[len(start) :].lstrip(os.sep)), names


def _walk(top: str) -> Iterator[tuple[str, list[str]]]:
    """``top`` and each directory below it, with the names of its other entries: links
    followed, each directory reached once (a link back up, ``sub/up -> ..``, or
    directories linking to each other, go round no more); dot names skipped."""
    seen = {os.path.realpath(top)}
    for root, dirs, names in os.walk(top, followlinks=True, onerror=_refuse_unlistable):
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            real = os.path.realpath(os.path.join(root, name))
            if real not in seen:
                seen.add(real)
                kept.append(name)
        dirs[:] = kept
        yield root, [n for n in names if not n.startswith(".")]


def _each_file_once(paths: list[str]) -> list[str]:
    """The regular files of ``paths``, each once (one stat each): a later name of a file
    named before (a symbolic link to it, a hard link) is dropped."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for path in paths:
        try:
            facts = os.stat(path)
        except PermissionError as exc:  # a directory above it that may not be searched
            raise _cannot_list(exc) from None
        except OSError:  # gone, a dangling link or a loop of them (named as such), no path
            if os.path.islink(path):
                raise _not_a_file(path) from None
            continue
        if not stat.S_ISREG(facts.st_mode):  # a pipe, a device: read by no task
            raise _not_a_file(path)
        if (facts.st_dev, facts.st_ino) not in seen:
            seen.add((facts.st_dev, facts.st_ino))
            kept.append(path)
    return kept


def _unlistable(path: str) -> OSError | None:
    """The permission error that keeps the directory of ``path`` (a file's, or a glob's, or
    itself) from being listed; None if none does."""
    while glob.has_magic(path):
        path = os.path.dirname(path)
    directory = path if os.path.isdir(path) else os.path.dirname(path) or os.curdir
    try:
        os.listdir(directory)
    except PermissionError as exc:
        return exc
    except OSError:  # no such directory, a file: the path names nothing
        return None
    return None


def _refuse_unlistable(exc: OSError) -> None:
    if isinstance(exc, PermissionError):
        raise _cannot_list(exc)


def _cannot_list(exc: OSError) -> JobError:
    return JobError(
        f"cannot list the input directory {exc.filename!r} (or reach what is in it): "
        f"{exc.strerror}: make it readable and searchable (chmod a+rx), or leave it out"
    )


def _cwd() -> str:
    """The working directory, for an error message (it may have been removed)."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return "removed: a relative path names nothing"


def _expanded(name: str) -> str:
    """``name`` as it is written where that exists (a directory called ``~`` in the working
    one, a file ``~nobody``), else with a leading ``~`` expanded, as a shell would have."""
    return name if os.path.lexists(name) else os.path.expanduser(name)


def _files_under(directory: str) -> list[str]:
    """The files in ``directory`` and below (see _walk). A JobError for anything there that
    is no file (a dangling link, a pipe): it would be read by no task."""
    found: list[str] = []
    for root, names in _walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                raise _not_a_file(path)
            found.append(path)
    return found


def check_tags_here(inputs: list[list[str]], master: str | None = None) -> bool:
    """Whether ``inputs`` hold ``tag://`` inputs; a SettingsError if they do and no master
    (``master``, or the configured one) can resolve them for a run on this machine."""
    tags = [url for replicas in inputs for url in replicas if urls.is_tag(url)]
    if not tags:
        return False
    from discodsl.settings import configured_master

    if configured_master(master) is None:
        raise SettingsError(
            f"input {brief(tags[0], 80)} is a DDFS tag, and tag:// inputs need a Disco master "
            "(DDFS) to resolve them to their blobs: set DISCO_MASTER=http://HOST:8989 (in the "
            "environment or the settings file) to read them here, or pass "
            "master='http://HOST:8989' to run the job on that cluster"
        )
    return True


def resolve_tags_here(inputs: list[list[str]], master: str | None = None) -> list[list[str]]:
    """``inputs`` for a run on this machine (local, inline), each ``tag://`` input replaced
    by its blobs as the cluster runner resolves tags, through ``master`` or the configured
    Disco master.

    The blobs' ``disco://`` URLs become ``http://NODE:DISCO_PORT/...`` (through
    ``DISCO_PROXY`` when set), which a worker here reads over HTTP. With no
    master configured, a tag is a SettingsError, before anything runs.
    """
    if not check_tags_here(inputs, master):
        return inputs
    from discodsl.ddfs import DDFS, resolve_inputs
    from discodsl.settings import load_settings

    settings = load_settings(DISCO_MASTER=master)
    resolved: list[list[str]] = []
    with DDFS.from_settings(settings) as ddfs:
        for replicas in inputs:
            if not any(urls.is_tag(url) for url in replicas):
                resolved.append(replicas)
                continue
            for blob in resolve_inputs([replicas], ddfs):
                resolved.append([_over_http(url, settings) for url in blob])
    return resolved


def _over_http(url: str, settings: DiscoSettings) -> str:
    """A blob's URL as a worker on this machine (no Disco node) reads it."""
    from discodsl.service import disco_url_to_http

    if urls.split(url)[0] != "disco":
        return url
    return urls.proxy_url(disco_url_to_http(url, settings.DISCO_PORT), settings.DISCO_PROXY)


def split_large(
    inputs: list[list[str]], workers: int, whole: Container[str] = ()
) -> list[list[str]]:
    """Cut big single-replica local files into line-aligned ranges when cores would sit idle:
    about a range per worker, no more (each map task's combined output is shuffled, so
    every extra task costs a shuffle of its distinct keys: 4 ranges of one 200 MB file
    took 4.5% more CPU than 2, on 2 cores). Files in ``whole`` are not cut."""
    if workers <= 1 or len(inputs) >= 2 * workers:
        return inputs  # enough tasks already: no need to look at any file
    sizes = [0 if any(u in whole for u in replicas) else _size(replicas) for replicas in inputs]
    total = sum(sizes)
    if total < 2 * MIN_SPLIT:
        return inputs
    target = max(MIN_SPLIT, math.ceil(total / workers))
    result: list[list[str]] = []
    for replicas, size in zip(inputs, sizes, strict=False):
        result.extend(_ranges(replicas[0], size, target) if size > 1.5 * target else [replicas])
    return result


def _size(replicas: list[str]) -> int:
    """The size of a plain local text file behind ``replicas``; 0 for anything not to split:
    record files (they split only at hunks) and compressed files, whatever their names (a
    ``.gz`` name over other data is left whole too, for the worker to refuse)."""
    path = urls.file_path(replicas[0]) if len(replicas) == 1 else None
    if path is None or path.endswith((".gz", ".bz2")):
        return 0
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAGIC_SIZE)
            if is_record_file_prefix(head[:1]) or compression_of(head) is not None:
                return 0
        return os.path.getsize(path)
    except OSError:
        return 0


def _ranges(url: str, size: int, target: int) -> Iterable[list[str]]:
    count = math.ceil(size / target)
    step = math.ceil(size / count)
    for start in range(0, size, step):
        yield [urls.with_range(url, start, min(start + step, size))]
