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
exec "$py" ${DISCODSL_PYTHON_FLAGS:-} -u -m discodsl.worker --protocol-fd 3 3>&1 1>".worker-$$.out" 2>&1
