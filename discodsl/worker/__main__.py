"""``python -m discodsl.worker``: what the jobhome's ``worker`` launcher runs.

A worker for one task; a fork server for a whole job when the local master
asks for one (``DISCODSL_FORKSERVER`` in the environment, see
:mod:`discodsl.worker.forkserver`). Read by any Python a node may run, 2.7 included, to
refuse one too old in words a Disco master shows (:mod:`discodsl.worker.old_python`).
"""

import os
import sys

if sys.version_info < (3, 10):  # the runtime cannot even be read: say so in the protocol
    from discodsl.worker.old_python import refuse

    refuse(sys.argv[1:], zygote=bool(os.environ.get("DISCODSL_FORKSERVER")))

from discodsl.worker import PATH_ENV

# After the standard library's directories, not before as PYTHONPATH's would be: a module
# of the user's named like a standard one (a ``types.py`` beside the script) must not
# replace it here, as it did not in the runner's process, which had loaded that one first.
# A JSON list; a long one comes in a file, named after an "@".
_path = os.environ.get(PATH_ENV, "")
if _path:
    import json

    if _path.startswith("@"):
        with open(_path[1:], encoding="ascii") as _file:
            _path = _file.read()
    sys.path += [entry for entry in json.loads(_path) if entry]

if os.environ.get("DISCODSL_FORKSERVER"):
    from discodsl.worker.forkserver import main
else:
    from discodsl.worker.runtime import main

sys.exit(main())
