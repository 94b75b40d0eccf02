"""Disco jobpacks (version 2) as pure functions on bytes, and the jobhome ZIP inside them.

What it holds:

- :class:`JobPack` and :func:`decode` / :func:`encode`: bytes to a checked
  jobpack and back. Both refuse everything a Disco 0.5.4 master refuses, plus
  a few things it accepts but that can only fail later (a jobhome that is not
  a ZIP or lacks the worker, an empty pipeline, a prefix outside
  ``[A-Za-z0-9_]+``, a non-string owner). Every problem raises
  :class:`~discodsl.errors.JobpackError` naming the field, what is wrong and
  the fix; only the first problem found is reported.
- :func:`make_jobdict`: the jobdict, checked at once.
- :func:`build_jobhome` (a deterministic ZIP), :func:`runtime_files` (what a
  node needs besides CPython), :func:`runtime_key` (a name for those files as
  installed, under which a built jobhome can be kept) and
  :func:`extract_jobhome` (unpacks safely, as the master does on a node; the
  local runner uses it).
- :func:`describe`: a JSON-able summary for ``discodsl jobpack show``.

What it does not do: pickle stages (the job model does), talk to the master
(the client does) or start workers (the runners do).

Layout (disco-spec.md section 1; all integers big-endian; the header's
fields are defined once, in :mod:`discodsl.worker.jobfile`, which the worker
reads its jobdata with)::

    0    u16 magic 0xd5c0      2   u16 version 2
    4    u32 jobdict offset (always 128)          8   u32 jobenvs offset
    12   u32 jobhome offset    16  u32 jobdata offset
    20   zeros up to 128 (not checked by the master)
    128  jobdict JSON | jobenvs JSON | jobhome ZIP | jobdata, to the end
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import marshal
import pickletools
import re
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

import discodsl.worker
from discodsl.errors import JobpackError
from discodsl.worker.jobfile import FIXED as _FIXED
from discodsl.worker.jobfile import HEADER_SIZE, MAGIC, VERSION
from discodsl.worker.spec import (
    GROUPINGS,
    JOBDATA_MAGIC,
    PREFIX_MAX,
    PREFIX_PATTERN,
    STAGE_NAME_RULE,
    split_jobdata,
    stage_name_ok,
)

__all__ = [
    "GROUPINGS",
    "REQUIRED_KEYS",
    "JobPack",
    "build_jobhome",
    "check_contents",
    "check_jobhome",
    "decode",
    "describe",
    "encode",
    "extract_jobhome",
    "jobdata_header",
    "make_jobdict",
    "runtime_files",
    "runtime_key",
]

REQUIRED_KEYS = ("pipeline", "inputs", "worker", "prefix", "owner", "scheduler")

_MAX_OFFSET = 0xFFFFFFFF
# The node runs "nice -n 19 <jobhome>/<worker>" through /bin/sh, unquoted.
_WORKER_PATH = re.compile(r"[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a ZIP can hold: no build time leaks in
_UNIX = 3  # ZipInfo.create_system for which external_attr carries a file mode
_CHUNK = 1 << 16
# What reading a damaged ZIP from memory raises (OSError only from seeks on the buffer).
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
)


@dataclass(frozen=True)
class JobPack:
    """One job as the master receives it: build it, then :func:`encode` it (which checks it).

    ``jobdict`` is best made with :func:`make_jobdict`, ``jobhome`` with
    :func:`build_jobhome` over :func:`runtime_files` plus the job's own files.
    """

    jobdict: Mapping[str, Any]
    jobenvs: Mapping[str, str]
    jobhome: bytes
    jobdata: bytes = b""
    version: int = VERSION


# ---------------------------------------------------------------- bytes <-> JobPack


def encode(pack: JobPack) -> bytes:
    """The jobpack's bytes, checked by :func:`decode` first so the master never refuses them."""
    if pack.version != VERSION:
        raise JobpackError(
            f"version: {pack.version!r} cannot be written; discodsl writes version 2 "
            "jobpacks only: leave JobPack.version at 2"
        )
    jobdict = _dump_json("jobdict", pack.jobdict)
    jobenvs = _dump_json("jobenvs", pack.jobenvs)
    jobenvs_at = HEADER_SIZE + len(jobdict)
    jobhome_at = jobenvs_at + len(jobenvs)
    jobdata_at = jobhome_at + len(pack.jobhome)
    if jobdata_at > _MAX_OFFSET:
        raise JobpackError(
            f"jobhome: the jobdata would start at byte {jobdata_at}, beyond what a u32 offset "
            "holds; ship large data as job inputs (DDFS), not in the jobhome"
        )
    header = _FIXED.pack(MAGIC, VERSION, HEADER_SIZE, jobenvs_at, jobhome_at, jobdata_at)
    data = header.ljust(HEADER_SIZE, b"\0") + jobdict + jobenvs + pack.jobhome + pack.jobdata
    decode(data)  # the very checks a jobpack meets on the way in
    return data


