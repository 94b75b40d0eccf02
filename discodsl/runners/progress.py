"""Watching a running job: one progress bar per stage, and what stage code prints.

Runners call a :class:`Progress` with events (``stage``, ``task_done``,
``task_failed``, ``msg``). Bars use tqdm's auto mode, so they render in a
terminal and in a notebook; they are off when nobody is watching (no
terminal, no notebook) or when ``progress=False``. What stage code prints
reaches the user's stderr. It only displays: the counters stage code reports
(``msg`` lines with the counter prefix, not shown) are summed by the runner's
:class:`~discodsl.runners.base.Counters`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

from discodsl.errors import JobError
from discodsl.nonblocking import nonblocking_descriptor
from discodsl.runners.threads import in_this_context
from discodsl.stdio import QUIET, STDERR_LOCK, write_line
from discodsl.worker.counters import decode as decode_counts


def interactive() -> bool:
    """Whether someone is watching: a terminal on stderr, or a notebook kernel; not where
    ``TQDM_DISABLE`` says no bars (tqdm's notebook bar does not heed it itself)."""
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    except (ValueError, OSError):  # closed: nobody watches it
        return False


# What stages printed, held for a stderr that takes none (a pipe nobody reads) before more
# is dropped: bytes.
HOLD_MOST = 8 * 1024 * 1024
# How long close() lets stderr take what is held while it takes nothing (seconds).
STALLED = 2.0


class Progress:
    """Shows a job's progress: a bar per stage, the lines stage code prints, task failures.

    A runner calls it from the loop that also reads its workers and keeps the run's
    timeout: it only queues what it is told, which a thread of its own shows, so that a
    stderr that takes nothing holds up the display alone. Past HOLD_MOST bytes of lines
    waiting, more are dropped and counted (said once stderr takes them again).
    """

    def __init__(self, job: str, enabled: bool | None = None):
        self.job = job
        self.enabled = interactive() if enabled is None else enabled
        self._bar: Any = None
        self._events: queue.SimpleQueue[tuple[str, Mapping[str, Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._held = self._dropped = self._shown = 0
        self._display: threading.Thread | None = None
        # close() gave up on stderr: what is left is counted, not shown after the run's end.
        self._given_up = threading.Event()

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "msg":
            text = _printed(facts)
            if not text:
                return
            with self._lock:
                if self._held + len(text) > HOLD_MOST:
                    self._dropped += text.count("\n") + 1
                    return
                self._held += len(text)
            facts = {"text": text}
        self._events.put((kind, facts))
        if self._display is None:
            with self._lock:  # tasks report from threads of their own: one display thread
                if self._display is None:
                    display = threading.Thread(
                        target=in_this_context(self._show_all),
                        name=f"discodsl progress of {self.job}",
                        daemon=True,
                    )
                    _start(display, self.job)
                    self._display = display

    def close(self) -> None:
        """Show what is queued and finish the last bar; given up on once stderr has taken
        nothing for STALLED seconds: what is left is then counted, not shown after the
        run has ended (among the program's own output), and the count said if stderr takes
        it."""
        if self._display is None:
            return
        self._events.put(None)
        shown = -1
        while self._display.is_alive() and shown != self._shown:
            shown = self._shown
            self._display.join(STALLED)
        if self._display.is_alive():
            self._given_up.set()

    def _show_all(self) -> None:
        """Show each event queued, in order, until close()."""
        while (event := self._events.get()) is not None:
            # A stderr of the program's that raises (an app's stream to its logger) loses
            # that event's line, not the rest of the run's: nobody to tell of it but itself.
            with contextlib.suppress(Exception):
                self._show(*event)
            self._shown += 1
        with contextlib.suppress(Exception):
            self._tell_dropped()  # the count of what the run's last lines lost
        self._close_bar()

    def _show(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "stage":
            self._new_bar(str(facts["stage"]), int(facts["tasks"]))
        elif kind == "task_done" and self._bar is not None:
            self._bar.update(1)
        elif kind == "msg":
            self._show_printed(facts["text"])
        elif kind == "task_failed" and (self.enabled or "reason" in facts):
            why = f": {facts['reason']}" if "reason" in facts else ""  # a retried one's, always
            self._write(f"[{facts['stage']}:{facts['taskid']}] task failed, {_next(facts)}{why}")

    def _show_printed(self, text: str) -> None:
        """Lines stages printed, those stderr did not take whole counted as dropped (a
        non-blocking one that took nothing for a while); once it takes some again, it is
        told how many."""
        lines = text.count("\n") + 1
        lost = lines if self._given_up.is_set() else self._write_lines(text)
        with self._lock:
            self._held -= len(text)
            self._dropped += lost
        if lost < lines:
            self._tell_dropped()

    def _tell_dropped(self) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped and not self._write(
            f"[discodsl] {dropped} line(s) that stages printed were not shown: stderr took "
            "none for a while"
        ):
            with self._lock:
                self._dropped += dropped

    def _new_bar(self, stage: str, tasks: int) -> None:
        self._close_bar()
        if not self.enabled or not _bars_fit(sys.stderr):
            return
        self._bar = _tqdm()(total=tasks, desc=f"{self.job}:{stage}", unit="task", leave=True)

    def _write(self, text: str) -> bool:
        """Show ``text`` and a newline, in one write; whether stderr took it whole."""
        return self._write_lines(text) == 0

    def _write_lines(self, text: str) -> int:
        """Show ``text`` and a newline, in one write; how many of its lines stderr did not
        take whole. No bar goes on where stderr was made non-blocking since it was drawn."""
        if self._bar is not None and not _bars_fit(sys.stderr):
            with contextlib.suppress(Exception):
                self._close_bar()
        if self._bar is None:
            return 0 if QUIET[0] else write_line(text)
        try:
            with STDERR_LOCK:  # a line of another run's goes before or after, not within
                self._bar.write(text, file=sys.stderr)
        except (OSError, ValueError):
            return text.count("\n") + 1
        return 0

    def _close_bar(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.close()


def _bars_fit(stderr: Any) -> bool:
    """Whether bars may be drawn on ``stderr``: not where the program has none, nor where a
    non-blocking one would cut them, and the lines between them."""
    return stderr is not None and nonblocking_descriptor(stderr) is None


def _printed(facts: Mapping[str, Any]) -> str:
    """What a stage printed (a MSG), each line prefixed with its stage; "" for a report of
    counts, or blank lines."""
    stage, text = str(facts.get("stage", "")), str(facts.get("text", ""))
    if decode_counts(text) is not None:
        return ""
    # Lines end at a newline or a carriage return (a progress bar's redraws), as a
    # terminal shows them: splitlines() also cut a line at U+2028 or a form feed.
    lines = _LINE_END.split(text)
    return "\n".join(f"[{stage}] {line}" for line in lines if line.strip())


_LINE_END = re.compile("\r\n|\r|\n")


def _tqdm() -> Any:
    """tqdm's notebook widget where a kernel can show it, else the text bar."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            pass
        else:
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar
    from tqdm import tqdm as text_bar

    return text_bar


def _start(display: threading.Thread, job: str) -> None:
    """Start the thread that shows a run's progress and output; JobError if none starts."""
    try:
        display.start()
    except RuntimeError as exc:  # "can't start new thread"
        raise JobError(
            f"could not start the thread that shows the progress and output of job {job!r} "
            f"({exc}): this process is at a limit of memory or threads (ulimit -v, ulimit -u): "
            "raise it"
        ) from exc


def final(facts: Mapping[str, Any]) -> bool:
    """Whether a task's failure (a ``task_failed`` event's ``facts``) fails the job: a
    fatal one, or one past the run's max_failures (``limit``), if told."""
    return bool(facts.get("fatal")) or ("limit" in facts and facts["failures"] > facts["limit"])


def _next(facts: Mapping[str, Any]) -> str:
    """What comes of a task's failure: not retried (stage code raised, or the runner's
    retries are used up), or tried again (a cluster's events say only that)."""
    failures = facts["failures"]
    if facts.get("fatal"):
        return "not retried (the job fails)"
    if final(facts):
        plural = "s" if failures > 1 else ""
        return f"{failures} failure{plural}, past max_failures={facts['limit']} (the job fails)"
    after = f" in {facts['pause']} s" if "pause" in facts else ""  # a master's pause
    return f"{failures} failure(s) so far, to be retried{after}"


class StageBars:
    """A job's stage bars for a Progress, from counts two sources give out of step (a
    cluster's events, written up to 2 s late, and its jobinfo): one bar per stage, in the
    pipeline's order; a stage's bar starts once the bar before it is full and its own
    tasks are known, and shows the most done tasks either source has said."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.order: list[str] = []  # the pipeline's stages (jobinfo's rows, or as scheduled)
        self.tasks: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.shown: list[str] = []  # stages whose bar started, the last one showing
        self.moved = 0  # tasks the showing bar has counted

    def pipeline(self, stages: list[str]) -> None:
        """The stages in the order jobinfo lists them (those only events named after)."""
        self.order = [*stages, *(stage for stage in self.order if stage not in stages)]

    def counts(self, stage: str, tasks: int, done: int) -> None:
        """``stage`` has at least ``tasks`` tasks, ``done`` of them done."""
        if stage not in self.order:
            self.order.append(stage)
        self.tasks[stage] = max(tasks, self.tasks.get(stage, 0))
        self.done[stage] = max(done, self.done.get(stage, 0))
        self._show()

    def end(self) -> None:
        """The job is ready: every stage left gets its bar, as full as its counts say."""
        self._show(ended=True)

    def _show(self, ended: bool = False) -> None:
        """Move the showing bar on; while it is full, start the next stage's."""
        while self._full():
            waiting = [stage for stage in self.order if stage not in self.shown]
            if not waiting or not (ended or self._known(waiting)):
                return
            self.shown.append(waiting[0])
            self.moved = 0
            self.progress("stage", {"stage": waiting[0], "tasks": self.tasks.get(waiting[0], 0)})

    def _full(self) -> bool:
        """Whether no stage's bar shows, or the one showing counts all its tasks now."""
        if not self.shown:
            return True
        stage = self.shown[-1]
        done = min(self.done.get(stage, 0), self.tasks.get(stage, 0))
        for _ in range(done - self.moved):
            self.progress("task_done", {"stage": stage})
        self.moved = max(self.moved, done)
        return self.moved >= self.tasks.get(stage, 0)

    def _known(self, waiting: list[str]) -> bool:
        """Whether the first of the ``waiting`` stages was scheduled: its tasks are known,
        or a stage after it has some (the master schedules stages in order)."""
        return any(self.tasks.get(stage, 0) or self.done.get(stage, 0) for stage in waiting)
