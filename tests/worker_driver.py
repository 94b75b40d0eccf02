"""A test master for one worker process: a job home laid out as a Disco node lays it out,
the jobhome's ``worker`` started as a node starts it, answered over real pipes.

Built on the master side of the protocol codec; every read has a timeout.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discodsl import jobhome, jobpack
from discodsl.runners.layout import JobLayout
from discodsl.worker.frames import Frame
from discodsl.worker.messages import Done, Error, Fatal, Input, InputErr, Request, Task
from discodsl.worker.replies import Fail, InputReply, Ok, TaskInfo
from discodsl.worker.sides import MasterSide

Replier = Callable[[Request, MasterSide], bytes | None]


def lay_out(data: bytes, disco_data: Path, host: str, jobname: str) -> JobLayout:
    """Write the jobpack and extract its jobhome where a node would: DISCO_DATA/host/hh/job."""
    layout = JobLayout(str(disco_data), host, jobname)
    Path(layout.home).mkdir(parents=True)
    Path(layout.jobfile).write_bytes(data)
    jobhome.extract_jobhome(jobpack.decode(data).jobhome, Path(layout.home))
    return layout


def node_environment(data: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A node's worker environment: PATH, the jobenvs, this interpreter for the launcher."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DISCO_MASTER_PID": "/tmp/none",
        "DISCO_PROXY": "",
        "DISCODSL_PYTHON": sys.executable,
    }
    env.update(jobpack.decode(data).jobenvs)
    env.update(extra or {})
    return env


@dataclass
class Transcript:
    """What passed between the test master and one worker."""

    sent: list[Frame] = field(default_factory=list)  # worker -> master, as on the wire
    times: list[float] = field(default_factory=list)  # when each sent frame arrived
    reads: list[int] = field(default_factory=list)  # the read each sent frame came in (0, 1...)
    replies: list[bytes] = field(default_factory=list)  # master -> worker
    raw: bytearray = field(default_factory=bytearray)  # every byte the worker wrote
    exit_code: int | None = None

    def names(self) -> list[str]:
        return [frame.name for frame in self.sent]

    def frame(self, name: str) -> Frame:
        return next(f for f in self.sent if f.name == name)


def run_worker(
    home: str,
    env: dict[str, str],
    reply: Replier,
    *,
    timeout: float = 60.0,
    command: str | None = None,
    cwd: str | None = None,
) -> Transcript:
    """Start ``home/worker`` as a node does (or as ``command`` from ``cwd``) and answer it
    with ``reply`` until it finishes."""
    process = subprocess.Popen(
        [command or os.path.join(home, "worker")],
        cwd=cwd or home,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    transcript = Transcript()
    try:
        _converse(process, reply, transcript, time.monotonic() + timeout)
        process.stdin.close()  # type: ignore[union-attr]
        transcript.exit_code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return transcript


def _converse(
    process: subprocess.Popen[bytes], reply: Replier, transcript: Transcript, deadline: float
) -> None:
    side = MasterSide()
    out = process.stdout.fileno()  # type: ignore[union-attr]
    reads = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([out], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(out, 65536)
        if not chunk:
            return
        transcript.raw += chunk
        side.receive_data(chunk)
        while (message := side.next_event()) is not None:
            transcript.sent.append(message.to_frame())
            transcript.times.append(time.monotonic())
            transcript.reads.append(reads)
            if isinstance(message, (Done, Error, Fatal)):
                return
            answer = reply(message, side)
            if answer is not None:
                transcript.replies.append(answer)
                process.stdin.write(answer)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
        reads += 1
    raise TimeoutError(f"worker did not finish; it wrote {bytes(transcript.raw)[-2000:]!r}")


def scripted(task: dict[str, Any], inputs: Sequence[Any]) -> Replier:
    """Answer TASK with ``task`` and the n-th INPUT with ``inputs[n]``; OK to everything else.

    ``task`` and ``inputs`` are payloads, as a recording holds them.
    """
    queue = list(inputs)

    def reply(message: Request, side: MasterSide) -> bytes | None:
        if isinstance(message, Task):
            return side.send(TaskInfo.from_payload(task))
        if isinstance(message, Input):
            return side.send(InputReply.from_payload(queue.pop(0)))
        if isinstance(message, InputErr):
            return side.send(Fail())
        return side.send(Ok())

    return reply


def task_payload(
    layout: JobLayout,
    *,
    taskid: int,
    stage: str,
    grouping: str,
    group: tuple[int, str],
    host: str = "vm",
) -> dict[str, Any]:
    """A TASK reply as the recordings show one, for a job home made by :func:`lay_out`."""
    return {
        "taskid": taskid,
        "master": "http://vm:8989",
        "disco_port": 8989,
        "put_port": 8990,
        "ddfs_data": os.path.join(os.path.dirname(layout.disco_data), "ddfs"),
        "disco_data": layout.disco_data,
        "stage": stage,
        "grouping": grouping,
        "group": list(group),
        "jobfile": layout.jobfile,
        "jobname": layout.jobname,
        "host": host,
    }


def write_index(layout: JobLayout, name: str, outputs: Sequence[Frame]) -> str:
    """Index a task's OUTPUTs as the master does; the dir:// URL of the index."""
    lines = [f"{o.payload[0]} {layout.url(o.payload[1])} {o.payload[2]}\n" for o in outputs]
    path = Path(layout.home) / ".disco" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(lines))
    return layout.url(f".disco/{name}", scheme="dir")


def shape(value: Any) -> Any:
    """The JSON type skeleton of a payload, for comparing with a recording."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def recorded(reference: Path, scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reference / scenario / "transcript.json").read_text())
    return data
