"""Who plays the master: inline (one process), local (worker processes here), cluster (Disco).

:func:`choose` picks one: an explicit ``mode``, else the cluster when a
master is given or ``DISCO_MASTER`` is set, else the local runner.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from discodsl.errors import SettingsError

if TYPE_CHECKING:
    from discodsl.model import Inputs, Job
    from discodsl.options import JobOptions
    from discodsl.results import Results


class Runner(Protocol):
    """Runs a job over inputs and returns its results."""

    def run(self, job: Job, inputs: Inputs, options: JobOptions) -> Results: ...


def choose(mode: str | None, master: str | None = None) -> Runner:
    """The runner for ``mode`` (or the default one, see the module docstring)."""
    if mode is None:
        mode = "cluster" if master or os.environ.get("DISCO_MASTER") else "local"
    if mode == "local":
        from discodsl.runners.local import LocalRunner

        return LocalRunner()
    if mode == "inline":
        from discodsl.runners.inline import InlineRunner

        return InlineRunner()
    if mode == "cluster":
        from discodsl.runners.cluster import ClusterRunner

        return ClusterRunner(master)
    raise SettingsError(f"mode={mode!r} is not a mode: use 'inline', 'local' or 'cluster'")
