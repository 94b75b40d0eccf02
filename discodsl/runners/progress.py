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

import sys
from collections.abc import Mapping
from typing import Any

from discodsl.stdio import notice
from discodsl.worker.counters import decode as decode_counts


def interactive() -> bool:
    """Whether someone is watching: a terminal on stderr, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Shows a job's progress: a bar per stage, the lines stage code prints, task failures."""

    def __init__(self, job: str, enabled: bool | None = None):
        self.job = job
        self.enabled = interactive() if enabled is None else enabled
        self._bar: Any = None

    def __call__(self, kind: str, facts: Mapping[str, Any]) -> None:
        if kind == "stage":
            self._new_bar(str(facts["stage"]), int(facts["tasks"]))
        elif kind == "task_done" and self._bar is not None:
            self._bar.update(1)
        elif kind == "msg":
            self._message(facts)
        elif kind == "task_failed" and self.enabled:
            self._write(f"[{facts['stage']}:{facts['taskid']}] task failed, {_next(facts)}")

    def _new_bar(self, stage: str, tasks: int) -> None:
        self._close_bar()
        if not self.enabled or sys.stderr is None:  # no bar where the program has no stderr
            return
        self._bar = _tqdm()(total=tasks, desc=f"{self.job}:{stage}", unit="task", leave=True)

    def _message(self, facts: Mapping[str, Any]) -> None:
        stage, text = str(facts.get("stage", "")), str(facts.get("text", ""))
        if decode_counts(text) is not None:
            return
        lines = [f"[{stage}] {line}" for line in text.splitlines() if line.strip()]
        if lines:
            self._write("\n".join(lines))

    def _write(self, text: str) -> None:
        """Show ``text`` and a newline, in one write."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            notice(text)

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


def _next(facts: Mapping[str, Any]) -> str:
    """What comes of a task's failure: not retried (stage code raised, or the runner's
    retries are used up), or tried again (a cluster's events say only that)."""
    failures = facts["failures"]
    if facts.get("fatal"):
        return "not retried (the job fails)"
    if "limit" in facts and failures > facts["limit"]:
        return f"{failures} failures, past max_failures={facts['limit']} (the job fails)"
    return f"{failures} failure(s) so far, to be retried"