def decode(data: bytes) -> JobPack:
    """The checked :class:`JobPack` in ``data``; :class:`JobpackError` names its first problem.

    Allocates nothing beyond slices of ``data``, whatever its offsets claim.
    """
    jobenvs_at, jobhome_at, jobdata_at = _read_header(data)
    jobdict = _load_object("jobdict", data[HEADER_SIZE:jobenvs_at])
    jobenvs = _load_object("jobenvs", data[jobenvs_at:jobhome_at])
    _check_jobdict(jobdict)
    _check_jobenvs(jobenvs)
    jobhome = data[jobhome_at:jobdata_at]
    check_jobhome(jobhome, jobdict["worker"])
    return JobPack(jobdict=jobdict, jobenvs=jobenvs, jobhome=jobhome, jobdata=data[jobdata_at:])


def check_contents(pack: JobPack) -> JobPack:
    """``pack``, if what it holds is whole, for a jobpack read from a file: each jobhome
    member's CRC, and discodsl's jobdata (its pickle's CRC, and its opcodes read to the
    end, nothing run); JobpackError if not. Jobdata of another maker's is left to its
    workers. (:func:`decode` checks what a build needs, on every run: not these reads.)"""
    with _open_zip(pack.jobhome) as zf:
        for info in zf.infolist():
            try:
                zf.read(info)  # inflated, and checked against its CRC
            except (*_ZIP_READ_ERRORS, OSError, EOFError) as exc:
                raise JobpackError(
                    f"jobhome: the member {info.filename} is damaged ({exc}): build the "
                    "jobpack again"
                ) from None
    data = pack.jobdata
    cut_in_its_magic = 0 < len(data) < len(JOBDATA_MAGIC) and JOBDATA_MAGIC.startswith(data)
    if not data.startswith(JOBDATA_MAGIC) and not cut_in_its_magic:
        return pack  # another maker's
    try:
        _, pickled = split_jobdata(data)
        for _ in pickletools.genops(pickled):
            pass
    except Exception as exc:
        raise JobpackError(
            f"the job's pickle in the jobdata is cut short or damaged ({exc}): build the "
            "jobpack again"
        ) from None
    return pack


def describe(pack: JobPack) -> dict[str, Any]:
    """A JSON-able summary of ``pack`` as encoded (the shape of the reference's
    ``jobpack-map-reduce.json``), for ``discodsl jobpack show``."""
    data = encode(pack)
    magic, version, jobdict_at, jobenvs_at, jobhome_at, jobdata_at = _FIXED.unpack_from(data)
    with _open_zip(pack.jobhome) as zf:
        members = [
            [i.filename, oct(stat.S_IMODE(i.external_attr >> 16)), i.file_size]
            for i in zf.infolist()
        ]
    return {
        "magic": f"{magic:#06x}",
        "version": version,
        "offsets": {
            "jobdict": jobdict_at,
            "jobenvs": jobenvs_at,
            "jobhome": jobhome_at,
            "jobdata": jobdata_at,
        },
        "size": len(data),
        "jobdict": json.loads(data[jobdict_at:jobenvs_at]),
        "jobenvs": json.loads(data[jobenvs_at:jobhome_at]),
        "jobhome_members": members,
        "jobdata_len": len(data) - jobdata_at,
    }


def jobdata_header(jobdata: bytes) -> dict[str, Any] | None:
    """The header of discodsl's jobdata (the Python its job needs, its name, the pickle's
    size and CRC-32); None for jobdata of another kind."""
    try:
        return split_jobdata(jobdata)[0]
    except ValueError:
        return None


