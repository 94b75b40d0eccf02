"""The commands on jobs, on a Disco master or among this machine's local runs: ``submit``,
``jobs``, ``status``, ``events``, ``wait``, ``results``, ``kill``, ``purge``, and
``nodeinfo``, ``config``, ``stageresults`` and ``jobdict`` as Disco's own CLI has them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from discodsl import jobpack, places, recordtext, stdio
from discodsl.cli.common import (
    check_output,
    cluster_for,
    job_name,
    json_wanted,
    known_job,
    local_run,
    local_runs,
    print_rows,
    read_file,
    registered_runs,
    tell,
    tell_line,
)
from discodsl.errors import (
    ClientError,
    DiscoDSLError,
    JobActive,
    JobDead,
    JobError,
    NoSuchJob,
    SettingsError,
    TagNotFound,
)
from discodsl.jobstatus import still_active, wait_limit
from discodsl.runners import registry
from discodsl.worker.errors import MalformedRecord

if TYPE_CHECKING:
    from discodsl.client import Master
    from discodsl.runners.cluster import Cluster


def cmd_submit(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        data = read_file(args.file)
        jobpack.check_contents(jobpack.decode(data))  # a damaged one is said here, not on a node
        name = conn.master.submit(data)
    tell(args, name, {"name": name})
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    if local_runs(args):
        jobs = [(int(r.started), r.status, r.name) for r in registered_runs(args)]
        return _print_jobs(args, jobs)
    with cluster_for(args) as conn:
        jobs = conn.master.joblist()
    return _print_jobs(args, jobs)


def _print_jobs(args: argparse.Namespace, jobs: list[tuple[int, str, str]]) -> int:
    if json_wanted(args):
        stdio.say(json.dumps([{"time": t, "status": s, "name": n} for t, s, n in jobs], indent=2))
        return 0
    for seconds, status, name in jobs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
        stdio.say(f"{status:<7} {when}  {name}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if local_runs(args):
        name, info = _local_info(local_run(args))
        return _print_status(args, name, info)
    from discodsl.runners import cluster

    with cluster_for(args) as conn:
        name = job_name(conn, args.job)
        try:
            info = conn.master.jobinfo(name)
        except NoSuchJob as exc:  # a save_results job's results outlive it: say where
            cluster.tell_saved(conn, name, exc)
            raise
        info["results_deleted"] = _saved_and_deleted(conn, name, info.get("results") or [])
    return _print_status(args, name, info)


def _saved_and_deleted(conn: Cluster, name: str, results: list[Any]) -> bool | None:
    """Whether the DDFS tag a ``save_results`` job's results are in was deleted; None for a
    job whose results are no such tag."""
    from discodsl.runners import cluster

    tag = cluster.saved_tag(name)
    if results != [f"tag://{tag}"]:
        return None
    try:
        return tag not in conn.ddfs.list_tags(tag)
    except ClientError:  # unknown: the job's status, which the master gave, is said all the same
        return None


#: The keys of ``status --json``, a master's jobinfo's and a local run's: null where the
#: runner does not know (a local run's inputs, results and worker are in its process; a
#: cluster job's counters are in its events, `discodsl events`).
STATUS_KEYS = (
    *("name", "active", "timestamp", "owner", "pipeline", "hosts", "inputs", "results"),
    *("worker", "pid", "counters", "results_deleted"),
)


def _local_info(run: registry.LocalRun) -> tuple[str, dict[str, Any]]:
    """A local run's status in jobinfo's shape, plus its pid, host and counters."""
    info = {
        "timestamp": time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(run.started)),
        "active": run.status,
        "pipeline": run.pipeline(),
        "owner": f"pid {run.pid} on {run.facts.get('host')}",
        "hosts": [run.facts.get("host")],
        "pid": run.pid,
        "counters": run.counters(),
    }
    if run.events_cut:
        info["events_cut"] = True
    return run.name, info


def _print_status(args: argparse.Namespace, name: str, info: dict[str, Any]) -> int:
    if json_wanted(args):
        stdio.say(json.dumps({**dict.fromkeys(STATUS_KEYS), "name": name, **info}, indent=2))
        return 0
    stdio.say(f"{name}: {info['active']} (started {info['timestamp']}, owner {info.get('owner')})")
    for row in info["pipeline"]:
        stage, _pending, waiting, running, done, failed = row
        # As a Disco master counts: waiting = tasks - (running + done); pending ones (no
        # free slot yet) are among the waiting.
        total = max(0, waiting) + max(0, running) + max(0, done)
        stdio.say(f"  {stage:<16} {done}/{total} done, {running} running, {failed} failed")
    if info.get("events_cut"):
        stdio.say(
            "  its event log stops short (it could not be written): the counts above may be "
            "short; its own process knows the run whole"
        )
    _say_results(name, info)
    if info.get("counters"):
        stdio.say(f"  counters: {json.dumps(info['counters'], sort_keys=True)}")
    return 0


def _say_results(name: str, info: dict[str, Any]) -> None:
    deleted = info.get("results_deleted")
    if deleted is not None:  # a cluster's save_results job (a local run's never is)
        from discodsl.runners.cluster import saved_tag

        said = (
            "the results it saved (DDFS tag {}) were deleted"
            if deleted
            else ("its results are saved in DDFS tag {}")
        )
        stdio.say("  " + said.format(saved_tag(name)))
    elif info.get("results") is not None:  # a local run's are in its process only
        stdio.say(f"  {len(info['results'])} result(s)")


def cmd_events(args: argparse.Namespace) -> int:
    if local_runs(args):
        return _local_events(args, local_run(args))
    with cluster_for(args) as conn:
        return _cluster_events(args, conn.master, job_name(conn, args.job))


def _cluster_events(args: argparse.Namespace, master: Master, name: str) -> int:
    """A cluster job's events; with --follow, until the log's last (READY, or "WARN: Job
    killed"), which the master writes up to 2 s after the job ends."""
    from discodsl.runners import cluster

    offset, ended = 0, False

    def read(within: float | None = None) -> bool:
        nonlocal offset, ended
        events, offset = master.rawevents(name, offset, within)
        for event in events:
            _print_event(event, json_wanted(args))
            ended = ended or cluster.ends_log(event[2])
        return ended

    while True:
        # Blocks up to a second while the job runs: the pause between two reads.
        status = master.status(name, 1000 if args.follow else 0)[0]
        read()
        if not args.follow or ended or status not in ("active", "ready", "dead"):
            return 0
        if status != "active":
            cluster.read_to_end(read)
            return 0


def _local_events(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """A local run's events from its file; with --follow, until the run ends."""
    offset = 0
    while True:
        ended = run.reread().status != "active"  # before reading: no last event is missed
        events, offset = run.read_events(offset)
        for event in events:
            _print_event(event, json_wanted(args))
        if not args.follow or ended:
            return 0
        time.sleep(registry.KILL_POLL)


def _print_event(event: tuple[str, str, str], as_json: bool) -> None:
    if as_json:
        stdio.say(json.dumps(list(event)), flush=True)
    else:  # a MSG of printed lines ends with their line end: no blank line after it
        stdio.say(" ".join(event).rstrip("\n"), flush=True)


def cmd_wait(args: argparse.Namespace) -> int:
    if local_runs(args):
        return _wait_local(args, local_run(args))
    from discodsl.runners import cluster

    with cluster_for(args) as conn:
        name = job_name(conn, args.job)
        try:
            results = cluster.wait_for(conn, name, timeout=args.timeout, replay=False)
        except TagNotFound as exc:  # it ended ready: what it saved was deleted since
            if exc.tag != cluster.saved_tag(name):
                raise
            text = f"{name}: ready, but the results it saved (DDFS tag {exc.tag}) were deleted"
            tell(args, text, _ready(name, None, deleted=True))
            return 0
    files = len(results.urls)
    tell(args, f"{name}: ready, {files} result file(s)", _ready(name, files))
    return 0


def _ready(name: str, files: int | None, *, deleted: bool = False) -> dict[str, Any]:
    """What ``wait --json`` says of a job that ended ready: the same keys for every job."""
    return {"name": name, "status": "ready", "result_files": files, "results_deleted": deleted}


def _wait_local(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """Wait for a local run (of another process) to end; JobDead if it did not end ready."""
    limit = wait_limit(args.timeout)
    started = time.monotonic()
    while (run := run.reread()).status == "active":
        elapsed = time.monotonic() - started
        if limit is not None and elapsed > limit:
            raise still_active(run.name, elapsed, limit)
        time.sleep(registry.KILL_POLL)
    if run.status != "ready":
        why = f": {run.reason}" if run.reason else ""
        raise JobDead(
            f"local run {run.name} ended {run.status}{why}: see what happened with "
            f"`discodsl events {run.name}`",
            jobname=run.name,
        )
    tell(args, f"{run.name}: ready", _ready(run.name, None))  # its files: its process's
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    if local_runs(args):
        run = local_run(args)
        if run.status not in ("active", "ready"):  # killed, failed, its program gone
            why = f" ({run.reason})" if run.reason else ""
            raise JobDead(
                f"local run {run.name} ended {run.status}{why} before it had results: there "
                f"are no records to print; see what happened with `discodsl events {run.name}`, "
                "and run it again",
                jobname=run.name,
            )
        raise SettingsError(
            f"{run.name} is a local run: its records go to the process that runs it, and its "
            "files are removed when it ends, so there is nothing to print; to keep its "
            "records, run it with -o FILE (a run with --cache is served from the cache when "
            "run again: run the same command again, with --cache, to print them), or on a "
            "Disco master"
        )
    check_output(args.output)
    from discodsl.runners import cluster

    with cluster_for(args) as conn:
        results = cluster.results_of(conn, job_name(conn, args.job))
    try:
        with stdio.output(args.output) as out:
            recordtext.write_records(results, out, as_json=json_wanted(args))
    except MalformedRecord as exc:
        if not exc.needed:
            raise
        raise _class_missing(results.jobname, exc.needed) from exc
    return 0


def _class_missing(jobname: str, needed: str) -> JobError:
    """The error for records that need a class this command cannot import (``needed``, as
    the unpickling said it): the record's own advice is for a job reading them."""
    script = (  # a class of the script that ran the job is that script's alone
        "a class of the script that ran the job (__main__) is that script's own: print the "
        "records there (from its run's results), or define the class in a module, and "
        if "__main__" in needed
        else ""
    )
    return JobError(
        f"{jobname}'s records need a class this command cannot import ({needed}): {script}"
        "run `discodsl results` where the class's module imports (its directory, or that "
        "directory on PYTHONPATH)"
    )


def cmd_kill(args: argparse.Namespace) -> int:
    return _each_job(args, _kill_one)


def cmd_purge(args: argparse.Namespace) -> int:
    return _each_job(args, _purge_one)


def _each_job(args: argparse.Namespace, command: Callable[[argparse.Namespace], int]) -> int:
    """``command`` for each job ``args`` names, in order, until one fails (raises), saying
    which were not tried then."""
    names = list(args.job)
    for index, job in enumerate(names):
        try:
            command(argparse.Namespace(**{**vars(args), "job": job}))
        except DiscoDSLError as exc:
            left = names[index + 1 :]
            if left and exc.args and isinstance(exc.args[0], str):  # said in the error itself
                exc.args = (f"{exc.args[0]} (not tried after it: {' '.join(left)})", *exc.args[1:])
            raise
    return 0


def _kill_one(args: argparse.Namespace) -> int:
    if local_runs(args):
        return _kill_local(args, local_run(args))
    with cluster_for(args) as conn:
        name = job_name(conn, args.job)
        status = conn.master.jobinfo(name)["active"]  # NoSuchJob: the master says ok to any
        if status == "active":
            conn.master.kill(name)
    _said_killed(args, name, status)
    return 0


def _said_killed(args: argparse.Namespace, name: str, status: str) -> None:
    """Say that ``name`` was killed, if it was ``active``, or that it was ``status`` already."""
    killed = status == "active"
    text = f"killed {name}" if killed else f"{name} is {status}: nothing to kill"
    tell_line(args, text, {"name": name, "killed": killed, "status": "dead" if killed else status})


#: How long `kill` waits for the process that runs a local run to kill it (seconds).
LOCAL_KILL_WAIT = 30.0


def _kill_local(args: argparse.Namespace, run: registry.LocalRun) -> int:
    """Ask the process that runs a local run to kill it, and wait until it has."""
    if run.status != "active":
        _said_killed(args, run.name, run.status)
        return 0
    registry.request_kill(run)
    deadline = time.monotonic() + LOCAL_KILL_WAIT
    while run.reread().status == "active":
        if _stopped(run.pid):
            raise JobError(
                f"process {run.pid}, which runs {run.name}, is stopped (suspended, as by "
                f"Ctrl-Z), so it cannot end the run: it does once it goes on (`kill -CONT "
                f"{run.pid}`, or `fg` in its shell); `kill -KILL {run.pid}` ends it, its runs "
                "and their workers now"
            )
        if time.monotonic() > deadline:
            raise JobError(
                f"asked process {run.pid} to kill {run.name}, but the run is still active "
                f"after {LOCAL_KILL_WAIT:g} s: is that process stuck? `kill {run.pid}` ends "
                "it, its runs and their workers"
            )
        time.sleep(0.1)
    _said_killed(args, run.name, "active")
    return 0


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T in ``/proc/PID/stat``; False where there
    is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


def _purge_one(args: argparse.Namespace) -> int:
    if local_runs(args):
        run = local_run(args)
        if run.status == "active":
            raise JobActive(
                f"{run.name} is still running: stop it with `discodsl kill {run.name}`; its "
                "files are removed when it ends",
                jobname=run.name,
            )
        places.remove_dead_dirs(tempfile.gettempdir())  # what killed processes left
        text = (
            f"{run.name} is a local run: nothing left to purge (a failed run's files went when "
            "it ended, or now if its process was killed; a finished one's go when the process "
            "holding its results closes them or exits)"
        )
        tell_line(args, text, {"name": run.name, "purged": False})
        return 0
    with cluster_for(args) as conn:
        name = known_job(conn, args.job)
        conn.master.purge(name)
    tell_line(args, f"purged {name}", {"name": name, "purged": True})
    return 0


def cmd_nodeinfo(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        nodes = conn.master.nodeinfo()
    lines = (f"{host}\t{json.dumps(nodes[host], sort_keys=True)}" for host in sorted(nodes))
    print_rows(args, nodes, lines)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        table = conn.master.config_table()
    print_rows(args, table, (f"{host}\t{workers}" for host, workers in table))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        settings = conn.master.settings()
    print_rows(args, settings, (f"{name}\t{value}" for name, value in settings.items()))
    return 0


def cmd_stageresults(args: argparse.Namespace) -> int:
    from discodsl.runners import cluster

    with cluster_for(args) as conn:
        name = job_name(conn, args.job)
        results = cluster.stage_results(conn.master, name, args.stage, _stage_option)
    print_rows(args, results, ("\t".join(replicas) for replicas in results))
    return 0


def _stage_option(stage: str) -> str:
    """``-S STAGE`` as a shell and argparse take it (``--stage=-x`` for one like an option)."""
    return f"--stage={shlex.quote(stage)}" if stage.startswith("-") else f"-S {shlex.quote(stage)}"


def cmd_jobdict(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        data = conn.master.parameters(job_name(conn, args.job))
    stdio.say(json.dumps(jobpack.read_jobdict(data), indent=2))
    return 0
