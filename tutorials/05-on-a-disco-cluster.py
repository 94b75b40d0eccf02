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
# # 5. On a Disco cluster
#
# Until now every job ran on this machine. This notebook sends the same jobs to a
# **Disco master**, the server of a Disco 0.5.4 cluster, and follows them there.
#
# **This lesson needs a Disco master.** The notebook finds it as every run does: in the
# environment variable `DISCO_MASTER`, the master's URL (e.g. `http://master:8989`), or in
# a settings file (`DISCO_MASTER = "http://master:8989"` in `~/.disco`). Set the variable
# where Jupyter starts (`DISCO_MASTER=http://master:8989 jupyter lab`), then restart the
# kernel. When no master is configured, the next cell stops the notebook with an error
# that says so. (The other tutorials need no cluster.)

# %% tags=["assert-master"]
from discodsl.client import Master
from discodsl.ddfs import DDFS
from discodsl.settings import configured_master, load_settings

if configured_master() is None:
    raise RuntimeError(
        "this lesson needs a Disco 0.5.4 master, and none is configured: set DISCO_MASTER to "
        "the master's URL (e.g. DISCO_MASTER=http://master:8989) in the environment that "
        "starts Jupyter, or in ~/.disco, restart the kernel and run the notebook again"
    )

settings = load_settings()
master = Master.from_settings(settings)
ddfs = DDFS.from_settings(settings)
nodes = ", ".join(sorted(master.nodeinfo()))
print(f"Disco {master.version()} at {master.url}; nodes: {nodes}")
jobs_before = {name for _, _, name in master.joblist()}  # to clean up only ours, at the end

# %% [markdown]
# The jobs here are small (three files of two lines each), and the notebook cleans up after
# itself: its last cells delete the jobs and the DDFS tags it created.
#
# In this notebook you will:
#
# - see what discodsl sends to the master: a **jobpack**,
# - run a job on the cluster with the very same `run()`, and compare its results with the
#   local runner's,
# - watch a job (progress, `status`, `events`) and read its results,
# - keep data in **DDFS**: push files to a tag, use the tag as input, save results in it,
# - send local files as paths or push them (`push_inputs=True`),
# - follow a job's whole life on the command line: `run`, `submit`, `jobs`, `wait`,
#   `status`, `results`, `kill`, `purge`,
# - read the errors: a failing task, a master that cannot be reached.
#
# ## Disco in a few sentences
#
# A Disco cluster is a **master** (written in Erlang) and **nodes**. You submit a job to the
# master over HTTP (port 8989 by default). The master cuts each stage of the job into
# **tasks** and starts a **worker** process for each task on a node; the worker reads the
# task's inputs, runs your code and writes its output on that node, where the next stage's
# tasks, and you, read it over HTTP. **DDFS**, Disco's distributed file system, keeps data
# on the nodes as **blobs** (files, replicated on several nodes), listed under named
# **tags**.
#
# A job travels to the master as a **jobpack**, one binary file in four parts:
#
# | part | what it holds | read by |
# |---|---|---|
# | jobdict | JSON: the job's name prefix, its inputs, the pipeline (each stage's name and grouping), the owner, `save_results` | the master |
# | jobenvs | environment variables for the workers | the nodes |
# | jobhome | a ZIP unpacked on every node: the `worker` program, discodsl's worker runtime and cloudpickle | the nodes |
# | jobdata | your stages, cloudpickled, after a header naming the Python they need | the workers |
#
# So the nodes need no discodsl installed, only a CPython of the same minor version as
# yours: everything else is in the jobpack.
#
# ## The data and the job
#
# The three little texts of notebook 1, in a temporary directory, and its word count, with
# one addition: `count("lines")`, a counter, to see counters come back from the cluster.

# %%
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
WORK = Path(workdir.name)
DATA = WORK / "texts"
DATA.mkdir()

TEXTS = {
    "rain.txt": (
        "The rain falls on the hills, and the hills send the rain down to the river.\n"
        "Rain, rain, rain: the river is never dry.\n"
    ),
    "river.txt": (
        "The river runs to the sea.\n"
        "The sea does not fill, and the river does not stop.\n"
    ),
    "sea.txt": (
        "The sun lifts the sea into the sky.\n"
        "The sky makes clouds, and the clouds make rain.\n"
    ),
}
for name, text in TEXTS.items():
    (DATA / name).write_text(text)
FILES = sorted(DATA.iterdir())
[path.name for path in FILES]

# %%
from discodsl import count, job, map, reduce


@map
def words(line):
    count("lines")
    for word in line.lower().split():
        word = word.strip(".,;:!?'\"")
        if word:
            yield word, 1


