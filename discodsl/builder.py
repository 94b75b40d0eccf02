"""Building the jobpack a Disco master gets from a Job, its options and its resolved inputs.

The same jobpack goes to a real master (cluster runner, as bytes:
:func:`build_jobpack`) and to the local runner's master side (as the
:class:`~discodsl.jobpack.JobPack` itself: :func:`pack_job`, encoded once when
the master writes its jobfile). The jobhome (runtime + cloudpickle + launcher) is
built once per process; jobdata is the cloudpickled ``JobSpec``, checked by
the pickling pre-flight first.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

from discodsl import jobpack, settings, shipping
from discodsl.options import JobOptions
from discodsl.worker.spec import encode_jobdata

if TYPE_CHECKING:
    from discodsl.model import Job
    from discodsl.worker.spec import JobSpec


@cache
def jobhome() -> bytes:
    """The jobhome ZIP: everything a node needs besides CPython."""
    return jobpack.build_jobhome(jobpack.runtime_files(sys.version_info[:2]))


def build_jobpack(
    job: Job,
    options: JobOptions,
    inputs: list[list[str]],
    *,
    preflight: bool = True,
    spec: JobSpec | None = None,
) -> bytes:
    """The jobpack bytes for ``job`` over ``inputs`` (each a list of replica URLs);
    ``spec``: ``job.spec(options)``, when the caller has built it already."""
    chosen = job.spec(options) if spec is None else spec
    return jobpack.encode(pack_job(chosen, options, inputs, preflight=preflight))


def pack_job(
    spec: JobSpec, options: JobOptions, inputs: list[list[str]], *, preflight: bool = True
) -> jobpack.JobPack:
    """The jobpack of ``spec`` over ``inputs``, not yet encoded (the local master takes it so)."""
    pickled = shipping.pickle_job(spec)
    if preflight:
        shipping.preflight(spec, pickled)
    jobdict = jobpack.make_jobdict(
        pipeline=[(s.name, s.grouping, s.concurrent) for s in spec.stages],
        inputs=[(0, 0, urls) for urls in inputs],
        worker="worker",
        prefix=spec.name,
        owner=options.owner or settings.job_owner(),
        scheduler={"max_cores": options.max_cores} if options.max_cores else {},
        save_results=options.save_results,
    )
    data = encode_jobdata(spec, pickled)
    return jobpack.JobPack(jobdict, dict(options.env), jobhome(), data)
