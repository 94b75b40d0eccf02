# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. When things go wrong
#
# Errors come at three moments, and each error tries to say what happened and what to do:
#
# 1. when you **declare** a stage or a job: the decorators check signatures and options;
# 2. when a job **starts**: inputs are looked up, stages are pickled and test-loaded;
# 3. while a **task** runs: your code raises on some record.
#
# Then there is debugging: **inline mode** runs a job in this very process, where `pdb` and
# `breakpoint()` work. Every error discodsl raises about a job, its data or a run is a
# `discodsl.DiscoDSLError` (a call given a wrong argument, such as `readers.fixed(0)`,
# raises Python's own `ValueError` or `TypeError`); the ones about a job are `JobError`s,
# among them `PicklingError` and `TaskFailed`.

# %%
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
DATA = Path(workdir.name)
(DATA / "people-1.csv").write_text("ana,34\nbo,27\ncarl,45\n")
(DATA / "people-2.csv").write_text("dee,52\neli,19\ncarol,forty\nfay,38\n")
(DATA / "people-3.csv").write_text("gus,61\nhal,23\n")

sorted(path.name for path in DATA.iterdir())

# %% [markdown]
# ## 1. Mistakes caught when you declare
#
# A reduce is called with `(key, values)`; a job's options are validated. Both are checked
# when the decorator runs, long before any data is read:

# %% tags=["assert-declaration"]
from discodsl import JobError, SettingsError, job, map, reduce

try:

    @reduce
    def add_up(counts):
        yield "total", sum(counts)

except JobError as error:
    print("JobError:", error)

try:

    @job(partitions=0)
    def nothing():
        return []

except SettingsError as error:
    print("SettingsError:", error)

# %% [markdown]
# ## 2. A task fails: reading `TaskFailed`
#
# A job over the three files: the mean age. One line of `people-2.csv` has "forty" for an
# age, and `int("forty")` raises.


# %%
@map
def parse_age(line):
    _, age = line.split(",")
    yield "age", int(age)


@reduce
def average(key, ages):
    ages = list(ages)
    yield key, sum(ages) / len(ages)


@job(partitions=2)
def mean_age():
    return [parse_age, average]


# %% [markdown]
# On the local runner the map tasks run in worker processes. An exception from your code
# is a bug that would fail again, so, as Disco's own workers do, it **fails the job at
# once**: no retries. Only failures with a passing cause are retried, up to `max_failures`
# times (3 by default): an input that cannot be read (`DataError`), an `OSError` (a full
# disk, a lost connection), a `MemoryError`, or a `discodsl.Retry` that your code raises
# for a flaky service.
#
# `run()` raises `TaskFailed`, which says where it happened:

# %% tags=["assert-task-failed"]
from discodsl import TaskFailed

try:
    mean_age.run(inputs=DATA)
except TaskFailed as exc:
    failure = exc

print(failure)
print()
print("stage:   ", failure.stage)
print("input:   ", failure.url)
print("record:  ", failure.record)
print("exc_type:", failure.exc_type)

# %% [markdown]
# `record` counts from 0 within that input, so the offending line is one look away:

# %% tags=["assert-bad-line"]
from urllib.parse import urlsplit

bad_file = Path(urlsplit(failure.url).path)
bad_file.read_text().splitlines()[failure.record]

# %% [markdown]
# The worker's own traceback is the error's `__cause__`, the way `concurrent.futures` shows a
# child process's traceback. Left uncaught, Jupyter prints both, the worker's first; here it
# is on its own:

# %% tags=["assert-remote-traceback"]
print(failure.__cause__)

# %% [markdown]
# The last frame is your function: the cell that defined it, its line and its source
# (`yield "age", int(age)`), as if it had run in this kernel. Code defined in a notebook
# travels to the workers by value, and the worker cannot read a notebook's cells, so the
# client puts the source lines back. The frames above it are the worker's.

# %% [markdown]
# ## 3. Inline mode: the job in this process
#
# `mode="inline"` runs every task right here, one after the other. No process is started
# (each task runs on its own copy of the job, unpickled as a worker would, so module state
# is fresh per task as on a node), and your exception comes out unchanged, with its own
# traceback ending in your function (on Python 3.11+ with a note saying which stage, input
# and record). Inline
# mode runs the same tasks as a local run, but in a shuffled order, inputs too, so code that
# only works in one order of tasks or values fails here too.

# %% tags=["assert-inline"]
import traceback

try:
    mean_age.run(inputs=DATA, mode="inline")
except ValueError as exc:
    inline_error = exc

print(f"{type(inline_error).__name__}: {inline_error}")
last = traceback.extract_tb(inline_error.__traceback__)[-1]
print(f"raised in {last.name}(): {last.line}")

# %% [markdown]
# ### Post-mortem debugging with `pdb`
#
# Since the exception is the original one, the debugger can open the frame that raised it.
# In a live notebook you would type `%debug` in the next cell (or call
# `pdb.post_mortem(inline_error.__traceback__)`) and get a debugger prompt (`ipdb>` in
# Jupyter, `(Pdb)` in a terminal) in `parse_age`, with `line` and `age` to look at. So
# that this notebook runs unattended, the cell below hands the debugger its commands from
# a string instead of the keyboard: print `line` and `age`, then quit.

# %% tags=["assert-post-mortem"]
import io
import pdb
import sys

