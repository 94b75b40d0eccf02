"""Job options: one definition, checked by the standard library, judged by pydantic when in doubt.

:class:`JobOptions` is the one definition: a frozen dataclass whose annotations
are the fields' types and whose :func:`option` metadata holds each field's
rules (``ge``, ``gt``, ``pattern``), description and fix. Two things are made
from it:

- the stdlib check, run on every JobOptions built (``@job(...)``,
  ``with_options``, and the options of every run): a value of exactly the
  annotated type (``int`` is not ``bool``; an ``int`` for a ``float`` becomes
  a float, as pydantic makes it) within its rules is accepted there and then;
- :func:`pydantic_model`, a strict pydantic model (``extra="forbid"``), built
  on first use, which judges every other value: anything the stdlib check does
  not accept goes to it, and it refuses it (its first error becomes a
  :class:`~discodsl.errors.SettingsError` naming the field, the bad value and
  the fix, word for word as when JobOptions was itself that model) or accepts
  it (``partitions=IntEnum member``), and the values it makes are kept.

Why not pydantic on every run: importing it and building the model
(:func:`pydantic_model`) costs about 70 ms of CPU in a fresh process, nearly
as much as a whole 1 KB inline job takes from process start without it
(about 80 ms; bench/README.md's 1 KB rows); the stdlib check of a job's
options takes about 80 µs. So declaring a job, and running one whose options
are plain values, never imports pydantic; a refused or unusual value does.
tests/test_imports.py holds the stdlib check to the model: it accepts only
what pydantic accepts, and keeps what pydantic keeps.

Options never travel in the jobpack: the builder copies what a worker needs
into the stdlib ``JobSpec``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from discodsl.errors import SettingsError
from discodsl.worker.errors import a_type, brief
from discodsl.worker.jobfile import (
    HTTP_TIMEOUT_MAX,
    TIMEOUT_ENV,
    bad_env_name,
    bad_env_value,
    env_too_long,
    timeout_seconds,
)
from discodsl.worker.spec import PREFIX_MAX, PREFIX_PATTERN, cleaned_prefix

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

Mode = Literal["inline", "local", "cluster"]

MIB = 1024 * 1024

# Ints an int-for-float field takes on its own: exactly representable as a float.
_EXACT_FLOAT_INT = 2**53


def option(
    default: Any = MISSING,
    *,
    factory: Any = MISSING,
    description: str,
    fix: str = "",
    **rules: Any,
) -> Any:
    """A JobOptions field: its default (or ``factory``), pydantic ``Field`` ``rules``
    (``ge``, ``gt``, ``pattern``), a description and what to write instead when refused."""
    metadata = {"rules": rules, "description": description, "fix": fix}
    return field(default=default, default_factory=factory, metadata=metadata)


# Partitions a job may have: each is a reduce task, and a map task keeps a list for each
# (ten million took 730 MB before a record was read).
MAX_PARTITIONS = 100_000
# The longest timeout= (a year): far past it, the local runner's timer thread failed
# (threading.TIMEOUT_MAX) and the run went unbounded.
MAX_TIMEOUT = 365 * 24 * 3600


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """How a job runs; every field can be set in ``@job(...)`` and overridden in ``run(...)``.

    Strict: ``"4"`` or ``True`` is not a partition count; a typo fails, never coerced.
    """

    partitions: int | None = option(
        1,
        ge=1,
        le=MAX_PARTITIONS,  # a map task keeps a list per partition
        description="reduce partitions (labels) per stage; None: not partitioned, as in Disco "
        "(one output per task, labelled 0, so one task per label-grouped stage)",
        fix=f"use an integer from 1 to {MAX_PARTITIONS:,}, e.g. partitions=4, or None for no "
        "partitioning (what partitions=0 means in Disco)",
    )
    params: Any = option(  # noqa: RUF009 (option() is a dataclasses.field())
        None, description="passed to stage functions that take `params`"
    )
    memory_budget: int = option(
        256 * MIB,
        ge=MIB,
        description=(
            "bytes a task holds: a reduce's records before it spills them to disk; a map "
            "grows by a quarter of it before its output is written, half before what its "
            "combiner holds is combined and written"
        ),
        fix="give bytes as an integer >= 1 MiB, e.g. memory_budget=256 * 1024**2",
    )
    compress: bool = option(False, description="zlib-compress intermediate record files")
    max_failures: int = option(
        3,
        ge=0,
        description="failures of a task tolerated before the job fails (on a cluster, "
        "run() kills the job past them, or the master's max_failure_rate, if lower)",
        fix="use an integer >= 0 (0: fail on the first task error)",
    )
    prefix: str | None = option(
        None,
        pattern=PREFIX_PATTERN,
        max_length=PREFIX_MAX,  # the longest a Disco 0.5.4 master runs
        description="job name prefix",
        fix=f"use at most {PREFIX_MAX} ASCII letters, digits and underscores, e.g. "
        "prefix='wordcount' (a job's own name is escaped as Disco's job names must be: '\u03c3' "
        "as 'u03c3')",
    )
    owner: str | None = option(None, description="job owner shown by the master")
    save_results: bool = option(False, description="save the results in DDFS (cluster only)")
    workers: int | None = option(
        None,
        ge=1,
        description="local worker processes",
        fix="use an integer >= 1, or None for one per CPU core",
    )
    max_cores: int | None = option(
        None,
        ge=1,
        description="tasks of this job running at once",
        fix="use an integer >= 1, or None for no limit",
    )
    env: dict[str, str] = option(  # noqa: RUF009 (option() is a dataclasses.field())
        factory=dict, description="jobenvs for the worker", fix="use a dict of str to str"
    )
    progress: bool | None = option(None, description="show progress (None: when interactive)")
    timeout: float | None = option(
        None,
        gt=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        description="seconds a run may take: past them the local runner kills its workers and "
        "raises TaskFailed, a cluster run stops waiting (ClientError; the job runs on); refused "
        "by mode='inline', which cannot interrupt stage code",
        fix="use seconds as a number > 0 (a year at most), or None to wait for ever",
    )
    push_inputs: bool = option(False, description="push local inputs to DDFS (cluster only)")
    kill_on_interrupt: bool = option(
        False, description="kill the cluster job when Ctrl-C stops the wait (cluster only)"
    )
    check_types: bool | None = option(
        None,
        description="check the first records each task of an annotated stage yields against "
        "its return annotation (None: on in mode='inline', off elsewhere)",
        fix="use True, False, or None (on in mode='inline', off elsewhere)",
    )

    cache: bool = option(
        False,
        description="keep each stage's outputs and reuse those of an earlier identical run: "
        "all of them (the run's results at once), or the stages before the first one that "
        "changed or did not finish (a resumed run); see discodsl.caching",
        fix="use True or False",
    )
    cache_by: Literal["stat", "content"] = option(
        "stat",
        description="how a cached run knows a local input file unchanged: 'stat' (its size "
        "and modification time) or 'content' (a SHA-256 of its bytes, read at each run)",
        fix="use 'stat' or 'content'",
    )

    def __post_init__(self) -> None:
        values = vars(self)
        values.update(_pythons_numbers(values))
        plain = {name: _plain(name, value) for name, value in values.items()}
        if any(made is _REFUSED for made in plain.values()):
            plain = _judged(values)
        values.update(plain)  # frozen to users; settled here, once
        _check_env(self.env)

    def __eq__(self, other: object) -> bool:
        """Field by field; ``params`` (any object) by identity, else by ``==`` where that
        answers (a numpy array's ``==`` cannot: jobs holding one are then not equal)."""
        if other.__class__ is not JobOptions:
            return NotImplemented
        return all(_same(value, vars(other)[name]) for name, value in vars(self).items())

    __hash__ = None  # type: ignore[assignment]  # params may be anything: as a dict, none

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> JobOptions:
        """A copy with ``update`` applied, unchecked (as the pydantic model's ``model_copy``):
        for a runner adapting options it has already checked."""
        copy = object.__new__(JobOptions)
        vars(copy).update(vars(self), **(update or {}))
        return copy


def _same(one: Any, other: Any) -> bool:
    """Whether ``one`` and ``other`` are the same or equal, never raising."""
    if one is other:
        return True
    try:
        return bool(one == other)
    except Exception:
        return False


def _listed(options: type) -> str:
    """The class's docstring with every option, its default and what it does, for help()."""
    lines = [inspect.cleandoc(options.__doc__ or ""), "", "Options:", ""]
    for spec in fields(options):
        default = "{}" if spec.default is MISSING else repr(spec.default)
        lines.append(f"- ``{spec.name}`` (default {default}): {spec.metadata['description']}")
    return "\n".join(lines) + "\n"


JobOptions.__doc__ = _listed(JobOptions)


class JobKeywords(typing.TypedDict, total=False):
    """The keywords of ``@job(...)``, ``run(...)`` and ``submit(...)``, for type checkers:
    :class:`JobOptions`' fields with their types (a test keeps the two the same)."""

    partitions: int | None
    params: Any
    memory_budget: int
    compress: bool
    max_failures: int
    prefix: str | None
    owner: str | None
    save_results: bool
    workers: int | None
    max_cores: int | None
    env: dict[str, str]
    progress: bool | None
    timeout: float | None
    push_inputs: bool
    kill_on_interrupt: bool
    check_types: bool | None
    cache: bool
    cache_by: Literal["stat", "content"]


# Options of Disco's classic jobs (disco.core.Job and its classic Worker, 0.5.4), and where
# each went here: said when one is given.
_STREAMS = (
    "@map(reader=...) for how inputs are read (see discodsl.readers); output is "
    "always Disco's record files (compress=)"
)
_OUTPUT_STREAMS = (
    "nothing: a task's outputs are always Disco's record files (compress= compresses "
    "them); to write another format, write the results out from the records"
)
_SHUFFLE = "nothing: the shuffle is Disco's own (partitions=, @reduce(partitioner=fn))"
_EXTERNAL = "nothing: a stage is Python; run an external program from it with subprocess"
DISCO_NAMES: Mapping[str, str] = {
    "input": "run(inputs=[...])",
    "name": "prefix= (the job's name starts with it, as Disco's Job(name=) does)",
    "map": "a @map stage in the list the @job function returns",
    "reduce": "a @reduce stage in the list the @job function returns",
    "nr_reduces": "partitions=",
    "partition": "@reduce(partitioner=fn), called as fn(key, n); for how many, partitions=N",
    "combiner": "@reduce(combiner=fn), or @reduce(combine=True) to use the reduce itself",
    "map_reader": "@map(reader=...) (see discodsl.readers)",
    "reduce_reader": "nothing: a @reduce reads its partition's records itself",
    "map_input_stream": _STREAMS,
    "map_output_stream": _OUTPUT_STREAMS,
    "reduce_input_stream": "nothing: a @reduce reads its partition's records itself",
    "reduce_output_stream": _OUTPUT_STREAMS,
    "save_info": "save_results=True (a cluster job's results then stay in DDFS, in the tag "
    "disco:results:JOB)",
    "map_shuffle": _SHUFFLE,
    "reduce_shuffle": _SHUFFLE,
    "shuffle": _SHUFFLE,
    "sort": "@reduce(sort=...)",
    "sort_buffer_size": "memory_budget= (the bytes a task holds before it spills to disk)",
    "map_init": "@map(init=fn), called as fn(params)",
    "reduce_init": "@reduce(init=fn), called as fn(params)",
    "merge_partitions": "partitions=None",
    "save": "save_results=True",
    "scheduler": "max_cores= (Disco's scheduler={'max_cores': N})",
    "status_interval": "nothing: call status(text) in a stage to report where it is",
    "profile": "nothing: profile a stage in one process, run(mode='inline') under cProfile",
    "ext_params": _EXTERNAL,
    "ext_map": _EXTERNAL,
    "ext_reduce": _EXTERNAL,
    "required_files": "nothing: a stage reads a file the nodes have, or gets small data "
    "through params=",
    "required_modules": "nothing for the stages' own modules (they go with the job); a "
    "module of yours they import must be installed on the nodes or registered with "
    "cloudpickle.register_pickle_by_value (the pre-flight names it)",
    "version": "nothing: the nodes need the client's Python minor version",
}


# What run() takes, not @job: said when one is given as a job option.
RUN_KEYWORDS: Mapping[str, str] = {
    "inputs": "job.run(inputs=[...])",
    "mode": "job.run(mode='inline'), 'local' or 'cluster'",
    "master": "job.run(master='http://HOST:8989'), or DISCO_MASTER in the environment",
}


def _meant(name: str) -> str:
    """`` (did you mean ...?)`` for an unknown option ``name``: an option or a keyword of
    run() spelt alike (case aside), or one of the same meaning; else ``""``."""
    names = [*option_names(), *RUN_KEYWORDS]
    alike = difflib.get_close_matches(name.lower(), [*names, *_ALIKE], n=1)
    close = _ALIKE.get(name.lower()) or next((_ALIKE.get(n, n) for n in alike), None)
    if close is None:
        return ""
    own = " It is run()'s own." if close in RUN_KEYWORDS else ""
    return f" (did you mean {close}=?{own})"


# Names of another meaning than the option spelt most alike: cores is no compress.
_ALIKE = {
    "cores": "max_cores",
    "processes": "workers",
    "input_files": "inputs",
    "master_url": "master",
    "retries": "max_failures",
    "max_retries": "max_failures",
    "max_attempts": "max_failures",
    "environment": "env",
}


def disco_name(name: str) -> str:
    """`` (what to write)`` for a Disco classic option ``name``, or a keyword of run();
    else ``""``."""
    if name in RUN_KEYWORDS:
        return f" ({name}= is given when the job runs: {RUN_KEYWORDS[name]})"
    where = DISCO_NAMES.get(name)
    return f" (for Disco's {name}=, write {where})" if where else ""


def _what_is_wrong(value: Any) -> str:
    """What keeps ``value`` from being an environment variable's, not showing it."""
    if not isinstance(value, str):
        return f"{a_type(value)}, not a str"
    for at, char in enumerate(value):
        if char == "\0" or "\ud800" <= char <= "\udfff":
            kind = "a NUL" if char == "\0" else "a lone surrogate"
            return f"{kind} at character {at} of {len(value)}"
    return "not UTF-8 text"


def _check_env(env: Mapping[str, str]) -> None:
    """A SettingsError for an ``env=`` no process environment can hold (refused when the
    job is declared, not by each runner its own way)."""
    for name, value in env.items():
        if bad_env_name(name):
            raise SettingsError(
                f"job option env={{{name!r}: ...}} is invalid: an environment variable's name "
                "is UTF-8 text, not empty, with no '=', NUL or lone surrogate: use a name such "
                "as 'MY_SETTING'"
            )
        if bad_env_value(value):  # its value not shown: an environment holds secrets
            raise SettingsError(
                f"job option env[{name!r}] is invalid ({_what_is_wrong(value)}): an "
                "environment variable holds UTF-8 text, with no NUL character and no lone "
                "surrogate: remove them, or pass binary data in params= instead"
            )
        if env_too_long(name, value):
            raise SettingsError(
                f"job option env[{name!r}] is {len(value.encode()):,} bytes long: no process "
                "can be started with an environment variable of 128 KiB or more (Linux's "
                "MAX_ARG_STRLEN): pass the value in params= instead, or a file's name"
            )
        if name == TIMEOUT_ENV and timeout_seconds(value) is None:
            raise SettingsError(
                f"job option env[{name!r}]={value!r} is not a timeout (a worker's for its "
                f"HTTP inputs): use a number of seconds greater than 0, at most "
                f"{HTTP_TIMEOUT_MAX:.0f}"
            )
        if name == "PYTHONHASHSEED" and not _hash_seed(value):
            raise SettingsError(
                f"job option env['PYTHONHASHSEED']={value!r} is invalid: no worker's Python "
                "would start with it: use 'random' or an integer from 0 to 4294967295"
            )


def _hash_seed(value: str) -> bool:
    """Whether Python starts with ``PYTHONHASHSEED=value`` (empty: as if unset; a number as
    C's strtoul reads one, blanks and a plus sign before it)."""
    number = re.fullmatch(r"\s*\+?([0-9]+)", value)
    return value in ("", "random") or (number is not None and int(number[1]) <= 4294967295)


def option_names() -> set[str]:
    """The names of every job option."""
    return {spec.name for spec in fields(JobOptions)}


def validate_options(base: JobOptions | None = None, **changes: Any) -> JobOptions:
    """``base`` (or the defaults) with ``changes`` applied, validated."""
    values = dict(vars(base)) if base is not None else {}
    values.update(changes)
    if not values.keys() <= option_names():
        _judged(values)  # refuses the unknown name, or a bad value of a known one first
    return JobOptions(**values)


# ---------------------------------------------------------------- the stdlib check

_REFUSED = object()  # what _plain says of a value it leaves to pydantic


@cache
def _rules() -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Each field's type (its annotation, resolved) and rules."""
    hints = typing.get_type_hints(JobOptions)
    return {spec.name: (hints[spec.name], spec.metadata["rules"]) for spec in fields(JobOptions)}


def _pythons_numbers(values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and bools among ``values`` that are numpy's (``np.int64(4)``, computed
    in a notebook), as the Python values they hold: every field but ``params`` and ``env``
    takes numbers of Python's own."""
    return {
        name: value.item()
        for name, value in values.items()
        if type(value).__module__ == "numpy"
        and getattr(value, "ndim", None) == 0
        and name not in ("params", "env")
    }


def _plain(name: str, value: Any) -> Any:
    """``value`` as the field holds it if it is plainly valid, else ``_REFUSED``."""
    hint, rules = _rules()[name]
    return _as(hint, value) if _accepts(hint, rules, value) else _REFUSED


def _accepts(hint: Any, rules: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` is certainly a valid ``hint`` within ``rules`` (False: ask pydantic)."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType):
        return any(_accepts(arm, rules, value) for arm in typing.get_args(hint))
    if typing.get_origin(hint) is dict:
        return _accepts_dict(typing.get_args(hint), value)
    if typing.get_origin(hint) is Literal:
        return any(type(value) is type(arm) and value == arm for arm in typing.get_args(hint))
    return _of_type(hint, value) and _within(rules, value)


def _of_type(hint: Any, value: Any) -> bool:
    if hint is float and type(value) is int:
        return -_EXACT_FLOAT_INT <= value <= _EXACT_FLOAT_INT
    return type(value) is hint  # None for NoneType; no bool for int, no str subclasses


def _accepts_dict(arms: tuple[Any, Any], value: Any) -> bool:
    key, item = arms
    return type(value) is dict and all(
        _accepts(key, {}, k) and _accepts(item, {}, v) for k, v in value.items()
    )


def _within(rules: Mapping[str, Any], value: Any) -> bool:
    if value is None:
        return True
    if "ge" in rules and not value >= rules["ge"]:
        return False
    if "gt" in rules and not value > rules["gt"]:
        return False
    if "le" in rules and not value <= rules["le"]:
        return False
    if rules.get("allow_inf_nan") is False and not math.isfinite(value):
        return False
    if "max_length" in rules and len(value) > rules["max_length"]:
        return False
    return "pattern" not in rules or re.fullmatch(rules["pattern"], value) is not None


def _as(hint: Any, value: Any) -> Any:
    """An accepted value as pydantic would hold it: a float for an int, a dict copied."""
    if type(value) is int and (hint is float or float in typing.get_args(hint)):
        return float(value)
    if type(value) is dict and hint is not Any:
        return dict(value)
    return value


# ---------------------------------------------------------------- pydantic, the judge


@cache
def pydantic_model() -> type[BaseModel]:
    """The strict pydantic model of :class:`JobOptions`, built from its fields (once)."""
    from pydantic import AfterValidator, ConfigDict, create_model

    config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, strict=True)
    definitions: dict[str, Any] = {
        spec.name: (_rules()[spec.name][0], _pydantic_field(spec)) for spec in fields(JobOptions)
    }
    kind, field = definitions["env"]  # and what no process environment can hold, as _check_env
    definitions["env"] = (Annotated[kind, AfterValidator(_env_checked)], field)
    return create_model("JobOptions", __config__=config, __doc__=JobOptions.__doc__, **definitions)


def _env_checked(env: dict[str, str]) -> dict[str, str]:
    """``env`` if a process environment can hold it; _check_env's words as pydantic's error."""
    try:
        _check_env(env)
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    return env


def _pydantic_field(spec: Field[Any]) -> Any:
    from pydantic import Field as PydanticField

    default: dict[str, Any] = (
        {"default_factory": spec.default_factory}
        if spec.default is MISSING
        else {"default": spec.default}
    )
    return PydanticField(
        **default, description=spec.metadata["description"], **spec.metadata["rules"]
    )


def _judged(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as the pydantic model validates them; SettingsError for its first error."""
    from pydantic import ValidationError

    try:
        model = pydantic_model()(**values)
    except ValidationError as exc:
        raise _settings_error(exc) from None
    return {name: getattr(model, name) for name in values}


def _settings_error(exc: ValidationError) -> SettingsError:
    first = exc.errors()[0]
    field_path = ".".join(str(part) for part in first["loc"]) or "options"
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(option_names()))
        guess = disco_name(name) or _meant(name)
        return SettingsError(f"unknown job option {field_path!r}{guess}: the options are {known}")
    fix = _fix(name) or "see help(discodsl.JobOptions), which lists them"
    value = first.get("input")
    if name == "env" and len(first["loc"]) > 1:
        return _env_item_error(first["loc"][1:], value, fix)
    if name == "env":  # its values are not shown: an environment holds tokens and passwords
        shown = f"<{a_type(value)}>"
        if isinstance(value, Mapping) and not isinstance(value, dict):
            fix = (
                f"{fix}: pass a dict of only the names the stages need (the whole environment "
                "would travel in the jobpack), e.g. env={'TZ': os.environ['TZ']}"
            )
    else:
        shown = brief(value, 80)
    if name == "prefix" and isinstance(value, str) and value:  # prefix='cg-smoke'
        fix = fix.replace("prefix='wordcount'", f"prefix={cleaned_prefix(value)!r}")
    return SettingsError(f"job option {field_path}={shown} is invalid ({first['msg']}): {fix}")


def _env_item_error(where: tuple[Any, ...], value: Any, fix: str) -> SettingsError:
    """The error for a name or a value of ``env`` that is no str (a value is not shown)."""
    if where[-1] == "[key]":
        said = f"the name {brief(value, 40)} is {a_type(value)}"
    else:
        said = f"env[{where[0]!r}] is {a_type(value)}"
    return SettingsError(f"job option env= is invalid: {said}, not a str: {fix}")


def _fix(name: str) -> str:
    """What to write instead of a bad value of option ``name``: its own fix, or what its
    type takes."""
    specs = {spec.name: spec for spec in fields(JobOptions)}
    if name not in specs:
        return ""
    fix = str(specs[name].metadata["fix"])
    return fix or _TYPE_FIXES.get(str(specs[name].type), "")


# What an option of a type takes, for options whose own fix says no more.
_TYPE_FIXES = {
    "bool": "use True or False",
    "bool | None": "use True, False, or None",
    "str | None": "use a string, or None",
}
