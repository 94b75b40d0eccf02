"""Running and building jobs: ``run``, ``jobpack build`` and ``jobpack show``, and finding
the job a ``MODULE:JOB`` argument names (:func:`import_job`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, cast

from discodsl import builder, indexes, jobpack, recordtext, sources, stdio
from discodsl.cli.common import check_output, cluster_for, json_wanted, read_file
from discodsl.errors import (
    JobError,
)
from discodsl.model import Job
from discodsl.options import Mode, validate_options
from discodsl.settings import configured_master


def _check_no_other_file(text: str, module_name: str) -> None:
    """A JobError for a file that is no .py (a notebook): importing by its name would run
    whatever module or .py beside it has that name."""
    if module_name.endswith(".py") or not (
        module_name.endswith(".ipynb") or os.path.isfile(module_name)
    ):
        return
    export = (
        f": export it first (jupyter nbconvert --to script {module_name}) and give the .py"
        if module_name.endswith(".ipynb")
        else ""
    )
    raise JobError(
        f"{text}: {module_name} is no .py file; `discodsl run` takes a module (pkg.mod:JOB) or "
        f"the path of a .py file (path/to/file.py:JOB){export}"
    )


def import_job(text: str) -> Job:
    """The :class:`Job` named ``MODULE:JOB`` (a dotted module, or a path to a ``.py`` file).
    The module's directory joins ``sys.path`` (local workers get it too), unless that fails."""
    module_name, _, name = text.rpartition(":")
    _check_no_other_file(text, module_name)
    path: Path | None = None
    if module_name.endswith(".py") or os.sep in module_name:
        path = _job_file(text, module_name)
        if not path.is_file():
            raise JobError(f"{text}: there is no file {path}: give the path of a .py file")
        if "." in path.stem:  # imported by its name, it would be a module in a package
            raise JobError(
                f"{text}: {path.name} is imported by its name, in which a dot names a package: "
                f"rename it without the dot (e.g. {path.stem.replace('.', '_')}.py)"
            )
        module_name, where = path.stem, str(path.parent)
    else:
        try:
            where = os.getcwd()
        except FileNotFoundError:
            raise JobError(
                f"{text}: the working directory was removed, so no module can be imported "
                "from it: cd to an existing directory, or give the job's file, FILE.py:JOB"
            ) from None
        here = Path(where, *module_name.split(".")).with_suffix(".py")
        path = here.resolve() if here.is_file() else None  # the module meant: is it the one?
    added = where not in sys.path
    if added:
        sys.path.insert(0, where)
    try:
        return _job_in(module_name, name, path)
    except JobError:
        if added:  # its files must not shadow others' modules, here or in workers
            with contextlib.suppress(ValueError):
                sys.path.remove(where)
        raise


def _job_file(text: str, module_name: str) -> Path:
    """The absolute path of the job's file ``module_name`` (``~`` expanded, as an input's)."""
    given = Path(module_name).expanduser()
    try:
        return given.resolve()
    except FileNotFoundError:  # the working directory was removed: a relative path is none
        raise JobError(
            f"{text}: the working directory was removed, so {module_name} names no file: cd "
            "to an existing directory, or give the file's absolute path"
        ) from None


def _job_in(module_name: str, name: str, path: Path | None) -> Job:
    """The job ``name`` of module ``module_name`` (which must be the file ``path``, if given)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _import_failed(exc, module_name, name, path) from exc
    except Exception as exc:  # the module's own code failed (SyntaxError included)
        raise JobError(f"importing {module_name!r} failed: {_where_raised(exc)}") from exc
    except SystemExit as exc:  # sys.exit(), or its own argparse, at import
        raise JobError(
            f"importing {module_name!r} exited (code {exc.code!r}): a module the command "
            "line imports must not run its program when imported: put that under `if "
            '__name__ == "__main__":`'
        ) from None
    loaded = getattr(module, "__file__", None)
    if path is not None and (loaded is None or Path(loaded).resolve() != path):
        raise JobError(
            f"{path} is named like the module {module_name!r}, which Python took from "
            f"{loaded or 'its own modules'}: rename the file (e.g. {module_name}_job.py)"
        )
    found = getattr(module, name, None)
    if not isinstance(found, Job):
        raise JobError(
            f"{module_name}.{name} is {'missing' if found is None else type(found).__name__}, "
            "not a job: name a function decorated with @job"
        )
    return found


def _import_failed(exc: ImportError, module_name: str, name: str, path: Path | None) -> JobError:
    """What to do when the job's module, ``module_name`` (the file ``path``), or one it
    imports, is not found."""
    if path is not None and "relative import" in str(exc):
        return JobError(
            f"{path} makes relative imports, which need its package: name it as a "
            f"module instead, from the directory above the package "
            f"({path.parent.name}.{module_name}:{name})"
        )
    if exc.name and exc.name != module_name and not module_name.startswith(exc.name + "."):
        return JobError(
            f"importing {module_name!r} failed: it imports {exc.name!r}, which is not "
            f"installed ({exc}): install it"
        )
    return JobError(
        f"cannot import {module_name!r} ({exc}): run discodsl from the directory that holds "
        "it, or give the path of the .py file"
    )


# discodsl's own files, which an error raised while importing a job module is not blamed on.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _where_raised(exc: Exception) -> str:
    """``exc`` in a line, with the file and line of the code that raised it."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    # The user's line that led to it: discodsl's own (a refused option) would not help, nor
    # generated code's ("<string>": a dataclass's __init__).
    theirs = [f for f in frames if not f.filename.startswith((_PACKAGE_DIR, "<"))]
    last = (theirs or frames)[-1:]
    where = f" ({last[0].filename}, line {last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def cmd_run(args: argparse.Namespace) -> int:
    master = getattr(args, "master", None)
    # The default of discodsl.runners.choose, decided here so that the hint fits.
    chosen = args.mode or ("cluster" if configured_master(master) else "local")
    args.where = mode = cast("Mode", chosen)
    # The options given on the command line: None, the job's own.
    given = {"push_inputs": args.push_inputs, "cache": args.cache, "progress": args.progress}
    options: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if args.partitions is not None:
        options["partitions"] = _partitions(args.partitions)
    if args.timeout is not None:
        options["timeout"] = args.timeout or None  # 0: none, as --partitions 0
    check_output(args.output)  # before the run: its records would be lost after it
    with stdio.stdout_to_stderr():  # the job module's and its stages' prints: not records
        job = import_job(args.job)
        options.update(_params_given(job, args.param))
        args.timed = _timeout(job, options, mode)  # for the hint
        results = job.run(args.inputs, mode=mode, master=master, **options)
    with stdio.output(args.output) as out:
        recordtext.write_records(results, out, as_json=json_wanted(args))
    return 0


