"""The worker runtime, run on Disco nodes: imports only the stdlib, cloudpickle and itself."""

# The local runner's import path (its process's, site-packages included), which a worker
# puts after the standard library's (see __main__).
PATH_ENV = "DISCODSL_PATH"

# Set in a worker's environment (a job's env=; a local run's workers have the runner's),
# a number of seconds > 0: the timeout for its inputs, as the client's for the master.
TIMEOUT_ENV = "DISCODSL_HTTP_TIMEOUT"
# The longest an HTTP connect or read may stall, in seconds, that TIMEOUT_ENV may ask (the
# client's, and a worker's for its inputs): a longer one overflows the socket's.
HTTP_TIMEOUT_MAX = 1_000_000.0


def timeout_seconds(text: str) -> float | None:
    """The seconds ``text`` gives as TIMEOUT_ENV's value; None if it gives none it may."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds <= HTTP_TIMEOUT_MAX else None
