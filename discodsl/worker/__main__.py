"""``python -m discodsl.worker``: what the jobhome's ``worker`` launcher runs.

A worker for one task; a fork server for a whole job when the local master
asks for one (``DISCODSL_FORKSERVER`` in the environment, see
:mod:`discodsl.worker.forkserver`).
"""

import os
import sys

if os.environ.get("DISCODSL_FORKSERVER"):
    from discodsl.worker.forkserver import main
else:
    from discodsl.worker.runtime import main

sys.exit(main())
