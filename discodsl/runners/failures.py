"""Turning a failed task's ERROR/FATAL text, or its worker's death, into the one error the
user sees."""

from __future__ import annotations

import re
import signal

from discodsl import tracebacks
from discodsl.errors import RemoteTraceback, TaskFailed
from discodsl.worker import CUT_OFF, report

NOT_RETRIED = (
    " (not retried: an exception from stage code fails the job at once; "
    "raise discodsl.Retry for a failure worth another try)"
)
# A reader's MalformedRecord is not stage code's fault, but would fail the same way again.
NOT_RETRIED_DATA = " (not retried: the same bytes would fail again)"
# Nor is an input URL no worker can read (BadURL): no stage ran.
NOT_RETRIED_URL = " (not retried: the same URL would fail again; fix the input)"


def task_failed(text: str, *, stage: str, taskid: int, why: str) -> TaskFailed:
    """A TaskFailed for a worker's message ``text``; its traceback becomes ``__cause__``."""
    failure = report.decode(text)
    where = f" on input {failure.url!r}" if failure.url else ""
    where += f", record {failure.record}" if failure.url and failure.record >= 0 else ""
    kind = (
        f"{failure.exc_type}: "
        if failure.exc_type and failure.exc_type not in failure.summary
        else ""
    )
    error = TaskFailed(
        f"{why}: {kind}{tracebacks.cells_named(failure.summary)}"
        + ("" if _names(failure.summary, failure.url) else where.replace(" on", "; on", 1))
        + ("" if failure.retry else _not_retried(failure.exc_type))
        + (_OUT_OF_MEMORY if failure.exc_type == "MemoryError" else "")
        + _missing_file(failure.summary, failure.traceback)
        + (_NOT_INSTALLED if failure.exc_type == "ModuleNotFoundError" else "")
        + (f"; {_FILE_TOO_LARGE}" if "[Errno 27]" in failure.summary else "")
        + (_DEBUGGER if failure.exc_type == "BdbQuit" else "")
        + (_SEEKING if _seek_under(failure.exc_type, failure.traceback) else "")
        + (_SCRIPTS_OWN if of_the_script(failure.exc_type, failure.summary) else ""),
        stage=failure.stage or stage,
        taskid=taskid,
        url=failure.url,
        record=failure.record,
        exc_type=failure.exc_type,
        remote_traceback=tracebacks.cells_named(tracebacks.restore(failure.traceback)),
    )
    if error.remote_traceback:
        error.__cause__ = RemoteTraceback(error.remote_traceback)
    return error


# What a stage's standard pickling (a multiprocessing Pool's) of a script's function means.
_SCRIPTS_OWN = (
    "; a function or class of the script (__main__) ships with the job by value, and a "
    "worker's __main__ does not hold it, so the standard pickle (a multiprocessing Pool's, "
    "a queue's) cannot name it there: define it in a module the stage imports (installed "
    "on the nodes, or shipped with cloudpickle.register_pickle_by_value)"
)


def of_the_script(exc_type: str, summary: str) -> bool:
    """Whether a stage's pickling failed to name a function or class of the script."""
    return exc_type == "PicklingError" and "__main__" in summary


# What a debugger's quitting (pdb.set_trace() reads a worker's stdin, which has nothing) means.
_DEBUGGER = (
    "; the stage started a debugger (pdb.set_trace()), which no one can answer in a "
    "worker process: run the job with mode='inline' to debug it"
)
# What to do about a stage's MemoryError, which says nothing of its own.
_OUT_OF_MEMORY = (
    "; the task ran out of memory (a limit on it, `ulimit -v` or a container's, may be "
    "in force): use less memory per task (more partitions, a smaller memory_budget, "
    "smaller records), or raise the limit"
)


# A file a stage named by a relative path and did not find (OSError's words for it).
_RELATIVE_MISSING = re.compile(r"No such file or directory: '(?!/)([^']*)'")
_RELATIVE = (
    "; a relative path names a file in the worker's working directory, its job home, as "
    "on a Disco node (not the program's, as inline): give an absolute path, or the data "
    "through params="
)


