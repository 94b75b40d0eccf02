"""Programs of a user's, run as the scripts they are: their stages are ``__main__``'s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_script(script: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Write ``text`` to ``script`` and run it with this Python, in its directory."""
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=script.parent,
    )
