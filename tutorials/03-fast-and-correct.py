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
# # 3. Fast and correct
#
# This notebook is about the options that make a job faster, and the rules that keep it
# correct while they do:
#
# - **combiners**: `@reduce(combine=True)` and `combiner=`,
# - **partitions** and a **custom partitioner**,
# - **`sort=False`**,
# - **parameters**: `params=`, closures and `functools.partial`,
# - **counters**: `count("name")` and `results.counters`,
# - and how to **measure** whether a change helped.

# %% [markdown]
# ## A corpus to work on
#
# About 5 MB of made-up text in four files, from a vocabulary whose word frequencies fall
# off like a natural language's (a few words are very common, most are rare), and a small
# sample of two files for the quick examples.

# %%
import random
import tempfile
from itertools import accumulate
from pathlib import Path

workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
CORPUS = Path(workdir.name) / "corpus"
SAMPLE = Path(workdir.name) / "sample"
CORPUS.mkdir()
SAMPLE.mkdir()

rng = random.Random(3)
syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zu", "pe", "do", "ri", "an"]
# sorted(): the order of a set of strings changes from one Python process to the next
vocabulary = sorted({
    "".join(rng.choice(syllables) for _ in range(rng.randint(1, 5))) for _ in range(6000)
})
rng.shuffle(vocabulary)
# the word of rank r is drawn with weight 1/r (Zipf's law)
cumulative = list(accumulate(1 / rank for rank in range(1, len(vocabulary) + 1)))


def write_text(path, lines):
    with open(path, "w") as out:
        for _ in range(lines):
            out.write(" ".join(rng.choices(vocabulary, cum_weights=cumulative, k=12)) + "\n")


for part in range(4):
    write_text(CORPUS / f"part-{part}.txt", lines=12_000)
for part in range(2):
    write_text(SAMPLE / f"part-{part}.txt", lines=1_500)

megabytes = sum(path.stat().st_size for path in CORPUS.iterdir()) / 1e6
print(f"{len(vocabulary)} words in the vocabulary, corpus of {megabytes:.1f} MB")

# %% [markdown]
# ## Combiners
#
# A word count's map yields a `(word, 1)` pair for every word: millions of pairs, each
# written to disk, sorted and read back by a reduce task. A **combiner** runs on the map side
# and adds up the pairs of each word before they are written, so a map task writes about
# one pair per distinct word instead.
#
# `@reduce(combine=True)` uses the reduce function itself as the combiner. That is right
# only when the reduce can read its own output: its output pairs must have the same shape as
# its input values, and combining partial groups in any order must give the same answer.
# A sum, a count, a max, a min qualify. A mean does not (see below).

# %%
from discodsl import job, map, reduce


@map
def words(line):
    for word in line.split():
        yield word, 1


@reduce(combine=True)
def total(word, counts):
    yield word, sum(counts)


@reduce
def total_uncombined(word, counts):
    yield word, sum(counts)


@job(partitions=2)
def wordcount():
    return [words, total]


@job(partitions=2)
def wordcount_uncombined():
    return [words, total_uncombined]


# %% [markdown]
# ## Measure it
#
# Time whole runs, reading the results included (that is part of the work), on data of a
# realistic size: on a tiny input every job takes about as long as starting its worker
# processes. Timings vary from run to run, all the more on a busy machine; for numbers you
# can trust, repeat each run a few times and keep the fastest. Here, one run of each:

# %%
import time


def timed(job, inputs, **options):
    """The job's results as a dict, and the seconds the run and the reading took."""
    start = time.perf_counter()
    with job.run(inputs=inputs, **options) as results:
        answer = results.to_dict()
    return answer, time.perf_counter() - start


combined, combined_seconds = timed(wordcount, CORPUS)
uncombined, uncombined_seconds = timed(wordcount_uncombined, CORPUS)
print(f"with the combiner:    {combined_seconds:5.1f} s")
print(f"without the combiner: {uncombined_seconds:5.1f} s")
print(f"ratio: {uncombined_seconds / combined_seconds:.1f}x")

