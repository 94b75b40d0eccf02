"""``python -m discodsl.worker``: what the jobhome's ``worker`` launcher runs."""

import sys

from discodsl.worker.runtime import main

sys.exit(main())
