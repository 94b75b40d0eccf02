"""The test Disco master's jobs: run for real, their events worded as the real master's.

Test support, not product. :class:`Jobs` runs each submitted jobpack in a
thread through :class:`~discodsl.runners.node.NodeMaster` (so the very
worker runtime runs it) and words the job's events as a Disco 0.5.4 master
does (``disco-reference/*/http.jsonl``: rawevents and jobevents). A failed
task is retried as the real master retries it (``job_coordinator:retry_task``):
after failure n it pauses :func:`retry_pause` (n) seconds, 14.308, 15.308 ...
up to 73.308, on a :class:`Clock` that tests speed up; when n exceeds the
``max_failure_rate`` setting, read at each failure, the job is killed.
What still differs from the real master is listed in :mod:`tests.disco_master`,
which serves all this over HTTP.
"""

from __future__ import annotations

import bisect
import os
import re
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from discodsl import jobpack
from discodsl.runners.layout import JobLayout
from discodsl.runners.node import Attempt, JobFailed, NodeMaster
from discodsl.worker import urls
from discodsl.worker.inputs import read_index
from discodsl.worker.opening import Node
from tests.disco_ddfs import DDFS, HOST, TAG_NAME_CHARS, compact, duration, now_text

# config.hrl: FAILED_MIN_PAUSE, FAILED_MAX_PAUSE (and FAILED_PAUSE_RANDOMIZE, 30 s).
MIN_PAUSE, MAX_PAUSE = 1.0, 60.0
FAST = 0.001  # the tests' clocks: a master second lasts a real millisecond
# job_event.erl: a job's events reach its event file (what rawevents serves) every
# EVENT_BUFFER_TIMEOUT ms from the job's start, once more than EVENT_BUFFER_SIZE wait, and
# when the job ends (event_server:end_job), which a save_results job's end does not call.
# Real seconds, not the Clock's: the lag is what clients must wait out.
EVENT_BUFFER_S, EVENT_BUFFER_SIZE = 2.0, 1000
# job_event.erl keeps a job's newest events in memory for jobevents: past 2 x
# EVENT_PAGE_SIZE it keeps only the newest EVENT_PAGE_SIZE.
EVENT_PAGE_SIZE = 100
# disco:format (lager's safe_format, 8192 the limit) keeps EVENT_KEEPS characters of an
# event and puts "..." after them; a worker's text counts in bytes (a binary for ~s).
# Measured on a real 0.5.4 master: "MSG: [probe:5] " and 8167 bytes of text came whole,
# with 8168 bytes the event was the first 8182 characters and "...".
EVENT_KEEPS = 8182
# event_server:grep_log: what a jobevents filter keeps of its query (":-_" is a range).
_GREP_DROPS = re.compile(r"[^a-zA-Z0-9:-_!@]")


def erlang_uniform(n: int) -> int:
    """``random:uniform(N)`` (OTP's old ``random`` module) in a process that never seeded it.

    Such a process starts from ``seed0()`` = {3172, 9814, 20125}, so its first
    draw never varies; the master draws a retry's random pause in a new process
    each time, hence the same pause every time: 13308 ms of 30000.
    """
    a, b, c = 3172 * 171 % 30269, 9814 * 172 % 30307, 20125 * 170 % 30323
    r = a / 30269 + b / 30307 + c / 30323
    return int((r - int(r)) * n) + 1


RANDOM_PAUSE = erlang_uniform(30_000) / 1000


def formatted(message: str) -> str:
    """An event as disco:format leaves it: at most EVENT_KEEPS bytes, then "..." (a cut inside
    a character, which the real master turns into a hex dump of the bytes, is replaced)."""
    data = message.encode()
    if len(data) <= EVENT_KEEPS:
        return message
    return data[:EVENT_KEEPS].decode(errors="replace") + "..."


def retry_pause(failures: int) -> float:
    """Seconds a Disco 0.5.4 master waits after a task's ``failures``-th failure."""
    return min(failures * MIN_PAUSE, MAX_PAUSE) + RANDOM_PAUSE


