"""The worker runtime, run on Disco nodes: imports only the stdlib, cloudpickle and itself."""

# The local runner's import path (its process's, site-packages included), which a worker
# puts after the standard library's (see __main__).
PATH_ENV = "DISCODSL_PATH"
