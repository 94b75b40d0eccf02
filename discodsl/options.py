"""Job options: a frozen pydantic model, validated when a job is declared and again at run().

Only :func:`validate_options` translates pydantic's ``ValidationError``, into
a :class:`~discodsl.errors.SettingsError` that names the field, the bad value
and the fix. Options never travel in the jobpack: the builder copies what a
worker needs into the stdlib ``JobSpec``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from discodsl.errors import SettingsError

Mode = Literal["inline", "local", "cluster"]

MIB = 1024 * 1024

# What to write instead, per field, when a value is refused.
FIXES = {
    "partitions": "use an integer >= 1, e.g. partitions=4",
    "memory_budget": "give bytes as an integer >= 1 MiB, e.g. memory_budget=256 * 1024**2",
    "max_failures": "use an integer >= 0 (0: fail on the first task error)",
    "prefix": "use letters, digits and underscores only, e.g. prefix='wordcount'",
    "workers": "use an integer >= 1, or None for one per CPU core",
    "max_cores": "use an integer >= 1, or None for no limit",
    "mode": "use 'inline', 'local' or 'cluster'",
    "env": "use a dict of str to str",
    "timeout": "use seconds as a number > 0, or None to wait for ever",
}


class JobOptions(BaseModel):
    """How a job runs; every field can be set in ``@job(...)`` and overridden in ``run(...)``."""

    # strict: "4" or True is not a partition count; a typo should fail, not be coerced.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, strict=True
    )

    partitions: int = Field(1, ge=1, description="reduce partitions (labels) per stage")
    params: Any = Field(None, description="passed to stage functions that take `params`")
    memory_budget: int = Field(256 * MIB, ge=MIB, description="bytes a reduce sorts in memory")
    compress: bool = Field(False, description="zlib-compress intermediate record files")
    max_failures: int = Field(
        3,
        ge=0,
        description="task failures tolerated before the job fails (local runner; a Disco "
        "master applies its own max_failure_rate setting)",
    )
    prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$", description="job name prefix")
    owner: str | None = Field(None, description="job owner shown by the master")
    save_results: bool = Field(False, description="save the results in DDFS (cluster only)")
    workers: int | None = Field(None, ge=1, description="local worker processes")
    max_cores: int | None = Field(None, ge=1, description="tasks of this job running at once")
    env: dict[str, str] = Field(default_factory=dict, description="jobenvs for the worker")
    progress: bool | None = Field(None, description="show progress (None: when interactive)")
    timeout: float | None = Field(
        None,
        gt=0,
        description="seconds a run may take: past them the local runner kills its workers and "
        "raises TaskFailed, a cluster run stops waiting (ClientError; the job runs on); refused "
        "by mode='inline', which cannot interrupt stage code",
    )
    push_inputs: bool = Field(False, description="push local inputs to DDFS (cluster only)")
    kill_on_interrupt: bool = Field(
        False, description="kill the cluster job when Ctrl-C stops the wait (cluster only)"
    )


def validate_options(base: JobOptions | None = None, **changes: Any) -> JobOptions:
    """``base`` (or the defaults) with ``changes`` applied, validated."""
    # Fields as they are (model_dump would turn a dataclass in params into a dict).
    values = {name: getattr(base, name) for name in JobOptions.model_fields} if base else {}
    values.update(changes)
    try:
        return JobOptions(**values)
    except ValidationError as exc:
        raise _settings_error(exc) from None


def _settings_error(exc: ValidationError) -> SettingsError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "options"
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(JobOptions.model_fields))
        return SettingsError(f"unknown job option {field!r}: the options are {known}")
    fix = FIXES.get(name, "see help(discodsl.JobOptions)")
    value = first.get("input")
    return SettingsError(f"job option {field}={value!r} is invalid ({first['msg']}): {fix}")