def _read_header(data: bytes) -> tuple[int, int, int]:
    """The jobenvs, jobhome and jobdata offsets, after checking the header as the master does."""
    if len(data) < _FIXED.size:
        raise JobpackError(
            f"header: only {len(data)} bytes, fewer than the {_FIXED.size} of magic, version and "
            "offsets; these bytes are not a jobpack: build one with `discodsl jobpack build` or "
            "jobpack.encode()"
        )
    magic, version, jobdict_at, jobenvs_at, jobhome_at, jobdata_at = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise JobpackError(
            f"magic: {magic:#06x} where a jobpack starts with 0xd5c0; these bytes are not a "
            "Disco jobpack: build one with `discodsl jobpack build` or jobpack.encode()"
        )
    if version != VERSION:
        raise JobpackError(_version_problem(version))
    _check_offsets(len(data), jobdict_at, jobenvs_at, jobhome_at, jobdata_at)
    return jobenvs_at, jobhome_at, jobdata_at


def _version_problem(version: int) -> str:
    if version == 1:
        return (
            "version: 1 is the legacy (Disco 0.4) jobdict with 'input' and 'map?'; discodsl "
            "reads and writes version 2 only: rebuild it with `discodsl jobpack build` or "
            "jobpack.encode()"
        )
    return f"version: {version} is not supported; Disco 0.5.4 and discodsl use version 2"


def _check_offsets(
    size: int, jobdict_at: int, jobenvs_at: int, jobhome_at: int, jobdata_at: int
) -> None:
    rules = (
        (jobdict_at == HEADER_SIZE, f"jobdict offset {jobdict_at} must be exactly {HEADER_SIZE}"),
        (
            jobenvs_at > jobdict_at,
            f"jobenvs offset {jobenvs_at} must be above the jobdict offset {jobdict_at}",
        ),
        (
            jobhome_at >= jobenvs_at,
            f"jobhome offset {jobhome_at} is below the jobenvs offset {jobenvs_at}",
        ),
        (
            jobdata_at >= jobhome_at,
            f"jobdata offset {jobdata_at} is below the jobhome offset {jobhome_at}",
        ),
        (size >= jobdata_at, f"jobdata offset {jobdata_at} lies beyond the end ({size} bytes)"),
    )
    for holds, problem in rules:
        if not holds:
            raise JobpackError(
                f"header: {problem}; the jobpack is truncated or was not written by encode()"
            )


def _dump_json(field: str, value: Any) -> bytes:
    if isinstance(value, Mapping):
        value = dict(value)
    try:
        return json.dumps(value, allow_nan=False).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise JobpackError(
            f"{field}: cannot be written as JSON ({exc}); use only dicts, lists, strings, "
            "finite numbers, booleans and None"
        ) from exc