# A module a stage imports in its body, which the pre-flight cannot see.
_NOT_INSTALLED = (
    "; a module a stage imports must be installed where its workers run, or ship with the "
    "job: `import cloudpickle, MODULE` and `cloudpickle.register_pickle_by_value(MODULE)` "
    "before running it (one imported inside a stage's body is met only when it runs)"
)


def _missing_file(summary: str, traceback: str) -> str:
    """What to do about a file a stage named by a relative path and did not find: a
    program it ran by a bare name (not on the workers' PATH, or a ``cwd=`` not in their
    directory), or a file or a program named by a path (not in their directory)."""
    missing = _RELATIVE_MISSING.search(summary)
    if missing is None:
        return ""
    if "/subprocess.py" in traceback and "/" not in missing.group(1):
        return (
            "; a program a stage runs by its name must be on its workers' PATH: give its "
            "full path, or set PATH in the job's env= (a relative cwd= names a directory "
            "in the worker's working directory, its job home, as on a Disco node)"
        )
    return _RELATIVE


def _names(summary: str, url: str) -> bool:
    """Whether ``summary`` names the input ``url``: as it is or as its repr (a stage's
    failure shows it so), whole or, where either was cut to fit an event, its start."""
    if " on input " in summary:  # a stage's failure says where: the URL, perhaps cut short
        return True
    head = url.partition("[... ")[0]  # a URL cut to fit: its start, up to the note
    return any(form[:24] in summary for form in (head, repr(head)[:-1]))


def _not_retried(exc_type: str) -> str:
    return {
        "BadURL": NOT_RETRIED_URL,
        "MalformedRecord": NOT_RETRIED_DATA,
        "DamagedInput": NOT_RETRIED_DATA,
        "UnsupportedOperation": _NOT_RETRIED_SEEK,
    }.get(exc_type, NOT_RETRIED)


def _seek_under(exc_type: str, traceback: str) -> bool:
    """Whether an error came of a stream's refusal to seek, caught and replaced by the
    library that asked (zipfile: "File is not a zip file")."""
    return exc_type != "UnsupportedOperation" and "io.UnsupportedOperation" in traceback


_SEEKING = (
    "; the library seeking the input's stream met io.UnsupportedOperation first: an "
    "input's stream does not seek: read it whole, io.BytesIO(stream.read()), or use "
    "readers.whole_file()"
)
# io.UnsupportedOperation: most often a reader's library seeking its stream.
_NOT_RETRIED_SEEK = (
    " (not retried: the same call would fail again; an input's stream does not seek: a "
    "reader whose library seeks, as zipfile and numpy.load do, reads it whole first, "
    "io.BytesIO(stream.read()), or uses readers.whole_file())"
)


# Signals that mean the process crashed in native code.
_CRASHES = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")
# Exit codes a shell gives a process killed by signal N: 128 + N.
_SHELL_SIGNAL = 128


def worker_died(
    code: int,
    *,
    stage: str,
    taskid: int,
    inputs: tuple[str, ...],
    why: str,
    start_up: str | None = None,
    cut_off: bool | None = None,
    python: str = "",
) -> TaskFailed:
    """A TaskFailed for a worker that ended (exit ``code``, negative for a signal) mid-task,
    or, with ``start_up`` (what it printed), before it said a word: no stage ran then.
    ``cut_off``: whether it ended for a channel stage code closed, if the runner knows;
    ``python``: the Python it ran, if the runner knows."""
    reading = f" reading {_listed(inputs)}" if inputs else ""
    if start_up is not None and code >= 0:
        printed = f": it printed:\n{start_up}" if start_up else ", printing nothing"
        python = f" ({python})" if python else ""
        return TaskFailed(
            f"{why}: its worker process ended before it began the task (exit code {code}), "
            f"so no stage ran: check that the job's Python{python} can run discodsl's "
            f"worker{printed}",
            stage=stage,
            taskid=taskid,
        )
    if cut_off and code in (-signal.SIGKILL, CUT_OFF):
        meaning = _CUT_OFF
    elif cut_off is False and code == CUT_OFF:  # known not to be: the stage's own exit
        meaning = _exited(code)
    else:
        meaning = exit_meaning(code)
    return TaskFailed(
        f"{why}: its worker process died running stage {stage!r}{reading}: {meaning}",
        stage=stage,
        taskid=taskid,
        url=inputs[0] if len(inputs) == 1 else "",
    )


