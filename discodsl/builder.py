"""Building the jobpack a Disco master gets from a Job, its options and its resolved inputs.

The same jobpack goes to a real master (cluster runner, as bytes:
:func:`build_jobpack`) and to the local runner's master side (as the
:class:`~discodsl.jobpack.JobPack` itself: :func:`pack_job`, encoded once when
the master writes its jobfile). Jobdata is the cloudpickled ``JobSpec``, checked
by the pickling pre-flight first.

The jobhome (runtime + cloudpickle + launcher, with their pycs) is the same for
every job of an installation, and building it (reading and compiling the
sources, deflating them) is most of the work of packing a small job. It is built
once per installation and Python: :func:`jobhome` keeps it in the user's cache
directory (``$XDG_CACHE_HOME/discodsl``, else ``~/.cache/discodsl``) under
:func:`~discodsl.jobhome.runtime_key`, which changes with any of its files'
size or time, and once per process in memory. A kept jobhome that is not a
sound ZIP is built again; where nothing can be written, it is built every time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from discodsl import jobpack, places, settings, shipping
from discodsl.errors import JobpackError
from discodsl.jobhome import build_jobhome, check_jobhome, runtime_files, runtime_key
from discodsl.options import JobOptions
from discodsl.worker.spec import encode_jobdata

if TYPE_CHECKING:
    from discodsl.caching.reuse import Checkpoint
    from discodsl.model import Job
    from discodsl.worker.spec import JobSpec


# Jobhomes kept in the cache directory, the newest first; older ones are removed.
KEPT_JOBHOMES = 8


@cache
def jobhome() -> bytes:
    """The jobhome ZIP: everything a node needs besides CPython (see the module docstring)."""
    python = sys.version_info[:2]
    kept = places.cache_home() / f"jobhome-{runtime_key(python)}.zip"
    home = _read_kept(kept)
    if home is None:
        home = build_jobhome(runtime_files(python))
        _keep(kept, home)
    return home


def _read_kept(path: Path) -> bytes | None:
    """The jobhome kept at ``path``, if there is one and it is a sound jobhome ZIP."""
    try:
        home = path.read_bytes()
        check_jobhome(home)
    except (OSError, JobpackError):
        return None
    return home


def _keep(path: Path, home: bytes) -> None:
    """Write ``home`` to ``path`` whole (a reader never sees half), then drop old ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jobhome-")
    except OSError:
        return  # no cache here: built each time
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(home)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # a full disk, a quota: what was written goes
        return
    _drop_old(path.parent)


def _drop_old(directory: Path) -> None:
    def age(path: Path) -> float:
        try:
            return -path.stat().st_mtime
        except OSError:
            return 0.0

    for old in sorted(directory.glob("jobhome-*.zip"), key=age)[KEPT_JOBHOMES:]:
        old.unlink(missing_ok=True)


def build_jobpack(
    job: Job,
    options: JobOptions,
    inputs: list[list[str]],
    *,
    preflight: bool = True,
    spec: JobSpec | None = None,
    resume: Checkpoint | None = None,
) -> bytes:
    """The jobpack bytes for ``job`` over ``inputs`` (each a list of replica URLs);
    ``spec``: ``job.spec(options)``, when the caller has built it already."""
    chosen = job.spec(options) if spec is None else spec
    pack = pack_job(chosen, options, inputs, preflight=preflight, resume=resume)
    return jobpack.encode(pack)


def pack_job(
    spec: JobSpec,
    options: JobOptions,
    inputs: list[list[str]],
    *,
    preflight: bool = True,
    resume: Checkpoint | None = None,
    local: bool = False,
) -> jobpack.JobPack:
    """The jobpack of ``spec`` over ``inputs``, not yet encoded (the local master takes it so:
    ``local``, where a computed DISCO_JOB_OWNER fails nothing).

    A run that resumes after cached stages (``resume``) ships the whole job, but its pipeline
    lists only the stages after them, and its inputs are their outputs with their labels.
    """
    pickled = shipping.pickle_job(spec)
    if preflight:
        shipping.preflight(spec, pickled)
    start = 0 if resume is None else resume.start
    labelled = [(0, 0, urls) for urls in inputs] if resume is None else resume.inputs
    jobdict = jobpack.make_jobdict(
        pipeline=[(s.name, s.grouping, s.concurrent) for s in spec.stages[start:]],
        inputs=labelled,
        worker="worker",
        prefix=spec.name,
        owner=options.owner or settings.job_owner(needed=not local),
        scheduler={"max_cores": options.max_cores} if options.max_cores else {},
        save_results=options.save_results,
    )
    data = encode_jobdata(spec, pickled)
    return jobpack.JobPack(jobdict, dict(options.env), jobhome(), data)
