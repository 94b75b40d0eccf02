"""discodsl.jobpack against the real master: the recorded jobpack, our golden jobpacks,
every jobpack the 0.5.4 master refused (and the odd ones it accepted), the jobhome ZIP."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import re
import stat
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import discodsl.worker
from discodsl.errors import JobpackError
from discodsl.jobhome import NODE_PACKAGE_INIT, build_jobhome, extract_jobhome, runtime_files
from discodsl.jobpack import (
    GROUPINGS,
    REQUIRED_KEYS,
    JobPack,
    decode,
    describe,
    encode,
    jobdata_header,
    make_jobdict,
)

GOLDEN = Path(__file__).resolve().parent / "golden"

# --------------------------------------------------------------------------
# Raw jobpacks, assembled without any checking, so a test can break one rule.
# The base mirrors the recorder's submissions (a map-only job on raw://x).

WORKER = "worker.py"
JOBHOME = build_jobhome({WORKER: b"#!/bin/sh\nexit 0\n"}, executable=[WORKER])
BASE: dict[str, Any] = {
    "pipeline": [["map", "split", False]],
    "inputs": [[0, 0, ["raw://x"]]],
    "worker": WORKER,
    "prefix": "rec_api",
    "owner": "rec@vm",
    "scheduler": {},
}
ENVS = {"REC_MODE": "normal"}
Offsets = tuple[int, int, int, int]


def raw_pack(
    jobdict: bytes | Mapping[str, Any] = BASE,
    jobenvs: bytes | Mapping[str, Any] = ENVS,
    jobhome: bytes = JOBHOME,
    *,
    magic: int = 0xD5C0,
    version: int = 2,
    offsets: Callable[[Offsets], Offsets] | None = None,
    jobdata: bytes = b"",
) -> bytes:
    """A jobpack laid out as Disco's spec says, with whatever content and header given."""
    jd = jobdict if isinstance(jobdict, bytes) else json.dumps(jobdict).encode()
    je = jobenvs if isinstance(jobenvs, bytes) else json.dumps(jobenvs).encode()
    fields: Offsets = (
        128,
        128 + len(jd),
        128 + len(jd) + len(je),
        128 + len(jd) + len(je) + len(jobhome),
    )
    if offsets is not None:
        fields = offsets(fields)
    header = struct.pack(">HHIIII", magic, version, *fields).ljust(128, b"\0")
    return header + jd + je + jobhome + jobdata


def changed(**values: Any) -> bytes:
    return raw_pack({**BASE, **values})


def without(key: str, **values: Any) -> bytes:
    jobdict = {k: v for k, v in BASE.items() if k != key}
    return raw_pack({**jobdict, **values})


def header_of(data: bytes) -> dict[str, int]:
    _magic, _version, *offsets = struct.unpack(">HHIIII", data[:20])
    return dict(zip(("jobdict", "jobenvs", "jobhome", "jobdata"), offsets, strict=True))


# --------------------------------------------------------------------------
# Every jobpack the master refused (http-api/job-new-malformed.jsonl, answer
# ["error", ...]), rebuilt from its note, with what our message must name.

MALFORMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty body": (lambda: b"", "header"),
    "19-byte body (shorter than the fixed header fields)": (lambda: raw_pack()[:19], "header"),
    "bad magic 0xd5c1": (lambda: raw_pack(magic=0xD5C1), "magic"),
    "version 3": (lambda: raw_pack(version=3), "version"),
    "version 1 header with a version-2 jobdict": (lambda: raw_pack(version=1), "version"),
    "jobdict offset 129 instead of 128": (
        lambda: raw_pack(offsets=lambda o: (129, o[1], o[2], o[3])),
        "jobdict offset",
    ),
    "jobenvs offset == jobdict offset": (
        lambda: raw_pack(offsets=lambda o: (o[0], o[0], o[2], o[3])),
        "jobenvs offset",
    ),
    "jobhome offset < jobenvs offset": (
        lambda: raw_pack(offsets=lambda o: (o[0], o[1], o[1] - 1, o[3])),
        "jobhome offset",
    ),
    "jobdata offset beyond end of file": (
        lambda: raw_pack(offsets=lambda o: (o[0], o[1], o[2], o[3] + 1)),
        "jobdata offset",
    ),
    "jobdict not JSON": (lambda: raw_pack(jobdict=b"{not json"), "jobdict"),
    "jobdict is a JSON list": (
        lambda: raw_pack(jobdict=json.dumps(list(BASE.items())).encode()),
        "jobdict",
    ),
    "jobenvs not JSON": (lambda: raw_pack(jobenvs=b"{not json"), "jobenvs"),
    "jobenvs value not a string": (lambda: raw_pack(jobenvs={"REC_MODE": 1}), "REC_MODE"),
    "missing key pipeline": (lambda: without("pipeline"), "'pipeline'"),
    "missing key inputs": (lambda: without("inputs"), "'inputs'"),
    "key 'input' instead of 'inputs'": (
        lambda: without("inputs", input=BASE["inputs"]),
        "'inputs'",
    ),
    "missing key worker": (lambda: without("worker"), "'worker'"),
    "missing key prefix": (lambda: without("prefix"), "'prefix'"),
    "missing key owner": (lambda: without("owner"), "'owner'"),
    "missing key scheduler": (lambda: without("scheduler"), "'scheduler'"),
    "bad grouping": (lambda: changed(pipeline=[["map", "shuffle", False]]), "grouping"),
    "repeated stage names": (
        lambda: changed(pipeline=[["map", "split", False], ["map", "group_label", False]]),
        "pipeline[1]",
    ),
    "pipeline entries with two elements (as in the docs)": (
        lambda: changed(pipeline=[["map", "split"]]),
        "pipeline[0]",
    ),
    "concurrent as string": (lambda: changed(pipeline=[["map", "split", "false"]]), "concurrent"),
    "prefix with a dot": (lambda: changed(prefix="rec.api"), "prefix"),
    "prefix with a slash": (lambda: changed(prefix="rec/api"), "prefix"),
    "inputs as plain URL strings": (lambda: changed(inputs=["raw://x"]), "inputs[0]"),
    "input label as string": (lambda: changed(inputs=[["0", 0, ["raw://x"]]]), "label"),
    "save_results not boolean": (lambda: changed(save_results="yes"), "save_results"),
    "save_info bad": (lambda: changed(save_info="s3://bucket/x"), "save_info"),
}

# Jobpacks job/new accepted (answer ["ok", ...]) that decode refuses on purpose:
# note -> (builder, field named, why).
REFUSED_ON_PURPOSE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "jobhome not a zip": (
        lambda: raw_pack(jobhome=b"notazip!!!"),
        "jobhome",
        "the job starts, then every task fails: Couldn't extract jobhome",
    ),
    "empty pipeline": (
        lambda: changed(pipeline=[]),
        "pipeline",
        "no stage runs: the results are the inputs, surely not what was meant",
    ),
    "prefix with a space and @": (
        lambda: changed(prefix="rec api@x"),
        "prefix",
        "the node runs the worker through sh unquoted: nice fails, exit 127, every task",
    ),
    "empty prefix": (
        lambda: changed(prefix=""),
        "prefix",
        "job names '@...' are hard to tell apart; we keep to [A-Za-z0-9_]+",
    ),
    "worker path that does not exist in jobhome": (
        lambda: changed(worker="nope.py"),
        "worker",
        "every task fails: enoent on chmod, then nice: No such file",
    ),
    "owner as a number": (
        lambda: changed(owner=5),
        "owner",
        "jobinfo shows it, but an owner is 'user@host'; we only write strings",
    ),
}

# Jobpacks job/new accepted that we accept too: note -> what they change in BASE.
ACCEPTED_ODD: dict[str, dict[str, Any]] = {
    "empty inputs list": {"inputs": []},
    "scheduler max_cores given": {"scheduler": {"max_cores": 1}},
}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _answers(reference: Path) -> dict[str, str]:
    """note -> "ok" | "error" for every job/new of job-new-malformed.jsonl."""
    records = _jsonl(reference / "http-api" / "job-new-malformed.jsonl")
    return {r["note"]: r["response"]["body"]["json"][0] for r in records}


def test_the_base_of_the_malformed_cases_is_valid() -> None:
    pack = decode(raw_pack())
    assert pack.jobdict == BASE
    assert pack.jobenvs == ENVS
    assert pack.jobhome == JOBHOME
    assert pack.jobdata == b""


@pytest.mark.parametrize("note", sorted(MALFORMED))
def test_decode_refuses_what_the_master_refused(note: str) -> None:
    build, field = MALFORMED[note]
    with pytest.raises(JobpackError) as caught:
        decode(build())
    assert field in str(caught.value)


