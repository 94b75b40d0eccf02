"""Who plays the master: inline (one process), local (worker processes here), cluster (Disco).

:func:`choose` picks one: an explicit ``mode``, else the cluster when a
master is given or configured (``DISCO_MASTER`` or ``DISCO_MASTER_HOST``, in
the environment or the settings file: :func:`discodsl.settings.configured_master`),
else the local runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from discodsl.errors import SettingsError
from discodsl.settings import configured_master

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
        mode = "cluster" if configured_master(master) else "local"
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
