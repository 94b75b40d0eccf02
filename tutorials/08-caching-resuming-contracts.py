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
# # 8. Stages that say what they make, runs that are not paid for twice
#
# Notebooks are run a cell at a time, again and again. In this notebook you:
#
# 1. annotate stages, so that a job whose stages **do not fit together is refused**
#    before anything runs, and a stage that yields the wrong thing fails on its first
#    record;
# 2. run a cell again and get its results **from the cache**, in milliseconds;
# 3. see what makes the cache **run a job afresh**: an edited stage, a changed value,
#    other inputs;
# 4. **resume** a four-stage pipeline whose third stage failed, without running the first
#    two again.
#
# Everything runs on the local runner; on a cluster the same code runs unchanged (there,
# a run reuses the stage results the master still holds).

# %% [markdown]
# ## The data, and a cache of our own
#
# The cache lives in `~/.cache/discodsl/cache` unless `DISCODSL_CACHE_DIR` says otherwise.
# This notebook uses an empty one of its own, so that what you see below is what happens
# the first time; leave that line out in your own notebooks.

# %%
import os
import tempfile
import time
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
os.environ["DISCODSL_CACHE_DIR"] = str(Path(workdir.name, "cache"))

TEXTS = Path(workdir.name, "texts")
TEXTS.mkdir()
POEM = """the river runs and the rain falls
the rain falls on the river
and the river runs to the sea
""".splitlines()
for number in range(4):
    lines = [POEM[(number + n) % len(POEM)] for n in range(30)]
    (TEXTS / f"part-{number}.txt").write_text("\n".join(lines) + "\n")
INPUTS = [str(TEXTS / "*.txt")]
print(len(list(TEXTS.iterdir())), "files of", len(lines), "lines")

# %% [markdown]
# ## Stages that say what they make
#
# Annotate a stage as you would any function. A map that takes a `line: str` and yields
# `(word, 1)` pairs returns an `Iterator[tuple[str, int]]`; a reduce takes the key and an
# iterable of the values.

# %%
from collections.abc import Iterable, Iterator

from discodsl import job, map, reduce


@map
def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


@reduce(combine=True)
def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


@job(partitions=2)
def wordcount():
    return [words, total]


print(wordcount)

# %% [markdown]
# Now a reduce written for pairs the other way round, `(int, str)`. The job is refused
# where it is declared, naming both stages and what to change: nothing has run, no
# process was started.

# %% tags=["assert-contract"]
from discodsl import JobError


@reduce
def longest(count: int, words_: Iterable[str]) -> Iterator[tuple[int, str]]:
    yield count, max(words_, key=len)


try:

    @job
    def mixed_up():
        return [words, longest]

except JobError as error:
    print("JobError:", error)

# %% [markdown]
# Stages without annotations are not checked, and `Any`, unions and generic types are
# understood as typing understands them. At run time the annotations are checked too:
# in `mode="inline"` (the debugging mode) the first records each task yields are compared
# with the annotation (`check_types=True` turns it on for the other runners). A map that
# says `int` and yields a `str` fails on its first record:

# %% tags=["assert-runtime-check"]
from discodsl import StageError