def _timeout(job: Job, options: dict[str, Any], mode: Mode) -> bool:
    """Whether the run has a timeout; a JobError if it runs inline, which cannot keep one
    (said in the command line's terms: the runner's are the Python API's)."""
    timeout = options.get("timeout", job.options.timeout)
    if timeout is not None and mode == "inline":
        raise JobError(
            f"job {job.name!r} has timeout={timeout:g}, which --inline cannot keep (nothing "
            "stops stage code in this process): add --timeout 0 to run it inline with no "
            "limit, or run it with --local"
        )
    return timeout is not None


def _partitions(given: int) -> int | None:
    """``--partitions N`` as the job option: 0 is no partitioning, as in Disco (the Python
    API says None, which a command line cannot)."""
    return None if given == 0 else given


def _params_given(job: Job, given: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``params=`` change ``-P NAME=VALUE`` makes: the job's dict with those keys set."""
    if not given:
        return {}
    params = job.options.params
    if params is not None and not isinstance(params, dict):
        raise JobError(
            f"-P sets keys of the job's params, but {job.name!r} has params of type "
            f"{type(params).__name__}: make them a dict, or leave -P out"
        )
    return {"params": {**(params or {}), **dict(given)}}


def cmd_jobpack_build(args: argparse.Namespace) -> int:
    check_output(args.output)
    job = import_job(args.job)
    changes: dict[str, Any] = {}
    if args.partitions is not None:
        changes["partitions"] = _partitions(args.partitions)
    if args.push_inputs is not None:
        changes["push_inputs"] = args.push_inputs
    changes.update(_params_given(job, args.param))
    options = validate_options(job.options, **changes)
    listed: indexes.Listed = {}
    from discodsl.runners import cluster
    from discodsl.runners.base import local_files

    urls = local_files(sources.resolve(args.inputs), listed)  # a local run's: file:// URLs
    spec = job.spec(options)

    # Tags resolved and indexes expanded through the master (a master would take an index
    # for one input, of label 0), and the local inputs of a push_inputs=True job pushed.
    found = any(u.startswith(("tag://", "dir://")) for replicas in urls for u in replicas)
    if found or (options.push_inputs and any(map(cluster.local_file, urls))):
        why = (
            ": the inputs name DDFS tags or an earlier job's results (dir://), which the "
            "master resolves"
            if found
            else f": job {job.name!r} pushes its local inputs to DDFS first (push_inputs=True); "
            "--no-push-inputs builds it with file:// inputs"
        )
        with cluster_for(args, why) as conn:
            name = spec.name
            urls = cluster.cluster_inputs(
                conn, urls, push=options.push_inputs, name=name, listed=listed
            )
    data = builder.build_jobpack(job, options, urls, spec=indexes.listing(spec, listed, urls))
    with stdio.output(args.output, binary=True) as out:
        out.write(data)
    named = "" if spec.name == job.name else f", its jobs {spec.name}@..."  # a prefix=
    stdio.notice(f"{args.output}: jobpack of {job.name!r}{named}, {len(data)} bytes")
    return 0


def cmd_jobpack_show(args: argparse.Namespace) -> int:
    pack = jobpack.check_contents(jobpack.decode(read_file(args.file)))
    shown = {**jobpack.describe(pack), "jobdata_header": jobpack.jobdata_header(pack.jobdata)}
    stdio.say(json.dumps(shown, indent=2))
    return 0