@pytest.mark.parametrize("note", sorted(REFUSED_ON_PURPOSE))
def test_decode_refuses_odd_jobpacks_the_master_accepted(note: str) -> None:
    build, field, _why = REFUSED_ON_PURPOSE[note]
    with pytest.raises(JobpackError) as caught:
        decode(build())
    assert field in str(caught.value)


@pytest.mark.parametrize("note", sorted(ACCEPTED_ODD))
def test_decode_accepts_odd_jobpacks_that_work(note: str) -> None:
    pack = decode(changed(**ACCEPTED_ODD[note]))
    assert pack == JobPack(
        jobdict={**BASE, **ACCEPTED_ODD[note]}, jobenvs=ENVS, jobhome=JOBHOME, jobdata=b""
    )


@pytest.mark.parametrize("name", ["wörter", "my stage", "a/b", "", "w" * 129, "a#b", "a+b"])
def test_decode_refuses_a_stage_name_a_node_would_mangle(name: str) -> None:
    # Seen on a real 0.5.4 master: it takes "wörter", and its node writes the stage's
    # index as "wÃ¶rter-0-....results", which the next stage's task does not find.
    with pytest.raises(JobpackError, match=r"pipeline\[0\]: stage name .* must be at most 128"):
        decode(changed(pipeline=[[name, "split", False]]))


def test_every_refusal_of_the_master_has_a_case(reference: Path) -> None:
    answers = _answers(reference)
    assert {note for note, answer in answers.items() if answer == "error"} == set(MALFORMED)


def test_a_prefix_longer_than_a_master_runs_is_refused() -> None:
    """A real 0.5.4 master ran a job named with 199 characters; with 200, each task's DONE
    failed on its node (error:badarg) and the task was retried (not in the recordings)."""
    assert decode(changed(prefix="j" * 199)).jobdict["prefix"] == "j" * 199
    with pytest.raises(JobpackError, match=r"is 200 characters long, more than the 199") as info:
        decode(changed(prefix="j" * 200))
    assert "@job(prefix=...)" in str(info.value)  # the option that names a job


def test_every_odd_jobpack_the_master_accepted_is_judged(reference: Path) -> None:
    answers = _answers(reference)
    judged = set(REFUSED_ON_PURPOSE) | set(ACCEPTED_ODD)
    assert not set(REFUSED_ON_PURPOSE) & set(ACCEPTED_ODD)
    assert {note for note, answer in answers.items() if answer == "ok"} == judged
    followed = _jsonl(reference / "http-api" / "accepted-odd-jobpacks.jsonl")
    assert {r["note"].rsplit(": ", 1)[0] for r in followed} <= judged


# --------------------------------------------------------------------------
# The jobpack recorded on its way to a real master.


def test_recorded_jobpack_decodes_as_recorded(reference: Path) -> None:
    data = (reference / "jobpack-map-reduce.bin").read_bytes()
    expected = json.loads((reference / "jobpack-map-reduce.json").read_text())
    pack = decode(data)
    assert header_of(data) == expected["offsets"]
    assert pack.jobdict == expected["jobdict"]
    assert pack.jobenvs == expected["jobenvs"]
    assert len(pack.jobdata) == expected["jobdata_len"]
    assert describe(pack) == expected


def test_recorded_jobpack_round_trips(reference: Path) -> None:
    data = (reference / "jobpack-map-reduce.bin").read_bytes()
    again = encode(decode(data))
    assert decode(again) == decode(data)
    assert again == data  # same JSON layout as json.dumps' defaults, as the recorder used


# --------------------------------------------------------------------------
# Our golden jobpacks.


def _make_jobpacks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_jobpacks", GOLDEN / "make_jobpacks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_JOBPACKS = _make_jobpacks()


@pytest.mark.parametrize("name", sorted(MAKE_JOBPACKS.GOLDENS))
def test_golden_jobpacks_are_rebuilt_byte_for_byte(name: str) -> None:
    pack = MAKE_JOBPACKS.GOLDENS[name]()
    data = (GOLDEN / f"{name}.jobpack").read_bytes()
    assert encode(pack) == data, "run tests/golden/make_jobpacks.py and review the diff"
    assert decode(data) == pack
    shown = json.loads((GOLDEN / f"{name}.json").read_text())
    assert describe(pack) == shown


