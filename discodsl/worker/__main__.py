"""``python -m discodsl.worker``: what the jobhome's ``worker`` launcher runs.

A worker for one task; a fork server for a whole job when the local master
asks for one (``DISCODSL_FORKSERVER`` in the environment, see
:mod:`discodsl.worker.forkserver`).
"""

import os
import sys

from discodsl.worker import PATH_ENV

# After the standard library's directories, not before as PYTHONPATH's would be: a module
# of the user's named like a standard one (a ``types.py`` beside the script) must not
# replace it here, as it did not in the runner's process, which had loaded that one first.
sys.path += [entry for entry in os.environ.get(PATH_ENV, "").split(os.pathsep) if entry]

if os.environ.get("DISCODSL_FORKSERVER"):
    from discodsl.worker.forkserver import main
else:
    from discodsl.worker.runtime import main

sys.exit(main())