commands = io.StringIO("p line\np age\nquit\n")
debugger = pdb.Pdb(stdin=commands, stdout=sys.stdout)
debugger.use_rawinput = False  # read the commands from stdin=, not from input()
debugger.reset()
debugger.interaction(None, inline_error.__traceback__)  # what pdb.post_mortem does

# %% [markdown]
# ### `breakpoint()`
#
# A `breakpoint()` in a stage stops there in inline mode, in the middle of the job, with the
# record at hand. Python's `breakpoint()` calls `sys.breakpointhook()`; to show it without
# stopping, the next cell installs a hook that only writes down where it was called from,
# and puts it back afterwards. Delete those `sys.breakpointhook` lines to stop for real.
#
# In Jupyter, the kernel's own hook belongs to its visual debugger, and `breakpoint()` does
# nothing unless that debugger is on: write `import pdb; pdb.set_trace()` instead, which
# stops in the notebook, or run `%debug` after a failed run to look at where it failed.
#
# Use `breakpoint()` in inline mode only. On the local runner or a cluster the stage runs in
# a worker process that has no keyboard: leave no `breakpoint()` in code you run there.

# %% tags=["assert-breakpoint"]
stops = []


def note_breakpoint(*args, **kwargs):
    caller = sys._getframe(1)
    stops.append((caller.f_code.co_name, caller.f_locals["line"]))


@map
def parse_age_checked(line):
    _, age = line.split(",")
    if not age.isdigit():
        breakpoint()  # look around: line, age
        return
    yield "age", int(age)


@job(partitions=2)
def mean_age_checked():
    return [parse_age_checked, average]


kernels_hook, sys.breakpointhook = sys.breakpointhook, note_breakpoint
try:
    checked = mean_age_checked.run(inputs=DATA, mode="inline")
finally:
    sys.breakpointhook = kernels_hook

print("stopped at:", stops)
print("mean age of the others:", checked.to_dict())

# %% [markdown]
# ## 4. Code that cannot travel: the pickling pre-flight
#
# Before a local or cluster run starts any task, discodsl pickles the stages, with
# everything they drag along (the variables of closures, the globals they name, default
# values), and loads them in a fresh interpreter, as a worker will. Locks, open files,
# sockets and database connections cannot be pickled, and the error names the culprit.
#
# Here a stage keeps a lock in its closure, the habit of threaded code:

# %% tags=["assert-pickling"]
import threading

from discodsl import PicklingError


def make_parser():
    lock = threading.Lock()
    seen = {"lines": 0}

    @map
    def parse_counting(line):
        with lock:
            seen["lines"] += 1
        _, age = line.split(",")
        if age.isdigit():
            yield "age", int(age)

    return parse_counting


@job(partitions=2)
def mean_age_locked():
    return [make_parser(), average]


try:
    mean_age_locked.run(inputs=DATA)
except PicklingError as error:
    print(error)

# %% [markdown]
# Inline mode would still have run this, on the stages as they are (sharing their module
# state between tasks), with a line on stderr saying it cannot ship the job: give a job one
# run on the local runner before you send it to a cluster. The same error names a `global 'log'`
# when a stage writes to a file opened at the top of the notebook.
#
# **The fix.** A worker runs one task at a time, so the lock guards against nothing, and
# `seen` would count each task's lines in its own copy, never the job's: a counter does that
# job. When a stage does need something that cannot be pickled, create it where it is used:
# inside the function, or once per task in an `init` hook (closed in a `done` hook, which
# gets what `init` returned), and capture only plain data (paths, numbers) or pass it with
# `params=`. The hooks run in the worker, so what they create never travels. (The global
# `resources` travels too, but empty: the hooks fill it on the worker, and empty it again at
# the end of every task, so an inline run leaves nothing in it that cannot be pickled.)

# %% tags=["assert-pickling-fixed"]
from discodsl import count

resources = {}  # filled in the worker, once per task


def open_resources():
    resources["lock"] = threading.Lock()


def close_resources(state):
    resources.clear()


@map(init=open_resources, done=close_resources)
def parse_guarded(line):
    with resources["lock"]:
        count("lines")
    _, age = line.split(",")
    if age.isdigit():
        yield "age", int(age)
    else:
        count("bad ages")


@job(partitions=2)
def mean_age_guarded():
    return [parse_guarded, average]


guarded = mean_age_guarded.run(inputs=DATA)
print("mean age:", guarded.to_dict())
print("counters:", dict(sorted(guarded.counters.items())))

# %% [markdown]
# ## 5. Bad inputs
#
# Inputs are looked up before anything runs. A path or a glob that matches no file is a
# `JobError` that names it:

# %% tags=["assert-missing-input"]
try:
    mean_age.run(inputs=[DATA / "people-1.csv", DATA / "people-9.csv"])
except JobError as error:
    print(error)

# %%
checked.close()
guarded.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# | you see | when | what to do |
# |---|---|---|
# | `JobError` or `SettingsError` from a decorator | declaring | follow the message: it shows what to write |
# | `JobError: input ... matches no file` | `run()` starts | check the path and the working directory |
# | `PicklingError` naming a variable | `run()` starts (local, cluster) | create the object in the function or an `init` hook |
# | `TaskFailed` | a task failed for good | `.stage`, `.url`, `.record`, `.exc_type`; the worker's traceback is `__cause__` |
#
# To debug a stage: call it as a plain function on the bad record, or run the job with
# `mode="inline"` and use `%debug`, `pdb.post_mortem()` or `breakpoint()`.
#
# Next, **5. On a Disco cluster**: the same jobs on a Disco master, then **6. Access logs**,
# a real data task from end to end.