# %% [markdown]
# Whatever the timings say, a faster job is only worth having if it gives the same answer:

# %% tags=["assert-combiner-equal"]
print("same counts:", combined == uncombined)
print(len(combined), "distinct words,", sum(combined.values()), "words")

# %% [markdown]
# ### A separate combiner: `combiner=`
#
# The mean word length per first letter: the answer per key is `total / count`, and a mean
# of partial means is not the mean. The usual trick is to carry `(total, count)` pairs:
# the map yields `(letter, (length, 1))`, a combiner adds the pairs up (its output has the
# shape of its input, so it can run any number of times), and only the reduce divides.
# That reduce cannot be its own combiner, so it names one with `combiner=`, a function of
# the same shape as a reduce.


# %%
@map
def length_by_letter(line):
    for word in line.split():
        yield word[0], (len(word), 1)


def add_pairs(letter, pairs):
    total_length = words_seen = 0
    for length, n in pairs:
        total_length += length
        words_seen += n
    yield letter, (total_length, words_seen)


@reduce(combiner=add_pairs)
def mean_length(letter, pairs):
    for _, (total_length, words_seen) in add_pairs(letter, pairs):
        yield letter, round(total_length / words_seen, 3)


@job(partitions=2)
def mean_word_length():
    return [length_by_letter, mean_length]


means = mean_word_length.run(inputs=SAMPLE).to_dict()
dict(sorted(means.items()))

# %% tags=["assert-mean-combiner"]
lengths = {}
for path in SAMPLE.iterdir():
    for word in path.read_text().split():
        lengths.setdefault(word[0], []).append(len(word))
expected = {letter: round(sum(ls) / len(ls), 3) for letter, ls in lengths.items()}
print("same means as plain Python:", means == expected)

# %% [markdown]
# ## Partitions and a custom partitioner
#
# A reduce's `partitioner(key, partitions)` decides which partition, and so which reduce
# task, gets each key: it returns an int from `0` to `partitions - 1`. The default is a
# stable hash of the key. Two rules for your own:
#
# - it must give the same answer for the same key in every process: Python's built-in
#   `hash()` of a string changes from process to process, so never use it here;
# - it should spread the keys evenly, or one reduce task does most of the work.
#
# A classic use is a **range partitioner**. Every reduce task sees its keys in sorted order,
# and the local runner returns the results partition by partition, in partition order; when
# partition `i` holds only keys smaller than those of partition `i + 1`, the results as a
# whole come out sorted. Here, by first letter:


# %% tags=["assert-partitioner"]
def by_first_letter(word, partitions):
    """Words from a... to ...z, cut into `partitions` ranges of the alphabet."""
    position = min(max(ord(word[0]) - ord("a"), 0), 25)
    return position * partitions // 26


@reduce(combine=True, partitioner=by_first_letter)
def total_in_ranges(word, counts):
    yield word, sum(counts)


@job(partitions=3)
def wordcount_in_ranges():
    return [words, total_in_ranges]


ranged = list(wordcount_in_ranges.run(inputs=SAMPLE))
hashed = list(wordcount.run(inputs=SAMPLE, partitions=3))
ranged_words = [word for word, _ in ranged]
hashed_words = [word for word, _ in hashed]
print("range partitioner, sorted as a whole:", ranged_words == sorted(ranged_words))
print("hash partitioner, sorted as a whole: ", hashed_words == sorted(hashed_words))
print("same counts:", dict(ranged) == dict(hashed))

# %% [markdown]
# ## `sort=False`
#
# A reduce groups its input by sorting it, which is what puts its keys in order. With
# `sort=False` it groups by hashing instead: keys come in the order they were first seen
# (while the partition fits the memory budget; past it, in no order to count on),
# and they only need to be hashable, not comparable, which matters when keys of different
# types meet (`None` and `3` cannot be sorted together). The counts are the same:


# %% tags=["assert-unsorted"]
@reduce(combine=True, sort=False)
def total_unsorted(word, counts):
    yield word, sum(counts)


@job(partitions=2)
def wordcount_unsorted():
    return [words, total_unsorted]


