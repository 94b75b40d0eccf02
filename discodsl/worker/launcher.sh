#!/bin/sh
# discodsl worker launcher, run by a Disco node as "nice -n 19 <jobhome>/worker"
# with the job home as working directory. It needs CPython @PYTHON@.
#
# Nothing may reach fd 1 or 2 before the WORKER frame: the interpreter's own
# start-up (warnings, site hooks) would corrupt the protocol stream. So the
# protocol goes out on fd 3 (a copy of the original stdout) and the
# interpreter starts with fds 1 and 2 pointed at a file in the job home; the
# runtime forwards whatever lands there to the master as MSG.
# To the job home: the directory in $0 (no dirname: a fork and exec per task saved).
case "$0" in
    */*) cd "${0%/*}" || exit 111 ;;
esac
py="${DISCODSL_PYTHON:-}"
if [ -z "$py" ]; then
    for candidate in python@PYTHON@ python3 python; do
        if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
    done
fi
if [ -z "$py" ] || ! command -v "$py" >/dev/null 2>&1; then
    # No Python to say it: the frames a worker would send (WORKER, then FATAL), by hand.
    why="\"no Python to run this job's worker: none of python@PYTHON@, python3 and python is on the node's PATH, or DISCODSL_PYTHON in the job's env= names none: install Python @PYTHON@ on the nodes\""
    if [ -n "${DISCODSL_FORKSERVER:-}" ]; then
        echo "$why" >&2  # a local runner's zygote: its runner starts plain workers next
        exit 1
    fi
    hello="{\"version\":\"1.1\",\"pid\":$$}"
    printf 'WORKER %d %s\nFATAL %d %s\n' "${#hello}" "$hello" "${#why}" "$why"
    while read -r _; do :; done  # a master ends the task on FATAL, and kills us
    exit 1
fi
# An interpreter too old to read the runtime sends those frames itself (worker/old_python.py).
# The worker is imported from the job home, the working directory, which Python 3.11+
# leaves off sys.path under PYTHONSAFEPATH.
unset PYTHONSAFEPATH
# SIGHUP and SIGFPE ignored, as a Disco node's workers have them (from Erlang's port
# start-up): a stage that sends its group SIGHUP, or starts a child that does, lives on.
trap '' HUP FPE
exec "$py" ${DISCODSL_PYTHON_FLAGS:-} -u -m discodsl.worker --protocol-fd 3 --python @PYTHON@ 3>&1 1>".worker-$$.out" 2>&1
