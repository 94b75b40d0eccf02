"""``python -m discodsl``: the command line of :mod:`discodsl.cli`."""

from discodsl.cli import main

raise SystemExit(main())
