"""Where discodsl keeps things of its own on this machine.

Everything lives under one directory, :func:`cache_home`:
``$XDG_CACHE_HOME/discodsl``, else ``~/.cache/discodsl``. It holds the
built jobhomes (:mod:`discodsl.builder`), the registry of local runs
(:mod:`discodsl.runners.registry`, ``runs/``) and the cache of kept stages
(:mod:`discodsl.caching.store`, ``cache/``). The last two can each be moved
by an environment variable of their own (:func:`place`).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/discodsl``, else ``~/.cache/discodsl``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "discodsl")


def place(name: str, override: str) -> Path:
    """``$override`` if it is set, else ``name`` under :func:`cache_home`."""
    explicit = os.environ.get(override)
    return Path(explicit) if explicit else cache_home() / name
