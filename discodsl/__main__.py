"""``python -m discodsl`` and the ``discodsl`` command: the command line of :mod:`discodsl.cli`.

Importing it takes a fifth of a second, which a Ctrl-C may interrupt: the command then ends
as one interrupted later does (exit 130), not with a traceback of the import.
"""

from __future__ import annotations


def main() -> int:
    """Import the command line, then run it; 130 if a Ctrl-C came first."""
    try:
        from discodsl.cli import main as command_line
    except KeyboardInterrupt:
        return 130
    return command_line()


if __name__ == "__main__":
    raise SystemExit(main())