def retry_event(stage: str, taskid: int, host: str, failures: int, pause: float) -> str:
    """The master's event for a retry: "~Bth" whatever the number (1th, 2th, 11th)."""
    return (
        f'Task {stage}:{taskid} failed on "{host}", {failures}th failures so far. '
        f"Sleeping {int(pause + 0.5)} seconds before retrying."  # Erlang's round/1
    )


class Clock:
    """Where the test master's retry pauses pass: ``scale`` real seconds per master second.

    ``pauses`` lists every pause asked for, in master seconds (the real
    schedule, whatever the scale); ``waited`` is the real time they may take.
    A pause ends at once when its job is killed or fails elsewhere.
    """

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.pauses: list[float] = []

    @property
    def waited(self) -> float:
        return sum(self.pauses) * self.scale

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.pauses.append(seconds)
        stop.wait(seconds * self.scale)


@dataclass
class StageCounts:
    """One row of jobinfo's pipeline: pending, waiting, running, done, failed."""

    name: str
    pending: int = 0
    waiting: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    def row(self) -> list[Any]:
        return [self.name, self.pending, self.waiting, self.running, self.done, self.failed]


@dataclass
class Job:
    """One job on the test master, from job/new to ready, dead, cleaned or purged."""

    name: str
    layout: JobLayout
    pack: jobpack.JobPack
    data: bytes
    created: float = field(default_factory=time.time)
    timestamp: str = field(default_factory=now_text)
    status: str = "active"
    results: list[Any] = field(default_factory=list)
    stage_results: dict[str, list[list[str]]] = field(default_factory=dict)
    stages: list[StageCounts] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    node: NodeMaster | None = None
    current_stage: tuple[str, float] | None = None
    killed: bool = False
    started: float = field(default_factory=time.monotonic)
    added: list[float] = field(default_factory=list)  # when each event came (monotonic)
    written: int = 0  # how many events the event file holds (see EVENT_BUFFER_S)

    @property
    def save_results(self) -> bool:
        return bool(self.pack.jobdict.get("save_results", False))

    def rawevents(self) -> bytes:
        """The event file: the events written so far, as the real master buffers them."""
        ticks = (time.monotonic() - self.started) // EVENT_BUFFER_S
        timer = bisect.bisect_right(self.added, self.started + ticks * EVENT_BUFFER_S)
        self.written = max(self.written, timer)
        return b"".join(compact(list(e)) + b"\n" for e in self.events[: self.written])

    def latest(self, num: int) -> list[tuple[str, str, str]]:
        """jobevents unfiltered: the newest ``num`` of the events kept in memory, newest first."""
        count, page = len(self.events), EVENT_PAGE_SIZE
        kept = count if count <= 2 * page else page + (count - 2 * page - 1) % (page + 1)
        newest_first = self.events[::-1]
        return newest_first[: min(num, kept)]

    def grep(self, query: str, num: int) -> list[bytes]:
        """jobevents filtered: ``grep -i`` on the event file of the query's letters, digits
        and ``:;<=>?@[\\]^_!`` (the rest dropped, spaces too), the first ``num`` lines that
        match, newest first (the query taken literally: grep's ``[\\]^`` not modelled)."""
        wanted = _GREP_DROPS.sub("", query).lower()
        lines = self.rawevents().splitlines()
        return [line for line in lines if wanted in line.decode().lower()][:num][::-1]

    def add_event(self, host: str, message: str) -> None:
        self.events.append((now_text(), host, message))
        self.added.append(time.monotonic())
        if len(self.events) - self.written > EVENT_BUFFER_SIZE:
            self.written = len(self.events)

    def jobinfo(self) -> dict[str, Any]:
        results = self.results if self.save_results else [u for r in self.results for u in r]
        return {
            "timestamp": self.timestamp,
            "active": self.status,
            "pipeline": [s.row() for s in self.stages],
            "results": results,
            "inputs": [u for _, _, urls in self.pack.jobdict["inputs"] for u in urls],
            "worker": self.pack.jobdict["worker"],
            "hosts": [HOST] if any(s.running for s in self.stages) else [],
            "owner": self.pack.jobdict["owner"],
        }


