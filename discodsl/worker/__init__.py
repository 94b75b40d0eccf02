"""The worker runtime, run on Disco nodes: imports only the stdlib, cloudpickle and itself."""

# The local runner's import path (its process's, site-packages included), which a worker
# puts after the standard library's (see __main__).
PATH_ENV = "DISCODSL_PATH"
# Set (to the jobfile's path) in a worker's environment: be a fork server for that job
# (worker/forkserver.py). Here, so that the local runner sets it without loading the runtime.
FORKSERVER_ENV = "DISCODSL_FORKSERVER"
# The exit status of a worker whose stage closed the protocol's descriptors (sysexits'
# EX_PROTOCOL): it cannot tell its master, which tells it from a sys.exit by this.
CUT_OFF = 76
