"""What a Python too old for the worker runtime runs instead of it: the frames that tell the
master why the task cannot run (WORKER, then FATAL), as the runtime itself would send them
to a Python of another version (see ``runtime._check_python``).

The runtime needs Python 3.10 or newer to be read at all, so a node whose ``python3`` or
``python`` is older failed before its first frame, and a Disco master retried the task
for ever with nothing to show. This module must parse and run on any Python a node may
have, 2.7 included: no f-strings, annotations or keyword-only arguments (its types are
in type comments).
"""

import json
import os
import sys


def refuse(args, zygote=False):
    # type: (list[str], bool) -> None
    """Send WORKER and a FATAL naming the Python the job needs (``--python X.Y`` in
    ``args``) on the protocol fd (``--protocol-fd N``); wait for the master to end us.
    A local runner's ``zygote`` speaks no worker protocol: it says why on stderr and ends
    (the runner then starts plain workers, which send the FATAL)."""
    needed = _option(args, "--python", "3.10 or newer")
    here = "%d.%d" % tuple(sys.version_info[:2])
    text = (
        "this job needs Python %s (the client's version) but the node runs Python %s (%s): "
        "install python%s on the nodes (the job's worker runs the first of python%s, python3 "
        "and python on the PATH, or DISCODSL_PYTHON from the job's env=)"
        % (needed, here, sys.executable, needed, needed)
    )
    if zygote:
        sys.stderr.write(text + "\n")
        sys.exit(1)
    frames = _frame("WORKER", {"version": "1.1", "pid": os.getpid()}) + _frame("FATAL", text)
    os.write(int(_option(args, "--protocol-fd", "1")), frames)
    try:
        while os.read(0, 65536):  # a master ends the task on FATAL, and kills us
            pass
    except OSError:
        pass
    sys.exit(1)


def _option(args, name, default):
    # type: (list[str], str, str) -> str
    return args[args.index(name) + 1] if name in args[:-1] else default


def _frame(name, payload):
    # type: (str, object) -> bytes
    body = json.dumps(payload, separators=(",", ":"))  # ASCII: non-ASCII is escaped
    return ("%s %d %s\n" % (name, len(body), body)).encode("ascii")