class _Node(NodeMaster):
    """NodeMaster reporting each task attempt to its :class:`Jobs` (for events and counts)."""

    def __init__(self, jobs: Jobs, **kwargs: Any):
        super().__init__(**kwargs)
        self.jobs = jobs
        self.job: Job | None = None

    def submit(self, pack: jobpack.JobPack, data: bytes | None = None) -> JobLayout:
        """The job's first stage takes its inputs last first, as the real master's does:
        ``job_coordinator:preprocess_inputs`` folds them into a list back to front, so
        task 0 reads the last input (``jobinfo`` still lists them as given)."""
        inputs = list(reversed(pack.jobdict["inputs"]))
        return super().submit(replace(pack, jobdict={**pack.jobdict, "inputs": inputs}), data)

    def _attempt(self, layout: Any, pack: Any, task: Any) -> Attempt:
        assert self.job is not None
        self.jobs.task_started(self.job, task.stage, task.taskid)
        started = time.monotonic()
        outcome = super()._attempt(layout, pack, task)
        if not self._cancelled.is_set():
            self.jobs.task_ended(
                self.job, task.stage, task.taskid, outcome, time.monotonic() - started
            )
        return outcome


class Jobs:
    """Every job of the test master, run in background threads; ``changed`` wakes waiters."""

    def __init__(self, root: Path, ddfs: DDFS, *, disco_port: int, master_url: str, clock: Clock):
        self.disco_data = root / "data"
        self.disco_data.mkdir(parents=True, exist_ok=True)
        self.ddfs, self.disco_port, self.master_url = ddfs, disco_port, master_url
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self.settings = {"max_failure_rate": 100, "accept_new_jobs": 1}
        self.changed = threading.Condition()
        self.threads: list[threading.Thread] = []
        self.closing = False

    # -- submission and lifetime -------------------------------------------------

    def submit(self, data: bytes) -> str:
        """Start a checked jobpack (``jobpack.decode`` refuses the bad ones); its job name."""
        pack = jobpack.decode(data)
        node = _Node(
            self,
            disco_data=str(self.disco_data),
            host=HOST,
            workers=2,
            max_failures=self.settings["max_failure_rate"],
            cut_off_fatal=False,  # a Disco node retries any worker that crashed
            disco_port=self.disco_port,
            put_port=self.disco_port,
            master_url=self.master_url,
            environ=_worker_environ(),
            retry_pause=retry_pause,
            sleep=self.clock.sleep,
        )
        layout = node.submit(pack, data)
        job = Job(layout.jobname, layout, pack, data, node=node)
        job.stages = [StageCounts(stage) for stage, _, _ in pack.jobdict["pipeline"]]
        node.job = job
        node.on_event = lambda kind, facts: self.node_event(job, kind, facts)
        with self.changed:
            self.jobs[job.name] = job
        self.event(job, "master", "New job initialized!")
        self.event(job, "master", f'Created job "{job.name}"')
        thread = threading.Thread(target=self._run, args=(job,), name=job.name, daemon=True)
        self.threads.append(thread)
        thread.start()
        return job.name

    def _run(self, job: Job) -> None:
        assert job.node is not None
        try:
            results = job.node.run_submitted(job.layout)
            self._stage_finished(job)
            if job.save_results:
                results = self._save(job, results)
            self._end(job, "ready", results)
        except JobFailed:
            if not job.killed:
                self._die(job)
        except BaseException:  # a bug here, not in the job: say so loudly
            traceback.print_exc(file=sys.stderr)
            self.event(job, "master", "ERROR: the test master failed; see the test's stderr")
            self._end(job, "dead", [])

    def _die(self, job: Job) -> None:
        self._stage_finished(job, quiet=True)
        self.event(job, "master", "WARN: Job killed")
        self._end(job, "dead", [])

    def _end(self, job: Job, status: str, results: list[Any]) -> None:
        if status == "ready":
            self.event(job, "master", f"READY: Job done in {duration(time.time() - job.created)}")
        with self.changed:
            if job.status == "active":
                job.status, job.results = status, results
            if status == "dead" or not job.save_results:
                job.written = len(job.events)  # event_server:end_job
            self.changed.notify_all()

    def save_setting(self, name: str, value: int) -> None:
        """A master setting; running jobs see a new ``max_failure_rate`` at their next
        failure, as the real master reads it then (application:get_env)."""
        with self.changed:
            self.settings[name] = value
            if name == "max_failure_rate":
                for job in self.jobs.values():
                    if job.node is not None:
                        job.node.max_failures = value

    def kill(self, name: str) -> None:
        """Stop a job's workers, even in a retry pause; it is dead ("WARN: Job killed")."""
        job = self.jobs.get(name)
        if job is None or job.status != "active":
            return
        job.killed = True
        self.event(job, "master", "WARN: Job killed")  # disco_server:do_kill_job
        with self.changed:
            # fair_scheduler kills the coordinator, and nobody calls end_job: the buffer's
            # timer writes the job's last events, up to EVENT_BUFFER_S later
            job.status = "dead"
            for stage in job.stages:
                stage.running = 0
            self.changed.notify_all()
        if job.node is not None:
            job.node.cancel()

    def forget(self, name: str, *, purge: bool) -> None:
        """clean_job (forget, keep the data) or purge_job (forget and delete)."""
        self.kill(name)
        with self.changed:
            job = self.jobs.pop(name, None)
        if job is not None and purge:
            shutil.rmtree(job.layout.home, ignore_errors=True)

    def get(self, name: str) -> Job | None:
        with self.changed:
            return self.jobs.get(name)

    def stop(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        for name in list(self.jobs):
            self.kill(name)
        for thread in self.threads:
            thread.join(timeout=10)

    # -- get_results: blocking with a timeout -------------------------------------

    def results(self, names: list[str], timeout_ms: int) -> list[Any]:
        """``[[name, [status, results]], ...]``, after waiting as the real master waits.

        If a listed job is active, answer when the first of them ends or at the
        timeout. As recorded, the end of a save_results job wakes nobody: such
        a job is answered at the timeout (disco-reference/ddfs-save-results/).
        """
        deadline = time.monotonic() + timeout_ms / 1000
        with self.changed:
            active = [
                self.jobs[n] for n in names if n in self.jobs and self.jobs[n].status == "active"
            ]
            while (
                active
                and not self.closing
                and not any(j.status != "active" and not j.save_results for j in active)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            return [[n, self._answer(n)] for n in names]

    def _answer(self, name: str) -> list[Any]:
        job = self.jobs.get(name)
        if job is None:
            return ["unknown job", []]
        if job.status != "ready":
            return [job.status, []]
        return ["ready", job.results]

    # -- events ------------------------------------------------------------------

    def event(self, job: Job, host: str, message: str) -> None:
        with self.changed:
            job.add_event(host, formatted(message))

    def node_event(self, job: Job, kind: str, facts: Any) -> None:
        """NodeMaster's own events: stages starting, MSG, a task given up or retried."""
        if job.killed:
            return
        if kind == "task_failed" and not facts["fatal"] and facts["failures"] > facts["limit"]:
            task = f"{facts['stage']}:{facts['taskid']}"
            self.event(
                job,
                "master",
                f"ERROR: [{task}] Task {task} failed {facts['failures']} times. "
                f"At most {facts['limit']} failures are allowed.",
            )
        elif kind == "task_retry":
            text = retry_event(
                facts["stage"], facts["taskid"], HOST, facts["failures"], facts["pause"]
            )
            self.event(job, "master", text)
        elif kind == "stage":
            self._stage_finished(job)
            stage, tasks = str(facts["stage"]), int(facts["tasks"])
            job.current_stage = (stage, time.time())
            with self.changed:
                self._counts(job, stage).waiting = tasks
            if tasks:
                self.event(job, "master", f"Stage {stage} scheduled with {tasks} tasks")
        elif kind == "msg":
            self.event(job, HOST, f"MSG: [{facts['stage']}:{facts['taskid']}] {facts['text']}")

    def task_started(self, job: Job, stage: str, taskid: int) -> None:
        self.event(job, "master", f"{stage}:{taskid} assigned to {HOST}")
        with self.changed:
            counts = self._counts(job, stage)
            counts.waiting, counts.running = counts.waiting - 1, counts.running + 1

    def task_ended(
        self, job: Job, stage: str, taskid: int, outcome: Attempt, seconds: float
    ) -> None:
        with self.changed:
            counts = self._counts(job, stage)
            counts.running -= 1
            if outcome.ok:
                counts.done += 1
            else:
                counts.failed += 1
                counts.waiting += 1
        if outcome.ok:
            self.event(job, HOST, f"DONE: [{stage}:{taskid}] Task finished in {duration(seconds)}")
            self.event(job, "master", f"SYS: [{stage}:{taskid}] Received results from {HOST}")
        else:
            self._task_failed(job, stage, taskid, outcome)

    def _task_failed(self, job: Job, stage: str, taskid: int, outcome: Attempt) -> None:
        where = f"[{stage}:{taskid}]"
        if outcome.fatal:
            self.event(job, "master", f"FATAL: {where} {outcome.text}")
            return
        text = outcome.text
        if text.startswith("Worker crashed!"):  # the node says this, the master the rest
            first, _, text = text.partition("\n")
            self.event(job, HOST, f"WARNING: {where} {first}")
        self.event(job, "master", f"WARNING: {where} {text}")

    def _stage_finished(self, job: Job, quiet: bool = False) -> None:
        if job.current_stage is None:
            return
        stage, started = job.current_stage
        job.current_stage = None
        if quiet:
            return
        job.stage_results[stage] = self._stage_indexes(job, stage)
        self.event(job, "master", f"Stage {stage} finished in {duration(time.time() - started)}")

    @staticmethod
    def _counts(job: Job, stage: str) -> StageCounts:
        return next(s for s in job.stages if s.name == stage)

    @staticmethod
    def _stage_indexes(job: Job, stage: str) -> list[list[str]]:
        index_dir = Path(job.layout.home) / ".disco"
        names = sorted(p.name for p in index_dir.glob("*.results")) if index_dir.is_dir() else []
        return [
            [job.layout.url(f".disco/{n}", scheme="dir")]
            for n in names
            if n.rsplit("-", 2)[0] == stage
        ]

    # -- save_results --------------------------------------------------------------

    def _save(self, job: Job, results: list[list[str]]) -> list[Any]:
        """Push the last stage's local outputs into DDFS and tag them ``disco:results:<job>``."""
        node = Node(host=HOST, disco_data=str(self.disco_data))
        blobs: list[list[str]] = []
        for replicas in results:
            if not replicas[0].startswith("dir://"):
                blobs.append(replicas)
                continue
            for label, url, _ in read_index(replicas[0], node):
                url_path = urls.split_host(urls.split(url)[1])[1]
                path = urls.node_path(url_path, {"disco": job.layout.disco_data})
                name = "".join(c if c in TAG_NAME_CHARS else "_" for c in os.path.basename(path))
                blob = f"{job.name}:{label}:0:{name}${self.ddfs.stamps.next()}"
                blobs.append([self.ddfs.put_blob(blob, Path(path).read_bytes())])
        tag = f"disco:results:{job.name}"
        self.ddfs.update(tag, blobs)
        if job.stages:
            job.stage_results[job.stages[-1].name] = list(reversed(blobs))
        return [f"tag://{tag}"]

    # -- the node ------------------------------------------------------------------

    def nodeinfo(self, *, blacklisted: bool = False) -> dict[str, Any]:
        jobs = list(self.jobs.values())
        usage = shutil.disk_usage(self.disco_data)
        return {
            HOST: {
                "job_ok": sum(s.done for j in jobs for s in j.stages),
                "data_error": 0,
                "error": sum(s.failed for j in jobs for s in j.stages),
                "max_workers": 2,
                "connected": True,
                "blacklisted": blacklisted,
                "diskfree": usage.free // 1024,
                "diskused": usage.used // 1024,
            }
        }


def _worker_environ() -> dict[str, str]:
    """What workers on this test node need: this interpreter and this import path."""
    path = [p for p in sys.path if p and os.path.isdir(p)]
    return {  # as the local runner starts its workers (no site: faster start-up)
        "DISCODSL_PYTHON": sys.executable,
        "DISCODSL_PYTHON_FLAGS": "-S",
        "PYTHONPATH": os.pathsep.join(path),
    }
