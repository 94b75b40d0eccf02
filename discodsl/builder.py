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
from discodsl.errors import JobError, JobpackError, SettingsError
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
    try:
        kept: Path | None = places.cache_home() / f"jobhome-{runtime_key(python)}.zip"
    except SettingsError:  # no home: built each time
        kept = None
    home = _read_kept(kept) if kept is not None else None
    if home is None:
        home = build_jobhome(runtime_files(python))
        if kept is not None:
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
    if options.save_results and not local:
        _check_saved_names(spec, len(inputs) if resume is None else len(resume.inputs))
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


# A save_results job's result files become DDFS blobs named "<job name>:<task id>:<run id>:
# <stage>-<task id>-<label>-<pid>" (Disco 0.5.4's worker_runtime:save_locals), which a node
# keeps with "$" and a timestamp: past TAG_NAME_MAX in all, the task fails after its DONE
# (error:badarg on a real master), is retried after a pause, and the job is killed.
_JOB_ID = len("@704:a3adf:421c7")  # what the master adds to the prefix, at most
_BLOB_STAMP = len("$704-a3adf-8ff1a")
_PID = 7  # Linux's largest pid_max, 4194304


def _check_saved_names(spec: JobSpec, inputs: int) -> None:
    """JobError if the blob names a master gives the results of ``spec`` over ``inputs``
    inputs, saved in DDFS, may be too long for its nodes to keep."""
    from discodsl.ddfs import TAG_NAME_MAX  # a cluster's job only: it imports requests

    width = max(spec.partitions or 1, 1)
    tasks = inputs + len(spec.stages) * width  # task ids count the job's tasks
    task, run, label = len(str(tasks)), len(str(tasks * 100)), len(str(width - 1))
    stage = spec.stages[-1].name
    numbers = 2 * task + run + label + _PID + 6  # and the ':' and '-' between them
    longest = len(spec.name) + _JOB_ID + len(stage) + numbers + _BLOB_STAMP
    if longest > TAG_NAME_MAX:
        raise JobError(
            f"job {spec.name!r}: save_results=True keeps each result file in DDFS as a blob "
            f"named after the job, its last stage and the task (its {len(spec.name)}-character "
            f"prefix and stage {stage!r} make names of up to {longest} characters, where a "
            f"Disco 0.5.4 node keeps {TAG_NAME_MAX}, and fails the task after it ran): give a "
            f"shorter prefix= or name=, by {longest - TAG_NAME_MAX} characters in all"
        )