@map
def lengths(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, str(len(word))  # a str, where the annotation says int


@job
def word_lengths():
    return [lengths]


try:
    word_lengths.run(INPUTS, mode="inline")
except StageError as error:
    print(str(error).splitlines()[0])

# %% [markdown]
# ## A cell run twice
#
# `cache=True` keeps each stage a run finishes. Run the cell below twice: the second time
# the results come from the cache, and a line says so, naming the run they came from.

# %% tags=["assert-first-run"]
started = time.perf_counter()
counts = wordcount.run(INPUTS, cache=True)
print(f"first run: {time.perf_counter() - started:.2f} s, job {counts.jobname}")
print(sorted(counts.to_dict().items(), key=lambda kv: -kv[1])[:3])

# %% tags=["assert-cached-run"]
started = time.perf_counter()
again = wordcount.run(INPUTS, cache=True)
print(f"second run: {time.perf_counter() - started:.3f} s, job {again.jobname}")
print("same records:", again.to_dict() == counts.to_dict())

# %% [markdown]
# The second run took a few milliseconds: the stage code was pickled and hashed, the input
# files' sizes and times looked at, and the kept results found. Nothing ran.
#
# ## What makes a fresh run
#
# A run is served from the cache only when everything that could change its records is
# the same: the stages' code and the values they capture (closures, globals, defaults),
# the options that change what a stage writes (`partitions`, `params`, ...), the inputs
# (a local file by its size and modification time, or by its bytes with
# `cache_by="content"`), and the runner. Here a closure value changes:

# %% tags=["assert-fresh-runs"]
import io
from contextlib import redirect_stderr


def counted_by(weight):
    @map
    def weighted(line: str) -> Iterator[tuple[str, int]]:
        for word in line.split():
            yield word, weight

    @job(partitions=2)
    def weighted_count():
        return [weighted, total]

    return weighted_count


def served(job_, **options):
    """Whether a run was served from the cache (the notice it printed says so)."""
    said = io.StringIO()
    with redirect_stderr(said):
        job_.run(INPUTS, cache=True, **options)
    return "cached results" in said.getvalue()


print("weight 1, first time:  served", served(counted_by(1)))
print("weight 1, again:       served", served(counted_by(1)))
print("weight 2:              served", served(counted_by(2)))
print("weight 1, 3 partitions: served", served(counted_by(1), partitions=3))
(TEXTS / "part-0.txt").write_text((TEXTS / "part-0.txt").read_text() + "one more line\n")
print("weight 1, an input edited: served", served(counted_by(1)))

# %% [markdown]
# What the cache cannot see is anything a stage reads on its own (a file it opens, a
# database, the clock) and what changes behind a URL that is not a local file: for such
# jobs, leave `cache` off, or pass the changing thing as an input or a param.
#
# ## A pipeline that fails, fixed and resumed
#
# Four stages: count the words, turn each `(word, count)` around, and list the words
# that have each count. The third stage has a bug: it divides by zero on purpose.

# %%
from discodsl import TaskFailed


@map
def by_count(record: tuple[str, int]) -> Iterator[tuple[int, str]]:
    word, count = record
    yield count // 0, word  # the bug


@reduce
def histogram(count: int, words_: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    yield count, sorted(words_)


@job(partitions=2)
def counts_of_counts():
    return [words, total, by_count, histogram]


try:
    counts_of_counts.run(INPUTS, cache=True)
except TaskFailed as failure:
    print("TaskFailed in stage", failure.stage)

# %% [markdown]
# The first two stages finished before the third failed, and with `cache=True` they were
# kept. Fix the stage and run the job again: it resumes after `total`, reading its
# outputs with their partition labels, and runs only the last two stages.

# %% tags=["assert-resumed"]
@map
def by_count(record: tuple[str, int]) -> Iterator[tuple[int, str]]:  # noqa: F811 (the fix)
    word, count = record
    yield count, word


@job(partitions=2)
def counts_of_counts():
    return [words, total, by_count, histogram]


run = counts_of_counts.submit(INPUTS, cache=True)
resumed = run.wait()
scheduled = [message for _, _, message in run.events() if " scheduled with " in message]
ran = [message.split()[1] for message in scheduled if message.startswith("Stage ")]
print("stages run:", ", ".join(ran))
print("same as a fresh run:", sorted(resumed) == sorted(counts_of_counts.run(INPUTS)))
for count, words_ in sorted(resumed):
    print(count, words_)

# %% [markdown]
# `resumed.stage("total")` still gives the counts (from the cache), and the counters add
# up as in a fresh run. On a cluster, the same happens with the dead job's stage results,
# which a Disco master keeps until the job is purged.
#
# ## What the cache holds
#
# `discodsl cache ls` lists the kept stages, the most recently used first, and
# `discodsl cache clear` removes them (`--job NAME` for one job's). The cache keeps at
# most `DISCODSL_CACHE_SIZE` bytes (default 2G): past it, the least recently used stages
# go.

# %% tags=["assert-cache-ls"]
import subprocess
import sys

listed = subprocess.run(
    [sys.executable, "-m", "discodsl", "cache", "ls"], capture_output=True, text=True, check=True
)
print(listed.stdout.splitlines()[-1].split(" in ")[0])
cleared = subprocess.run(
    [sys.executable, "-m", "discodsl", "cache", "clear", "--job", "weighted_count"],
    capture_output=True,
    text=True,
    check=True,
)
print(cleared.stdout.split(", from")[0])

# %%
workdir.cleanup()