unsorted = wordcount_unsorted.run(inputs=SAMPLE).to_dict()
print("same counts:", unsorted == dict(hashed))

# %% [markdown]
# ## Parameters: `params=`
#
# To make a stage configurable, give its function a second parameter named `params`. It
# receives the job's `params` option: any picklable value, usually a dict. Set it in `@job`
# and override it in `run()`, without redefining anything.
#
# This is also the place for **counters**: `count("name")` anywhere in stage code (or in
# its hooks) adds 1 (or `count("name", n)` adds `n`) to a counter. Every task reports its
# counts when it finishes, and `results.counters` holds the sums over all tasks. Counting is
# cheap and is the way to answer "how many records did we skip, and why?".

# %%
from discodsl import count


@map
def long_words(line, params):
    for word in line.split():
        if len(word) >= params["min_len"]:
            yield word, 1
        else:
            count("short words")


@job(partitions=2, params={"min_len": 6})
def long_wordcount():
    return [long_words, total]


long6 = long_wordcount.run(inputs=SAMPLE)
long10 = long_wordcount.run(inputs=SAMPLE, params={"min_len": 10})
for results in (long6, long10):
    found = results.to_dict()
    shortest = min(len(word) for word in found)
    print(f"{len(found)} distinct words, the shortest of {shortest} letters;",
          f"counters: {results.counters}")

# %% tags=["assert-params"]
sample_words = [word for path in SAMPLE.iterdir() for word in path.read_text().split()]
for min_len, results in ((6, long6), (10, long10)):
    short = sum(1 for word in sample_words if len(word) < min_len)
    kept = {word for word in sample_words if len(word) >= min_len}
    print(f"min_len={min_len}:",
          "counter right:", results.counters == {"short words": short},
          "words right:", set(results.to_dict()) == kept)

# %% [markdown]
# ## Closures and `functools.partial`
#
# Another way to configure a stage is to build it in code: a function that returns a
# stage, with its settings captured in a closure, or `functools.partial` filling in some
# arguments. Both travel to the workers by value, captured values included. Use `params=`
# for what changes from one run of a job to the next; use closures and partials to build
# several different stages from one piece of code.
#
# Every stage of a job needs its own name, and a stage is named after its function, so give
# built stages a `name=`. `map(...)` can be called as a plain function, too, not only used
# as a decorator.

# %% tags=["assert-closure-partial"]
import functools


def words_at_least(min_len):
    @map(name=f"words_at_least_{min_len}")
    def at_least(line):
        for word in line.split():
            if len(word) >= min_len:
                yield word, 1

    return at_least


def words_longer(line, min_len):
    for word in line.split():
        if len(word) >= min_len:
            yield word, 1


@job(partitions=2)
def closure_wordcount():
    return [words_at_least(6), total]


@job(partitions=2)
def partial_wordcount():
    return [map(functools.partial(words_longer, min_len=6), name="longer_than_5"), total]


by_closure = closure_wordcount.run(inputs=SAMPLE).to_dict()
by_partial = partial_wordcount.run(inputs=SAMPLE).to_dict()
print("closure gives the same as params:", by_closure == long6.to_dict())
print("partial gives the same as params:", by_partial == long6.to_dict())

# %%
long6.close()
long10.close()
workdir.cleanup()

# %% [markdown]
# ## Summary
#
# - `@reduce(combine=True)` when the reduce can read its own output (sums, counts, max,
#   min); `combiner=` a separate function when it cannot (means: carry `(total, count)`).
# - `partitions=` is the reduce side's parallelism; a `partitioner(key, n)` must be
#   deterministic across processes and spread keys evenly. A range partitioner gives
#   results sorted as a whole.
# - `sort=False` groups by hashing: first-seen key order, keys need not be comparable.
# - `params=` reaches every stage function that takes a `params` argument; override it per
#   run. Closures and `functools.partial` build stages in code.
# - `count("name")` in stage code, `results.counters` afterwards.
# - Measure whole runs on realistic data, more than once, and check the answers are equal
#   before you believe a speed-up.
#
# Next, **4. When things go wrong**.