def test_goldens_cover_every_grouping() -> None:
    groupings = {
        grouping
        for build in MAKE_JOBPACKS.GOLDENS.values()
        for _, grouping, _ in build().jobdict["pipeline"]
    }
    assert groupings == {"split", "group_label", "group_all", "group_node", "group_node_label"}


# --------------------------------------------------------------------------
# encode, make_jobdict, describe.


def _pack(**jobdict: Any) -> JobPack:
    return JobPack(jobdict={**BASE, **jobdict}, jobenvs=ENVS, jobhome=JOBHOME, jobdata=b"")


def test_encode_writes_the_layout_of_the_spec() -> None:
    pack = JobPack(jobdict=BASE, jobenvs=ENVS, jobhome=JOBHOME, jobdata=b"\x00data")
    data = encode(pack)
    offsets = header_of(data)
    assert data[:4] == b"\xd5\xc0\x00\x02"
    assert data[20:128] == bytes(108)
    assert offsets["jobdict"] == 128
    assert json.loads(data[128 : offsets["jobenvs"]]) == BASE
    assert json.loads(data[offsets["jobenvs"] : offsets["jobhome"]]) == ENVS
    assert data[offsets["jobhome"] : offsets["jobdata"]] == JOBHOME
    assert data[offsets["jobdata"] :] == b"\x00data"
    assert decode(data) == pack


@pytest.mark.parametrize(
    ("pack", "field"),
    [
        (_pack(pipeline=[["map", "shuffle", False]]), "grouping"),
        (_pack(prefix="a b"), "prefix"),
        (_pack(scheduler={"max_cores": float("nan")}), "jobdict"),
        (_pack(scheduler={"max_cores": 0}), "max_cores"),
        (_pack(inputs=[[0, 0, []]]), "inputs[0]"),
        (_pack(inputs=[[-1, 0, ["raw://x"]]]), "label"),
        (_pack(inputs=[[0, 0, ["x"]]]), "inputs[0][2][0]"),
        (_pack(worker="../worker.py"), "worker"),
        (JobPack(jobdict=BASE, jobenvs={"A": 1}, jobhome=JOBHOME, jobdata=b""), "jobenvs"),  # type: ignore[dict-item]
        (JobPack(jobdict=BASE, jobenvs={"A=B": "x"}, jobhome=JOBHOME, jobdata=b""), "jobenvs"),
        (JobPack(jobdict=BASE, jobenvs=ENVS, jobhome=b"", jobdata=b""), "jobhome"),
        (JobPack(jobdict=BASE, jobenvs=ENVS, jobhome=JOBHOME, jobdata=b"", version=1), "version"),
    ],
)
def test_encode_refuses_what_decode_would_refuse(pack: JobPack, field: str) -> None:
    with pytest.raises(JobpackError) as caught:
        encode(pack)
    assert field in str(caught.value)


