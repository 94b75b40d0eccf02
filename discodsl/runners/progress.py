"""Watching a running job: one progress bar per stage, worker messages, counters.

Runners call a :class:`Progress` with events (``stage``, ``task_done``,
``task_failed``, ``msg``). Bars use tqdm's auto mode, so they render in a
terminal and in a notebook; they are off when nobody is watching (no
terminal, no notebook) or when ``progress=False``. What stage code prints
reaches the user's stderr; counters reported by stage code are summed here,
each task's once it has succeeded (``task_done`` with its ``taskid``, or
:meth:`Progress.succeeded`): the counts of a failed attempt are dropped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from discodsl.worker.counters import PREFIX as COUNTER_PREFIX


def interactive() -> bool:
    """Whether someone is watching: a terminal on stderr, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Shows a job's progress and collects its counters."""

    def __init__(self, job: str, enabled: bool | None = None):
        self.job = job
        self.enabled = interactive() if enabled is None else enabled
        self.counters: dict[str, int] = {}
        self._pending: dict[tuple[str, int], dict[str, int]] = {}
        self._bar: Any = None

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "stage":
            self._new_bar(str(facts["stage"]), int(facts["tasks"]))
        elif kind == "task_done":
            if "taskid" in facts:
                self.succeeded(str(facts["stage"]), int(facts["taskid"]))
            if self._bar is not None:
                self._bar.update(1)
        elif kind == "msg":
            self._message(facts)
        elif kind == "task_failed":
            self._pending.pop((str(facts["stage"]), int(facts["taskid"])), None)
        if kind == "task_failed" and self.enabled:
            self._write(
                f"[{facts['stage']}:{facts['taskid']}] task failed, "
                f"{facts['failures']} failure(s) so far"
            )

    def _new_bar(self, stage: str, tasks: int) -> None:
        self._close_bar()
        if not self.enabled:
            return
        self._bar = _tqdm()(total=tasks, desc=f"{self.job}:{stage}", unit="task", leave=True)

    def succeeded(self, stage: str, taskid: int) -> None:
        """Task ``stage:taskid`` is done: its counts join the job's."""
        for name, value in self._pending.pop((stage, taskid), {}).items():
            self.counters[name] = self.counters.get(name, 0) + value

    def _message(self, facts: Mapping[str, Any]) -> None:
        stage, text = str(facts.get("stage", "")), str(facts.get("text", ""))
        for line in text.splitlines():
            if line.startswith(COUNTER_PREFIX):
                self._count((stage, int(facts.get("taskid", -1))), line[len(COUNTER_PREFIX) :])
            elif line.strip():
                self._write(f"[{stage}] {line}")

    def _count(self, task: tuple[str, int], payload: str) -> None:
        try:
            counts = json.loads(payload)
        except ValueError:
            return
        if isinstance(counts, dict):
            pending = self._pending.setdefault(task, {})
            for name, value in counts.items():
                if isinstance(value, int):
                    pending[name] = pending.get(name, 0) + value

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Finish the last bar."""
        self._close_bar()


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