# A worker that closed its output while it ran on, which the runner then stopped.
_CUT_OFF = (
    "it closed its connection to the runner (its protocol's descriptors: a stage that calls "
    "os.closerange(3, ...), closes or replaces descriptors it did not open, or daemonizes), "
    "and ended or was stopped: close only the descriptors the stage opened"
)


def exit_meaning(code: int) -> str:
    """What a worker's exit status ``code`` (negative: killed by that signal) likely means."""
    if code < 0:
        return _signal_meaning(-code)
    if _SHELL_SIGNAL < code < _SHELL_SIGNAL + signal.NSIG:
        return f"exit code {code}, as a shell reports {_signal_meaning(code - _SHELL_SIGNAL)}"
    if code == CUT_OFF:  # as the worker runtime ends when it finds its channel closed
        return f"exit code {code}: {_CUT_OFF}, or the stage called sys.exit({code})"
    if code in (126, 127):
        return (
            f"exit code {code}: the worker's Python could not be started; "
            "check that the interpreter the job needs is installed on the node"
        )
    return _exited(code)


def _exited(code: int) -> str:
    """What exit status ``code`` means when stage code chose it."""
    words = " (or sys.exit('words'), whose words end what it printed)" if code == 1 else ""
    return (
        f"exit code {code}: the stage (or code it calls) ended the process with "
        f"os._exit({code}) or sys.exit({code}){words}; raise an exception to fail a task "
        "instead"
    )


def _signal_meaning(number: int) -> str:
    name = _signal_name(number)
    if name == "SIGKILL":
        return (
            f"killed by signal {number} (SIGKILL), often by the out-of-memory killer when the "
            "task used too much memory (see `dmesg`): use less memory per task (more "
            "partitions, a smaller memory_budget), or find who ran kill -9 (or the hard "
            "CPU-time limit (ulimit -t) it reached)"
        )
    if name in _LIMITS:
        return f"killed by signal {number} ({name}): {_LIMITS[name]}"
    if name in _CRASHES:
        return (
            f"killed by signal {number} ({name}), a crash in C code (an extension module, "
            "ctypes, or the interpreter): run the stage with mode='inline' under "
            "`python -X faulthandler` to see the Python line that crashed"
        )
    if name == "SIGABRT":
        return f"aborted (signal {number}, SIGABRT): C code called abort(), as a failed assert does"
    return (
        f"killed by signal {number} ({name}), sent by the stage itself (os.kill or os.killpg "
        "of its own process or group: a worker's process group is its own) or from outside "
        "the job"
    )


# A write past the size limit on files: a worker killed by SIGXFSZ, or (Python ignores it)
# an OSError, errno EFBIG.
_FILE_TOO_LARGE = (
    "a file it wrote reached the size limit on files (ulimit -f): raise the limit, or use "
    "more partitions"
)
# The signals the kernel sends a process at one of its limits, and what to do.
_LIMITS = {
    "SIGXCPU": "the task used up its CPU-time limit (ulimit -t): raise the limit, or give the "
    "work to more tasks (more inputs, more partitions)",
    "SIGXFSZ": _FILE_TOO_LARGE,
}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _listed(inputs: tuple[str, ...], shown: int = 3) -> str:
    names = ", ".join(repr(url) for url in inputs[:shown])
    more = len(inputs) - shown
    return f"{names} and {more} more input(s)" if more > 0 else names