def test_make_jobdict_writes_every_required_key() -> None:
    jobdict = make_jobdict(
        pipeline=[("map", "split", False), ("reduce", "group_label", True)],
        inputs=[(0, 10, ("raw://a", "raw://b"))],
        prefix="wordcount",
        owner="me@host",
    )
    assert jobdict == {
        "pipeline": [["map", "split", False], ["reduce", "group_label", True]],
        "inputs": [[0, 10, ["raw://a", "raw://b"]]],
        "worker": "worker",
        "prefix": "wordcount",
        "owner": "me@host",
        "scheduler": {},
        "save_results": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pipeline": [("map", "shuffle", False)]}, "grouping"),
        ({"pipeline": [("map", "split")]}, "pipeline[0]"),
        ({"pipeline": []}, "pipeline"),
        ({"inputs": [(0, 0, "raw://x")]}, "inputs[0]"),
        ({"prefix": "my.job"}, "prefix"),
        ({"scheduler": {"max_cores": "2"}}, "max_cores"),
        ({"save_results": "yes"}, "save_results"),
        ({"worker": "/bin/sh"}, "worker"),
    ],
)
def test_make_jobdict_refuses_at_once(kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {
        "pipeline": [("map", "split", False)],
        "inputs": [(0, 0, ["raw://x"])],
        "prefix": "job",
        "owner": "me@host",
        **kwargs,
    }
    with pytest.raises(JobpackError) as caught:
        make_jobdict(**arguments)
    assert field in str(caught.value)


def test_missing_inputs_message_points_at_the_docs_name() -> None:
    with pytest.raises(JobpackError, match="rename it to 'inputs'"):
        decode(without("inputs", input=BASE["inputs"]))


def test_describe_lists_members_with_modes() -> None:
    home = build_jobhome({"worker": b"#!/bin/sh\n", "lib/a.py": b"x = 1\n"})
    pack = JobPack(jobdict={**BASE, "worker": "worker"}, jobenvs={}, jobhome=home, jobdata=b"abc")
    shown = describe(pack)
    assert shown["jobhome_members"] == [["lib/a.py", "0o644", 6], ["worker", "0o755", 10]]
    assert shown["jobdata_len"] == 3 and jobdata_header(pack.jobdata) is None  # not discodsl's
    assert shown["size"] == shown["offsets"]["jobdata"] + 3
    assert json.loads(json.dumps(shown)) == shown


# --------------------------------------------------------------------------
# The jobhome ZIP.


def test_build_jobhome_is_deterministic_and_sorted() -> None:
    files = {"worker": b"#!/bin/sh\n", "b/x.py": b"b", "a.py": b"a"}
    first = build_jobhome(files)
    assert first == build_jobhome(dict(reversed(files.items())))
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["a.py", "b/x.py", "worker"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes == {
        "a.py": stat.S_IFREG | 0o644,
        "b/x.py": stat.S_IFREG | 0o644,
        "worker": stat.S_IFREG | 0o755,
    }


@pytest.mark.parametrize(
    ("files", "executable"),
    [
        ({"../x": b""}, ()),
        ({"/abs": b""}, ()),
        ({"a//b": b""}, ()),
        ({"dir/": b""}, ()),
        ({"a\\b": b""}, ()),
        ({"a": b""}, ("worker",)),
    ],
)
def test_build_jobhome_refuses_bad_names(
    files: dict[str, bytes], executable: tuple[str, ...]
) -> None:
    with pytest.raises(JobpackError):
        build_jobhome(files, executable=executable)


def _zip(*members: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buffer.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "data"),
    [
        ("../x", b"escape"),
        ("/abs", b"absolute"),
        ("a/../../x", b"escape"),
        (_symlink("link"), b"/etc/passwd"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink"],
)
def test_extract_jobhome_refuses_unsafe_members(
    tmp_path: Path, member: zipfile.ZipInfo | str, data: bytes
) -> None:
    dest = tmp_path / "home"
    dest.mkdir()
    zip_bytes = _zip(("worker", b"#!/bin/sh\n"), (member, data))
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    with pytest.raises(JobpackError, match=name.replace(".", r"\.")):
        extract_jobhome(zip_bytes, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_extract_jobhome_refuses_to_follow_a_symlink_out_of_dest(tmp_path: Path) -> None:
    dest = tmp_path / "home"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "lib").symlink_to(outside)
    with pytest.raises(JobpackError, match="lib/x"):
        extract_jobhome(_zip(("worker", b""), ("lib/x", b"x")), dest)
    assert list(outside.iterdir()) == []


def test_extract_jobhome_refuses_a_broken_zip(tmp_path: Path) -> None:
    with pytest.raises(JobpackError, match="jobhome"):
        extract_jobhome(b"notazip!!!", tmp_path)
    good = build_jobhome({"worker": b"#!/bin/sh\n" * 100})
    with pytest.raises(JobpackError, match="jobhome"):
        extract_jobhome(good[:-30], tmp_path)


def test_extract_jobhome_makes_only_the_worker_executable(tmp_path: Path) -> None:
    home = build_jobhome(
        {"worker": b"#!/bin/sh\n", "lib/a.py": b"a"}, executable=["worker", "lib/a.py"]
    )
    extract_jobhome(home, tmp_path)
    assert (tmp_path / "lib" / "a.py").read_bytes() == b"a"
    assert stat.S_IMODE((tmp_path / "worker").stat().st_mode) == 0o755
    # Other modes are not restored, as on Disco.
    assert (tmp_path / "lib" / "a.py").stat().st_mode & 0o111 == 0


def test_extract_jobhome_needs_the_worker(tmp_path: Path) -> None:
    with pytest.raises(JobpackError, match="'worker'"):
        extract_jobhome(build_jobhome({"other": b""}, executable=()), tmp_path)
    extract_jobhome(
        build_jobhome({"run.sh": b""}, executable=["run.sh"]), tmp_path, worker="run.sh"
    )
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755


# --------------------------------------------------------------------------
# runtime_files: what a node needs besides CPython.


def test_runtime_files_hold_launcher_worker_runtime_and_cloudpickle() -> None:
    files = runtime_files((3, 11))
    assert b"@PYTHON@" not in files["worker"]
    assert b"python3.11" in files["worker"]
    assert files["discodsl/__init__.py"] == NODE_PACKAGE_INIT
    worker_dir = Path(discodsl.worker.__file__).parent
    sources = sorted(worker_dir.glob("*.py"))
    assert sources
    for path in sources:
        assert files[f"discodsl/worker/{path.name}"] == path.read_bytes()
    assert "cloudpickle/__init__.py" in files
    assert all(name == "worker" or name.startswith(("discodsl/", "cloudpickle/")) for name in files)


@pytest.mark.parametrize("python", [(2, 7), (3,), (3, "11")])
def test_runtime_files_refuses_a_bad_python(python: Any) -> None:
    with pytest.raises(JobpackError, match="python"):
        runtime_files(python)


# --------------------------------------------------------------------------
# Anything given to decode ends in a JobPack holding what was encoded, or in a
# JobpackError whose message starts with the field at fault.

CHECKED_KEYS = (*REQUIRED_KEYS, "save_results", "save_info")
FIELDS = frozenset({"header", "magic", "version", "jobdict", "jobenvs", "jobhome", *CHECKED_KEYS})
# What a moved offset can break: the header's own rules, or the sections it cuts.
MOVED_OFFSET_FAULTS = frozenset({"header", "jobdict", "jobenvs", "jobhome", "worker"})


def field_named(error: JobpackError) -> str:
    """The field a refusal starts with ("prefix: ...", "inputs[0]: ..."), which must be one."""
    match = re.match(r"([a-z_]+)[:\[]", str(error))
    assert match and match[1] in FIELDS, f"the refusal names no field: {error}"
    return match[1]


def sections(data: bytes) -> JobPack:
    """What the header of ``data`` says it holds, read without any check."""
    at = header_of(data)
    return JobPack(
        jobdict=json.loads(data[128 : at["jobenvs"]]),
        jobenvs=json.loads(data[at["jobenvs"] : at["jobhome"]]),
        jobhome=data[at["jobhome"] : at["jobdata"]],
        jobdata=data[at["jobdata"] :],
    )


def _decode_or_refuse(data: bytes) -> None:
    try:
        pack = decode(data)
    except JobpackError as exc:
        field_named(exc)
        return
    assert pack == sections(data)
    assert decode(encode(pack)) == pack  # what we accept, we can also write


VALID = raw_pack({**BASE, "save_results": True, "save_info": "ddfs"}, jobhome=JOBHOME)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "offset"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif len(data) >= 20:
            field = draw(st.integers(1, 4))
            value = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, len(data) + 2)))
            data[4 * field : 4 * field + 4] = value.to_bytes(4, "big")
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_decode_mutated_jobpacks(data: bytes) -> None:
    _decode_or_refuse(data)


