"""The jobhome: the ZIP in a jobpack that a Disco node unpacks as the job's home, and what
goes in it.

- :func:`build_jobhome`: a deterministic ZIP of files (names sorted, fixed timestamps).
- :func:`runtime_files`: what a node needs to run a discodsl worker besides CPython (the
  launcher, the worker runtime as source and, for this Python, bytecode);
  :func:`runtime_key`: a name for those files as installed, under which a built jobhome
  can be kept.
- :func:`extract_jobhome` (unpacks safely, as the master does on a node; the local runner
  uses it) and :func:`check_jobhome` (the same checks, nothing written).

Not here: the jobpack around it (:mod:`discodsl.jobpack`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import marshal
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import cloudpickle

import discodsl.worker
from discodsl.errors import JobpackError
from discodsl.worker.errors import brief

__all__ = [
    "NODE_PACKAGE_INIT",
    "ZIP_READ_ERRORS",
    "build_jobhome",
    "check_jobhome",
    "extract_jobhome",
    "open_zip",
    "runtime_files",
    "runtime_key",
    "safe_name",
]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a ZIP can hold: no build time leaks in
_UNIX = 3  # ZipInfo.create_system for which external_attr carries a file mode
_CHUNK = 1 << 16
# What reading a damaged ZIP from memory raises (OSError only from seeks on the buffer).
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
)


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
        if not safe_name(name):
            raise JobpackError(
                f"files: name {brief(name, 60)} must be a relative path with '/' separators and no "
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
    b"    from discodsl.worker.current import ThisTask, this_task\n"
    b"    from discodsl.worker.declared import job, map, reduce, stage\n"
    b"    from discodsl.worker.errors import (\n"
    b"        DataError,\n"
    b"        DiscoDSLError,\n"
    b"        MalformedRecord,\n"
    b"        ProtocolError,\n"
    b"        Retry,\n"
    b"        StageError,\n"
    b"    )\n"
)


def runtime_files(python: tuple[int, int]) -> dict[str, bytes]:
    """Everything a node needs to run a discodsl worker besides CPython ``python`` (e.g.
    ``(3, 11)``, the client's own: cloudpickle needs the same version on both sides).

    ``worker`` is the launcher, ``discodsl/worker/*.py`` the runtime beside a
    ``discodsl/__init__.py`` offering what stage code may use on a node (``count``,
    ``status``, the errors, ``readers`` beside it, and the declarations as
    :mod:`discodsl.worker.declared` has them), ``cloudpickle/*.py``
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
    """The installed files a jobhome is made of: the launcher, the worker runtime, the
    readers' module of the client (``from discodsl import readers``: the runtime's), and
    cloudpickle."""
    worker_dir = Path(discodsl.worker.__file__).parent
    return {
        "worker": worker_dir / "launcher.sh",
        "discodsl/readers.py": worker_dir.parent / "readers.py",
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
        raise JobpackError(
            f"python: {brief(python, 60)} must be (3, minor), e.g. sys.version_info[:2]"
        )


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
    with open_zip(zip_bytes) as zf:
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
    except ZIP_READ_ERRORS as exc:
        raise JobpackError(
            f"jobhome: member {info.filename!r} is damaged ({exc}); rebuild the jobhome with "
            "build_jobhome()"
        ) from exc


def check_jobhome(jobhome: bytes, worker: str = "worker") -> None:
    """JobpackError unless ``jobhome`` is a ZIP whose members are safe and hold ``worker``."""
    with open_zip(jobhome) as zf:
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


def open_zip(zip_bytes: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(zip_bytes))
    except (*ZIP_READ_ERRORS, OSError) as exc:
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
    if not safe_name(name.removesuffix("/")):
        raise JobpackError(
            f"jobhome: member {name!r} is absolute, has empty, '.' or '..' parts or a backslash; "
            "member names must be relative paths inside the job home"
        )


def safe_name(name: str) -> bool:
    """Whether ``name`` is a relative '/'-separated path that stays where it is put."""
    if not name or "\\" in name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))
