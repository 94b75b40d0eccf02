"""Write the tutorial notebooks from the cells below: ``python tutorials/build.py``.

The notebooks are generated, so edit their cells here and rerun this script;
it rewrites every ``NN-*.ipynb`` next to it, unexecuted (no outputs), with
stable cell ids so a change to one cell is a one-cell diff. Cells that
``tests/test_tutorials.py`` checks carry a tag such as ``assert-top-words``
in their metadata. Tutorial 5 needs a Disco master: its test starts one.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(*parts: str) -> NotebookNode:
    """A markdown cell of ``parts`` (each dedented), one paragraph each."""
    return new_markdown_cell("\n\n".join(textwrap.dedent(part).strip("\n") for part in parts))


def table(*rows: tuple[str, ...]) -> str:
    """A markdown table: the first row is the header."""
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def code(text: str, tag: str | None = None) -> NotebookNode:
    """A code cell; ``tag`` names it for the tests."""
    cell = new_code_cell(textwrap.dedent(text).strip("\n"))
    if tag:
        cell.metadata["tags"] = [tag]
    return cell


# --------------------------------------------------------------------------------------------
# 1. A first job
# --------------------------------------------------------------------------------------------

FIRST_JOB = [
    md("""
    # 1. Your first job: counting words

    discodsl lets you write [Disco](https://github.com/discoproject/disco) MapReduce jobs as a
    few decorated Python functions. You need no cluster to follow along: by default a job runs
    on this machine, in worker processes that speak the same protocol as the nodes of a Disco
    cluster, so what works here works there.

    In this notebook you count the words of three small text files. On the way you will:

    - write a **map** stage with `@map` and a **reduce** stage with `@reduce`,
    - put them into a **job** with `@job` and `run()` it,
    - read the results: iterate over them, turn them into a dict, find the top words,
    - test a stage by calling it as the plain function it still is.

    **MapReduce in three sentences.** A *map* function is called once for every input record
    (here: a line of text) and yields `(key, value)` pairs. The pairs are then grouped by key,
    so that all the values of one key end up in the same place. A *reduce* function is called
    once per distinct key, with all of that key's values, and yields the final pairs.
    """),
    code("""
    import discodsl

    print("discodsl", discodsl.__version__)
    """),
    md("""
    ## Some text to count

    The notebook writes its own input: three short files in a temporary directory (removed at
    the end).
    """),
    code('''
    import tempfile
    from pathlib import Path

    workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
    DATA = Path(workdir.name)

    TEXTS = {
        "rain.txt": (
            "The rain falls on the hills, and the hills send the rain down to the river.\\n"
            "Rain, rain, rain: the river is never dry.\\n"
        ),
        "river.txt": (
            "The river runs to the sea.\\n"
            "The sea does not fill, and the river does not stop.\\n"
        ),
        "sea.txt": (
            "The sun lifts the sea into the sky.\\n"
            "The sky makes clouds, and the clouds make rain.\\n"
        ),
    }
    for name, text in TEXTS.items():
        (DATA / name).write_text(text)

    sorted(path.name for path in DATA.iterdir())
    '''),
    md("""
    ## The map: a line in, `(word, 1)` pairs out

    A map function takes one **record**. For a text file a record is one line, without its
    newline. The function yields zero or more `(key, value)` pairs: here a pair `(word, 1)` for
    every word, lower-cased and stripped of punctuation so that "Rain," and "rain" are the same
    word.
    """),
    code('''
    from discodsl import job, map, reduce


    @map
    def words(line):
        for word in line.lower().split():
            word = word.strip(".,;:!?'\\"")
            if word:
                yield word, 1
    '''),
    md("""
    `from discodsl import map` hides Python's built-in `map` in this notebook. If you need
    both, write `import discodsl as dd` and decorate with `@dd.map` instead.

    ## A stage is still a plain function

    The decorator checks the function's signature (a map takes one record; the mistake of
    writing it otherwise is reported right here, not later on a worker) and gives you back an
    object that you call exactly like the function. That is how you try a stage out, and how
    you unit-test it: call it with a record and look at what it yields. No job, no workers.
    """),
    code("""
    list(words("The rain, the river."))
    """),
    md("""
    ## The reduce: a word and all its counts in, one total out

    A reduce function is called once per distinct key with `(key, values)`, where `values` is
    an **iterator** over every value yielded for that key, by every map task. Consume it once.
    """),
    code("""
    @reduce
    def total(word, counts):
        yield word, sum(counts)


    list(total("rain", iter([1, 1, 1])))
    """),
    md("""
    ## The job

    A job is a function that returns its stages in order. Its keyword arguments are options:
    `partitions=2` splits the map output into two parts by key, so two reduce tasks share the
    work (notebook 2 explains partitions). The options are checked now, when the job is
    declared, and again when it runs.
    """),
    code("""
    @job(partitions=2)
    def wordcount():
        return [words, total]


    wordcount
    """),
    md("""
    ## Run it

    `run()` takes the **inputs**: paths, globs, directories, URLs, or the results of an earlier
    job. With no `mode=`, the job runs on the **local runner**: it builds the same *jobpack* a
    Disco master would receive, starts worker processes (one per CPU core) and hands them the
    tasks: one map task per input file, one reduce task per partition.

    The workers are separate Python processes and cannot import this notebook, so discodsl
    sends your functions along *by value* (pickled with cloudpickle). Before any task starts, it
    loads them in a fresh interpreter to make sure they will load on the workers too; notebook
    4 shows what it says when they don't.

    While a job runs you see a progress bar per stage: text bars, or graphical ones once
    the `ipywidgets` package is installed; `run(..., progress=False)` turns them off.
    """),
    code("""
    results = wordcount.run(inputs=f"{DATA}/*.txt")
    results
    """),
    md("""
    ## Read the results

    `results` is lazy: nothing is read until you iterate over it. Each item is a `(key, value)`
    pair, just as the last stage yielded it. They come partition by partition (sorted by key
    within each partition), so sort them yourself when the order matters.
    """),
    code("""
    for word, n in sorted(results)[:5]:
        print(f"{word:8} {n}")
    """),
    md("""
    `to_dict()` reads them all into a dict: handy when the result is small, as it is here.
    """),
    code("""
    counts = results.to_dict()
    print(len(counts), "distinct words,", sum(counts.values()), "words in all")
    """, tag="assert-totals"),
    md("""
    ## The top words

    Sort by count, highest first, and by word to break ties:
    """),
    code("""
    top = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
    top
    """, tag="assert-top-words"),
    md("""
    ## Check it against plain Python

    On a small input the simplest test of a whole job is a few lines of ordinary Python that
    compute the same thing. Note that this check calls `words` directly, as a plain function.
    """),
    code("""
    from collections import Counter

    expected = Counter()
    for path in DATA.glob("*.txt"):
        for line in path.read_text().splitlines():
            expected.update(word for word, _ in words(line))

    counts == dict(expected)
    """, tag="assert-matches-counter"),
    md("""
    ## Unit tests for stages

    Because stages are plain functions, their tests are plain tests. In a project you would put
    these in `tests/test_stages.py` and run `pytest`; here we call them by hand.
    """),
    code("""
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
    """, tag="assert-unit-tests"),
    md("""
    ## Clean up

    The results of a local run are files in a temporary directory. They are removed when the
    `results` object is garbage-collected, when you call `results.close()`, or at the end of a
    `with wordcount.run(...) as results:` block.
    """),
    code("""
    results.close()
    workdir.cleanup()
    """),
    md("""
    ## What next

    - **2. Stages and pipelines**: jobs longer than map and reduce, what each *grouping* means,
      partitions.
    - **3. Fast and correct**: combiners, partitioners, `params=`, counters, measuring.
    - **4. When things go wrong**: inline mode and the debugger, reading a failed task's error,
      pickling problems, bad inputs.
    - **6. Access logs**: a real data task from end to end.
    """),
]


# --------------------------------------------------------------------------------------------
# 2. Stages and pipelines
# --------------------------------------------------------------------------------------------

PIPELINES = [
    md("""
    # 2. Stages and pipelines

    Map and reduce are two kinds of **stage**. A job is a pipeline of stages, as many as you
    need, each reading what the stage before it wrote. In this notebook you build a three-stage
    pipeline over a few CSV files of sales:

    1. **parse** (`@map`): a CSV line in, a `(product, revenue)` pair out,
    2. **revenue** (`@reduce`): the total revenue per product,
    3. **top3** (`@stage(grouping="group_all")`): the three best sellers, computed once, over
       everything.

    and you learn what a stage's **grouping** says (which records each of its tasks gets) and
    what **partitions** are.
    """),
    md("""
    ## The data

    Four shops, one file each, a line per product and day: `day,product,quantity,price_cents`,
    after a header line. The numbers are made up, but always the same.
    """),
    code("""
    import tempfile
    from pathlib import Path

    workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
    SALES = Path(workdir.name)

    PRICES = {"apples": 120, "bread": 250, "cheese": 690, "dates": 430,
              "eggs": 310, "figs": 540, "grapes": 380, "honey": 820}
    SHOPS = ["north", "south", "east", "west"]

    for shop_number, shop in enumerate(SHOPS):
        lines = ["day,product,quantity,price_cents"]
        for day in range(1, 31):
            for product_number, (product, price) in enumerate(PRICES.items()):
                quantity = (day * (product_number + 3) + shop_number * 5) % 9 + 1
                lines.append(f"{day},{product},{quantity},{price}")
        (SALES / f"sales-{shop}.csv").write_text("\\n".join(lines) + "\\n")

    print("\\n".join((SALES / "sales-north.csv").read_text().splitlines()[:4]))
    """),
    md("""
    ## Three stages

    `@stage` is the general stage: its function is called **once per task** with an iterator
    over all the records of that task, and yields `(key, value)` pairs. (`@map` and `@reduce`
    are the special cases "once per record" and "once per key".) Its `grouping` decides which
    records a task gets; `group_all` gives one task everything, which is what a top-N needs.

    To see the groupings at work, every stage also gets an `init` hook: a function called once
    at the start of each task (with no arguments, or with `params` when the stage function
    takes `params`, see notebook 3). Ours calls `count()`, which adds to a named counter; the
    counters of all tasks are added up and come back with the results.
    """),
    code("""
    import heapq

    from discodsl import count, job, map, reduce, stage


    def count_tasks(name):
        \"\"\"An init hook that counts the tasks of a stage.\"\"\"

        def started():
            count(f"{name} tasks")

        return started


    @map(init=count_tasks("parse"))
    def parse(line):
        day, product, quantity, price = line.split(",")
        if day != "day":  # skip the header line
            yield product, int(quantity) * int(price)


    @reduce(init=count_tasks("revenue"))
    def revenue(product, amounts):
        yield product, sum(amounts)


    @stage(grouping="group_all", init=count_tasks("top3"))
    def top3(records):
        best = heapq.nlargest(3, records, key=lambda pair: pair[1])
        yield from enumerate(best, 1)  # (rank, (product, cents))


    @job(partitions=2)
    def best_sellers():
        return [parse, revenue, top3]


    best_sellers
    """),
    md("""
    As always, the stages are plain functions, so each can be tried alone. A `@stage` function
    takes an iterable of records:
    """),
    code("""
    print(list(parse("3,figs,2,540")), list(parse("day,product,quantity,price_cents")))
    print(list(top3([("apples", 5), ("bread", 9), ("cheese", 7), ("dates", 1)])))
    """),
    code("""
    results = best_sellers.run(inputs=SALES)

    for rank, (product, cents) in sorted(results):
        print(f"{rank}. {product:8} {cents / 100:10,.2f}")
    """, tag="assert-top3"),
    md("""
    ## Groupings: what a task gets

    Disco runs every stage as a set of **tasks**, and a stage's grouping says how the outputs
    of the previous stage (or the job's inputs, for the first stage) are dealt out to them.
    Every output record carries a **label**, the number of the partition it belongs to.
    """,
    table(
        ("grouping", "tasks of the stage", "each task reads", "typical use"),
        ("`split`", "one per input", "that one input",
         "maps: per-record work (the default of `@map`)"),
        ("`group_label`", "one per label (partition)",
         "every record with that label, from all inputs",
         "reduces (the default of `@reduce` and `@stage`)"),
        ("`group_all`", "exactly one", "everything", "a global top-N, a total, a final sort"),
        ("`group_node`", "one per node", "everything stored on that node",
         "per-node work on a cluster, e.g. a pre-aggregation"),
        ("`group_node_label`", "one per label on each node", "that label's records on that node",
         "a per-node combine before a cluster-wide reduce"),
    ),
    """
    The local runner is a single node, so there `group_node` behaves like `group_all` and
    `group_node_label` like `group_label`; the difference shows on a cluster.

    The counters show it for our job: `parse` (split) ran one task per file, `revenue`
    (group_label) one per partition, `top3` (group_all) just one.
    """),
    code("""
    results.counters
    """, tag="assert-task-counts"),
    md("""
    The local runner cuts big files into line-aligned ranges when there are too few inputs to
    keep every core busy, so on big data a `split` stage may run more tasks than there are
    files. Tasks of one stage run in parallel, on as many worker processes as there are cores;
    the next stage starts when they have all finished.

    ## Partitions

    Between a stage and a following `group_label` stage (a reduce, usually), the records are
    split into `partitions` parts by key. Every key goes to exactly one partition, by a stable
    hash of the key, the same in every process: that is what guarantees a reduce sees *all*
    the values of its keys. The number of partitions is the number of reduce tasks, so it is
    how far the reduce side can run in parallel.

    Options given to `run()` override the job's for that run. With four partitions, `revenue`
    runs four tasks and the answer does not change:
    """),
    code("""
    four = best_sellers.run(inputs=SALES, partitions=4)
    print(four.counters)
    print("same top 3:", sorted(four) == sorted(results))
    """, tag="assert-partitions"),
    md("""
    How many partitions? One per core is a sound start for the local runner; on a cluster, a
    few per core of the whole cluster, so a slow task does not hold everybody up. Each task
    costs a process start, so thousands of tiny partitions are slower, not faster.

    ## A pipeline has rules

    The stages are checked when the job is declared. A reduce needs `(key, value)` pairs from
    an earlier stage, so it cannot come first; two stages cannot share a name. The error says
    what to write instead:
    """),
    code("""
    from discodsl import JobError

    try:

        @job
        def backwards():
            return [revenue, parse]

    except JobError as error:
        print(error)
    """, tag="assert-pipeline-rule"),
    code("""
    results.close()
    four.close()
    workdir.cleanup()
    """),
    md("""
    ## Summary

    - A job is a list of stages; each stage reads what the one before it wrote.
    - `@map`: once per record. `@reduce`: once per key. `@stage`: once per task.
    - The grouping says what a task reads: `split` (one input), `group_label` (one partition),
      `group_all` (everything), and per node on a cluster.
    - `partitions=` sets how many parts keys are split into, so how many reduce tasks run.

    Next, **3. Fast and correct**: combiners, custom partitioners, parameters and counters.
    """),
]


# --------------------------------------------------------------------------------------------
# 3. Fast and correct
# --------------------------------------------------------------------------------------------

FAST = [
    md("""
    # 3. Fast and correct

    This notebook is about the options that make a job faster, and the rules that keep it
    correct while they do:

    - **combiners**: `@reduce(combine=True)` and `combiner=`,
    - **partitions** and a **custom partitioner**,
    - **`sort=False`**,
    - **parameters**: `params=`, closures and `functools.partial`,
    - **counters**: `count("name")` and `results.counters`,
    - and how to **measure** whether a change helped.
    """),
    md("""
    ## A corpus to work on

    About 5 MB of made-up text in four files, from a vocabulary whose word frequencies fall
    off like a natural language's (a few words are very common, most are rare), and a small
    sample of two files for the quick examples.
    """),
    code("""
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
                out.write(" ".join(rng.choices(vocabulary, cum_weights=cumulative, k=12)) + "\\n")


    for part in range(4):
        write_text(CORPUS / f"part-{part}.txt", lines=12_000)
    for part in range(2):
        write_text(SAMPLE / f"part-{part}.txt", lines=1_500)

    megabytes = sum(path.stat().st_size for path in CORPUS.iterdir()) / 1e6
    print(f"{len(vocabulary)} words in the vocabulary, corpus of {megabytes:.1f} MB")
    """),
    md("""
    ## Combiners

    A word count's map yields a `(word, 1)` pair for every word: millions of pairs, each
    written to disk, sorted and read back by a reduce task. A **combiner** runs on the map side
    and adds up the pairs of each word before they are written, so a map task writes about
    one pair per distinct word instead.

    `@reduce(combine=True)` uses the reduce function itself as the combiner. That is right
    only when the reduce can read its own output: its output pairs must have the same shape as
    its input values, and combining partial groups in any order must give the same answer.
    A sum, a count, a max, a min qualify. A mean does not (see below).
    """),
    code("""
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
    """),
    md("""
    ## Measure it

    Time whole runs, reading the results included (that is part of the work), on data of a
    realistic size: on a tiny input every job takes about as long as starting its worker
    processes. Timings vary from run to run, all the more on a busy machine; for numbers you
    can trust, repeat each run a few times and keep the fastest. Here, one run of each:
    """),
    code("""
    import time


    def timed(job, inputs, **options):
        \"\"\"The job's results as a dict, and the seconds the run and the reading took.\"\"\"
        start = time.perf_counter()
        with job.run(inputs=inputs, **options) as results:
            answer = results.to_dict()
        return answer, time.perf_counter() - start


    combined, combined_seconds = timed(wordcount, CORPUS)
    uncombined, uncombined_seconds = timed(wordcount_uncombined, CORPUS)
    print(f"with the combiner:    {combined_seconds:5.1f} s")
    print(f"without the combiner: {uncombined_seconds:5.1f} s")
    print(f"ratio: {uncombined_seconds / combined_seconds:.1f}x")
    """),
    md("""
    Whatever the timings say, a faster job is only worth having if it gives the same answer:
    """),
    code("""
    print("same counts:", combined == uncombined)
    print(len(combined), "distinct words,", sum(combined.values()), "words")
    """, tag="assert-combiner-equal"),
    md("""
    ### A separate combiner: `combiner=`

    The mean word length per first letter: the answer per key is `total / count`, and a mean
    of partial means is not the mean. The usual trick is to carry `(total, count)` pairs:
    the map yields `(letter, (length, 1))`, a combiner adds the pairs up (its output has the
    shape of its input, so it can run any number of times), and only the reduce divides.
    That reduce cannot be its own combiner, so it names one with `combiner=`, a function of
    the same shape as a reduce.
    """),
    code("""
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
    """),
    code("""
    lengths = {}
    for path in SAMPLE.iterdir():
        for word in path.read_text().split():
            lengths.setdefault(word[0], []).append(len(word))
    expected = {letter: round(sum(ls) / len(ls), 3) for letter, ls in lengths.items()}
    print("same means as plain Python:", means == expected)
    """, tag="assert-mean-combiner"),
    md("""
    ## Partitions and a custom partitioner

    A reduce's `partitioner(key, partitions)` decides which partition, and so which reduce
    task, gets each key: it returns an int from `0` to `partitions - 1`. The default is a
    stable hash of the key. Two rules for your own:

    - it must give the same answer for the same key in every process: Python's built-in
      `hash()` of a string changes from process to process, so never use it here;
    - it should spread the keys evenly, or one reduce task does most of the work.

    A classic use is a **range partitioner**. Every reduce task sees its keys in sorted order,
    and the local runner returns the results partition by partition, in partition order; when
    partition `i` holds only keys smaller than those of partition `i + 1`, the results as a
    whole come out sorted. Here, by first letter:
    """),
    code("""
    def by_first_letter(word, partitions):
        \"\"\"Words from a... to ...z, cut into `partitions` ranges of the alphabet.\"\"\"
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
    """, tag="assert-partitioner"),
    md("""
    ## `sort=False`

    A reduce groups its input by sorting it, which is what puts its keys in order. With
    `sort=False` it groups by hashing instead: keys come in the order they were first seen,
    and they only need to be hashable, not comparable, which matters when keys of different
    types meet (`None` and `3` cannot be sorted together). The counts are the same:
    """),
    code("""
    @reduce(combine=True, sort=False)
    def total_unsorted(word, counts):
        yield word, sum(counts)


    @job(partitions=2)
    def wordcount_unsorted():
        return [words, total_unsorted]


    unsorted = wordcount_unsorted.run(inputs=SAMPLE).to_dict()
    print("same counts:", unsorted == dict(hashed))
    """, tag="assert-unsorted"),
    md("""
    ## Parameters: `params=`

    To make a stage configurable, give its function a second parameter named `params`. It
    receives the job's `params` option: any picklable value, usually a dict. Set it in `@job`
    and override it in `run()`, without redefining anything.

    This is also the place for **counters**: `count("name")` anywhere in stage code (or in
    its hooks) adds 1 (or `count("name", n)` adds `n`) to a counter. Every task reports its
    counts when it finishes, and `results.counters` holds the sums over all tasks. Counting is
    cheap and is the way to answer "how many records did we skip, and why?".
    """),
    code("""
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
    """),
    code("""
    sample_words = [word for path in SAMPLE.iterdir() for word in path.read_text().split()]
    for min_len, results in ((6, long6), (10, long10)):
        short = sum(1 for word in sample_words if len(word) < min_len)
        kept = {word for word in sample_words if len(word) >= min_len}
        print(f"min_len={min_len}:",
              "counter right:", results.counters == {"short words": short},
              "words right:", set(results.to_dict()) == kept)
    """, tag="assert-params"),
    md("""
    ## Closures and `functools.partial`

    Another way to configure a stage is to build it in code: a function that returns a
    stage, with its settings captured in a closure, or `functools.partial` filling in some
    arguments. Both travel to the workers by value, captured values included. Use `params=`
    for what changes from one run of a job to the next; use closures and partials to build
    several different stages from one piece of code.

    Every stage of a job needs its own name, and a stage is named after its function, so give
    built stages a `name=`. `map(...)` can be called as a plain function, too, not only used
    as a decorator.
    """),
    code("""
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
    """, tag="assert-closure-partial"),
    code("""
    long6.close()
    long10.close()
    workdir.cleanup()
    """),
    md("""
    ## Summary

    - `@reduce(combine=True)` when the reduce can read its own output (sums, counts, max,
      min); `combiner=` a separate function when it cannot (means: carry `(total, count)`).
    - `partitions=` is the reduce side's parallelism; a `partitioner(key, n)` must be
      deterministic across processes and spread keys evenly. A range partitioner gives
      results sorted as a whole.
    - `sort=False` groups by hashing: first-seen key order, keys need not be comparable.
    - `params=` reaches every stage function that takes a `params` argument; override it per
      run. Closures and `functools.partial` build stages in code.
    - `count("name")` in stage code, `results.counters` afterwards.
    - Measure whole runs on realistic data, more than once, and check the answers are equal
      before you believe a speed-up.

    Next, **4. When things go wrong**.
    """),
]


# --------------------------------------------------------------------------------------------
# 4. When things go wrong
# --------------------------------------------------------------------------------------------

TROUBLE = [
    md("""
    # 4. When things go wrong

    Errors come at three moments, and each error tries to say what happened and what to do:

    1. when you **declare** a stage or a job: the decorators check signatures and options;
    2. when a job **starts**: inputs are looked up, stages are pickled and test-loaded;
    3. while a **task** runs: your code raises on some record.

    Then there is debugging: **inline mode** runs a job in this very process, where `pdb` and
    `breakpoint()` work. Every error discodsl raises is a `discodsl.DiscoDSLError`; the ones
    about a job are `JobError`s, among them `PicklingError` and `TaskFailed`.
    """),
    code("""
    import tempfile
    from pathlib import Path

    workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
    DATA = Path(workdir.name)
    (DATA / "people-1.csv").write_text("ana,34\\nbo,27\\ncarl,45\\n")
    (DATA / "people-2.csv").write_text("dee,52\\neli,19\\ncarol,forty\\nfay,38\\n")
    (DATA / "people-3.csv").write_text("gus,61\\nhal,23\\n")

    sorted(path.name for path in DATA.iterdir())
    """),
    md("""
    ## 1. Mistakes caught when you declare

    A reduce is called with `(key, values)`; a job's options are validated. Both are checked
    when the decorator runs, long before any data is read:
    """),
    code("""
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
    """, tag="assert-declaration"),
    md("""
    ## 2. A task fails: reading `TaskFailed`

    A job over the three files: the mean age. One line of `people-2.csv` has "forty" for an
    age, and `int("forty")` raises.
    """),
    code("""
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
    """),
    md("""
    On the local runner the map tasks run in worker processes. An exception from your code
    is a bug that would fail again, so, as Disco's own workers do, it **fails the job at
    once**: no retries. Only failures with a passing cause are retried, up to `max_failures`
    times (3 by default): an input that cannot be read (`DataError`), an `OSError` (a full
    disk, a lost connection), a `MemoryError`, or a `discodsl.Retry` that your code raises
    for a flaky service.

    `run()` raises `TaskFailed`, which says where it happened:
    """),
    code("""
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
    """, tag="assert-task-failed"),
    md("""
    `record` counts from 0 within that input, so the offending line is one look away:
    """),
    code("""
    from urllib.parse import urlsplit

    bad_file = Path(urlsplit(failure.url).path)
    bad_file.read_text().splitlines()[failure.record]
    """, tag="assert-bad-line"),
    md("""
    The worker's own traceback is the error's `__cause__`, the way `concurrent.futures` shows a
    child process's traceback. Left uncaught, Jupyter prints both, the worker's first; here it
    is on its own:
    """),
    code("""
    print(failure.__cause__)
    """, tag="assert-remote-traceback"),
    md("""
    The last frame is your function: the cell that defined it, its line and its source
    (`yield "age", int(age)`), as if it had run in this kernel. Code defined in a notebook
    travels to the workers by value, and the worker cannot read a notebook's cells, so the
    client puts the source lines back. The frames above it are the worker's.
    """),
    md("""
    ## 3. Inline mode: the job in this process

    `mode="inline"` runs every task right here, one after the other. Nothing is pickled, no
    process is started, and your exception comes out unchanged, with its own traceback ending
    in your function (on Python 3.11+ with a note saying which stage, input and record). Inline
    mode still gives every stage at least two partitions and runs tasks and inputs in a
    shuffled order, so code that only works in one process or in one order fails here too.
    """),
    code("""
    import traceback

    try:
        mean_age.run(inputs=DATA, mode="inline")
    except ValueError as exc:
        inline_error = exc

    print(f"{type(inline_error).__name__}: {inline_error}")
    last = traceback.extract_tb(inline_error.__traceback__)[-1]
    print(f"raised in {last.name}(): {last.line}")
    """, tag="assert-inline"),
    md("""
    ### Post-mortem debugging with `pdb`

    Since the exception is the original one, the debugger can open the frame that raised it.
    In a live notebook you would type `%debug` in the next cell (or call
    `pdb.post_mortem(inline_error.__traceback__)`) and get a debugger prompt (`ipdb>` in
    Jupyter, `(Pdb)` in a terminal) in `parse_age`, with `line` and `age` to look at. So
    that this notebook runs unattended, the cell below hands the debugger its commands from
    a string instead of the keyboard: print `line` and `age`, then quit.
    """),
    code("""
    import io
    import pdb
    import sys

    commands = io.StringIO("p line\\np age\\nquit\\n")
    debugger = pdb.Pdb(stdin=commands, stdout=sys.stdout)
    debugger.use_rawinput = False  # read the commands from stdin=, not from input()
    debugger.reset()
    debugger.interaction(None, inline_error.__traceback__)  # what pdb.post_mortem does
    """, tag="assert-post-mortem"),
    md("""
    ### `breakpoint()`

    A `breakpoint()` in a stage stops there in inline mode, in the middle of the job, with the
    record at hand. Python's `breakpoint()` calls `sys.breakpointhook()`; to show it without
    stopping, the next cell installs a hook that only writes down where it was called from,
    and puts the real one back afterwards. Delete the two `sys.breakpointhook` lines to stop
    for real.

    Use `breakpoint()` in inline mode only. On the local runner or a cluster the stage runs in
    a worker process that has no keyboard: leave no `breakpoint()` in code you run there.
    """),
    code("""
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


    sys.breakpointhook = note_breakpoint
    try:
        checked = mean_age_checked.run(inputs=DATA, mode="inline")
    finally:
        sys.breakpointhook = sys.__breakpointhook__

    print("stopped at:", stops)
    print("mean age of the others:", checked.to_dict())
    """, tag="assert-breakpoint"),
    md("""
    ## 4. Code that cannot travel: the pickling pre-flight

    Before a local or cluster run starts any task, discodsl pickles the stages, with
    everything they drag along (the variables of closures, the globals they name, default
    values), and loads them in a fresh interpreter, as a worker will. Locks, open files,
    sockets and database connections cannot be pickled, and the error names the culprit.

    Here a stage keeps a lock in its closure, the habit of threaded code:
    """),
    code("""
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
    """, tag="assert-pickling"),
    md("""
    Inline mode would have run this happily, since it pickles nothing: give a job one run on
    the local runner before you send it to a cluster. The same error names a `global 'log'`
    when a stage writes to a file opened at the top of the notebook.

    **The fix.** A worker runs one task at a time, so the lock guards against nothing, and
    `seen` would count each task's lines in its own copy, never the job's: a counter does that
    job. When a stage does need something that cannot be pickled, create it where it is used:
    inside the function, or once per task in an `init` hook (closed in a `done` hook, which
    gets what `init` returned), and capture only plain data (paths, numbers) or pass it with
    `params=`. The hooks run in the worker, so what they create never travels. (The global
    `resources` travels too, but empty: the hooks fill it on the worker, and empty it again at
    the end of every task, so an inline run leaves nothing in it that cannot be pickled.)
    """),
    code("""
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
    """, tag="assert-pickling-fixed"),
    md("""
    ## 5. Bad inputs

    Inputs are looked up before anything runs. A path or a glob that matches no file is a
    `JobError` that names it:
    """),
    code("""
    try:
        mean_age.run(inputs=[DATA / "people-1.csv", DATA / "people-9.csv"])
    except JobError as error:
        print(error)
    """, tag="assert-missing-input"),
    code("""
    checked.close()
    guarded.close()
    workdir.cleanup()
    """),
    md("""
    ## Summary
    """,
    table(
        ("you see", "when", "what to do"),
        ("`JobError` or `SettingsError` from a decorator", "declaring",
         "follow the message: it shows what to write"),
        ("`JobError: input ... matches no file`", "`run()` starts",
         "check the path and the working directory"),
        ("`PicklingError` naming a variable", "`run()` starts (local, cluster)",
         "create the object in the function or an `init` hook"),
        ("`TaskFailed`", "a task failed for good",
         "`.stage`, `.url`, `.record`, `.exc_type`; the worker's traceback is `__cause__`"),
    ),
    """
    To debug a stage: call it as a plain function on the bad record, or run the job with
    `mode="inline"` and use `%debug`, `pdb.post_mortem()` or `breakpoint()`.

    Next, **5. On a Disco cluster**: the same jobs on a Disco master, then **6. Access logs**,
    a real data task from end to end.
    """),
]


# --------------------------------------------------------------------------------------------
# 5. On a Disco cluster
# --------------------------------------------------------------------------------------------

CLUSTER = [
    md("""
    # 5. On a Disco cluster

    Until now every job ran on this machine. This notebook sends the same jobs to a
    **Disco master**, the server of a Disco 0.5.4 cluster, and follows them there.

    **This lesson needs a Disco master.** The notebook finds it in the environment variable
    `DISCO_MASTER`, the master's URL (e.g. `http://master:8989`). Set it where Jupyter starts
    (`DISCO_MASTER=http://master:8989 jupyter lab`), then restart the kernel. When it is not
    set, the next cell stops the notebook with an error that says so. (The other tutorials
    need no cluster.)
    """),
    code("""
    import os

    from discodsl.client import Master
    from discodsl.ddfs import DDFS
    from discodsl.settings import load_settings

    if not os.environ.get("DISCO_MASTER"):
        raise RuntimeError(
            "this lesson needs a Disco 0.5.4 master, and DISCO_MASTER is not set: set it to the "
            "master's URL (e.g. DISCO_MASTER=http://master:8989) in the environment that starts "
            "Jupyter, restart the kernel and run the notebook again"
        )

    settings = load_settings()
    master = Master.from_settings(settings)
    ddfs = DDFS.from_settings(settings)
    nodes = ", ".join(sorted(master.nodeinfo()))
    print(f"Disco {master.version()} at {master.url}; nodes: {nodes}")
    jobs_before = {name for _, _, name in master.joblist()}  # to clean up only ours, at the end
    """, tag="assert-master"),
    md("""
    The jobs here are small (three files of two lines each), and the notebook cleans up after
    itself: its last cells delete the jobs and the DDFS tags it created.

    In this notebook you will:

    - see what discodsl sends to the master: a **jobpack**,
    - run a job on the cluster with the very same `run()`, and compare its results with the
      local runner's,
    - watch a job (progress, `status`, `events`) and read its results,
    - keep data in **DDFS**: push files to a tag, use the tag as input, save results in it,
    - send local files as paths or push them (`push_inputs=True`),
    - follow a job's whole life on the command line: `run`, `submit`, `jobs`, `wait`,
      `status`, `results`, `kill`, `purge`,
    - read the errors: a failing task, a master that cannot be reached.

    ## Disco in a few sentences

    A Disco cluster is a **master** (written in Erlang) and **nodes**. You submit a job to the
    master over HTTP (port 8989 by default). The master cuts each stage of the job into
    **tasks** and starts a **worker** process for each task on a node; the worker reads the
    task's inputs, runs your code and writes its output on that node, where the next stage's
    tasks, and you, read it over HTTP. **DDFS**, Disco's distributed file system, keeps data
    on the nodes as **blobs** (files, replicated on several nodes), listed under named
    **tags**.

    A job travels to the master as a **jobpack**, one binary file in four parts:
    """,
    table(
        ("part", "what it holds", "read by"),
        ("jobdict", "JSON: the job's name prefix, its inputs, the pipeline (each stage's name "
         "and grouping), the owner, `save_results`", "the master"),
        ("jobenvs", "environment variables for the workers", "the nodes"),
        ("jobhome", "a ZIP unpacked on every node: the `worker` program, discodsl's worker "
         "runtime and cloudpickle", "the nodes"),
        ("jobdata", "your stages, cloudpickled, after a header naming the Python they need",
         "the workers"),
    ),
    """
    So the nodes need no discodsl installed, only a CPython of the same minor version as
    yours: everything else is in the jobpack.

    ## The data and the job

    The three little texts of notebook 1, in a temporary directory, and its word count, with
    one addition: `count("lines")`, a counter, to see counters come back from the cluster.
    """),
    code('''
    import tempfile
    from pathlib import Path

    workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
    WORK = Path(workdir.name)
    DATA = WORK / "texts"
    DATA.mkdir()

    TEXTS = {
        "rain.txt": (
            "The rain falls on the hills, and the hills send the rain down to the river.\\n"
            "Rain, rain, rain: the river is never dry.\\n"
        ),
        "river.txt": (
            "The river runs to the sea.\\n"
            "The sea does not fill, and the river does not stop.\\n"
        ),
        "sea.txt": (
            "The sun lifts the sea into the sky.\\n"
            "The sky makes clouds, and the clouds make rain.\\n"
        ),
    }
    for name, text in TEXTS.items():
        (DATA / name).write_text(text)
    FILES = sorted(DATA.iterdir())
    [path.name for path in FILES]
    '''),
    code('''
    from discodsl import count, job, map, reduce


    @map
    def words(line):
        count("lines")
        for word in line.lower().split():
            word = word.strip(".,;:!?'\\"")
            if word:
                yield word, 1


    @reduce(combine=True)
    def total(word, counts):
        yield word, sum(counts)


    @job(partitions=2)
    def wordcount():
        return [words, total]
    '''),
    md("""
    ## Where a job runs: `DISCO_MASTER`, `master=` and `mode=`

    With `DISCO_MASTER` set, `run()` sends a job to that master unless you say otherwise;
    `run(master="http://other:8989")` picks a master for one run (and means the cluster too),
    and `mode="local"` or `mode="inline"` still run it on this machine. Every cluster setting
    comes, first found first, from a keyword argument (`master=`, or `--master` on the
    command line), the environment (`DISCO_MASTER`, `DISCO_PORT`, ...), the settings file
    (`DISCO_SETTINGS_FILE`, else `~/.disco`, read as plain values, never run), or the
    defaults.
    """),
    code("""
    print("DISCO_MASTER: ", settings.DISCO_MASTER)
    print("DISCO_PORT:   ", settings.DISCO_PORT, "(where the nodes serve their files)")
    print("owner:        ", settings.DISCO_JOB_OWNER)
    print("a keyword wins:", load_settings(DISCO_MASTER="http://other:8989").DISCO_MASTER)
    """, tag="assert-settings"),
    md("""
    First the local runner, for the answer to compare with; since `DISCO_MASTER` is set,
    that takes `mode="local"`:
    """),
    code("""
    local_counts = wordcount.run(inputs=FILES, mode="local").to_dict()
    top = sorted(local_counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
    print(len(local_counts), "distinct words,", sum(local_counts.values()), "words in all")
    print("top 3:", top)
    """, tag="assert-local"),
    md("""
    ## What travels: the jobpack

    The command line `discodsl` does everything this notebook does from a terminal. Here a
    small helper runs it inside the kernel: `discodsl.cli.main([...])` is the function the
    `discodsl` command calls. The helper prints the command as you would type it, then what
    it printed; errors go to stderr, as in a terminal. It also returns the output, for the
    cells that read it (a `;` after a cell's last call keeps Jupyter from showing it twice).

    The command line names a job `MODULE:JOB`: in a terminal, say, `jobs.py:wordcount` or
    `mypackage.jobs:wordcount`. The job of this notebook lives in the kernel's main module,
    `__main__`, so that is the module to name here.
    """),
    code('''
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
    '''),
    md("""
    `discodsl jobpack build` writes the jobpack that `run()` would send (it needs no master
    for local inputs), and `discodsl jobpack show` describes one as JSON. The jobdict in
    full, then the rest in short:
    """),
    code("""
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
    """, tag="assert-jobpack"),
    md("""
    The master reads the jobdict: two stages, `words` (grouping `split`: a task per input)
    and `total` (`group_label`: a task per partition), and the inputs, here `file://` URLs
    (more on those below). For each task, a node unpacks the jobhome and starts `worker`, a
    small launcher script; the worker runtime it starts loads your functions from the
    jobdata.

    ## Data in DDFS

    Before a cluster job can read data, the nodes must be able to reach it. The Disco way is
    to put it into DDFS: `discodsl ddfs push TAG FILE...` uploads each file as a blob and adds
    it to the tag, creating the tag if needed. (A tag collects blobs, so the cell first
    removes the tag if an earlier run of this notebook left it.)
    """),
    code("""
    TAG = "tutorial:rivers"
    if TAG in ddfs.list_tags(TAG):
        ddfs.delete(TAG)

    discodsl("ddfs", "push", TAG, *FILES)
    discodsl("--json", "ddfs", "ls", "tutorial:")
    print(f"{TAG} holds {len(ddfs.blobs(TAG))} blobs")
    """, tag="assert-push"),
    md("""
    ## Run it on the cluster

    The same job object, the same `run()`. Its input is the tag, as a `tag://` URL: discodsl
    asks DDFS for the tag's blobs and gives their URLs to the master. While the job runs you
    see a bar per stage, fed by the master's answers; counters come back with the results.
    """),
    code("""
    on_cluster = wordcount.run(inputs=f"tag://{TAG}")
    cluster_counts = on_cluster.to_dict()

    print("job:", on_cluster.jobname)
    print("same counts as the local runner:", cluster_counts == local_counts)
    print("counters:", on_cluster.counters)
    """, tag="assert-cluster"),
    md("""
    The master names every job `prefix@A:B:C`: the prefix is the job's name (set another one
    with `run(prefix="...")`), and `A:B:C` is the time the master received it (megaseconds,
    seconds and microseconds, in hex), so every name is new.

    ## Watching a job

    The progress bars are one way. The master keeps more about every job, and the command
    line shows it, from any terminal, while the job runs or after: `discodsl status JOB`
    gives the job's state and its stages' task counts, `discodsl events JOB` every event
    (`--follow` keeps printing them until the job ends). Where a job name is wanted, `@` means
    the newest job and `@?TEXT` the newest whose name contains TEXT.
    """),
    code("""
    discodsl("status", on_cluster.jobname)
    events = discodsl("events", on_cluster.jobname)
    """, tag="assert-events"),
    md("""
    The events tell the story: each stage is scheduled, its tasks assigned to nodes and
    finished, and the job ends with `READY`. `MSG` lines are what the workers said: here the
    tasks' counters; what a stage prints, or says with `discodsl.status("...")`, arrives the
    same way and shows in this notebook too.

    ## Reading results

    `on_cluster` is a `Results`, as after a local run, and just as lazy: its URLs point at
    index files on the nodes that ran the last stage, and iterating reads the records over
    HTTP. Nothing is copied to this machine until you read it.
    """),
    code("""
    for replicas in on_cluster.urls:
        print(replicas[0])
    sorted(on_cluster)[:3]
    """, tag="assert-results"),
    md("""
    To read the same results later, from another process or a terminal, you need only the
    job's name: `discodsl results JOB` (below). They stay on the nodes until the job is
    purged, or until the cluster's garbage collector removes old job data.

    ### Results that stay: `save_results=True`

    With `save_results=True` the master stores the results in DDFS, under the tag
    `disco:results:<job name>`, where they outlive the job. A later job, today or next week,
    reads them as its input, as `(key, value)` records; here a one-task `group_all` stage
    that ranks the words.
    """),
    code("""
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
    """, tag="assert-save-results"),
    md("""
    The `[top3] status: ...` line came from the worker, through the master's events.

    ## Local files: paths, or `push_inputs=True`

    You can also give `run()` local paths, as on the local runner. They go to the master as
    `file://` URLs, and a worker opens the file at that path *on its node*: right when every
    node sees the same files at the same paths (a shared file system such as NFS), wrong
    otherwise. A notice on stderr says so. If the nodes cannot see the files, the map tasks
    fail with a `DataError` that names the file and says what to do.

    `push_inputs=True` (`--push-inputs` on the command line) uploads the local files to DDFS
    first, under a new tag `discodsl:inputs:<job>@<time>`, and works on any cluster.
    """),
    code("""
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
    """, tag="assert-local-paths"),
    md("""
    Here the nodes run on this machine, so they read the paths. Pushing costs an upload on
    every run: for data you use more than once, push it to a tag yourself, once.

    ## A job's whole life on the command line

    `discodsl run MODULE:JOB INPUT...` is `run()` from a terminal: it builds the jobpack,
    submits it, shows the progress and prints the results as `key<TAB>value` lines (or
    writes them with `-o FILE`). It runs on the cluster when `DISCO_MASTER` is set (or
    `--master URL` is given), and on this machine with `--local` or `--inline`.
    """),
    code("""
    COUNTS = WORK / "counts.tsv"
    discodsl("run", "__main__:wordcount", f"tag://{TAG}", "-o", COUNTS)
    print(COUNTS.read_text().count("\\n"), "lines in", COUNTS.name)
    print(*sorted(COUNTS.read_text().splitlines())[:3], sep="\\n")
    """, tag="assert-cli-run"),
    md("""
    `discodsl run` waits for the job. To leave a job running, build its jobpack and
    `submit` it: that prints the job's name and returns at once. Then come back to it with
    `wait`, `status` and `results`; `--json` makes the output easy for other programs to read.
    """),
    code("""
    discodsl("jobpack", "build", "__main__:wordcount", f"tag://{TAG}", "-o", PACK)
    submitted = discodsl("submit", PACK).strip()
    discodsl("wait", submitted)
    state = json.loads(discodsl("--json", "status", submitted, head=0))
    print("status --json:", {key: state[key] for key in ("name", "active", "pipeline")})
    records = discodsl("--json", "results", submitted, head=3)
    print(len(records.splitlines()), "records; the 'the':",
          [line for line in records.splitlines() if line.startswith('["the"')])
    """, tag="assert-cli-json"),
    md("""
    `discodsl jobs` lists the master's jobs, newest first (`--json` for a list of objects):
    """),
    code("""
    discodsl("jobs", head=4)
    listed = json.loads(discodsl("--json", "jobs", head=0))
    print("--json:", listed[0])
    """, tag="assert-cli-jobs"),
    md("""
    A job that runs too long, or was a mistake, is stopped with `discodsl kill JOB`; its
    workers are stopped and it is `dead`. In Python, `run(..., kill_on_interrupt=True)` kills
    the job when you interrupt the wait (Ctrl-C, or the kernel's stop button); without it,
    the job runs on and the message says how to kill it. Here, a job that would sleep a
    minute on its one input:
    """),
    code("""
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
    """, tag="assert-cli-kill"),
    md("""
    (`raw://a b c` is an input whose data is the URL itself: handy for tiny tests.)

    A job's results and files stay on the nodes until the job is purged: `discodsl purge JOB`
    forgets the job and deletes its data. After that the master knows no such job, and the
    command says so in one line, with a hint:
    """),
    code("""
    discodsl("purge", submitted)
    discodsl("status", submitted);
    """, tag="assert-cli-purge"),
    md("""
    ## When things go wrong

    ### A task fails

    A stage that raises on some record fails its task on the node, and the worker tells the
    master the error is fatal (Disco's FATAL): the master kills the job at once, and `run()`
    raises the same `TaskFailed` as on the local runner (notebook 4), read from the master's
    events: the stage, the input and the record, and the worker's own traceback as its
    `__cause__`. Only failures worth another try (an unreadable input, an `OSError`, a
    `MemoryError`, `discodsl.Retry`) are reported as ERROR, which the master retries after a
    pause (14 s, 15 s, 16 s ...) as many times as its `max_failure_rate` setting allows (the
    cluster's operator sets it; see `master.settings()`).
    """),
    code("""
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
    """, tag="assert-task-failed"),
    md("""
    The message goes on with the master's last events (`str(failure)` has them all), and
    `discodsl events JOB` shows the worker's traceback too, long after the job died.

    ### The master cannot be reached

    A wrong `DISCO_MASTER`, a master that is down, a port closed by a firewall: every call
    that needs the master raises `ClientError`, saying which URL it tried, why it failed and
    what to check. The command line prints it on one line, `discodsl: error: ...`, with a
    `hint:` line, and exits with status 1.

    A client retries a connection that failed, five times by default, waiting longer each
    time (about 15 seconds in all), since masters restart and networks blink. To see the
    error at once, this cell sets `DISCODSL_RETRIES=0` for a moment. Nothing listens on port 1
    of this machine:
    """),
    code("""
    from discodsl import ClientError

    NOWHERE = "http://127.0.0.1:1"
    retries = os.environ.get("DISCODSL_RETRIES")
    os.environ["DISCODSL_RETRIES"] = "0"
    try:
        try:
            wordcount.run(inputs=["raw://a b c"], master=NOWHERE)
        except ClientError as error:
            print(f"{type(error).__name__}: {error}")
        discodsl("--master", NOWHERE, "jobs")
    finally:
        if retries is None:
            del os.environ["DISCODSL_RETRIES"]
        else:
            os.environ["DISCODSL_RETRIES"] = retries
    """, tag="assert-unreachable"),
    md("""
    ## Clean up

    Purge the jobs this notebook ran (their data goes with them): the ones that were not on
    the master when it started, with its job names and its owner. Then delete its tags: the
    pushed texts, the saved results and the inputs `push_inputs=True` uploaded.
    """),
    code("""
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
    """, tag="assert-cleanup"),
    md("""
    ## Summary
    """,
    table(
        ("to", "in Python", "on the command line"),
        ("choose the master", "`DISCO_MASTER`, or `run(master=...)`",
         "`DISCO_MASTER`, or `--master URL`"),
        ("look at what is sent", "", "`discodsl jobpack build MODULE:JOB ... -o FILE`, "
         "`discodsl jobpack show FILE`"),
        ("run a job and wait", "`job.run(inputs)`", "`discodsl run MODULE:JOB INPUT...`"),
        ("start a job, come back later", "", "`discodsl submit FILE`, `discodsl wait JOB`"),
        ("watch it", "the progress bars", "`discodsl status JOB`, `discodsl events -f JOB`"),
        ("read results", "iterate over `Results`", "`discodsl results JOB` (`--json`)"),
        ("store data in DDFS", "`ddfs.push(tag, files)` (`discodsl.ddfs.DDFS`)",
         "`discodsl ddfs push TAG FILE...`"),
        ("read a tag", "`inputs=\"tag://TAG\"`", "`discodsl run MODULE:JOB tag://TAG`"),
        ("keep results", "`run(..., save_results=True)`", ""),
        ("send local files", "paths (shared file system), or `push_inputs=True`",
         "`--push-inputs`"),
        ("stop, forget", "`kill_on_interrupt=True`", "`discodsl kill JOB`, `discodsl purge JOB`"),
    ),
    """
    A job that fails on the cluster raises the same `TaskFailed` as on the local runner;
    an unreachable master is a `ClientError` (on the command line, one `discodsl: error:`
    line and a hint). Job names: `prefix@A:B:C`; `@` is the newest job, `@?TEXT` the newest
    whose name contains TEXT.
    """),
]


# --------------------------------------------------------------------------------------------
# 6. Access logs
# --------------------------------------------------------------------------------------------

ACCESS_LOGS = [
    md("""
    # 6. Access logs, from end to end

    A real data task: the access logs of a few web servers. The questions are the usual ones
    after a bad day:

    - How many lines could not even be read?
    - Which URLs are requested most?
    - What share of the requests failed with a server error (status 500 or above), hour by
      hour, and which hours were worst?

    Two jobs answer them: the first parses and tallies the logs; the second runs on the
    *results of the first* to rank the hours.

    Each line of a log is in the **Common Log Format**:

    ```
    10.2.181.47 - ana [14/Mar/2024:14:05:33 +0000] "GET /docs/faq.html HTTP/1.1" 200 5120
    ```

    the client's address, its identity (always `-`), the user, the time, the request line
    (method, URL, protocol), the status code, and the size of the response in bytes (`-`
    when there is no body).
    """),
    md("""
    ## The logs

    `data/make_logs.py`, next to this notebook, writes them: four servers, 3,000 lines each,
    one day. It is seeded, so it writes the same bytes every time, and it plants a few facts
    (a most requested URL, a worst hour, a known number of malformed lines) and prints its
    answer key as JSON, so we can check the jobs' answers at the end. Run it as a command, into
    a temporary directory:
    """),
    code("""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    workdir = tempfile.TemporaryDirectory(prefix="discodsl-tutorial-")
    LOGS = Path(workdir.name) / "logs"

    made = subprocess.run(
        [sys.executable, "data/make_logs.py", str(LOGS), "--files", "4", "--lines", "3000"],
        capture_output=True, text=True, check=True,
    )
    answer_key = json.loads(made.stdout)

    for path in sorted(LOGS.iterdir()):
        print(f"{path.name}: {path.stat().st_size:,} bytes")
    print((LOGS / "web-1.log").read_text().splitlines()[0])
    """),
    md("""
    ## Parsing a line

    A regular expression with a named group per field. A line it does not match is
    **malformed**: a log that was cut short, a status that is not a number, a stray message
    from the server. Dropping such lines silently would hide how many there are, so the map
    counts them with `count("malformed")` and moves on; a job should not die on a bad line of
    a big log, and the counter says how big the problem is.

    For every good line the map yields two pairs with **tagged keys**: `("url", url)` with a
    1 to count requests per URL, and `("hour", hour)` with `(1, 1 if it failed else 0)`, so
    one reduce tallies both. Keys of one reduce must be comparable to be sorted: tuples of
    strings are, whatever the tag.
    """),
    code(r'''
    import re
    from datetime import datetime

    from discodsl import count, job, map, reduce, stage

    CLF = re.compile(
        r'(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
        r'"(?P<method>[A-Z]+) (?P<url>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<size>\d+|-)$'
    )


    @map
    def parse_hit(line):
        hit = CLF.match(line)
        if hit is None:
            count("malformed")
            return
        when = datetime.strptime(hit["time"], "%d/%b/%Y:%H:%M:%S %z")
        failed = int(hit["status"]) >= 500
        yield ("url", hit["url"]), 1
        yield ("hour", when.strftime("%Y-%m-%d %H:00")), (1, int(failed))
    '''),
    md("""
    Try it on a good line and a bad one before running anything:
    """),
    code("""
    good = '10.0.0.1 - - [14/Mar/2024:14:05:33 +0000] "GET /docs/faq.html HTTP/1.1" 503 120'
    print(list(parse_hit(good)))
    print(list(parse_hit("upstream timed out (110: Connection timed out)")))
    """),
    md("""
    ## The first job: tally

    The reduce adds up: a count per URL, and `(requests, errors)` per hour. Its output has
    the shape of its input values in both cases, so it can be its own combiner
    (`combine=True`), and the map tasks write one pair per URL and per hour instead of two per
    line.
    """),
    code("""
    @reduce(combine=True)
    def tally(key, values):
        kind, _ = key
        if kind == "url":
            yield key, sum(values)
        else:
            requests = errors = 0
            for seen, failed in values:
                requests += seen
                errors += failed
            yield key, (requests, errors)


    @job(partitions=4)
    def traffic():
        return [parse_hit, tally]


    stats = traffic.run(inputs=LOGS)
    print("malformed lines:", stats.counters["malformed"])
    """, tag="assert-malformed"),
    md("""
    ## Top URLs

    There are only a few distinct URLs, so the results are small enough to sort here:
    """),
    code("""
    hits = {url: n for (kind, url), n in stats if kind == "url"}
    top_urls = sorted(hits.items(), key=lambda pair: (-pair[1], pair[0]))[:5]
    for url, n in top_urls:
        print(f"{n:6,}  {url}")
    """, tag="assert-top-urls"),
    md("""
    ## Error rate per hour
    """),
    code("""
    per_hour = {hour: value for (kind, hour), value in stats if kind == "hour"}
    for hour, (requests, errors) in sorted(per_hour.items()):
        rate = errors / requests
        bar = "#" * round(rate * 100)
        print(f"{hour}  {requests:5} requests {errors:4} errors {rate:6.1%}  {bar}")
    """, tag="assert-hours"),
    md("""
    ## The second job: rank the hours, on the first job's results

    The results of a job can be the inputs of the next: `run(inputs=stats)`. Each record is
    then a `(key, value)` pair as the first job wrote it, not a line of text. The second job's
    map keeps the hour records and computes their error rate; a `group_all` stage sorts them
    all, worst first. On a cluster the first job's results stay on the nodes that wrote them;
    nothing comes back through this notebook.
    """),
    code("""
    @map
    def error_rate(record):
        (kind, hour), value = record
        if kind == "hour":
            requests, errors = value
            yield hour, (errors / requests, errors, requests)


    @stage(grouping="group_all")
    def rank(records):
        ranked = sorted(records, key=lambda pair: (-pair[1][0], pair[0]))
        for place, (hour, (rate, errors, requests)) in enumerate(ranked, 1):
            yield place, (hour, round(rate, 4), errors, requests)


    @job
    def worst_hours():
        return [error_rate, rank]


    ranking = worst_hours.run(inputs=stats)
    for place, (hour, rate, errors, requests) in sorted(ranking)[:3]:
        print(f"{place}. {hour}  {rate:6.1%}  ({errors} of {requests} requests failed)")
    """, tag="assert-ranking"),
    md("""
    ## Check the answers

    The generator's answer key against the jobs' answers. On real logs there is no answer
    key; planting known facts in made-up data of the same shape is how you test a job before
    you trust it with the real thing.
    """),
    code("""
    worst_hour = sorted(ranking)[0][1][0]
    planted_hour = f"2024-03-14 {answer_key['worst_hours'][0]:02d}:00"
    checks = {
        "malformed lines": (stats.counters["malformed"], answer_key["malformed"]),
        "top URL": (top_urls[0][0], answer_key["top_url"]),
        "its hits": (top_urls[0][1], answer_key["hits"][answer_key["top_url"]]),
        "worst hour": (worst_hour, planted_hour),
    }
    for what, (found, planted) in checks.items():
        verdict = "ok" if found == planted else "WRONG"
        print(f"{what:16} found {found!s:30} planted {planted!s:30} {verdict}")
    assert all(found == planted for found, planted in checks.values())
    """, tag="assert-answer-key"),
    code("""
    ranking.close()
    stats.close()
    workdir.cleanup()
    """),
    md("""
    ## Summary

    - Count what you skip: `count("malformed")` in the map, `results.counters` afterwards.
    - Tagged keys let one reduce compute several tallies in one pass over the data.
    - A job's results are the next job's inputs: `job2.run(inputs=results_of_job1)`.
    - Test a job on made-up data with planted facts before you trust its answers.
    """),
]


NOTEBOOKS = {
    "01-first-job.ipynb": FIRST_JOB,
    "02-stages-and-pipelines.ipynb": PIPELINES,
    "03-fast-and-correct.ipynb": FAST,
    "04-when-things-go-wrong.ipynb": TROUBLE,
    "05-on-a-disco-cluster.ipynb": CLUSTER,
    "06-access-logs.ipynb": ACCESS_LOGS,
}


def notebook(name: str, cells: list[NotebookNode]) -> NotebookNode:
    """The notebook ``name`` with ``cells``, their ids stable (``<number>-<index>``)."""
    nb = new_notebook(
        cells=[nbformat.from_dict(cell) for cell in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    for index, cell in enumerate(nb.cells):
        cell.id = f"{name[:2]}-{index:02d}"
    nbformat.validate(nb)
    return nb


def build(directory: Path = HERE) -> list[Path]:
    """Write every notebook into ``directory``; their paths."""
    written = []
    for name, cells in NOTEBOOKS.items():
        path = directory / name
        nbformat.write(notebook(name, cells), path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