# Structured cases: a valid header around sections of which some are broken on purpose,
# each break with the fields a refusal may name (none broken: decode must accept).

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NOT_AN_OBJECT = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(JSON)
# The shape of pipeline and inputs (lists of triples), with parts of any type or kind.
NEAR_TRIPLE = st.tuples(
    st.sampled_from(["map", "reduce", "a b"]) | st.integers(-1, 1) | JSON,
    st.sampled_from([*GROUPINGS, "shuffle"]) | st.integers(-1, 1) | JSON,
    st.booleans() | st.lists(st.sampled_from(["raw://x", "x", ""]), max_size=2) | JSON,
).map(list)
LIST_OF_LISTS = st.lists(NEAR_TRIPLE | st.lists(JSON, max_size=4), max_size=3)
Part = tuple[bytes, Any, frozenset[str]]  # bytes, the value they encode (None: not JSON), faults


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def jobdicts(draw: st.DrawFn, broken: bool) -> Part:
    kinds = ["drop", *["replace"] * 4, "not an object", "bytes"] if broken else ["as is", "extra"]
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        key = draw(st.sampled_from(REQUIRED_KEYS))
        value = {k: v for k, v in BASE.items() if k != key}
        return _json(value), value, frozenset({"jobdict"})
    if kind == "replace":
        key = draw(st.sampled_from(CHECKED_KEYS))
        value = {**BASE, key: draw(JSON | LIST_OF_LISTS)}
        return _json(value), value, frozenset({key})
    if kind == "extra":  # keys Disco 0.4 wrote, which version 2 ignores
        value = {**BASE, draw(st.sampled_from(["input", "map?", "nr_reduces"])): draw(JSON)}
        return _json(value), value, frozenset()
    if kind == "not an object":
        other = draw(NOT_AN_OBJECT)
        return _json(other), other, frozenset({"jobdict"})
    if kind == "bytes":  # still valid JSON, maybe, with any key's value changed
        data = bytearray(_json(BASE))
        position = draw(st.integers(0, len(data)))
        data[position : position + draw(st.integers(0, 4))] = draw(st.binary(max_size=4))
        return bytes(data), None, FIELDS
    return _json(BASE), BASE, frozenset()


