"""Who plays the master: inline (one process), local (worker processes here), cluster (Disco).

:func:`choose` picks one: an explicit ``mode``, else the cluster when a
master is given or configured (``DISCO_MASTER`` or ``DISCO_MASTER_HOST``, in
the environment or the settings file: :func:`discodsl.settings.configured_master`),
else the local runner. Each is a :class:`~discodsl.runners.base.Runner`, the
template that prepares a run once before the runner's own work.
"""

from __future__ import annotations

from discodsl.errors import SettingsError
from discodsl.runners.base import Runner
from discodsl.settings import configured_master


def choose(mode: str | None, master: str | None = None) -> Runner:
    """The runner for ``mode`` (or the default one, see the module docstring)."""
    if mode is None:
        mode = "cluster" if configured_master(master) else "local"
    elif master is not None:  # checked here too: a local run reads tag:// inputs through it
        configured_master(master)
    if mode == "local":
        from discodsl.runners.local import LocalRunner

        return LocalRunner(master)
    if mode == "inline":
        from discodsl.runners.inline import InlineRunner

        return InlineRunner(master=master)
    if mode == "cluster":
        from discodsl.runners.cluster import ClusterRunner

        if configured_master(master) is None:
            raise SettingsError(
                "mode='cluster' needs a Disco master: pass master='http://HOST:8989', or set "
                "DISCO_MASTER (in the environment, or in ~/.disco or DISCO_SETTINGS_FILE)"
            )
        return ClusterRunner(master)
    raise SettingsError(f"mode={mode!r} is not a mode: use 'inline', 'local' or 'cluster'")
