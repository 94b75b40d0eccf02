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
# # 1. Your first job: counting words
#
# discodsl lets you write [Disco](https://github.com/discoproject/disco) MapReduce jobs as a
# few decorated Python functions. You need no cluster to follow along: by default a job runs
# on this machine, in worker processes that speak the same protocol as the nodes of a Disco
# cluster, so what works here works there.
#
# In this notebook you count the words of three small text files. On the way you will:
#
# - write a **map** stage with `@map` and a **reduce** stage with `@reduce`,
# - put them into a **job** with `@job` and `run()` it,
# - read the results: iterate over them, turn them into a dict, find the top words,
# - test a stage by calling it as the plain function it still is.
#
# **MapReduce in three sentences.** A *map* function is called once for every input record
# (here: a line of text) and yields `(key, value)` pairs. The pairs are then grouped by key,
# so that all the values of one key end up in the same place. A *reduce* function is called
# once per distinct key, with all of that key's values, and yields the final pairs.

# %%
import discodsl

print("discodsl", discodsl.__version__)

# %% [markdown]
# ## Some text to count
#
# The notebook writes its own input: three short files in a temporary directory (removed at
# the end).

# %%
import tempfile
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
DATA = Path(workdir.name)

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

sorted(path.name for path in DATA.iterdir())

# %% [markdown]
# ## The map: a line in, `(word, 1)` pairs out
#
# A map function takes one **record**. For a text file a record is one line, without its
# newline. The function yields zero or more `(key, value)` pairs: here a pair `(word, 1)` for
# every word, lower-cased and stripped of punctuation so that "Rain," and "rain" are the same
# word.

# %%
from discodsl import job, map, reduce


@map
def words(line):
    for word in line.lower().split():
        word = word.strip(".,;:!?'\"")
        if word:
            yield word, 1


# %% [markdown]
# `from discodsl import map` hides Python's built-in `map` in this notebook. If you need
# both, write `import discodsl as dd` and decorate with `@dd.map` instead.
#
# ## A stage is still a plain function
#
# The decorator checks the function's signature (a map takes one record; the mistake of
# writing it otherwise is reported right here, not later on a worker) and gives you back an
# object that you call exactly like the function. That is how you try a stage out, and how
# you unit-test it: call it with a record and look at what it yields. No job, no workers.

# %%
list(words("The rain, the river."))

# %% [markdown]
# ## The reduce: a word and all its counts in, one total out
#
# A reduce function is called once per distinct key with `(key, values)`, where `values` is
# an **iterator** over every value yielded for that key, by every map task. Consume it once.


# %%
@reduce
def total(word, counts):
    yield word, sum(counts)


list(total("rain", iter([1, 1, 1])))

# %% [markdown]
# ## The job
#
# A job is a function that returns its stages in order. Its keyword arguments are options:
# `partitions=2` splits the map output into two parts by key, so two reduce tasks share the
# work (notebook 2 explains partitions). The options are checked now, when the job is
# declared, and again when it runs.


# %%
@job(partitions=2)
def wordcount():
    return [words, total]


wordcount

# %% [markdown]
# ## Run it
#
# `run()` takes the **inputs**: paths, globs, directories, URLs, or the results of an earlier
# job. With no `mode=`, the job runs on the **local runner**: it builds the same *jobpack* a
# Disco master would receive, starts worker processes (one per CPU core) and hands them the
# tasks: one map task per input file, one reduce task per partition.
#
# The workers are separate Python processes and cannot import this notebook, so discodsl
# sends your functions along *by value* (pickled with cloudpickle). Before any task starts, it
# loads them in a fresh interpreter to make sure they will load on the workers too; notebook
# 4 shows what it says when they don't.
#
# While a job runs you see a progress bar per stage: text bars, or graphical ones once
# the `ipywidgets` package is installed; `run(..., progress=False)` turns them off. (The
# notebooks in this repository were built with them off, so their outputs show none.)

# %%
results = wordcount.run(inputs=f"{DATA}/*.txt")
results

# %% [markdown]
# ## Read the results
#
# `results` is lazy: nothing is read until you iterate over it. Each item is a `(key, value)`
# pair, just as the last stage yielded it. They come partition by partition (sorted by key
# within each partition), so sort them yourself when the order matters.

# %%
for word, n in sorted(results)[:5]:
    print(f"{word:8} {n}")

# %% [markdown]
# `to_dict()` reads them all into a dict: handy when the result is small, as it is here.

# %% tags=["assert-totals"]
counts = results.to_dict()
print(len(counts), "distinct words,", sum(counts.values()), "words in all")

# %% [markdown]
# ## The top words
#
# Sort by count, highest first, and by word to break ties:

# %% tags=["assert-top-words"]
top = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
top

# %% [markdown]
# ## Check it against plain Python
#
# On a small input the simplest test of a whole job is a few lines of ordinary Python that
# compute the same thing. Note that this check calls `words` directly, as a plain function.

# %% tags=["assert-matches-counter"]
from collections import Counter

expected = Counter()
for path in DATA.glob("*.txt"):
    for line in path.read_text().splitlines():
        expected.update(word for word, _ in words(line))

counts == dict(expected)

# %% [markdown]
# ## Unit tests for stages
#
# Because stages are plain functions, their tests are plain tests. In a project you would put
# these in `tests/test_stages.py` and run `pytest`; here we call them by hand.


# %% tags=["assert-unit-tests"]
def test_words_ignores_case_and_punctuation():
    assert list(words("Rain, RAIN!")) == [("rain", 1), ("rain", 1)]


def test_words_skips_lone_punctuation():
    assert list(words(" ... ! ")) == []


def test_total_adds_up():
    assert list(total("rain", iter([1, 2, 3]))) == [("rain", 6)]


tests = [
    test_words_ignores_case_and_punctuation,
    test_words_skips_lone_punctuation,
    test_total_adds_up,
]
for test in tests:
    test()
print(len(tests), "tests passed")

# %% [markdown]
# ## Clean up
#
# The results of a local run are files in a temporary directory. They are removed when the
# `results` object is garbage-collected, when you call `results.close()`, or at the end of a
# `with wordcount.run(...) as results:` block.

# %%
results.close()
workdir.cleanup()

# %% [markdown]
# ## What next
#
# - **2. Stages and pipelines**: jobs longer than map and reduce, what each *grouping* means,
#   partitions.
# - **3. Fast and correct**: combiners, partitioners, `params=`, counters, measuring.
# - **4. When things go wrong**: inline mode and the debugger, reading a failed task's error,
#   pickling problems, bad inputs.
# - **6. Access logs**: a real data task from end to end.