@st.composite
def jobenvs(draw: st.DrawFn, broken: bool) -> Part:
    kind = draw(st.sampled_from(["any values", "not an object"] if broken else ["as is"]))
    if kind == "any values":
        value = draw(st.dictionaries(st.text(max_size=8), JSON | st.text(), max_size=3))
        return _json(value), value, frozenset({"jobenvs"})
    if kind == "not an object":
        other = draw(NOT_AN_OBJECT)
        return _json(other), other, frozenset({"jobenvs"})
    return _json(ENVS), ENVS, frozenset()


UNSAFE_MEMBERS = ["../x", "/abs", "a/../../x", "a\\b", "symlink"]


@st.composite
def jobhomes(draw: st.DrawFn, broken: bool) -> tuple[bytes, frozenset[str]]:
    kinds = ["no worker", "unsafe", "damaged", "junk"] if broken else ["as is", "more files"]
    kind = draw(st.sampled_from(kinds))
    if kind == "more files":
        files = {WORKER: b"#!/bin/sh\n", **draw(st.dictionaries(st.just("lib/a.py"), st.binary()))}
        return build_jobhome(files, executable=[WORKER]), frozenset()
    if kind == "no worker":
        return build_jobhome({"other.py": b""}, executable=()), frozenset({"worker"})
    if kind == "unsafe":
        name = draw(st.sampled_from(UNSAFE_MEMBERS))
        member = _symlink("lib") if name == "symlink" else name
        return _zip((WORKER, b""), (member, b"x")), frozenset({"jobhome"})
    if kind == "damaged":
        data = bytearray(JOBHOME)
        position = draw(st.integers(0, len(data) - 1))
        data[position : position + draw(st.integers(0, 4))] = draw(st.binary(max_size=4))
        return bytes(data), frozenset({"jobhome", "worker"})
    if kind == "junk":
        return draw(st.binary(max_size=64)), frozenset({"jobhome"})
    return JOBHOME, frozenset()


@st.composite
def moved_offsets(draw: st.DrawFn, broken: bool) -> tuple[int, int, bool] | None:
    """None, or (which offset, by how much or to where, whether that is absolute)."""
    if not broken:
        return None
    which = draw(st.integers(0, 3))
    if draw(st.booleans()):
        return which, draw(st.integers(0, 2**32 - 1)), True
    return which, draw(st.integers(-8, 8)), False


def _move(offsets: Offsets, change: tuple[int, int, bool]) -> Offsets:
    which, amount, absolute = change
    moved = list(offsets)
    moved[which] = amount if absolute else min(max(moved[which] + amount, 0), 2**32 - 1)
    return (moved[0], moved[1], moved[2], moved[3])


@dataclass(frozen=True)
class Case:
    data: bytes
    expected: JobPack | None  # what decode must return if it accepts; None: the header's slices
    faults: frozenset[str]  # the fields a refusal may name; empty: decode must accept


@st.composite
def cases(draw: st.DrawFn) -> Case:
    parts = st.sampled_from(["jobdict", "jobenvs", "jobhome", "offsets"])
    broken = draw(st.sets(parts, max_size=2))
    jobdict, jobdict_value, jobdict_faults = draw(jobdicts("jobdict" in broken))
    envs, envs_value, envs_faults = draw(jobenvs("jobenvs" in broken))
    jobhome, jobhome_faults = draw(jobhomes("jobhome" in broken))
    jobdata = draw(st.binary(max_size=8))
    change = draw(moved_offsets("offsets" in broken))
    data = raw_pack(jobdict, envs, jobhome, jobdata=jobdata)
    moved = raw_pack(
        jobdict, envs, jobhome, jobdata=jobdata, offsets=change and (lambda o: _move(o, change))
    )
    faults = jobdict_faults | envs_faults | jobhome_faults
    if moved == data:
        if jobdict_value is None:
            return Case(data, None, faults)
        encoded = JobPack(
            jobdict=jobdict_value, jobenvs=envs_value, jobhome=jobhome, jobdata=jobdata
        )
        return Case(data, encoded, faults)
    return Case(moved, None, faults | MOVED_OFFSET_FAULTS)