def _load_object(field: str, raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``, refusing what Python's json accepts beyond JSON (NaN, 1e999)."""
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError as exc:
        raise JobpackError(
            f"{field}: not UTF-8 ({exc.reason} at byte {exc.start}); write it with json.dumps"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise JobpackError(f"{field}: not valid JSON ({exc}); write it with json.dumps") from exc
    if not isinstance(value, dict):
        raise JobpackError(
            f"{field}: a JSON {_kind(value)}, where the master needs an object ({{...}})"
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is too large for a float")
    return number


def _kind(value: Any) -> str:
    names = {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
    }
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _show(value: Any) -> str:
    """``repr(value)`` cut short: messages quote input that may be huge."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- jobdict and jobenvs


def make_jobdict(
    *,
    pipeline: Sequence[tuple[str, str, bool]],
    inputs: Sequence[tuple[int, int, Sequence[str]]],
    worker: str = "worker",
    prefix: str,
    owner: str,
    scheduler: Mapping[str, Any] | None = None,
    save_results: bool = False,
) -> dict[str, Any]:
    """A version 2 jobdict, checked now: ``pipeline`` holds ``(name, grouping, concurrent)``
    stages, ``inputs`` ``(label, size_hint, replica urls)``; pass it to :class:`JobPack`."""
    jobdict: dict[str, Any] = {
        "pipeline": [_as_list(stage) for stage in pipeline],
        "inputs": [_input_as_list(item) for item in inputs],
        "worker": worker,
        "prefix": prefix,
        "owner": owner,
        "scheduler": dict(scheduler or {}),
        "save_results": save_results,
    }
    _check_jobdict(jobdict)
    return jobdict


def _as_list(value: Any) -> Any:
    """Tuples become lists as JSON would make them; anything else is left for the checks to name."""
    is_sequence = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    return list(value) if is_sequence else value


def _input_as_list(item: Any) -> Any:
    fields = _as_list(item)
    if isinstance(fields, list) and len(fields) == 3:
        fields[2] = _as_list(fields[2])
    return fields


def _check_jobdict(jobdict: Mapping[str, Any]) -> None:
    for key in REQUIRED_KEYS:
        if key not in jobdict:
            raise JobpackError(_missing_key(key, jobdict))
    for key, check in _KEY_CHECKS:
        if key in jobdict:
            check(jobdict[key])


def _missing_key(key: str, jobdict: Mapping[str, Any]) -> str:
    hint = ""
    if key == "inputs" and "input" in jobdict:
        hint = (
            " (there is 'input', the name in Disco's docs and in version 1: rename it to 'inputs')"
        )
    return (
        f"jobdict: missing key {key!r}{hint}; a version 2 jobdict needs "
        f"{', '.join(REQUIRED_KEYS)}: make_jobdict() writes them all"
    )


def _check_pipeline(pipeline: Any) -> None:
    if not isinstance(pipeline, list):
        raise JobpackError(
            f"pipeline: a {_kind(pipeline)}; write a list of [name, grouping, concurrent]"
        )
    if not pipeline:
        raise JobpackError(
            "pipeline: empty, so no stage would run and the results would be the inputs; "
            "give at least one stage, e.g. [['map', 'split', false]]"
        )
    seen: set[str] = set()
    for index, stage in enumerate(pipeline):
        name = _check_stage(f"pipeline[{index}]", stage)
        if name in seen:
            raise JobpackError(
                f"pipeline[{index}]: stage name {name!r} is repeated; give every stage its own name"
            )
        seen.add(name)


def _check_stage(where: str, stage: Any) -> str:
    """The stage's name, after checking it is ``[name, grouping, concurrent]``."""
    if not isinstance(stage, list) or len(stage) != 3:
        raise JobpackError(
            f"{where}: {_show(stage)} is not [name, grouping, concurrent]; the master needs "
            "all three (Disco's docs show two), e.g. ['map', 'split', false]"
        )
    name, grouping, concurrent = stage
    if not stage_name_ok(name):
        raise JobpackError(
            f"{where}: stage name {_show(name)} must be {STAGE_NAME_RULE}, e.g. 'map' (a "
            "Disco 0.5.4 node names the stage's files after it, and mangles any other name)"
        )
    if not isinstance(grouping, str) or grouping not in GROUPINGS:
        raise JobpackError(
            f"{where}: grouping {_show(grouping)} is unknown; use one of {', '.join(GROUPINGS)}"
        )
    if not isinstance(concurrent, bool):
        raise JobpackError(
            f"{where}: concurrent {_show(concurrent)} must be a JSON boolean, true or false"
        )
    return name


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, list):
        raise JobpackError(
            f"inputs: a {_kind(inputs)}; write a list of [label, size_hint, [url, ...]]"
        )
    for index, item in enumerate(inputs):
        _check_input(f"inputs[{index}]", item)


def _check_input(where: str, item: Any) -> None:
    if not isinstance(item, list) or len(item) != 3:
        raise JobpackError(
            f"{where}: {_show(item)} is not [label, size_hint, [url, ...]] (a plain URL is the "
            "version 1 form); write e.g. [0, 0, ['raw://data']]"
        )
    label, size_hint, urls = item
    _check_count(f"{where}: label", label)
    _check_count(f"{where}: size_hint", size_hint)
    if not isinstance(urls, list) or not urls:
        raise JobpackError(
            f"{where}: replicas {_show(urls)} must be a non-empty list of URLs (the master "
            "silently drops an input without any), e.g. ['raw://data']"
        )
    for index, url in enumerate(urls):
        if not isinstance(url, str) or "://" not in url:
            raise JobpackError(
                f"{where}[2][{index}]: {_show(url)} is not a URL; write scheme://..., e.g. "
                "'raw://data', 'tag://name' or 'http://host/path'"
            )


def _check_count(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobpackError(f"{what} {_show(value)} must be a non-negative integer, e.g. 0")


def _check_worker(worker: Any) -> None:
    if (
        not isinstance(worker, str)
        or not _WORKER_PATH.fullmatch(worker)
        or not _is_safe_name(worker)
    ):
        raise JobpackError(
            f"worker: {_show(worker)} must be a relative path inside the jobhome, of letters, "
            "digits and '._+-/' without '.' or '..' parts (the node runs it through /bin/sh, "
            "unquoted), e.g. 'worker'"
        )


def _check_prefix(prefix: Any) -> None:
    if not isinstance(prefix, str) or not re.fullmatch(PREFIX_PATTERN, prefix):
        raise JobpackError(
            f"prefix: {_show(prefix)} must be one or more letters, digits and '_' (the master "
            "refuses only '/' and '.', but a space or shell character in the job name breaks "
            "the worker command on the node), e.g. 'wordcount'"
        )
    if len(prefix) > PREFIX_MAX:
        raise JobpackError(
            f"prefix: {prefix[:40]!r}... is {len(prefix)} characters long, more than the "
            f"{PREFIX_MAX} a Disco 0.5.4 master's jobs can have: name the job with "
            "@job(prefix=...)"
        )


def _check_owner(owner: Any) -> None:
    if not isinstance(owner, str):
        raise JobpackError(f"owner: {_show(owner)} must be a string, e.g. 'user@host'")


def _check_scheduler(scheduler: Any) -> None:
    if not isinstance(scheduler, dict):
        raise JobpackError(
            f"scheduler: a {_kind(scheduler)}, not an object; write {{}} or {{'max_cores': 4}}"
        )
    cores = scheduler.get("max_cores", 1)
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise JobpackError(
            f"scheduler: max_cores {_show(cores)} must be a positive integer (tasks of this job "
            "running at once); leave it out for no limit"
        )


def _check_save_results(save_results: Any) -> None:
    if not isinstance(save_results, bool):
        raise JobpackError(
            f"save_results: {_show(save_results)} must be a JSON boolean, true or false"
        )


def _check_save_info(save_info: Any) -> None:
    if not isinstance(save_info, str) or save_info[:4] not in ("ddfs", "hdfs"):
        raise JobpackError(
            f"save_info: {_show(save_info)} must be a string starting with 'ddfs' or "
            "'hdfs,<namenode>,<user>,<dir>'; leave it out to save results to DDFS"
        )


_KEY_CHECKS: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("pipeline", _check_pipeline),
    ("inputs", _check_inputs),
    ("worker", _check_worker),
    ("prefix", _check_prefix),
    ("owner", _check_owner),
    ("scheduler", _check_scheduler),
    ("save_results", _check_save_results),
    ("save_info", _check_save_info),
)


def _check_jobenvs(jobenvs: Mapping[str, Any]) -> None:
    for name, value in jobenvs.items():
        if not name or "=" in name or "\0" in name:
            raise JobpackError(
                f"jobenvs: variable name {_show(name)} must be non-empty, without '=' or NUL, "
                "e.g. 'MY_SETTING'"
            )
        if not isinstance(value, str) or "\0" in value:
            raise JobpackError(
                f"jobenvs[{name!r}]: value {_show(value)} must be a string without NUL "
                "(environment variables hold text): write str(value)"
            )


# ---------------------------------------------------------------- the jobhome ZIP


def build_jobhome(
    files: Mapping[str, bytes], *, executable: Collection[str] = ("worker",)
) -> bytes:
    """A deterministic ZIP of ``files`` (name -> content; names sorted, fixed timestamps,
    deflated), with mode 0755 for the names in ``executable`` and 0644 for the rest.

    Use it as :attr:`JobPack.jobhome`, usually over :func:`runtime_files` plus the job's files.
    """
    if isinstance(executable, str):
        raise JobpackError(
            f"executable: pass a collection of names, e.g. ({executable!r},), not a string"
        )
    for name in files:
        if not _is_safe_name(name):
            raise JobpackError(
                f"files: name {_show(name)} must be a relative path with '/' separators and no "
                "empty, '.' or '..' parts, e.g. 'lib/helpers.py'"
            )
    missing = sorted(set(executable) - set(files))
    if missing:
        raise JobpackError(
            f"executable: {missing} not among the files; add them to files or drop them"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(files):
            zf.writestr(_zip_info(name, executable=name in executable), bytes(files[name]))
    return buffer.getvalue()


def _zip_info(name: str, *, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _UNIX
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    return info


# The jobhome's discodsl package: only the runtime, plus what stage code may import from it;
# read by a Python too old for the runtime too, which must reach worker/__main__.py to say so.
NODE_PACKAGE_INIT = (
    b'"""discodsl on a Disco node: the worker runtime, and the helpers stage code may use."""\n'
    b"import sys\n"
    b"\n"
    b"if sys.version_info >= (3, 10):\n"
    b"    from discodsl.worker.counters import count, status\n"
    b"    from discodsl.worker.errors import DataError, Retry, StageError\n"
)


def runtime_files(python: tuple[int, int]) -> dict[str, bytes]:
    """Everything a node needs to run a discodsl worker besides CPython ``python`` (e.g.
    ``(3, 11)``, the client's own: cloudpickle needs the same version on both sides).

    ``worker`` is the launcher, ``discodsl/worker/*.py`` the runtime beside a
    ``discodsl/__init__.py`` offering ``count`` and ``status``, ``cloudpickle/*.py``
    copied from the installed cloudpickle.
    Pass the result (plus the job's own files) to :func:`build_jobhome`.
    """
    _check_python(python)
    origins = _runtime_origins()
    launcher = _read_installed(origins.pop("worker"))
    files = {"worker": launcher.replace(b"@PYTHON@", f"{python[0]}.{python[1]}".encode())}
    files["discodsl/__init__.py"] = NODE_PACKAGE_INIT
    files.update({name: _read_installed(path) for name, path in origins.items()})
    if python == sys.version_info[:2]:
        files.update(_bytecode(files, origins))
    return files


def runtime_key(python: tuple[int, int]) -> str:
    """A name for what :func:`runtime_files` gives for ``python`` here, without reading it:
    a digest of this interpreter's version, this module, and the name, size and time of
    every installed file it reads. A cached jobhome under this name is current."""
    _check_python(python)
    digest = hashlib.sha256(repr((python, sys.version, importlib.util.MAGIC_NUMBER)).encode())
    digest.update(NODE_PACKAGE_INIT)
    for name, path in sorted({**_runtime_origins(), "jobpack": Path(__file__)}.items()):
        digest.update(repr((name, *_stamp(path))).encode())
    return digest.hexdigest()[:32]


def _stamp(path: Path) -> tuple[int, int]:
    try:
        found = path.stat()
    except OSError:
        return (-1, -1)  # runtime_files will say what is missing
    return (found.st_size, found.st_mtime_ns)


def _runtime_origins() -> dict[str, Path]:
    """The installed files a jobhome is made of: the launcher, the worker runtime, cloudpickle."""
    worker_dir = Path(discodsl.worker.__file__).parent
    return {
        "worker": worker_dir / "launcher.sh",
        **_package_files("discodsl/worker", worker_dir),
        **_package_files("cloudpickle", Path(cloudpickle.__file__).parent),
    }


def _check_python(python: Any) -> None:
    if (
        not isinstance(python, tuple)
        or len(python) != 2
        or python[0] != 3
        or not all(
            isinstance(part, int) and not isinstance(part, bool) and part >= 0 for part in python
        )
    ):
        raise JobpackError(f"python: {_show(python)} must be (3, minor), e.g. sys.version_info[:2]")


def _bytecode(files: Mapping[str, bytes], origins: Mapping[str, Path]) -> dict[str, bytes]:
    """Compiled ``__pycache__`` files for every module, so workers do not compile at start-up.

    Unchecked-hash pycs (PEP 552): valid for the shipped source whatever the
    file times, and only for this interpreter's version, which the node must
    match. The code comes from the installed package's own pyc when that is
    current for the source (no compiling), else from compiling it here.
    """
    compiled = {}
    flags = (1).to_bytes(4, "little")  # hash-based, unchecked
    for name, source in files.items():
        if name.endswith(".py"):
            code = _installed_code(origins.get(name), source)
            if code is None:
                code = marshal.dumps(compile(source, name, "exec", dont_inherit=True))
            digest = importlib.util.source_hash(source)
            pyc = importlib.util.cache_from_source(name)
            compiled[pyc] = importlib.util.MAGIC_NUMBER + flags + digest + code
    return compiled


def _installed_code(path: Path | None, source: bytes) -> bytes | None:
    """The marshalled code in ``path``'s own pyc, if that pyc is current for ``source``."""
    if path is None:
        return None
    try:
        data = Path(importlib.util.cache_from_source(str(path))).read_bytes()
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(data[4:8], "little")
    if flags & 1:
        current = data[8:16] == importlib.util.source_hash(source)
    else:
        mtime, size = int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little")
        current = mtime == int(stat.st_mtime) & 0xFFFFFFFF and size == len(source) & 0xFFFFFFFF
    return data[16:] if current else None


def _package_files(package: str, directory: Path) -> dict[str, Path]:
    files = {f"{package}/{path.name}": path for path in sorted(directory.glob("*.py"))}
    if not files:
        raise JobpackError(f"runtime_files: no *.py in {directory} for {package}; reinstall it")
    return files


def _read_installed(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise JobpackError(
            f"runtime_files: cannot read {path} ({exc.strerror}); reinstall discodsl (its "
            "worker/launcher.sh must be installed with the package)"
        ) from exc


def extract_jobhome(zip_bytes: bytes, dest: Path, *, worker: str = "worker") -> None:
    """Unpack a jobhome into ``dest`` as a Disco node does, then make ``worker`` mode 0755.

    Every member is checked before anything is written: absolute names, '..' parts,
    symbolic links and anything that would resolve outside ``dest`` are refused. Other
    file modes are not restored, as on Disco.
    """
    root = dest.resolve()
    with _open_zip(zip_bytes) as zf:
        targets = [(info, _target(root, info)) for info in _checked_members(zf, worker)]
        for info, target in targets:
            if info.filename.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                for chunk in _member_chunks(zf, info):
                    out.write(chunk)
    (root / worker).chmod(0o755)


def _target(root: Path, info: zipfile.ZipInfo) -> Path:
    """Where ``info`` lands under ``root``, following symlinks already there."""
    target = (root / info.filename).resolve()
    if target == root or not target.is_relative_to(root):
        raise JobpackError(
            f"jobhome: member {info.filename!r} would land outside {root} (through a symbolic "
            "link there); extract into an empty directory"
        )
    return target


def _member_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    try:
        with zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                yield chunk
    except _ZIP_READ_ERRORS as exc:
        raise JobpackError(
            f"jobhome: member {info.filename!r} is damaged ({exc}); rebuild the jobhome with "
            "build_jobhome()"
        ) from exc


def check_jobhome(jobhome: bytes, worker: str = "worker") -> None:
    """JobpackError unless ``jobhome`` is a ZIP whose members are safe and hold ``worker``."""
    with _open_zip(jobhome) as zf:
        _checked_members(zf, worker)


def _checked_members(zf: zipfile.ZipFile, worker: str) -> list[zipfile.ZipInfo]:
    """The members of ``zf``, each one safe to extract, the worker among them."""
    infos = zf.infolist()
    for info in infos:
        _check_member(info)
    if worker not in {info.filename for info in infos}:
        raise JobpackError(
            f"worker: {worker!r} is not a file in the jobhome ZIP, so every task would fail; "
            "add it to the jobhome (build_jobhome) or fix the jobdict's 'worker'"
        )
    return infos


def _open_zip(zip_bytes: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(zip_bytes))
    except (*_ZIP_READ_ERRORS, OSError) as exc:
        raise JobpackError(
            f"jobhome: not a readable ZIP archive ({exc}), so every task would fail; build it "
            "with build_jobhome()"
        ) from exc


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise JobpackError(
            f"jobhome: member {name!r} is a symbolic link; a jobhome holds only files and "
            "directories: store the file itself"
        )
    if not _is_safe_name(name.removesuffix("/")):
        raise JobpackError(
            f"jobhome: member {name!r} is absolute, has empty, '.' or '..' parts or a backslash; "
            "member names must be relative paths inside the job home"
        )


def _is_safe_name(name: str) -> bool:
    """Whether ``name`` is a relative '/'-separated path that stays where it is put."""
    if not name or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))
