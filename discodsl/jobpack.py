"""Disco jobpacks (version 2) as pure functions on bytes.

What it holds:

- :class:`JobPack` and :func:`decode` / :func:`encode`: bytes to a checked
  jobpack and back. Both refuse everything a Disco 0.5.4 master refuses, plus
  a few things it accepts but that can only fail later (a jobhome that is not
  a ZIP or lacks the worker, an empty pipeline, a prefix outside
  ``[A-Za-z0-9_]+``, a non-string owner). Every problem raises
  :class:`~discodsl.errors.JobpackError` naming the field, what is wrong and
  the fix; only the first problem found is reported.
- :func:`make_jobdict`: the jobdict, checked at once.
- :func:`describe`: a JSON-able summary for ``discodsl jobpack show``.

What it does not do: build or unpack the jobhome ZIP (:mod:`discodsl.jobhome`), pickle
stages (the job model does), talk to the master (the client does) or start workers (the
runners do).

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

import json
import pickletools
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from discodsl.errors import JobpackError
from discodsl.jobhome import ZIP_READ_ERRORS, check_jobhome, open_zip, safe_name
from discodsl.worker.jobfile import FIXED as _FIXED
from discodsl.worker.jobfile import (
    HEADER_SIZE,
    MAGIC,
    VERSION,
    bad_env_name,
    bad_env_value,
    env_too_long,
)
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
    "check_contents",
    "decode",
    "describe",
    "encode",
    "jobdata_header",
    "make_jobdict",
]

REQUIRED_KEYS = ("pipeline", "inputs", "worker", "prefix", "owner", "scheduler")

_MAX_OFFSET = 0xFFFFFFFF
# The node runs "nice -n 19 <jobhome>/<worker>" through /bin/sh, unquoted.
_WORKER_PATH = re.compile(r"[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*")


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
    with open_zip(pack.jobhome) as zf:
        for info in zf.infolist():
            try:
                zf.read(info)  # inflated, and checked against its CRC
            except (*ZIP_READ_ERRORS, OSError, EOFError) as exc:
                raise JobpackError(
                    f"jobhome: the member {info.filename} is damaged ({exc}): build the "
                    "jobpack again"
                ) from None
        ours = _OUR_WORKER in zf.namelist()
    data = pack.jobdata
    cut_in_its_magic = 0 < len(data) < len(JOBDATA_MAGIC) and JOBDATA_MAGIC.startswith(data)
    if not data.startswith(JOBDATA_MAGIC) and not cut_in_its_magic and not ours:
        return pack  # another maker's
    try:
        _, pickled = split_jobdata(data)
    except ValueError as exc:  # it says what is wrong, and what to do
        raise JobpackError(str(exc)) from None
    try:
        for _ in pickletools.genops(pickled):
            pass
    except Exception as exc:
        raise JobpackError(
            f"the job's pickle in the jobdata is cut short or damaged ({exc}): build the "
            "jobpack again"
        ) from None
    return pack


# A member of the jobhome discodsl builds, whose worker reads discodsl's jobdata alone.
_OUR_WORKER = "discodsl/worker/runtime.py"


def describe(pack: JobPack) -> dict[str, Any]:
    """A JSON-able summary of ``pack`` as encoded (the shape of the reference's
    ``jobpack-map-reduce.json``), for ``discodsl jobpack show``."""
    data = encode(pack)
    magic, version, jobdict_at, jobenvs_at, jobhome_at, jobdata_at = _FIXED.unpack_from(data)
    with open_zip(pack.jobhome) as zf:
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


def read_jobdict(data: bytes) -> dict[str, Any]:
    """The jobdict of the jobpack in ``data`` as it is, of any version a master keeps (1:
    Disco's classic worker's) and by whatever rules its maker had: a submitted job's, to be
    shown; :class:`JobpackError` if these bytes are no jobpack."""
    jobenvs_at, _, _ = _read_header(data, versions=(1, VERSION))
    return _load_object("jobdict", data[HEADER_SIZE:jobenvs_at])


def _read_header(data: bytes, versions: tuple[int, ...] = (VERSION,)) -> tuple[int, int, int]:
    """The jobenvs, jobhome and jobdata offsets, after checking the header as the master does
    (of one of ``versions``)."""
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
    if version not in versions:
        raise JobpackError(_version_problem(version))
    _check_offsets(len(data), jobdict_at, jobenvs_at, jobhome_at, jobdata_at)
    return jobenvs_at, jobhome_at, jobdata_at


def _version_problem(version: int) -> str:
    if version == 1:
        return (
            "version: 1 is the jobpack of Disco's classic worker (disco.core.Job writes it, "
            "its jobdict with 'input' and 'map?'); discodsl reads, builds and submits version "
            "2 only: submit this one with Disco's own `disco submit`, or build the job with "
            "`discodsl jobpack build` or jobpack.encode()"
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
    if not isinstance(worker, str) or not _WORKER_PATH.fullmatch(worker) or not safe_name(worker):
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
        if bad_env_name(name):
            raise JobpackError(
                f"jobenvs: variable name {_show(name)} must be UTF-8 text, non-empty, without "
                "'=' or NUL, e.g. 'MY_SETTING'"
            )
        if bad_env_value(value):
            raise JobpackError(
                f"jobenvs[{name!r}]: value {_show(value)} must be UTF-8 text without NUL "
                "(environment variables hold text): write str(value)"
            )
        if env_too_long(name, value):
            raise JobpackError(
                f"jobenvs[{name!r}]: a value of {len(value.encode()):,} bytes is longer than "
                "an environment variable may be (128 KiB with its name): pass it another way"
            )