@reduce(combine=True)
def total(word, counts):
    yield word, sum(counts)


@job(partitions=2)
def wordcount():
    return [words, total]


# %% [markdown]
# ## Where a job runs: `DISCO_MASTER`, `master=` and `mode=`
#
# With `DISCO_MASTER` set, `run()` sends a job to that master unless you say otherwise;
# `run(master="http://other:8989")` picks a master for one run (and means the cluster too),
# and `mode="local"` or `mode="inline"` still run it on this machine. Every cluster setting
# comes, first found first, from a keyword argument (`master=`, or `--master` on the
# command line), the environment (`DISCO_MASTER`, `DISCO_PORT`, ...), the settings file
# (`DISCO_SETTINGS_FILE`, else `~/.disco`, read as plain values, never run), or the
# defaults.

# %% tags=["assert-settings"]
print("DISCO_MASTER: ", settings.DISCO_MASTER)
print("DISCO_PORT:   ", settings.DISCO_PORT, "(where the nodes serve their files)")
print("owner:        ", settings.DISCO_JOB_OWNER)
print("a keyword wins:", load_settings(DISCO_MASTER="http://other:8989").DISCO_MASTER)

# %% [markdown]
# First the local runner, for the answer to compare with; since `DISCO_MASTER` is set,
# that takes `mode="local"`:

# %% tags=["assert-local"]
local_counts = wordcount.run(inputs=FILES, mode="local").to_dict()
top = sorted(local_counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
print(len(local_counts), "distinct words,", sum(local_counts.values()), "words in all")
print("top 3:", top)

# %% [markdown]
# ## What travels: the jobpack
#
# The command line `discodsl` does everything this notebook does from a terminal. Here a
# small helper runs it inside the kernel: `discodsl.cli.main([...])` is the function the
# `discodsl` command calls. The helper prints the command as you would type it, then what
# it printed; errors go to stderr, as in a terminal. It also returns the output, for the
# cells that read it (a `;` after a cell's last call keeps Jupyter from showing it twice).
#
# The command line names a job `MODULE:JOB`: in a terminal, say, `jobs.py:wordcount` or
# `mypackage.jobs:wordcount`. The job of this notebook lives in the kernel's main module,
# `__main__`, so that is the module to name here.

# %%
import contextlib
import io
import json
import shlex

from discodsl.cli import main


def discodsl(*args, head=None):
    """Run `discodsl ARGS` in this kernel; print the command and (the first `head`
    lines of) its output; return the whole output."""
    print("$ discodsl", shlex.join(str(arg) for arg in args))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main([str(arg) for arg in args])
    lines = out.getvalue().splitlines()
    for line in lines[:head]:
        print(line)
    if head is not None and len(lines) > head:
        print(f"... ({len(lines)} lines)")
    if status:
        print(f"(exit status {status})")
    return out.getvalue()


# %% [markdown]
# `discodsl jobpack build` writes the jobpack that `run()` would send (it needs no master
# for local inputs), and `discodsl jobpack show` describes one as JSON. The jobdict in
# full, then the rest in short:

# %% tags=["assert-jobpack"]
PACK = WORK / "wordcount.jobpack"
discodsl("jobpack", "build", "__main__:wordcount", *FILES, "-o", PACK)
shown = json.loads(discodsl("jobpack", "show", PACK, head=0))

print(f"magic {shown['magic']}, version {shown['version']}, {shown['size']:,} bytes")
print("jobdict:")
for key, value in shown["jobdict"].items():
    print(f"  {key}: {json.dumps(value)}")
print("jobenvs:", shown["jobenvs"])
members = shown["jobhome_members"]
tops = sorted({name.split("/")[0] for name, _, _ in members})
print(f"jobhome: {len(members)} files in {', '.join(tops)}")
print(f"jobdata: {shown['jobdata_len']:,} bytes")

# %% [markdown]
# The master reads the jobdict: two stages, `words` (grouping `split`: a task per input)
# and `total` (`group_label`: a task per partition), and the inputs, here `file://` URLs
# (more on those below). For each task, a node unpacks the jobhome and starts `worker`, a
# small launcher script; the worker runtime it starts loads your functions from the
# jobdata.
#
# ## Data in DDFS
#
# Before a cluster job can read data, the nodes must be able to reach it. The Disco way is
# to put it into DDFS: `discodsl ddfs push TAG FILE...` uploads each file as a blob and adds
# it to the tag, creating the tag if needed. (A tag collects blobs, so the cell first
# removes the tag if an earlier run of this notebook left it.)

# %% tags=["assert-push"]
TAG = "tutorial:rivers"
if TAG in ddfs.list_tags(TAG):
    ddfs.delete(TAG)

discodsl("ddfs", "push", TAG, *FILES)
discodsl("--json", "ddfs", "ls", "tutorial:")
print(f"{TAG} holds {len(ddfs.blobs(TAG))} blobs")

# %% [markdown]
# ## Run it on the cluster
#
# The same job object, the same `run()`. Its input is the tag, as a `tag://` URL: discodsl
# asks DDFS for the tag's blobs and gives their URLs to the master. While the job runs you
# see a bar per stage, fed by the master's answers; counters come back with the results.

# %% tags=["assert-cluster"]
on_cluster = wordcount.run(inputs=f"tag://{TAG}")
cluster_counts = on_cluster.to_dict()

print("job:", on_cluster.jobname)
print("same counts as the local runner:", cluster_counts == local_counts)
print("counters:", on_cluster.counters)

# %% [markdown]
# The master names every job `prefix@A:B:C`: the prefix is the job's name (set another one
# with `run(prefix="...")`), and `A:B:C` is the time the master received it (megaseconds,
# seconds and microseconds, in hex), so every name is new.
#
# ## Watching a job
#
# The progress bars are one way. The master keeps more about every job, and the command
# line shows it, from any terminal, while the job runs or after: `discodsl status JOB`
# gives the job's state and its stages' task counts, `discodsl events JOB` every event
# (`--follow` keeps printing them until the job ends). Where a job name is wanted, `@` means
# the newest job and `@?TEXT` the newest whose name contains TEXT.

# %% tags=["assert-events"]
discodsl("status", on_cluster.jobname)
events = discodsl("events", on_cluster.jobname)

# %% [markdown]
# The events tell the story: each stage is scheduled, its tasks assigned to nodes and
# finished, and the job ends with `READY`. `MSG` lines are what the workers said: here the
# tasks' counters; what a stage prints, or says with `discodsl.status("...")`, arrives the
# same way and shows in this notebook too.
#
# ## Reading results
#
# `on_cluster` is a `Results`, as after a local run, and just as lazy: its URLs point at
# index files on the nodes that ran the last stage, and iterating reads the records over
# HTTP. Nothing is copied to this machine until you read it.

# %% tags=["assert-results"]
for replicas in on_cluster.urls:
    print(replicas[0])
sorted(on_cluster)[:3]

# %% [markdown]
# To read the same results later, from another process or a terminal, you need only the
# job's name: `discodsl results JOB` (below). They stay on the nodes until the job is
# purged, or until the cluster's garbage collector removes old job data.
#
# ### Results that stay: `save_results=True`
#
# With `save_results=True` the master stores the results in DDFS, under the tag
# `disco:results:<job name>`, where they outlive the job. A later job, today or next week,
# reads them as its input, as `(key, value)` records; here a one-task `group_all` stage
# that ranks the words.

# %% tags=["assert-save-results"]
from discodsl import stage, status

saved = wordcount.run(inputs=f"tag://{TAG}", save_results=True)
RESULTS_TAG = f"disco:results:{saved.jobname}"
print(RESULTS_TAG, "holds", len(ddfs.blobs(RESULTS_TAG)), "blobs")


@stage(grouping="group_all")
def top3(records):
    pairs = list(records)
    status(f"ranking {len(pairs)} words")
    yield from sorted(pairs, key=lambda pair: (-pair[1], pair[0]))[:3]


@job
def top_words():
    return [top3]


ranked = top_words.run(inputs=f"tag://{RESULTS_TAG}")
print("top 3 from the saved results:", list(ranked))

# %% [markdown]
# The `[top3] status: ...` line came from the worker, through the master's events.
#
# ## Local files: paths, or `push_inputs=True`
#
# You can also give `run()` local paths, as on the local runner. They go to the master as
# `file://` URLs, and a worker opens the file at that path *on its node*: right when every
# node sees the same files at the same paths (a shared file system such as NFS), wrong
# otherwise. A notice on stderr says so. If the nodes cannot see the files, the map tasks
# fail with a `DataError` that names the file and says what to do.
#
# `push_inputs=True` (`--push-inputs` on the command line) uploads the local files to DDFS
# first, under a new tag `discodsl:inputs:<job>@<time>`, and works on any cluster.

# %% tags=["assert-local-paths"]
from discodsl import TaskFailed

before = set(ddfs.list_tags("discodsl:inputs:"))
try:
    by_path = wordcount.run(inputs=FILES)
except TaskFailed as error:  # the nodes do not see this machine's files
    by_path = None
    print(str(error).split("; the master's last events")[0])
else:
    print("by path:  same counts:", by_path.to_dict() == local_counts)
    print("          inputs:", master.jobinfo(by_path.jobname)["inputs"][0], "...")

pushed = wordcount.run(inputs=FILES, push_inputs=True)
PUSHED_TAGS = sorted(set(ddfs.list_tags("discodsl:inputs:")) - before)
print("pushed:   same counts:", pushed.to_dict() == local_counts)
print("          inputs:", master.jobinfo(pushed.jobname)["inputs"][0], "...")
print("          new tag:", *PUSHED_TAGS)

# %% [markdown]
# Here the nodes run on this machine, so they read the paths. Pushing costs an upload on
# every run: for data you use more than once, push it to a tag yourself, once.
#
# ## A job's whole life on the command line
#
# `discodsl run MODULE:JOB INPUT...` is `run()` from a terminal: it builds the jobpack,
# submits it, shows the progress and prints the results as `key<TAB>value` lines (or
# writes them with `-o FILE`). It runs on the cluster when `DISCO_MASTER` is set (or
# `--master URL` is given), and on this machine with `--local` or `--inline`.

# %% tags=["assert-cli-run"]
COUNTS = WORK / "counts.tsv"
discodsl("run", "__main__:wordcount", f"tag://{TAG}", "-o", COUNTS)
print(COUNTS.read_text().count("\n"), "lines in", COUNTS.name)
print(*sorted(COUNTS.read_text().splitlines())[:3], sep="\n")

# %% [markdown]
# `discodsl run` waits for the job. To leave a job running, build its jobpack and
# `submit` it: that prints the job's name and returns at once. Then come back to it with
# `wait`, `status` and `results`; `--json` makes the output easy for other programs to read.

# %% tags=["assert-cli-json"]
discodsl("jobpack", "build", "__main__:wordcount", f"tag://{TAG}", "-o", PACK)
submitted = discodsl("submit", PACK).strip()
discodsl("wait", submitted)
state = json.loads(discodsl("--json", "status", submitted, head=0))
print("status --json:", {key: state[key] for key in ("name", "active", "pipeline")})
records = discodsl("--json", "results", submitted, head=3)
print(len(records.splitlines()), "records; the 'the':",
      [line for line in records.splitlines() if line.startswith('["the"')])

# %% [markdown]
# `discodsl jobs` lists the master's jobs, newest first (`--json` for a list of objects):

# %% tags=["assert-cli-jobs"]
discodsl("jobs", head=4)
listed = json.loads(discodsl("--json", "jobs", head=0))
print("--json:", listed[0])

# %% [markdown]
# A job that runs too long, or was a mistake, is stopped with `discodsl kill JOB`; its
# workers are stopped and it is `dead`. In Python, `run(..., kill_on_interrupt=True)` kills
# the job when you interrupt the wait (Ctrl-C, or the kernel's stop button); without it,
# the job runs on and the message says how to kill it. Here, a job that would sleep a
# minute on its one input:

# %% tags=["assert-cli-kill"]
import time


@map
def slow_words(line):
    time.sleep(60)
    yield from words(line)


@job
def slow_wordcount():
    return [slow_words, total]


SLOW = WORK / "slow.jobpack"
discodsl("jobpack", "build", "__main__:slow_wordcount", "raw://a b c", "-o", SLOW)
slow = discodsl("submit", SLOW).strip()
discodsl("status", slow, head=1)
discodsl("kill", slow)
discodsl("status", slow, head=1);

# %% [markdown]
# (`raw://a b c` is an input whose data is the URL itself: handy for tiny tests.)
#
# A job's results and files stay on the nodes until the job is purged: `discodsl purge JOB`
# makes the master forget the job at once, and each node deletes its files at its next
# garbage collection (every two days on Disco 0.5.4: results already held read on until
# then). After that the master knows no such job, and the command says so in one line,
# with a hint:

# %% tags=["assert-cli-purge"]
discodsl("purge", submitted)
discodsl("status", submitted);

# %% [markdown]
# ## When things go wrong
#
# ### A task fails
#
# A stage that raises on some record fails its task on the node, and the worker tells the
# master the error is fatal (Disco's FATAL): the master kills the job at once, and `run()`
# raises the same `TaskFailed` as on the local runner (notebook 4), read from the master's
# events: the stage, the input and the record, and the worker's own traceback as its
# `__cause__`. Only failures worth another try (an unreadable input, an `OSError`, a
# `MemoryError`, `discodsl.Retry`) are reported as ERROR, which the master retries after a
# pause (14 s, 15 s, 16 s ...) as many times as its `max_failure_rate` setting allows (the
# cluster's operator sets it; see `master.settings()`), or the job's `max_failures` (3 by
# default), whichever is lower: `run()` kills the job past those, and tells each failure, with
# its reason, as it comes.


# %% tags=["assert-task-failed"]
@map
def parse_age(line):
    _, age = line.split(",")
    yield "age", int(age)


@reduce
def average(key, ages):
    ages = list(ages)
    yield key, sum(ages) / len(ages)


@job
def mean_age():
    return [parse_age, average]


print("the master allows", master.settings()["max_failure_rate"], "failure(s) per task")
try:
    mean_age.run(inputs=["raw://ana,34", "raw://carol,forty"], kill_on_interrupt=True)
except TaskFailed as exc:
    failure = exc

print(str(failure).split("; the master's last events")[0])
print()
print("stage:   ", failure.stage)
print("input:   ", failure.url)
print("record:  ", failure.record)
print("exc_type:", failure.exc_type)
print(failure.__cause__)

# %% [markdown]
# The message goes on with the master's last events (`str(failure)` has them all), and
# `discodsl events JOB` shows the worker's traceback too, long after the job died.
#
# ### The master cannot be reached
#
# A wrong `DISCO_MASTER`, a master that is down, a port closed by a firewall: every call
# that needs the master raises a `ClientError` (here its kind `Unreachable`), saying which
# URL it tried, why it failed and what to check. The command line prints it on one line,
# `discodsl: error: ...`, with a `hint:` line, and exits with status 1.
#
# A refused connection or a host name that does not resolve fails at once: nothing is
# listening, and asking again will not change that. A master that drops a request without
# answering is asked again, five times by default, waiting longer each time, since masters
# restart and networks blink. Nothing listens on port 1 of this machine:

# %% tags=["assert-unreachable"]
from discodsl import ClientError

NOWHERE = "http://127.0.0.1:1"
try:
    wordcount.run(inputs=["raw://a b c"], master=NOWHERE)
except ClientError as error:
    print(f"{type(error).__name__}: {error}")
discodsl("--master", NOWHERE, "jobs");

# %% [markdown]
# ## Clean up
#
# Purge the jobs this notebook ran (their nodes delete their data later): the ones that were not on
# the master when it started, with its job names and its owner. Then delete its tags: the
# pushed texts, the saved results and the inputs `push_inputs=True` uploaded.

# %% tags=["assert-cleanup"]
OUR_JOBS = {"wordcount", "top_words", "slow_wordcount", "mean_age"}
mine = [
    name
    for _, _, name in master.joblist()
    if name not in jobs_before
    and name.split("@")[0] in OUR_JOBS
    and master.jobinfo(name)["owner"] == settings.DISCO_JOB_OWNER
]
for name in mine:
    master.purge(name)
tags = [TAG, RESULTS_TAG, *PUSHED_TAGS]
for tag in tags:
    ddfs.delete(tag)
print(f"purged {len(mine)} jobs, deleted {len(tags)} tags")

master.close()
ddfs.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# | to | in Python | on the command line |
# |---|---|---|
# | choose the master | `DISCO_MASTER`, or `run(master=...)` | `DISCO_MASTER`, or `--master URL` |
# | look at what is sent |  | `discodsl jobpack build MODULE:JOB ... -o FILE`, `discodsl jobpack show FILE` |
# | run a job and wait | `job.run(inputs)` | `discodsl run MODULE:JOB INPUT...` |
# | start a job, come back later |  | `discodsl submit FILE`, `discodsl wait JOB` |
# | watch it | the progress bars | `discodsl status JOB`, `discodsl events -f JOB` |
# | read results | iterate over `Results` | `discodsl results JOB` (`--json`) |
# | store data in DDFS | `ddfs.push(tag, files)` (`discodsl.ddfs.DDFS`) | `discodsl ddfs push TAG FILE...` |
# | read a tag | `inputs="tag://TAG"` | `discodsl run MODULE:JOB tag://TAG` |
# | keep results | `run(..., save_results=True)` |  |
# | send local files | paths (shared file system), or `push_inputs=True` | `--push-inputs` |
# | stop, forget | `kill_on_interrupt=True` | `discodsl kill JOB`, `discodsl purge JOB` |
#
# A job that fails on the cluster raises the same `TaskFailed` as on the local runner;
# an unreachable master is a `ClientError` (on the command line, one `discodsl: error:`
# line and a hint). Job names: `prefix@A:B:C`; `@` is the newest job, `@?TEXT` the newest
# whose name contains TEXT.