def test_a_version_1_jobpack_is_named_discos_classic_workers() -> None:
    # It was called "the legacy (Disco 0.4) jobdict": Disco 0.5.4's default worker writes it.
    with pytest.raises(JobpackError) as caught:
        decode(raw_pack(version=1))
    said = str(caught.value)
    assert "Disco's classic worker" in said and "disco submit" in said and "0.4" not in said


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_decode_returns_what_was_encoded_or_names_the_field_at_fault(case: Case) -> None:
    try:
        pack = decode(case.data)
    except JobpackError as exc:
        field = field_named(exc)
        event(f"refused: {field}")
        assert case.faults, f"a valid jobpack was refused: {exc}"
        assert field in case.faults, f"{exc} (the broken fields: {sorted(case.faults)})"
        return
    event("accepted")
    assert pack == (case.expected or sections(case.data))
    assert decode(encode(pack)) == pack


@pytest.mark.parametrize(
    ("jobdict", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "maximum recursion depth"),
        (b'{"a": 1e999}', "1e999 is too large for a float"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "5001 digits"),
        (b"\xff{}", "invalid start byte"),
    ],
    ids=["deep", "huge-float", "nan", "huge-int", "not-utf8"],
)
def test_decode_refuses_json_python_would_mishandle(jobdict: bytes, why: str) -> None:
    """Each for its own reason: a jobdict lacking the keys a master needs is refused too."""
    with pytest.raises(JobpackError, match=f"^jobdict: not .*{re.escape(why)}"):
        decode(raw_pack(jobdict=jobdict))


def _built_pack() -> JobPack:
    from discodsl import builder
    from tests import jobs

    return decode(builder.build_jobpack(jobs.wordcount, jobs.wordcount.options, [["raw://a"]]))


def _flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_jobpack_read_from_a_file_has_its_contents_checked() -> None:
    """A bit flipped in the job's pickle (a param 'keep' read 'jeep'), a jobdata cut in its
    header's magic, a jobhome member that does not inflate to its CRC: all passed
    ``jobpack show`` and reached the nodes."""
    from discodsl.jobpack import check_contents

    pack = _built_pack()
    assert check_contents(pack) is pack
    for jobdata in (_flipped(pack.jobdata, len(pack.jobdata) - 40), pack.jobdata[:5]):
        with pytest.raises(JobpackError, match=r"jobdata (is damaged|does not start)") as info:
            check_contents(dataclasses.replace(pack, jobdata=jobdata))
        assert len(re.findall(r"(build|rebuild) (it|the jobpack)", str(info.value))) == 1
    with zipfile.ZipFile(io.BytesIO(pack.jobhome)) as zf:
        info = zf.getinfo("worker")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 2
    with pytest.raises(JobpackError, match="the member worker is damaged"):
        check_contents(dataclasses.replace(pack, jobhome=_flipped(pack.jobhome, at)))
    # Another maker's jobdata is its worker's to read, but not beside discodsl's worker,
    # whose every task failed on reading it (probe EG S2).
    with pytest.raises(JobpackError, match="jobdata does not start with the discodsl header"):
        check_contents(dataclasses.replace(pack, jobdata=b"another maker's data"))
    theirs = io.BytesIO()
    with zipfile.ZipFile(theirs, "w") as zf:
        zf.writestr("worker", "#!/bin/sh\n")
    other = dataclasses.replace(pack, jobhome=theirs.getvalue(), jobdata=b"another maker's")
    assert check_contents(other) is other


def test_a_worker_refuses_a_jobdata_whose_pickle_is_damaged(tmp_path: Path) -> None:
    from discodsl.worker.runtime import FatalJobError, read_jobspec

    pack = _built_pack()
    damaged = dataclasses.replace(pack, jobdata=_flipped(pack.jobdata, len(pack.jobdata) - 40))
    (tmp_path / "jobfile").write_bytes(encode(damaged))
    with pytest.raises(FatalJobError, match=r"pickle in the jobdata is damaged .*build the"):
        read_jobspec(str(tmp_path / "jobfile"))
